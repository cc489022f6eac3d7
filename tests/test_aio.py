"""asyncio: AsyncProxy against every server type and Pyro5, async methods, multiplexing,
cancellation, dead servers, and the async name server client."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time

import Pyro5.api
import pytest

import ember
from ember import errors, naming
from ember.aio import AsyncBatchProxy, AsyncProxy


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@ember.expose
class AsyncService:
    def __init__(self):
        self._value = 1
        self.fired = threading.Event()
        self.active = 0
        self.max_active = 0

    def add(self, a, b):
        return a + b

    async def async_add(self, a, b):
        await asyncio.sleep(0)
        return a + b

    async def sleep(self, seconds, tag=None):
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.active -= 1
        return tag

    def blocking_sleep(self, seconds):
        time.sleep(seconds)
        return seconds

    async def fail(self):
        await asyncio.sleep(0)
        raise ValueError("async says no")

    def count(self, n):
        yield from range(n)

    async def async_count(self, n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i * 10

    @ember.oneway
    async def fire(self):
        await asyncio.sleep(0)
        self.fired.set()

    async def my_annotation(self, delay):
        await asyncio.sleep(delay)
        return ember.current_context.annotations.get("XIDX")

    def peak(self):
        return self.max_active

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        self._value = v


@pytest.fixture
def service_uri(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    return daemon.register(AsyncService(), "svc")


def test_calls_properties_streams_batches_and_oneway(service_uri, servertype):
    service = ember.Proxy(service_uri)

    async def main():
        async with AsyncProxy(service_uri) as p:
            assert await p.add(1, 2) == 3
            assert await p.async_add(2, 3) == 5  # async def methods work on every server type
            assert await p._get("value") == 1
            await p._set("value", 7)
            assert await p._get("value") == 7
            assert await p._dir() == sorted(["add", "async_add", "sleep", "blocking_sleep", "fail", "count",
                                             "async_count", "fire", "my_annotation", "peak", "value"])
            with pytest.raises(ValueError, match="async says no") as info:
                await p.fail()
            assert "async says no" in errors.remote_traceback(info.value)
            with pytest.raises(AttributeError, match="no exposed method 'nope'"):
                await p.nope()
            with pytest.raises(AttributeError, match="use await proxy._get"):
                await p.value()
            assert [x async for x in await p.count(4)] == [0, 1, 2, 3]
            assert [x async for x in await p.async_count(3)] == [0, 10, 20]
            batch = AsyncBatchProxy(p)
            batch.add(1, 1)
            batch.async_add(2, 2)
            batch.fail()
            batch.add(9, 9)
            results = await batch()
            assert next(results) == 2 and next(results) == 4
            with pytest.raises(ValueError):
                next(results)
            assert await p.fire() is None
            assert p._multiplex == (servertype == "asyncio")

    run(main())
    assert service.peak() >= 0  # the daemon is still there for others
    service._release()


def test_async_with_release_and_reconnect(service_uri):
    async def main():
        p = AsyncProxy(service_uri)
        assert await p.add(1, 1) == 2
        await p._release()
        assert p._writer is None
        assert await p.add(2, 2) == 4  # reconnects on use
        await p._release()
        await p._release()  # twice is fine

    run(main())


def test_many_concurrent_calls_on_one_proxy(service_uri, servertype):
    count = 1000 if servertype == "asyncio" else 20

    async def main():
        async with AsyncProxy(service_uri) as p:
            results = await asyncio.gather(*(p.sleep(0.05, i) for i in range(count)))
            assert results == list(range(count))
            return await p.peak()

    peak = run(main())
    if servertype == "asyncio":
        assert peak > 1  # really in flight together on one connection
    else:
        assert peak == 1  # a daemon that answers in order gets one call at a time


def test_timeouts(service_uri, servertype):
    async def main():
        async with AsyncProxy(service_uri) as p:
            p._timeout = 0.2
            with pytest.raises(errors.TimeoutError, match="timed out"):
                await p.sleep(2)
            p._timeout = None
            if servertype == "asyncio":
                assert await p.add(1, 2) == 3  # the connection survives; the late reply is dropped
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.sleep(2), 0.2)

    run(main())


def test_cancelling_one_call_leaves_the_others_intact(make_daemon):
    uri = make_daemon(servertype="asyncio").register(AsyncService(), "svc")

    async def main():
        async with AsyncProxy(uri) as p:
            tasks = [asyncio.ensure_future(p.sleep(0.3, i)) for i in range(10)]
            await asyncio.sleep(0.05)
            tasks[3].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(results[3], asyncio.CancelledError)
            assert [r for i, r in enumerate(results) if i != 3] == [i for i in range(10) if i != 3]
            assert await p.add(1, 1) == 2
            assert not p._pending

    run(main())


def test_cancellation_with_an_in_order_daemon(make_daemon):
    uri = make_daemon(servertype="thread").register(AsyncService(), "svc")

    async def main():
        async with AsyncProxy(uri) as p:
            slow = asyncio.ensure_future(p.sleep(0.3, "slow"))
            await asyncio.sleep(0.05)
            slow.cancel()
            # the next call's reply is told apart from the cancelled one's by sequence number
            assert await p.add(2, 3) == 5
            assert await p.async_add(1, 1) == 2

    run(main())


SERVER_SCRIPT = """
import asyncio, ember
@ember.expose
class Slow:
    async def wait(self, s):
        await asyncio.sleep(s)
        return s
