"""Resolution and name server discovery: one plan (ember.client.resolve) driven blocking and on
asyncio. Both keep the 3 s connect timeout, NS_LOOKUP_DELAY retries and the error listing every
attempt, and both release every proxy they opened, also when cancelled."""

import ast
import asyncio
import importlib.util
import socket
import threading
import time
from pathlib import Path

import pytest

import ember
import ember.aio
from ember import errors, naming
from ember.client import resolve as resolution

from .services import Calc


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port():
    """A TCP port whose connections are accepted (by the kernel's backlog) but never answered."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.fixture
def ns_service():
    with naming.start_ns("127.0.0.1", 0, bcport=0) as service:
        yield service


@pytest.fixture
def short_locate_timeout(monkeypatch):
    monkeypatch.setattr(resolution, "_LOCATE_TIMEOUT", 0.4)


# ---- timeouts ---------------------------------------------------------------------------------

def test_async_resolve_honours_the_3s_locate_timeout(silent_port):
    """A name server or PYROLOC daemon that accepts but never answers fails after 3 s, not never."""

    async def fails(uri, message):
        start = time.monotonic()
        with pytest.raises(errors.NamingError, match=message):
            await ember.aio.resolve(uri)
        return time.monotonic() - start

    async def main():
        return await asyncio.gather(
            fails(f"PYRONAME:calc@127.0.0.1:{silent_port}",
                  f"cannot locate the name server at 127.0.0.1:{silent_port}: .*timed out"),
            fails(f"PYROLOC:calc@127.0.0.1:{silent_port}",
                  f"no daemon reachable at 127.0.0.1:{silent_port} .*timed out"))

    assert resolution._LOCATE_TIMEOUT == 3.0
    with ember.config.override(COMMTIMEOUT=0.0):
        for elapsed in run(main()):
            assert 2.5 < elapsed < 6


def test_both_drivers_time_out_the_same_way(silent_port, short_locate_timeout):
    cases = {
        f"PYRONAME:calc@127.0.0.1:{silent_port}": f"cannot locate the name server at 127.0.0.1:{silent_port}: ",
        f"PYROMETA:tag@127.0.0.1:{silent_port}": f"cannot locate the name server at 127.0.0.1:{silent_port}: ",
        f"PYROLOC:calc@127.0.0.1:{silent_port}": f"cannot resolve PYROLOC:calc@127.0.0.1:{silent_port}: "
                                                 f"no daemon reachable at 127.0.0.1:{silent_port} ",
    }

    async def aresolve(uri):
        return await ember.aio.resolve(uri)

    async def alocate():
        return await ember.aio.locate_ns("127.0.0.1", silent_port)

    for uri, message in cases.items():
        for attempt in (lambda u=uri: ember.resolve(u), lambda u=uri: run(aresolve(u))):
            start = time.monotonic()
            with pytest.raises(errors.NamingError) as info:
                attempt()
            assert time.monotonic() - start < 3
            assert str(info.value).startswith(message) and "timed out" in str(info.value)
    for attempt in (lambda: ember.locate_ns("127.0.0.1", silent_port), lambda: run(alocate())):
        with pytest.raises(errors.NamingError, match=f"cannot locate the name server at 127.0.0.1:{silent_port}"):
            attempt()


def test_commtimeout_replaces_the_locate_timeout(silent_port):
    async def main():
        with pytest.raises(errors.NamingError, match="no daemon reachable"):
            await ember.aio.resolve(f"PYROLOC:calc@127.0.0.1:{silent_port}")

    with ember.config.override(COMMTIMEOUT=0.3):
        start = time.monotonic()
        run(main())
        with pytest.raises(errors.NamingError, match="cannot locate the name server"):
            ember.resolve(f"PYRONAME:calc@127.0.0.1:{silent_port}")
        assert time.monotonic() - start < 2.5


# ---- the async driver does what the blocking one does -----------------------------------------

def test_async_lookup_delay_waits_for_a_late_registration(ns_service, make_daemon):
    daemon = make_daemon()
    target = daemon.register(Calc, "calc")
    loc = ns_service.daemon.location

    def late():
        time.sleep(0.3)
        ns_service.nameserver.register("late.calc", target, metadata=["late"])

    async def main():
        assert await ember.aio.resolve(f"PYRONAME:late.calc@{loc}") == target
        assert await ember.aio.resolve(f"PYROMETA:late@{loc}") == target

    t = threading.Thread(target=late)
    t.start()
    try:
        with ember.config.override(NS_LOOKUP_DELAY=3.0):
            run(main())
    finally:
        t.join()

    async def never(uri):
        await ember.aio.resolve(uri)

    with ember.config.override(NS_LOOKUP_DELAY=0.3):
        with pytest.raises(errors.NamingError, match="unknown name"):
            run(never(f"PYRONAME:never@{loc}"))
        with pytest.raises(errors.NamingError, match="no registrations available"):
            run(never(f"PYROMETA:never@{loc}"))


def test_async_locate_failure_says_what_it_tried(tmp_path):
    free = _free_port()

    async def main():
        await ember.aio.locate_ns(uri_file=tmp_path / "missing.uri")

    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=free, NS_BCPORT=free):
        with pytest.raises(errors.NamingError) as info:
            run(main())
    text = str(info.value)
    assert text.startswith("cannot locate the name server; tried: ")
    assert f"127.0.0.1:{free}" in text
    assert "broadcast to 127.255.255.255" in text and "no answer" in text
    assert "missing.uri" in text


def test_async_discovery_by_broadcast_and_uri_file(ns_service, tmp_path):
    uri_file = tmp_path / "ns.uri"
    uri_file.write_text(f"{ns_service.uri}\n")

    async def main():
        assert await naming.abroadcast_for_ns(ns_service.broadcast.port, ["127.255.255.255"]) == ns_service.uri
        assert await naming.abroadcast_for_ns(_free_port(), ["127.255.255.255"], rounds=1, wait=0.2) is None
        ns = await ember.aio.locate_ns(broadcast=False, uri_file=uri_file)
        try:
            assert isinstance(ns, ember.aio.AsyncProxy) and ns._pyroUri == ns_service.uri
            assert await ns.count() == 1
        finally:
            await ns._release()
        uri = await resolution.afind_ns_uri("127.0.0.1", ns_service.daemon.port, proxy_class=ember.aio.AsyncProxy)
        assert uri == ns_service.uri

    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=_free_port()):
        run(main())
    assert resolution.find_ns_uri("127.0.0.1", ns_service.daemon.port, proxy_class=ember.Proxy) == ns_service.uri


# ---- the plan releases what it opened ---------------------------------------------------------

class FakeProxy:
    """Stands in for the proxy class: records what the plan makes it do."""

    log: list = []

    def __init__(self, uri):
        self._pyroUri = uri
        self._timeout = None
        self.log.append(("new", str(uri)))

    def _bind(self):
        self.log.append(("bind", self._timeout))

    def _release(self):
        self.log.append(("release", str(self._pyroUri)))

    def lookup(self, name):
        self.log.append(("lookup", name))
        raise errors.NamingError(f"unknown name: {name}")


class FakeAsyncProxy(FakeProxy):
    async def _bind(self):
        super()._bind()

    async def _release(self):
        super()._release()

    async def lookup(self, name):
        self.log.append(("lookup", name))
        await asyncio.sleep(30)


def test_the_plan_releases_its_proxies_on_failure_and_cancellation():
    FakeProxy.log = []
    with ember.config.override(COMMTIMEOUT=0.0, NS_LOOKUP_DELAY=0.0):
        with pytest.raises(errors.NamingError, match="unknown name: x"):
            resolution.resolve("PYRONAME:x@127.0.0.1:1", FakeProxy)
    assert FakeProxy.log == [("new", "PYRO:Pyro.NameServer@127.0.0.1:1"), ("bind", 3.0), ("lookup", "x"),
                             ("release", "PYRO:Pyro.NameServer@127.0.0.1:1")]

    async def main():
        task = asyncio.ensure_future(resolution.aresolve("PYRONAME:y@127.0.0.1:1", FakeAsyncProxy))
        while ("lookup", "y") not in FakeProxy.log:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    FakeProxy.log = []
    run(main())
    assert FakeProxy.log == [("new", "PYRO:Pyro.NameServer@127.0.0.1:1"), ("bind", 3.0), ("lookup", "y"),
                             ("release", "PYRO:Pyro.NameServer@127.0.0.1:1")]


# ---- layering of the modules this part owns ---------------------------------------------------

SRC = Path(ember.__file__).resolve().parent
OWNED = ["aio.py", "client/resolve.py", "transport/__init__.py", "transport/udp.py", "naming/__init__.py",
         "naming/locate.py", "naming/responder.py", "naming/service.py", "naming/nameserver.py",
         "naming/storage/__init__.py", "naming/storage/memory.py", "naming/storage/sqlite.py"]


def _ember_imports(path):
    """(module imported, inside a function?) for every ember import in the file."""
    parts = ["ember", *path.relative_to(SRC).with_suffix("").parts]
    package = ".".join(parts[:-1])  # the package a relative import starts from (also for __init__)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom):
                base = importlib.util.resolve_name("." * child.level + (child.module or ""), package) \
                    if child.level else child.module or ""
                names = [base] if child.module else [f"{base}.{a.name}" for a in child.names]
                found.extend((n, in_function) for n in names if n.split(".")[0] == "ember")
            elif isinstance(child, ast.Import):
                found.extend((a.name, in_function) for a in child.names if a.name.split(".")[0] == "ember")
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return found


def test_no_function_local_imports_and_no_upward_edges_in_naming_and_resolution():
    assert ("ember.transport", False) in _ember_imports(SRC / "client/resolve.py")  # the parser sees them
    for name in OWNED:
        imports = _ember_imports(SRC / name)
        assert not [m for m, local in imports if local], f"function-local ember import in {name}"
    resolve_deps = {m for m, _ in _ember_imports(SRC / "client/resolve.py")}
    assert not {m for m in resolve_deps if m.startswith(("ember.naming", "ember.client.proxy", "ember.client.aproxy",
                                                         "ember.server", "ember.aio"))}, resolve_deps
    udp_deps = {m for m, _ in _ember_imports(SRC / "transport/udp.py")}
    assert udp_deps <= {"ember.errors", "ember.uri"}, udp_deps
    storage_deps = {m for name in OWNED if name.startswith("naming/storage")
                    for m, _ in _ember_imports(SRC / name)}
    assert all(m == "ember.errors" or m.startswith("ember.naming.storage") for m in storage_deps), storage_deps
