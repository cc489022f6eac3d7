"""ember.compat.Pyro5: each feature is a small Pyro5 program, run once on the real Pyro5 5.17
and once on the compat layer (only the imports differ), and the two outputs must be equal.

A program gets a namespace ``P`` holding the modules a Pyro5 program imports (``P.api``,
``P.errors``, ``P.core``, ``P.client``, ``P.server``, ``P.nameserver``, ``P.socketutil``,
``P.callcontext``, ``P.serializers``, and ``P.config``, the config object) and writes lines
to ``out``. Addresses and ports are normalised, nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import re
import socket
import threading
import time
import types
import uuid
from typing import Any

import Pyro5
import Pyro5.errors
import pytest

import ember
import ember.compat.Pyro5

MODULES = ("api", "errors", "core", "client", "server", "nameserver", "socketutil", "callcontext", "serializers")
FLAVOURS = {"pyro5": "Pyro5", "compat": "ember.compat.Pyro5"}


def namespace(flavour: str) -> types.SimpleNamespace:
    base = FLAVOURS[flavour]
    mods = {name: importlib.import_module(f"{base}.{name}") for name in MODULES}
    return types.SimpleNamespace(config=importlib.import_module(base).config, **mods)


@pytest.fixture(autouse=True)
def restore_configs():
    pyro5_saved = Pyro5.config.as_dict()
    ember_saved = ember.config.as_dict()
    compat_saved = dict(ember.compat.Pyro5.config._own)
    Pyro5.config.BROADCAST_ADDRS = ["127.255.255.255"]  # never the LAN, should a lookup fall back to broadcast
    yield
    for name, value in pyro5_saved.items():
        setattr(Pyro5.config, name, value)
    ember.config.update(ember_saved)
    ember.compat.Pyro5.config._own.update(compat_saved)
    # what a call left in this thread's context (a blob call's BLBI annotation) is not the next test's
    for ctx in (Pyro5.api.current_context, ember.current_context):
        ctx.annotations, ctx.correlation_id = {}, None


def normalise(line: str) -> str:
    # the reprs of URIs differ (Pyro5 shows an address); their text does not
    line = re.sub(r"<Pyro5\.core\.URI at 0x[0-9a-f]+; (.*?)>", r"URI(\1)", line)
    line = re.sub(r"<ember\.URI '(.*?)'>", r"URI(\1)", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    line = re.sub(r"localhost:\d+", "127.0.0.1:PORT", line)
    return re.sub(r"obj_[0-9a-f]{32}", "obj_ID", line)


def run_both(program, *args: Any) -> dict[str, list[str]]:
    outputs = {}
    for flavour in FLAVOURS:
        out: list[str] = []
        program(namespace(flavour), out, *args)
        outputs[flavour] = [normalise(str(line)) for line in out]
    return outputs


def assert_same_output(program, *args: Any) -> list[str]:
    outputs = run_both(program, *args)
    pyro5, compat = outputs["pyro5"], outputs["compat"]
    diff = [f"{i}: pyro5 {a!r} != compat {b!r}" for i, (a, b) in enumerate(zip(pyro5, compat, strict=False))
            if a != b]
    assert not diff and len(pyro5) == len(compat), "\n".join(diff) + f"\n{pyro5}\n{compat}"
    return compat


def outcome(out: list, label: str, func, *args: Any, **kwargs: Any) -> Any:
    try:
        result = func(*args, **kwargs)
    except Exception as exc:
        out.append(f"{label}: raises {type(exc).__name__}")
        return exc
    out.append(f"{label}: {result!r}")
    return result


class Served:
    """Run ``daemon.requestLoop`` in a thread; shut down and join on exit."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.thread = threading.Thread(target=daemon.requestLoop)

    def __enter__(self) -> Any:
        self.thread.start()
        return self.daemon

    def __exit__(self, *exc: object) -> None:
        self.daemon.shutdown()
        self.thread.join()
        self.daemon.close()