d = ember.Daemon(servertype="asyncio")
print(d.register(Slow(), "slow"), flush=True)
d.request_loop()
"""


def test_a_server_that_dies_mid_call_fails_every_pending_call():
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        uri = proc.stdout.readline().strip()

        async def main():
            async with AsyncProxy(uri) as p:
                assert await p.wait(0) == 0
                calls = [asyncio.ensure_future(p.wait(30)) for _ in range(20)]
                await asyncio.sleep(0.2)
                os.kill(proc.pid, signal.SIGKILL)
                results = await asyncio.gather(*calls, return_exceptions=True)
                assert all(isinstance(r, errors.ConnectionClosedError) for r in results), results
                with pytest.raises(errors.CommunicationError):
                    await p.wait(0)  # reconnecting fails clearly too

        run(main(), timeout=20)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_current_context_is_per_task(make_daemon):
    uri = make_daemon(servertype="asyncio").register(AsyncService(), "svc")

    async def one(p, i):
        ember.current_context.annotations = {"XIDX": str(i).encode()}
        return await p.my_annotation(random.random() / 20)

    async def main():
        async with AsyncProxy(uri) as p:
            return await asyncio.gather(*(asyncio.ensure_future(one(p, i)) for i in range(50)))

    assert run(main()) == [str(i).encode() for i in range(50)]


def test_plain_methods_do_not_block_the_loop(make_daemon):
    uri = make_daemon(servertype="asyncio").register(AsyncService(), "svc")

    async def main():
        async with AsyncProxy(uri) as p:
            started = time.monotonic()
            blocking = asyncio.ensure_future(p.blocking_sleep(0.5))
            await asyncio.sleep(0.05)
            assert await p.async_add(1, 1) == 2
            quick = time.monotonic() - started
            await blocking
            return quick

    assert run(main()) < 0.45  # answered while the blocking method still ran


def test_against_a_pyro5_daemon():
    @Pyro5.api.expose
    class P5:
        def add(self, a, b):
            return a + b

        def gen(self, n):
            yield from range(n)

        def slow(self, s):
            time.sleep(s)
            return s

        @Pyro5.api.oneway
        def fire(self):
            pass

    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    uri = daemon.register(P5(), "p5")
    thread = threading.Thread(target=daemon.requestLoop)
    thread.start()

    async def main():
        async with AsyncProxy(str(uri)) as p:
            assert await p.add(1, 2) == 3
            assert not p._multiplex
            assert await asyncio.gather(*(p.add(i, i) for i in range(30))) == [2 * i for i in range(30)]
            assert [x async for x in await p.gen(3)] == [0, 1, 2]
            assert await p.fire() is None
            batch = AsyncBatchProxy(p)
            batch.add(1, 1)
            batch.add(2, 2)
            assert list(await batch()) == [2, 4]
            slow = asyncio.ensure_future(p.slow(0.3))
            await asyncio.sleep(0.05)
            slow.cancel()
            assert await p.add(5, 5) == 10

    try:
        run(main())
    finally:
        daemon.shutdown()
        thread.join()
        daemon.close()


def test_pyro5_proxy_against_the_asyncio_daemon(make_daemon):
    uri = make_daemon(servertype="asyncio").register(AsyncService(), "svc")
    with Pyro5.api.Proxy(str(uri)) as p:
        assert p.async_add(1, 2) == 3
        assert list(p.async_count(2)) == [0, 10]
        assert p.value == 1


def test_name_server_resolution(make_daemon, servertype):
    with naming.start_ns("127.0.0.1", 0, bcport=0) as service:
        daemon = make_daemon(servertype=servertype, ns=service.uri)
        daemon.register(AsyncService(), "async.svc", metadata={"async"})
        loc = service.daemon.location

        async def main():
            async with AsyncProxy(f"PYRONAME:async.svc@{loc}") as p:
                assert await p.add(1, 2) == 3
            async with AsyncProxy(f"PYROMETA:async@{loc}") as p:
                assert await p.async_add(1, 2) == 3
            async with AsyncProxy(f"PYROLOC:async.svc@{daemon.location}") as p:
                assert await p.add(2, 2) == 4
            with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=_free_port(),
                                       NS_BCPORT=service.broadcast.port):
                ns = await ember.aio.locate_ns()
                try:
                    assert "async.svc" in await ns.list()
                finally:
                    await ns._release()
            with pytest.raises(errors.NamingError, match="unknown name"):
                await ember.aio.resolve(f"PYRONAME:missing@{loc}")

        run(main())


def test_asyncio_daemon_in_an_existing_event_loop():
    async def main():
        daemon = ember.Daemon(servertype="asyncio")
        uri = daemon.register(AsyncService(), "svc")
        serving = asyncio.ensure_future(daemon.serve_async())
        try:
            async with AsyncProxy(uri) as p:
                assert await p.async_add(20, 22) == 42
        finally:
            await asyncio.get_running_loop().run_in_executor(None, daemon.shutdown)
            await serving

    run(main())
    with pytest.raises(errors.DaemonError, match="servertype='asyncio'"):
        asyncio.run(ember.Daemon().serve_async())


def test_ember_aio_serve():
    async def main():
        port = _free_port()
        server = asyncio.ensure_future(ember.aio.serve({AsyncService: "svc"}, port=port, verbose=False))
        try:
            for _ in range(100):
                try:
                    async with AsyncProxy(f"PYRO:svc@127.0.0.1:{port}") as p:
                        return await p.add(1, 2)
                except errors.CommunicationError:
                    await asyncio.sleep(0.02)
        finally:
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server

    assert run(main()) == 3


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
