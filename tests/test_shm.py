"""Same-host shared memory (issue 16 item 4): negotiation, both proxies on all three servers,
Pyro5 peers, bad descriptors, and cleanup when either side is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import Pyro5.api
import pytest

import ember
from ember.config import Config
from ember.errors import CommunicationError, MessageTooLargeError, ProtocolError
from ember.protocol import Message, MsgType, decode, encode
from ember.transport import shm

from .services import pyro5_daemon, wait_for

pytestmark = pytest.mark.skipif(not shm.available(), reason="shared memory needs Linux (memfd_create, SCM_RIGHTS)")

SRC = str(Path(__file__).resolve().parent.parent / "src")
BIG = 3 * 1024 * 1024


@ember.expose
class Bulk:
    def __init__(self) -> None:
        self.entered = threading.Event()

    def echo(self, data):
        return data

    def size(self, data):
        return len(data)

    def make(self, n):
        return b"m" * n

    def slow_echo(self, data, seconds):
        self.entered.set()
        time.sleep(seconds)
        return data


def memfds() -> int:
    """This process's open shared-memory regions (descriptors and mappings); proxies of
    earlier tests that only the garbage collector closes are collected first."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += "memfd:ember-shm" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    with open("/proc/self/maps") as maps:
        count += sum("memfd:ember-shm" in line for line in maps)
    return count


def dev_shm() -> set[str]:
    """Names in /dev/shm, less the POSIX semaphores (``sem.*``) that unrelated programs on the
    machine (multiprocessing locks of other test runs) create and remove meanwhile."""
    if not os.path.isdir("/dev/shm"):
        return set()
    return {name for name in os.listdir("/dev/shm") if not name.startswith("sem.")}


@pytest.fixture
def unix_path(tmp_path):
    return str(tmp_path / "bulk.sock")