def make_service(P):  # noqa: N803 - P is "the Pyro5 package" in these programs
    @P.api.expose
    class Service:
        def __init__(self) -> None:
            self.seen: list = []
            self._level = 1

        def add(self, a, b):
            return a + b

        def fail(self, text):
            raise KeyError(text)

        def items(self, n):
            yield from range(n)

        @P.api.oneway
        def note(self, value):
            self.seen.append(value)

        def notes(self):
            return self.seen

        def context(self):
            ctx = P.api.current_context
            return [ctx.client_sock_addr[0], ctx.seq > 0, ctx.correlation_id is not None,
                    sorted(k for k in ctx.annotations if k.startswith("X"))]

        @property
        def level(self):
            return self._level

        @level.setter
        def level(self, value):
            self._level = value

    return Service


# ---- client and server basics ---------------------------------------------------------------

def program_proxy_and_daemon(P, out):  # noqa: N803
    Service = make_service(P)  # noqa: N806
    service = Service()
    daemon = P.api.Daemon(host="127.0.0.1")
    uri = daemon.register(service, objectId="svc")
    out.append(f"uri {uri} type {type(uri).__name__} {uri.protocol} {uri.object} {uri.host}")
    out.append(f"uriFor {daemon.uriFor('svc')} {daemon.uriFor(service) == uri}")
    outcome(out, "register again", daemon.register, service, "svc")
    with Served(daemon):
        p = P.api.Proxy(uri)
        out.append(f"before: connection {p._pyroConnection is None} serializer {p._pyroSerializer}")
        out.append(f"timeout {p._pyroTimeout} retries {p._pyroMaxRetries} handshake {p._pyroHandshake!r}")
        out.append(f"bind {p._pyroBind()} again {p._pyroBind()} connected {p._pyroConnection is not None}")
        out.append(f"methods {sorted(p._pyroMethods)} attrs {sorted(p._pyroAttrs)} oneway {sorted(p._pyroOneway)}")
        outcome(out, "add", p.add, 1, 2)
        outcome(out, "add kwargs", lambda: p.add(a="x", b="y"))
        outcome(out, "generator", lambda: list(p.items(3)))
        outcome(out, "property", lambda: p.level)
        p.level = 7
        outcome(out, "property set", lambda: p.level)
        outcome(out, "oneway", p.note, "n1")
        deadline = time.monotonic() + 5
        while p.notes() != ["n1"] and time.monotonic() < deadline:
            time.sleep(0.01)
        outcome(out, "oneway arrived", p.notes)
        exc = outcome(out, "remote error", p.fail, "why")
        tb = "".join(P.errors.get_pyro_traceback(type(exc), exc, exc.__traceback__))
        out.append(f"traceback remote part {'+--- This exception occurred remotely (Pyro) - Remote traceback:' in tb}")
        out.append(f"traceback ends {tb.endswith(' +--- End of remote traceback' + chr(10))} has KeyError "
                   f"{'KeyError' in tb}")
        outcome(out, "unknown method", lambda: p.nope())
        outcome(out, "private", lambda: p._private())
        p._pyroOneway.add("add")
        outcome(out, "add made oneway", p.add, 5, 5)
        p._pyroOneway.discard("add")
        p._pyroRelease()
        out.append(f"released {p._pyroConnection is None}")
        p._pyroTimeout = None
        p._pyroMaxRetries = 2
        p._pyroSerializer = "json"
        out.append(f"set: timeout {p._pyroTimeout} retries {p._pyroMaxRetries} serializer {p._pyroSerializer}")
        outcome(out, "add over json", p.add, [1], [2])
        p._pyroReconnect()
        out.append(f"reconnected {p._pyroConnection is not None}")
        p._pyroClaimOwnership()
        outcome(out, "call from another thread after claiming", lambda: _in_thread(p))
        with P.api.BatchProxy(p) as batch:
            batch.add(1, 1)
            batch.fail("batched")
            batch.add(2, 2)
            results = batch()
            outcome(out, "batch 1", next, results)
            outcome(out, "batch 2", next, results)
        proxy2 = daemon.proxyFor("svc")
        out.append(f"proxyFor {type(proxy2).__name__} {proxy2._pyroUri == uri}")
        outcome(out, "proxyFor call", proxy2.add, 3, 4)
        proxy2._pyroRelease()
        P.api.current_context.correlation_id = uuid.uuid4()
        P.api.current_context.annotations = {"XTRA": b"1"}
        try:
            outcome(out, "context", p.context)
        finally:
            P.api.current_context.correlation_id = None
            P.api.current_context.annotations = {}
        daemon.unregister("svc")
        outcome(out, "after unregister", p.add, 1, 1)
        p._pyroRelease()


def _in_thread(p):
    result = []
    t = threading.Thread(target=lambda: (p._pyroClaimOwnership(), result.append(p.add(10, 1))))
    t.start()
    t.join()
    p._pyroClaimOwnership()
    return result


def test_proxy_and_daemon():
    lines = assert_same_output(program_proxy_and_daemon)
    assert "add: 3" in lines and "batch 2: raises KeyError" in lines


def program_daemon_hooks(P, out):  # noqa: N803
    Service = make_service(P)  # noqa: N806
    events: list = []

    class HookedDaemon(P.server.Daemon):
        def validateHandshake(self, conn, data):
            events.append(("handshake", data))
            if data == "refuse me":
                raise ValueError("refused")
            return {"welcome": data}

        def clientDisconnect(self, conn):
            events.append(("disconnect",))

    class CheckingProxy(P.client.Proxy):
        def _pyroValidateHandshake(self, response):
            events.append(("response", response))

    daemon = HookedDaemon(host="127.0.0.1")

    def handler(d, client_sock, method, vargs, kwargs, exc):
        events.append(("error", d is daemon, client_sock[0], getattr(method, "__name__", method), list(vargs), kwargs,
                       type(exc).__name__, str(exc)))

    daemon.methodcall_error_handler = handler
    uri = daemon.register(Service, "svc")
    out.append(f"sockets {len(daemon.sockets)} {daemon.sockets[0].family.name}")
    out.append(f"transportServer {daemon.transportServer is not None}")
    with Served(daemon):
        p = CheckingProxy(uri)
        p._pyroHandshake = "let me in"
        outcome(out, "call", p.add, 2, 2)
        outcome(out, "failing call", p.fail, "boom")
        p._pyroRelease()
        q = P.client.Proxy(uri)
        q._pyroHandshake = "refuse me"
        refused = outcome(out, "refused", q._pyroBind)
        out.pop()  # Ember raises ConnectionDeniedError, a CommunicationError with a deny code
        out.append(f"refused: a CommunicationError {isinstance(refused, P.errors.CommunicationError)}")
        q._pyroRelease()
        deadline = time.monotonic() + 5
        while events.count(("disconnect",)) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    out.extend(repr(e) for e in events if e != ("disconnect",))
    out.append(f"disconnects seen {('disconnect',) in events}")


def test_daemon_hooks():
    lines = assert_same_output(program_daemon_hooks)
    assert "('error', True, '127.0.0.1', 'fail', ['boom'], {}, 'KeyError', \"'boom'\")" in lines


def program_serve(P, out, ns_port):  # noqa: N803
    Service = make_service(P)  # noqa: N806
    P.config.NS_HOST = "127.0.0.1"
    P.config.NS_PORT = ns_port
    daemon = P.api.Daemon(host="127.0.0.1")
    buffer = io.StringIO()

    def run():
        with contextlib.redirect_stdout(buffer):
            P.api.serve({Service: "compat.served"}, daemon=daemon, verbose=True)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "Pyro daemon running." not in buffer.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        with P.api.Proxy("PYRONAME:compat.served") as p:
            outcome(out, "served by name", p.add, 20, 22)
        outcome(out, "resolve", lambda: str(P.api.resolve("PYRONAME:compat.served")).split("@")[1])
    finally:
        daemon.shutdown()
        thread.join()
    printed = [re.sub(r"<class '.*Service'>", "<class Service>", line) for line in buffer.getvalue().splitlines()]
    out.extend(re.sub(r"PYRO:obj_[0-9a-f]+@", "PYRO:obj_ID@", line) for line in printed)
    with P.core.locate_ns("127.0.0.1", ns_port) as ns:
        ns.remove("compat.served")