def test_proxy_uses_shared_memory_on_every_server(make_daemon, servertype, unix_path):
    daemon = make_daemon(servertype=servertype, unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    data = os.urandom(BIG)
    with ember.Proxy(uri) as p:
        assert p.size(b"small") == 5
        channel = p._session.shm
        assert channel is not None and channel._in is None  # nothing large sent yet: no regions
        for _ in range(3):
            assert p.echo(data) == data
            assert p.make(BIG + 1) == b"m" * (BIG + 1)
        assert channel._out.gen == 3  # every large argument went through the region
        assert channel._in.gen == 6  # and every large result
        assert p.size(data) == BIG


def test_async_proxy_uses_shared_memory_on_every_server(make_daemon, servertype, unix_path):
    daemon = make_daemon(servertype=servertype, unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    data = os.urandom(BIG)

    async def main():
        async with ember.AsyncProxy(uri) as p:
            assert await p.echo(data) == data
            channel = p._session.shm
            assert channel is not None and channel._out.gen == 1 and channel._in.gen == 1
            # calls in flight together: one block per direction at a time, the others use the socket
            results = await asyncio.gather(*[p.echo(data) for _ in range(4)])
            assert all(r == data for r in results)
            assert await p.echo(data) == data
            assert channel._out.gen >= 2 and channel._in.gen >= 2

    asyncio.run(main())


def test_loopback_tcp_uses_shared_memory(make_daemon):
    daemon = make_daemon(host="127.0.0.1", port=0)
    uri = daemon.register(Bulk(), "bulk")
    data = os.urandom(BIG)
    with ember.Proxy(uri) as p:
        assert p.echo(data) == data
        assert p._session.shm is not None and p._session.shm._out.gen == 1


def test_threshold_zero_turns_it_off_on_either_side(make_daemon, unix_path):
    daemon = make_daemon(unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    with ember.config.override(SHM_THRESHOLD=0), ember.Proxy(uri) as p:
        assert p.size(b"x" * BIG) == BIG
        assert p._session.shm is None
    cfg = Config()
    cfg.SHM_THRESHOLD = 0
    daemon = make_daemon(unixsocket=unix_path + "2", config=cfg)
    uri = daemon.register(Bulk(), "bulk")
    with ember.Proxy(uri) as p:
        assert p.size(b"x" * BIG) == BIG
        assert p._session.shm is None  # asked, but the daemon did not offer


def test_below_threshold_goes_over_the_socket(make_daemon, unix_path):
    daemon = make_daemon(unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    with ember.config.override(SHM_THRESHOLD=BIG + 1000), ember.Proxy(uri) as p:
        assert p.echo(b"y" * BIG) == b"y" * BIG
        channel = p._session.shm
        assert channel._in is None  # both just under the threshold: no regions made at all
        # the first large result goes over the socket and asks for the regions, the next ones use them
        assert p.make(BIG + 2000) == b"m" * (BIG + 2000)
        assert channel._out.gen == 0 and channel._in.gen == 0
        assert p.make(BIG + 2000) == b"m" * (BIG + 2000)
        assert channel._out.gen == 0 and channel._in.gen == 1


class _Connections:
    def __init__(self) -> None:
        self.seen = []

    def connection_opened(self, conn) -> None:
        self.seen.append(conn)


def test_pyro5_client_is_never_offered_shared_memory(make_daemon, unix_path):
    daemon = make_daemon(unixsocket=unix_path)
    daemon.register(Bulk(), "bulk")
    connections = _Connections()
    daemon.add_hook(connections)
    for serializer in ("marshal", "msgpack"):
        with Pyro5.api.Proxy(f"PYRO:bulk@./u:{unix_path}") as p:
            p._pyroSerializer = serializer
            assert p.echo(b"z" * BIG) == b"z" * BIG
    assert len(connections.seen) == 2
    assert all(conn.session.shm is None for conn in connections.seen)  # no offer, no side socket


def test_ember_proxy_with_a_pyro5_daemon_uses_the_socket(unix_path):
    @Pyro5.api.expose
    class PyroBulk:
        def echo(self, data):
            return data

    with pyro5_daemon(unixsocket=unix_path) as daemon:
        uri = daemon.register(PyroBulk(), "bulk")
        with ember.Proxy(str(uri)) as p:
            p._serializer = "marshal"
            assert p.echo(b"p" * BIG) == b"p" * BIG
            assert p._session.shm is None
        daemon.close()


def send(channel, msg, parts=False):
    """``msg`` as the peer decodes it after ``channel`` sent it."""
    frame = channel.outgoing(encode(msg, parts=parts))
    return decode(b"".join(frame) if type(frame) is list else frame)


def test_values_that_keep_viewing_a_block_hold_it(tmp_path):
    """Unit level: a block is handed back only when nothing views it; meanwhile the writer
    falls back to the socket instead of overwriting it."""
    a, b = shm._region(), shm._region()
    writer = shm.ShmChannel(1, 1 << 30, out_fd=a, in_fd=b)
    reader = shm.ShmChannel(1, 1 << 30, out_fd=os.dup(b), in_fd=os.dup(a))
    try:
        sent = send(writer, Message(MsgType.INVOKE, 4, 0, 1, b"first block", {"ABCD": b"xyz"}))
        assert sent.data == b"" and shm.DESCRIPTOR_ANNOTATION in sent.annotations
        reader.incoming(sent)
        assert sent.annotations == {"ABCD": b"xyz"} and bytes(sent.data) == b"first block"
        kept = sent.data[:5]  # a value built on the received buffer
        reader.consumed(sent)
        second = send(writer, Message(MsgType.INVOKE, 4, 0, 2, b"second"))
        assert second.data == b"second"  # the region is busy: over the socket
        assert bytes(kept) == b"first"
        del kept
        reader.outgoing(encode(Message(MsgType.RESULT, 4, 0, 2, b"small")))  # retried on its next send
        assert not reader._in.held
        third = send(writer, Message(MsgType.INVOKE, 4, 0, 3, b"third block" * 100000), parts=True)
        assert third.data == b""
        reader.incoming(third)
        assert bytes(third.data) == b"third block" * 100000
        reader.consumed(third)
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("raw, message", [
    (b"\x00" * 5, "5 bytes, expected 24"),
    ((7).to_bytes(8, "big") + (4096).to_bytes(8, "big") + (10).to_bytes(8, "big"), "generation 7, expected 1"),
    ((1).to_bytes(8, "big") + (100).to_bytes(8, "big") + (10).to_bytes(8, "big"), "offset 100"),
    ((1).to_bytes(8, "big") + (4096).to_bytes(8, "big") + (0).to_bytes(8, "big"), "0 bytes at offset 4096"),
    ((1).to_bytes(8, "big") + (4096).to_bytes(8, "big") + (1 << 20).to_bytes(8, "big"), "outside the"),
])
def test_corrupted_descriptors_are_refused(raw, message):
    a, b = shm._region(), shm._region()
    channel = shm.ShmChannel(1, 1 << 30, out_fd=a, in_fd=b)
    try:
        msg = Message(MsgType.RESULT, 4, 0, 1, b"", {shm.DESCRIPTOR_ANNOTATION: raw})
        with pytest.raises(ProtocolError, match="corrupted shared-memory descriptor") as info:
            channel.incoming(msg)
        assert message in str(info.value)
    finally:
        channel.close()


def _corrupt_descriptors(monkeypatch, proxy, from_client, change):
    """From now on the descriptors the proxy's side (or the daemon's) writes say
    ``change(generation, offset, length)``."""
    write = shm._Outbound.write
    client_side = proxy._session.shm._out

    def corrupting(self, payload, size):
        desc = write(self, payload, size)
        if (self is client_side) == from_client:
            desc = struct.pack("!QQQ", *change(*struct.unpack("!QQQ", desc)))
        return desc

    monkeypatch.setattr(shm._Outbound, "write", corrupting)


def test_corrupted_descriptor_from_a_client_is_answered_and_the_connection_closed(make_daemon, servertype,
                                                                                  unix_path, monkeypatch):
    daemon = make_daemon(servertype=servertype, unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    data = os.urandom(BIG)
    with ember.Proxy(uri) as p:
        assert p.echo(data) == data
        # the next descriptor names a generation the daemon does not expect
        _corrupt_descriptors(monkeypatch, p, True, lambda gen, offset, length: (gen + 40, offset, length))
        with pytest.raises(ProtocolError, match="corrupted shared-memory descriptor: generation 42, expected 2"):
            p.echo(data)
        assert wait_for(lambda: p._sock.recv(1) == b"", 10)  # then the daemon closed the connection
        p._release()
        assert p.echo(data) == data  # a new connection, new regions


def test_descriptor_over_max_message_size_is_refused():
    a, b = shm._region(), shm._region()
    channel = shm.ShmChannel(1, 10_000, out_fd=a, in_fd=b)
    try:
        raw = (1).to_bytes(8, "big") + (4096).to_bytes(8, "big") + (1 << 40).to_bytes(8, "big")
        msg = Message(MsgType.RESULT, 4, 0, 1, b"", {shm.DESCRIPTOR_ANNOTATION: raw})
        with pytest.raises(MessageTooLargeError, match=r"exceeds MAX_MESSAGE_SIZE \(10000\)"):
            channel.incoming(msg)
    finally:
        channel.close()


def test_descriptor_on_a_connection_without_regions_is_refused():
    channel = shm.ShmChannel(1, 1 << 30, token=os.urandom(16))  # daemon side, nothing handed over
    msg = Message(MsgType.INVOKE, 4, 0, 1, b"", {shm.DESCRIPTOR_ANNOTATION: bytes(24)})
    with pytest.raises(ProtocolError, match="never handed over its shared memory"):
        channel.incoming(msg)
    channel.close()


def test_cancelled_async_call_frees_its_block(make_daemon, unix_path):
    daemon = make_daemon(servertype="asyncio", unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    data = os.urandom(BIG)

    async def main():
        async with ember.AsyncProxy(uri) as p:
            assert await p.echo(data) == data
            channel = p._session.shm
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.slow_echo(data, 0.5), 0.1)
            await asyncio.sleep(1.0)  # its reply arrives with nobody waiting: dropped, block released
            before = channel._in.gen
            assert await p.echo(data) == data
            assert channel._in.gen == before + 1  # the reply came through shared memory again

    asyncio.run(main())


def test_regions_are_closed_with_the_connection(make_daemon, servertype, unix_path):
    daemon = make_daemon(servertype=servertype, unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    before = memfds()
    p = ember.Proxy(uri)
    assert p.echo(b"r" * BIG) == b"r" * BIG
    assert memfds() > before  # client and daemon (same process here) hold the regions
    p._release()
    assert wait_for(lambda: memfds() == before, 10), "regions still open after the connection closed"


# ---- SIGKILL: nothing leaks on the surviving side, nothing ever appears in /dev/shm ------------

CLIENT = textwrap.dedent("""
    import os, sys, ember
    p = ember.Proxy(sys.argv[1])
    data = os.urandom(3 * 1024 * 1024)
    assert p.echo(data) == data and p._session.shm is not None
    print("ready", flush=True)
    p.slow_echo(data, 3)
""")

SERVER = textwrap.dedent("""
    import sys, time, ember
    @ember.expose
    class Bulk:
        def echo(self, data):
            return data
        def slow_echo(self, data, seconds):
            print("entered", flush=True)
            time.sleep(seconds)
            return data
    d = ember.Daemon(unixsocket=sys.argv[1])
    print(d.register(Bulk(), "bulk"), flush=True)
    d.request_loop()
""")


def _python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)


@pytest.mark.timeout(60)
def test_client_killed_mid_call_frees_the_daemons_regions(make_daemon, servertype, unix_path):
    shm_before = dev_shm()
    daemon = make_daemon(servertype=servertype, unixsocket=unix_path)
    bulk = Bulk()
    uri = daemon.register(bulk, "bulk")
    before = memfds()
    client = _python(CLIENT, str(uri))
    try:
        assert client.stdout.readline().strip() == "ready"
        assert bulk.entered.wait(10)  # the client's 3 MiB argument arrived through shared memory
        assert memfds() > before
        client.send_signal(signal.SIGKILL)
        client.wait(10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        client.stdout.close()
    # the call still runs (sleeping); once it ends the daemon sees the closed connection and unmaps
    bulk_done = wait_for(lambda: memfds() == before, 45)
    assert bulk_done, "the daemon kept the regions of a killed client"
    assert dev_shm() <= shm_before  # nothing new (others may have removed theirs)


@pytest.mark.timeout(30)
def test_daemon_killed_frees_the_clients_regions(tmp_path):
    shm_before = dev_shm()
    server = _python(SERVER, str(tmp_path / "killed.sock"))
    try:
        uri = server.stdout.readline().strip()
        before = memfds()
        p = ember.Proxy(uri)
        data = os.urandom(BIG)
        assert p.echo(data) == data and p._session.shm is not None
        assert memfds() > before
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        # the proxy finds the connection closed (before or while sending) and cannot reconnect
        with pytest.raises(CommunicationError):
            p.echo(data)
        assert memfds() == before  # the failed call released the connection and its regions
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
    assert dev_shm() <= shm_before  # nothing new (others may have removed theirs)


def _side_sockets() -> int:
    with open("/proc/net/unix") as f:
        return sum("@ember-shm-" in line for line in f)


def test_connections_cost_no_socket_or_region_until_needed(make_daemon, servertype, unix_path):
    daemon = make_daemon(servertype=servertype, unixsocket=unix_path)
    daemon.register(Bulk(), "bulk")
    connections = _Connections()
    daemon.add_hook(connections)
    with ember.Proxy(f"PYRO:bulk@./u:{unix_path}") as warm:
        warm._bind()  # the process's one side socket exists from now on
    before, regions = _side_sockets(), memfds()
    proxies = [ember.Proxy(f"PYRO:bulk@./u:{unix_path}") for _ in range(5)]
    try:
        for p in proxies:
            assert p.size(b"x") == 1
            assert p._session.shm is not None  # negotiated
        assert _side_sockets() == before and memfds() == regions  # but nothing made
        data = os.urandom(BIG)
        assert proxies[0].echo(data) == data  # handed over now, taken by the daemon at once
        assert memfds() > regions and _side_sockets() == before
        channel = connections.seen[-5].session.shm
        assert channel._in is not None and channel.delivered is None
    finally:
        for p in proxies:
            p._release()


def test_side_socket_ignores_strangers(make_daemon, unix_path):
    daemon = make_daemon(unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    with ember.Proxy(uri) as p:
        p._bind()
        name = b"\0" + p._session.shm._side
        junk = [shm._region(), shm._region()]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # a wrong token
            s.connect(name)
            socket.send_fds(s, [b"EMSH" + bytes(16)], junk)
        for fd in junk:
            os.close(fd)
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # connects, never sends
        idle.connect(name)
        try:
            data = os.urandom(BIG)
            assert p.echo(data) == data and p._session.shm._out.gen == 1
        finally:
            idle.close()


def test_compressed_payloads_and_wire_logging(make_daemon, unix_path):
    daemon = make_daemon(unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    with ember.config.override(COMPRESSION=True), ember.Proxy(uri) as p:
        assert p.echo(b"a" * BIG) == b"a" * BIG  # compressed: over the socket, inflated there
        assert p._session.shm._in is None  # not even set up
        data = os.urandom(BIG)  # does not compress: shared memory
        assert p.echo(data) == data and p._session.shm._out.gen == 1
    with ember.config.override(LOGWIRE=True), ember.Proxy(uri) as p:
        data = os.urandom(BIG)
        assert p.echo(data) == data and p._session.shm._out.gen == 1


@pytest.mark.timeout(120)
def test_benchmark_runs(tmp_path):
    out = tmp_path / "shm.json"
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "shm.py"
    r = subprocess.run([sys.executable, str(bench), "--quick", "--sizes", "1", "--keep-packer", "--json", str(out)],
                       capture_output=True, text=True, timeout=110, env=dict(os.environ, PYTHONPATH=SRC))
    assert r.returncode == 0, r.stderr
    import json

    cases = json.loads(out.read_text())["results"]["1 MiB"]
    assert set(cases) == {"plain socket (TCP)", "ember unix, shm off", "ember unix, shm on",
                          "ember TCP loopback, shm on", "ember unix, shm off, kept", "ember unix, shm on, kept"}
    assert all(case["median_MBps"] > 0 for case in cases.values())


def test_corrupted_descriptor_from_the_daemon_is_refused_by_the_proxy(make_daemon, unix_path, monkeypatch):
    daemon = make_daemon(unixsocket=unix_path)
    uri = daemon.register(Bulk(), "bulk")
    data = os.urandom(BIG)
    with ember.Proxy(uri) as p:
        assert p.echo(data) == data
        # the daemon's reply names a block outside its region
        _corrupt_descriptors(monkeypatch, p, False, lambda gen, offset, length: (gen, offset, length + (64 << 20)))
        with pytest.raises(ProtocolError, match="corrupted shared-memory descriptor: .* bytes at offset 4096 lie outside"):
            p.echo(data)
        assert p._sock is None  # the proxy dropped the connection
        monkeypatch.undo()
        assert p.echo(data) == data


@pytest.mark.timeout(30)
def test_daemon_killed_mid_call_frees_the_clients_regions(tmp_path):
    shm_before = dev_shm()
    server = _python(SERVER, str(tmp_path / "killed.sock"))
    try:
        uri = server.stdout.readline().strip()
        before = memfds()
        p = ember.Proxy(uri)
        data = os.urandom(BIG)
        failure: list[BaseException] = []

        def call() -> None:
            try:
                p.slow_echo(data, 20)
            except BaseException as exc:
                failure.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        assert server.stdout.readline().strip() == "entered"  # the argument arrived through shared memory
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        caller.join(10)
        assert failure and isinstance(failure[0], CommunicationError)
        assert memfds() == before  # the failed call released the connection and its regions
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
    assert dev_shm() <= shm_before