def test_serve_registers_in_the_name_server():
    with ember.naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as service:
        lines = assert_same_output(program_serve, service.daemon.port)
    assert "served by name: 42" in lines and "Pyro daemon running." in lines


# ---- name server -------------------------------------------------------------------------------

def program_name_server(P, out):  # noqa: N803
    uri, nsdaemon, bc = P.nameserver.start_ns(host="127.0.0.1", port=0)
    out.append(f"start_ns: {type(uri).__name__} {uri.object} daemon has nameserver "
               f"{nsdaemon.nameserver is not None} broadcast {bc}")
    out.append(f"uriFor {nsdaemon.uriFor('Pyro.NameServer') == uri}")
    thread = threading.Thread(target=nsdaemon.requestLoop)
    thread.start()
    try:
        ns = P.core.locate_ns("127.0.0.1", uri.port)
        out.append(f"locate_ns: {type(ns).__name__} uri {ns._pyroUri == uri}")
        ns.register("a.b", "PYRO:x@127.0.0.1:1", metadata=P.core.type_meta(KeyError) | {"t"})
        outcome(out, "lookup helper", P.nameserver.lookup, ns, "a.b")
        outcome(out, "lookup helper metadata", lambda: sorted(P.nameserver.lookup(ns, "a.b", True)[1]))
        outcome(out, "lookup helper waits", P.nameserver.lookup, ns, "missing", delay_time=0.3)
        outcome(out, "yplookup helper", P.nameserver.yplookup, ns, meta_all=["t"], return_metadata=False)
        # (not resolve(..., delay_time): Pyro5 5.17 then returns a (uri, metadata) tuple, a bug not copied)
        outcome(out, "resolve", P.core.resolve, f"PYRONAME:a.b@127.0.0.1:{uri.port}")
        outcome(out, "resolve PYROMETA", P.core.resolve, f"PYROMETA:t@127.0.0.1:{uri.port}")
        outcome(out, "resolve type", P.core.resolve, 42)
        outcome(out, "locate unreachable", P.core.locate_ns, "127.0.0.1", _free_port(), False)
        ns._pyroRelease()
    finally:
        nsdaemon.shutdown()
        thread.join()
        nsdaemon.close()
    out.append(f"closed: nameserver {nsdaemon.nameserver}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_name_server():
    lines = assert_same_output(program_name_server)
    assert "start_ns: URI Pyro.NameServer daemon has nameserver True broadcast None" in lines


def program_core(P, out):  # noqa: N803
    class Base:
        pass

    class Derived(Base, KeyError):
        pass

    out.append(f"type_meta {sorted(t.replace('tests.test_compat_pyro5.', '') for t in P.core.type_meta(Derived))}")
    out.append(f"type_meta prefix {sorted(P.core.type_meta(Base, 'x:'))}".replace("tests.test_compat_pyro5.", ""))
    out.append(f"names {P.core.DAEMON_NAME} {P.core.NAMESERVER_NAME}")
    for text in ("PYRO:obj@localhost:4444", "PYRONAME:some.name", "PYRONAME:some.name@host:5555",
                 "PYRO:obj@./u:/tmp/sock", "PYRO:obj@[::1]:4444"):
        u = P.core.URI(text)
        out.append(f"URI {text}: {u.protocol} {u.object} {u.sockname} {u.host} {u.port} {u.location} {str(u)}")
    invalid = outcome(out, "URI invalid", P.core.URI, "nonsense")
    out.pop()  # Ember's InvalidURIError is a PyroError (and a ValueError)
    out.append(f"URI invalid: a PyroError {isinstance(invalid, P.errors.PyroError)}")
    outcome(out, "resolve PYRO", P.core.resolve, "PYRO:12345@host.com:4444")


def test_core():
    assert_same_output(program_core)


# ---- errors, config, serializers, socketutil ------------------------------------------------------

def program_errors(P, out):  # noqa: N803
    names = ["PyroError", "CommunicationError", "ConnectionClosedError", "TimeoutError", "ProtocolError",
             "MessageTooLargeError", "SerializeError", "NamingError", "DaemonError", "SecurityError"]
    classes = {n: getattr(P.errors, n) for n in names}
    for n, cls in classes.items():
        # Ember's TimeoutError is also a ConnectionClosedError (a timed-out call closes the
        # connection): asserted in test_errors_differ_where_documented
        bases = sorted(b for b, other in classes.items() if other is not cls and issubclass(cls, other)
                       and (n, b) != ("TimeoutError", "ConnectionClosedError"))
        out.append(f"{n} < {bases}")
    try:
        raise classes["NamingError"]("no such name")
    except Exception as exc:
        lines = P.errors.get_pyro_traceback()
        last = lines[-1].strip()  # "Pyro5.errors.NamingError: ..." / "ember.errors.NamingError: ..."
        out.append(f"local traceback ends {last.split('.')[-1]!r} remote part {'remotely' in ''.join(lines)}")
        exc._pyroTraceback = ["Traceback (most recent call last):\n", "  remote frame\n", "ValueError: remote\n"]
        lines = P.errors.get_pyro_traceback(type(exc), exc, exc.__traceback__)
        text = "".join(lines)
        out.append(text[text.index(" +--- This exception"):])
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            P.errors.excepthook(type(exc), exc, exc.__traceback__)
        out.append(err.getvalue()[err.getvalue().index(" +--- This exception"):])
    outcome(out, "bad argument", P.errors.get_pyro_traceback, "not a type")
    out.append(f"format_traceback {type(P.errors.format_traceback(KeyError, KeyError('k'), None)).__name__}")


def test_errors():
    assert_same_output(program_errors)


def test_errors_differ_where_documented():
    P = namespace("compat")  # noqa: N806
    assert issubclass(P.errors.TimeoutError, P.errors.ConnectionClosedError)
    assert not issubclass(Pyro5.errors.TimeoutError, Pyro5.errors.ConnectionClosedError)


def program_config(P, out):  # noqa: N803
    for name in ("SERIALIZER", "HOST", "NS_PORT", "NS_BCPORT", "NS_HOST", "COMMTIMEOUT", "MAX_RETRIES",
                 "SERVERTYPE", "POLLTIMEOUT", "THREADPOOL_SIZE", "THREADPOOL_SIZE_MIN", "COMPRESSION",
                 "SOCK_NODELAY", "SOCK_REUSE", "DETAILED_TRACEBACK", "MAX_MESSAGE_SIZE", "NS_AUTOCLEAN",
                 "ITER_STREAMING", "ITER_STREAM_LIFETIME", "ITER_STREAM_LINGER", "SSL", "PREFER_IP_VERSION",
                 "LOGFILE", "NATPORT", "SERPENT_BYTES_REPR"):
        out.append(f"{name} = {getattr(P.config, name)!r}")
    out.append(f"items {sorted(P.config.as_dict())}")
    P.config.COMMTIMEOUT = 2.5
    out.append(f"set COMMTIMEOUT {P.config.COMMTIMEOUT}")
    outcome(out, "unknown item", setattr, P.config, "NO_SUCH_ITEM", 1)
    P.config.SERIALIZER = "json"
    p = P.client.Proxy("PYRO:x@127.0.0.1:1")
    out.append(f"proxy serializer follows config {p._pyroSerializer}")
    P.config.reset(False)
    out.append(f"after reset {P.config.SERIALIZER} {P.config.COMMTIMEOUT}")
    out.append(f"dump is text {isinstance(P.config.dump(), str)}")


def test_config():
    lines = assert_same_output(program_config)
    assert "SERIALIZER = 'serpent'" in lines and "HOST = 'localhost'" in lines


@pytest.mark.parametrize("serializer", ["serpent", "json", "msgpack", "marshal"])
def test_serializers(serializer):
    def program(P, out):  # noqa: N803
        s = P.serializers.serializers[serializer]
        out.append(f"id {s.serializer_id} by id {P.serializers.serializers_by_id[s.serializer_id] is s}")
        data = s.dumps({"a": [1, 2.5, "x"]})
        out.append(f"roundtrip {s.loads(data)}")
        call = s.dumpsCall("obj", "method", (1, "two"), {"k": 3})
        obj, method, vargs, kwargs = s.loadsCall(call)
        out.append(f"call {obj} {method} {list(vargs)} {kwargs}")

    assert_same_output(program)


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def program_custom_class(P, out):  # noqa: N803
    P.api.register_class_to_dict(Money, lambda m: {"__class__": "test.Money", "cents": m.cents})
    P.api.register_dict_to_class("test.Money", lambda name, d: Money(d["cents"]))

    @P.api.expose
    class Bank:
        def double(self, m):
            return Money(m.cents * 2)

    daemon = P.api.Daemon(host="127.0.0.1")
    uri = daemon.register(Bank, "bank")
    try:
        with Served(daemon), P.api.Proxy(uri) as p:
            result = p.double(Money(21))
            out.append(f"custom class {type(result).__name__} {result.cents}")
    finally:
        P.api.unregister_class_to_dict(Money)
        P.api.unregister_dict_to_class("test.Money")


def test_custom_classes():
    assert_same_output(program_custom_class)


def program_socketutil(P, out):  # noqa: N803
    su = P.socketutil
    ip = su.get_ip_address("localhost")
    out.append(f"get_ip_address {type(ip).__name__} loopback {ip.is_loopback}")
    out.append(f"get_ip_address v4 {su.get_ip_address('127.0.0.1', version=4)}")
    out.append(f"get_interface {su.get_interface('127.0.0.1')}")
    server = su.create_socket(bind=("127.0.0.1", 0), timeout=2)
    port = server.getsockname()[1]
    client = su.create_socket(connect=("127.0.0.1", port), timeout=2)
    conn, _ = server.accept()
    su.send_data(client, b"hello world")
    out.append(f"receive_data {su.receive_data(conn, 11)!r}")
    conn.settimeout(0.2)
    outcome(out, "receive_data timeout", su.receive_data, conn, 1)
    client.close()
    conn.settimeout(2)
    outcome(out, "receive_data closed", su.receive_data, conn, 5)
    conn.close()
    server.close()
    bc = su.create_bc_socket(("127.0.0.1", 0), timeout=1)
    out.append(f"create_bc_socket {bc.type.name} bound {bc.getsockname()[0]}")
    bc.close()
    out.append(f"find_probably_unused_port {isinstance(su.find_probably_unused_port(), int)}")


def test_socketutil():
    assert_same_output(program_socketutil)


def program_blob(P, out):  # noqa: N803
    @P.api.expose
    class Target:
        def accept(self, blob):
            return [blob.info, blob.deserialized()]

    @P.api.expose
    class Router:
        def route(self, blob):
            with P.api.Proxy(self.target) as t:
                return t.accept(blob)

    daemon = P.api.Daemon(host="127.0.0.1")
    router = Router()
    router.target = daemon.register(Target, "target")
    uri = daemon.register(router, "router")
    with Served(daemon), P.api.Proxy(uri) as p:
        outcome(out, "blob through a router", p.route, P.api.SerializedBlob("info", {"k": [1, 2]}))


def test_serialized_blob():
    assert_same_output(program_blob)


# ---- what the compat layer does not offer says so ------------------------------------------

@pytest.mark.parametrize(("module", "name", "hint"), [
    ("socketutil", "get_ssl_context", "ssl_context="),
    ("socketutil", "SocketConnection", "SocketStream"),
    ("nameserver", "main", "ember ns"),
    ("serializers", "SerpentSerializer", "serializers['serpent']"),
    ("core", "_ExceptionWrapper", "ExceptionWrapper"),
])
def test_unsupported_names_name_the_native_equivalent(module, name, hint):
    mod = importlib.import_module(f"ember.compat.Pyro5.{module}")
    with pytest.raises(AttributeError, match=re.escape(hint)):
        getattr(mod, name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_like_this'"):
        mod.nothing_like_this  # noqa: B018


def test_unsupported_proxy_and_daemon_features_say_so():
    P = namespace("compat")  # noqa: N806
    p = P.api.Proxy("PYRO:x@127.0.0.1:1")
    with pytest.raises(AttributeError, match="not supported by ember.compat.Pyro5"):
        p._pyroRawWireResponse  # noqa: B018
    with P.api.Daemon(host="127.0.0.1") as daemon:
        with pytest.raises(AttributeError, match="daemon.sockets"):
            daemon.selector  # noqa: B018
        class Thing:  # weak registrations are supported now (issue 15): gone with the object
            pass

        import gc

        thing = Thing()
        uri = daemon.register(thing, weak=True)
        assert uri.object in daemon.objects_by_id
        del thing
        gc.collect()
        assert uri.object not in daemon.objects_by_id


def test_the_compat_classes_are_the_native_ones():
    P = namespace("compat")  # noqa: N806
    assert issubclass(P.api.Proxy, ember.Proxy) and issubclass(P.api.Daemon, ember.Daemon)
    assert P.errors.NamingError is ember.errors.NamingError and P.api.URI is ember.URI
    assert P.api.expose is ember.expose and P.api.current_context is ember.current_context
    assert sorted(P.api.__all__) == sorted(n for n in dir(Pyro5.api) if not n.startswith("_") and n[0].isalpha()
                                           and n not in ("annotations",))


def test_received_proxies_are_compat_proxies(make_daemon):
    P = namespace("compat")  # noqa: N806

    @ember.expose
    class Factory:
        def make(self):
            thing = make_service(P)()
            self._pyroDaemon.register(thing)
            return thing

    uri = make_daemon().register(Factory, "factory")
    with P.api.Proxy(uri) as p:
        made = p.make()
        assert type(made) is P.api.Proxy
        assert made.add(1, 2) == 3
        made._pyroRelease()


def test_combine_serves_both_daemons():
    P = namespace("compat")  # noqa: N806
    Service = make_service(P)  # noqa: N806
    main, other = P.api.Daemon(host="127.0.0.1"), P.api.Daemon(host="127.0.0.1")
    uri = other.register(Service, "other")
    main.combine(other)
    with Served(main), P.api.Proxy(uri) as p:
        assert p.add(1, 1) == 2


def program_metadata(P, out):  # noqa: N803
    Service = make_service(P)  # noqa: N806
    daemon = P.api.Daemon(host="127.0.0.1")
    uri = daemon.register(Service, "svc")
    with Served(daemon), P.api.Proxy(uri) as p:
        out.append(f"unbound {p._pyroMethods} {p._pyroAttrs} {p._pyroOneway}")
        p._pyroMethods = set("abc")
        p._pyroAttrs = set("xyz")
        p._pyroBind()
        out.append(f"bound {sorted(p._pyroMethods)} {p._pyroAttrs} {p._pyroOneway}")
        p._pyroAttrs = None
        p._pyroGetMetadata()
        out.append(f"refetched {p._pyroAttrs}")
        p._pyroAttrs = None
        p._pyroGetMetadata(uri.object)
        out.append(f"refetched by id {p._pyroAttrs}")
        p._pyroGetMetadata(known_metadata={"attrs": set(), "oneway": set(), "methods": {"add"}})
        out.append(f"known {p._pyroMethods} {p._pyroAttrs}")


def test_proxy_metadata():
    assert_same_output(program_metadata)


def program_start_ns_loop(P, out, port):  # noqa: N803
    stop = threading.Event()
    buffer = io.StringIO()

    def run():
        with contextlib.redirect_stdout(buffer):
            P.nameserver.start_ns_loop(host="127.0.0.1", port=port, loopCondition=lambda: not stop.is_set())

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with P.core.locate_ns("127.0.0.1", port) as ns:
                    outcome(out, "count", ns.count)
                    outcome(out, "register", ns.register, "x", "PYRO:x@127.0.0.1:1")
                    outcome(out, "list", ns.list)
                break
            except P.errors.NamingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    out.append(f"printed a URI {'URI = PYRO:Pyro.NameServer@' in buffer.getvalue()}")


def test_start_ns_loop():
    assert_same_output(program_start_ns_loop, _free_port())


@pytest.mark.parametrize("module", MODULES)
def test_every_public_pyro5_name_is_offered_or_explained(module):
    """Each public name of the real Pyro5 module: present in the compat module, or an
    AttributeError saying it is not supported and what to use."""
    real = importlib.import_module(f"Pyro5.{module}")
    compat = importlib.import_module(f"ember.compat.Pyro5.{module}")
    leaked_loop_variables = {"name", "t"}  # Pyro5.serializers leaves two module-level loop variables
    missing = []
    for name, value in vars(real).items():
        if name.startswith("_") or name in leaked_loop_variables or isinstance(value, types.ModuleType):
            continue
        defined_by = getattr(value, "__module__", None)
        if defined_by and not defined_by.startswith("Pyro5") and callable(value):
            continue  # a name Pyro5 imported (typing, stdlib), not its API
        if name == "log":
            continue
        try:
            getattr(compat, name)
        except AttributeError as exc:
            if "not supported by ember.compat.Pyro5" not in str(exc):
                missing.append(name)
    assert not missing, f"Pyro5.{module} names neither offered nor explained: {missing}"


def program_instance_modes_and_events(P, out):  # noqa: N803
    import select

    created = []

    @P.api.behavior(instance_mode="percall")
    @P.api.expose
    class PerCall:
        def __init__(self) -> None:
            created.append("percall")

        def me(self):
            return "percall"

    @P.api.behavior(instance_mode="single")
    @P.api.expose
    class Single:
        def __init__(self) -> None:
            created.append("single")

        def me(self):
            return "single"

    daemon = P.api.Daemon(host="127.0.0.1")
    uris = [daemon.register(PerCall, "percall"), daemon.register(Single, "single")]
    stop = threading.Event()

    def own_loop():  # a foreign select loop driving the daemon through sockets/events
        while not stop.is_set():
            ready, _, _ = select.select(daemon.sockets, [], [], 0.05)
            if ready:
                daemon.events(ready)

    thread = threading.Thread(target=own_loop)
    thread.start()
    try:
        for uri in uris:
            with P.api.Proxy(uri) as p:
                out.append([p.me() for _ in range(3)])
    finally:
        stop.set()
        thread.join()
        daemon.close()
    out.append(f"instances {sorted(created)}")


def test_instance_modes_and_a_foreign_event_loop():
    lines = assert_same_output(program_instance_modes_and_events)
    assert "instances ['percall', 'percall', 'percall', 'single']" in lines


def program_default_daemon(P, out):  # noqa: N803
    with P.api.Daemon() as daemon:
        uri = daemon.uriFor("Pyro.Daemon")
        out.append(f"default host in URIs: {uri.host}; config HOST {P.config.HOST}")
    with P.api.Daemon(host="127.0.0.1") as daemon:
        out.append(f"given address: {daemon.uriFor('Pyro.Daemon').host}")


def test_default_daemon_binds_and_publishes_localhost():
    lines = assert_same_output(program_default_daemon)
    assert lines[0] == "default host in URIs: localhost; config HOST localhost"


def program_timeouts(P, out):  # noqa: N803
    @P.api.expose
    class Slow:
        def sleep(self, seconds):
            time.sleep(seconds)
            return seconds

    daemon = P.api.Daemon(host="127.0.0.1")
    uri = daemon.register(Slow, "slow")
    with Served(daemon):
        p = P.api.Proxy(uri)
        p._pyroTimeout = 0.3
        outcome(out, "fast enough", p.sleep, 0.01)
        exc = outcome(out, "too slow", p.sleep, 1.0)
        out.append(f"a CommunicationError {isinstance(exc, P.errors.CommunicationError)}; connection dropped "
                   f"{p._pyroConnection is None}")
        dup = copy.copy(p)
        out.append(f"copy keeps the timeout {dup._pyroTimeout}")
        p._pyroTimeout = None
        outcome(out, "no timeout", p.sleep, 0.5)
        p._pyroRelease()
        time.sleep(0.6)  # let the abandoned slow call finish before the daemon stops


def test_timeouts():
    lines = assert_same_output(program_timeouts)
    assert "too slow: raises TimeoutError" in lines
