"""A Pyro5 program must not notice that it talks to Ember (issue 15).

Each harness below is a small Pyro5 *client* program, written for this suite, that drives a
server through Pyro5's own API (``Pyro5.api.Proxy``, ``Pyro5.api.locate_ns``,
``Pyro5.api.resolve``, the name server's remote interface, ``Pyro5.nsc.handle_command``) and
writes down what it saw as a transcript: return values, and for exceptions the class name
(never Ember's or Pyro5's message texts, which differ). Every harness runs twice, once
against Pyro5 5.17's own server (name server, daemon, echo server) and once against Ember's,
and the two transcripts must be equal. So the expectations are Pyro5's behaviour, measured,
not our reading of its documentation; where Ember deliberately differs, the difference is
asserted separately and named.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import socket
import threading
import time
import uuid
from typing import Any

import Pyro5.api
import Pyro5.client
import Pyro5.errors
import Pyro5.nameserver
import Pyro5.nsc
import Pyro5.utils.echoserver
import pytest

import ember
from ember import naming
from ember.services.echo import EchoServer

BACKENDS = ["pyro5", "ember"]


@contextlib.contextmanager
def pyro5_config(**items: Any):
    saved = {name: getattr(Pyro5.config, name) for name in items}
    for name, value in items.items():
        setattr(Pyro5.config, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(Pyro5.config, name, value)


@pytest.fixture(autouse=True)
def pyro5_broadcasts_on_loopback_only():
    with pyro5_config(BROADCAST_ADDRS=["127.255.255.255"]):
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Transcript:
    """What a Pyro5 client saw, step by step, in a form comparable across servers."""

    def __init__(self, replace: dict[str, str] | None = None) -> None:
        self.lines: list[tuple[str, Any]] = []
        self.replace = replace or {}

    def norm(self, value: Any) -> Any:
        if isinstance(value, Pyro5.api.URI):
            if value.protocol == "PYROMETA":  # the tags are a set: no order
                return ("URI", "PYROMETA", sorted(value.object), self.norm(str(value.location)))
            return ("URI", self.norm(str(value)))
        if isinstance(value, str):
            for old, new in self.replace.items():
                value = value.replace(old, new)
            return value
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, (set, frozenset)):
            return ("set", sorted(self.norm(v) for v in value))
        if isinstance(value, dict):
            return {self.norm(k): self.norm(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        if isinstance(value, (list, tuple)):
            return [self.norm(v) for v in value]
        return value

    def step(self, label: str, func, *args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except Exception as exc:  # the class is the observable; messages differ between the servers
            self.lines.append((label, "raises " + type(exc).__name__))
            return exc
        self.lines.append((label, self.norm(result)))
        return result

    def note(self, label: str, value: Any) -> None:
        self.lines.append((label, self.norm(value)))


def assert_same(transcripts: dict[str, Transcript]) -> None:
    pyro5, ours = transcripts["pyro5"].lines, transcripts["ember"].lines
    assert len(pyro5) == len(ours), (len(pyro5), len(ours))
    diffs = [f"{a[0]}: pyro5 {a[1]!r} != ember {b[1]!r}" for a, b in zip(pyro5, ours, strict=True) if a != b]
    assert not diffs, "\n".join(diffs)


# ---- servers: Pyro5's and Ember's, each started the way its users start it -------------------

@contextlib.contextmanager
def name_server(backend: str):
    """(ns uri, broadcast port) of a name server on 127.0.0.1, port 0; broadcast on loopback only."""
    if backend == "ember":
        with naming.start_ns("127.0.0.1", 0, bcport=0) as service:
            yield Pyro5.api.URI(str(service.uri)), service.broadcast.port
        return
    uri, daemon, _bc = Pyro5.nameserver.start_ns(host="127.0.0.1", port=0, enableBroadcast=False)
    bcserver = Pyro5.nameserver.BroadcastServer(uri, bchost="127.255.255.255", bcport=0)
    bcserver.runInThread()
    stop = threading.Event()
    thread = threading.Thread(target=daemon.requestLoop, args=(lambda: not stop.is_set(),))
    thread.start()
    try:
        yield uri, bcserver.getPort()
    finally:
        stop.set()
        daemon.shutdown()
        thread.join()
        bcserver.close()
        daemon.close()


@contextlib.contextmanager
def pyro5_daemon(objects: dict[str, Any]):
    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    uris = {name: daemon.register(obj, name) for name, obj in objects.items()}
    thread = threading.Thread(target=daemon.requestLoop)
    thread.start()
    try:
        yield daemon, uris
    finally:
        daemon.shutdown()
        thread.join()
        daemon.close()


@contextlib.contextmanager
def ember_daemon(objects: dict[str, Any], servertype: str = "thread"):
    daemon = ember.Daemon(servertype=servertype)
    uris = {name: Pyro5.api.URI(str(daemon.register(obj, name))) for name, obj in objects.items()}
    daemon.start()
    try:
        yield daemon, uris
    finally:
        daemon.shutdown()


# ---- the name server harness ----------------------------------------------------------------

def ns_harness(ns_uri: Pyro5.api.URI, bcport: int, serializer: str) -> Transcript:
    loc = ns_uri.location
    t = Transcript({loc: "NSLOC"})
    target = "PYRO:obj@10.0.0.1:4444"
    with pyro5_config(NS_HOST="127.0.0.1", NS_PORT=_free_port(), NS_BCPORT=bcport,
                      BROADCAST_ADDRS=["127.255.255.255"]):
        with Pyro5.api.locate_ns() as ns:  # by broadcast
            t.note("located by broadcast", str(ns._pyroUri))
    with Pyro5.api.locate_ns("127.0.0.1", ns_uri.port) as ns:
        t.note("locate_ns is a Pyro5 proxy", isinstance(ns, Pyro5.client.Proxy))
        t.step("ping", ns.ping)
        t.step("count", ns.count)
        t.step("lookup own entry", ns.lookup, "Pyro.NameServer")
        # registering: names, URIs, argument types
        t.step("register str", ns.register, "unit.a", target)
        t.step("register URI", ns.register, "unit.b", Pyro5.api.URI("PYRO:b@10.0.0.1:4444"))
        t.step("lookup returns a URI", lambda: type(ns.lookup("unit.b")).__name__)
        t.step("register again overwrites", ns.register, "unit.a", "PYRO:a2@10.0.0.1:4444")
        t.step("lookup overwritten", ns.lookup, "unit.a")
        t.step("register safe duplicate", ns.register, "unit.a", target, safe=True)
        t.step("register int uri", ns.register, "unit.c", 5555)
        t.step("register int name", ns.register, 4444, target)
        t.step("register None name", ns.register, None, target)
        t.step("register not a uri", ns.register, "unit.c", "THISISNOTAURI")
        t.step("register uri without port", ns.register, "unit.c", "PYRO:obj@host")
        for name in ("", "with space", "tab\tand\nnewline", "at@sign", "unicode\u20ac", "Pyro.Other"):
            t.step(f"register name {name!r}", ns.register, name, target)
            t.step(f"lookup name {name!r}", ns.lookup, name)
        for uri in ("PYRONAME:elsewhere", "PYRONAME:elsewhere@10.0.0.1:9090", "PYROMETA:a,b",
                    "PYROMETA:x@10.0.0.1:9090", "PYRO:obj@./u:/tmp/some.sock"):
            t.step(f"register uri {uri}", ns.register, "unit.uri", uri)
            t.step(f"lookup uri {uri}", ns.lookup, "unit.uri")
        t.step("lookup unknown", ns.lookup, "unit.unknown")
        t.step("lookup int", ns.lookup, 42)
        t.step("count after registering", ns.count)
        # listing
        t.step("list", ns.list)
        t.step("list prefix", ns.list, prefix="unit.")
        t.step("list prefix nothing", ns.list, prefix="nothing")
        t.step("list regex", ns.list, regex=r"unit\.[ab]")
        t.step("list regex broken", ns.list, regex="((((broken")
        t.step("list regex int", ns.list, regex=42)
        t.step("list prefix and regex", ns.list, prefix="unit.", regex="unit")
        if serializer == "serpent":  # Pyro5's name server fails to send metadata None with msgpack
            t.step("list prefix metadata", ns.list, prefix="unit.a", return_metadata=True)
        # metadata
        t.step("register metadata set", ns.register, "meta.1", "PYRO:m1@10.0.0.1:1", metadata={"a", "b", "c"})
        t.step("register metadata list", ns.register, "meta.2", "PYRO:m2@10.0.0.1:2", metadata=["x", "y", "y"])
        t.step("register metadata empty", ns.register, "meta.3", "PYRO:m3@10.0.0.1:3", metadata=set())
        t.step("register metadata int", ns.register, "meta.4", "PYRO:m4@10.0.0.1:4", metadata=12345)
        t.step("register metadata str", ns.register, "meta.4", "PYRO:m4@10.0.0.1:4", metadata="string")
        t.step("lookup metadata", ns.lookup, "meta.1", return_metadata=True)
        t.step("lookup metadata dupes", ns.lookup, "meta.2", return_metadata=True)
        t.step("lookup metadata empty", ns.lookup, "meta.3", return_metadata=True)
        t.step("list with metadata", ns.list, prefix="meta.", return_metadata=True)
        t.step("yplookup all", ns.yplookup, meta_all={"a", "c"})
        t.step("yplookup all no metadata", ns.yplookup, meta_all={"a", "c"}, return_metadata=False)
        t.step("yplookup all miss", ns.yplookup, meta_all={"a", "x"})
        t.step("yplookup any", ns.yplookup, meta_any={"a", "x", "nope"})
        t.step("yplookup any miss", ns.yplookup, meta_any={"nope"})
        t.step("yplookup nothing", ns.yplookup)
        t.step("yplookup empty all", ns.yplookup, meta_all=[])
        t.step("yplookup all and any", ns.yplookup, meta_all={"a"}, meta_any={"x"})
        for bad in (12345, "string"):
            t.step(f"yplookup all {bad!r}", ns.yplookup, meta_all=bad)
            t.step(f"yplookup any {bad!r}", ns.yplookup, meta_any=bad)
        t.step("set_metadata", ns.set_metadata, "meta.1", ["one", "two", "two"])
        t.step("after set_metadata", ns.lookup, "meta.1", return_metadata=True)
        t.step("set_metadata None", ns.set_metadata, "meta.2", None)
        t.step("after set_metadata None", ns.lookup, "meta.2", return_metadata=True)
        t.step("set_metadata unknown", ns.set_metadata, "meta.unknown", set())
        t.step("set_metadata str", ns.set_metadata, "meta.1", "string")
        t.step("set_metadata int", ns.set_metadata, "meta.1", 5)
        t.step("set_metadata int name", ns.set_metadata, 5, set())
        # removing, and the protected entry
        t.step("remove unknown", ns.remove, "unit.unknown")
        t.step("remove int", ns.remove, 42)
        t.step("remove one", ns.remove, "unit.a")
        t.step("remove prefix", ns.remove, prefix="meta.")
        t.step("remove regex", ns.remove, regex=r"unit\..*")
        t.step("remove nothing", ns.remove)
        t.step("remove empty prefix", ns.remove, prefix="")
        t.step("remove empty regex", ns.remove, regex="")
        t.step("remove own entry", ns.remove, "Pyro.NameServer")
        t.step("remove prefix Pyro", ns.remove, prefix="Pyro")
        t.step("remove regex Pyro", ns.remove, regex="Pyro.*")
        t.step("left over", ns.list)
        # the proxy itself: no dotted names, the connection is released by the with block
        t.step("dotted names refused", lambda: ns.namespace.keys)
        t.note("connected in the with block", ns._pyroConnection is not None)
    t.note("released after the with block", ns._pyroConnection is None)
    # the daemon's own object next to the name server
    with Pyro5.api.Proxy(f"PYRO:{Pyro5.core.DAEMON_NAME}@{loc}") as daemon_object:
        t.step("daemon ping", daemon_object.ping)
        t.step("daemon registered", lambda: sorted(daemon_object.registered()))
        t.step("daemon shutdown is not remote", lambda: daemon_object.shutdown())
    # resolution
    t.step("resolve PYRO", Pyro5.api.resolve, "PYRO:12345@host.com:4444")
    t.step("resolve PYRONAME", Pyro5.api.resolve, f"PYRONAME:Pyro.NameServer@{loc}")
    t.step("resolve PYRONAME unknown", Pyro5.api.resolve, f"PYRONAME:unknown_object@{loc}")
    t.step("resolve not a uri", Pyro5.api.resolve, 999)
    with Pyro5.api.locate_ns("127.0.0.1", ns_uri.port) as ns:
        ns.register("named.one", "PYRO:n1@10.0.0.1:1", metadata=["tag1"])
    with Pyro5.api.locate_ns("127.0.0.1", ns_uri.port) as ns:
        t.step("lookup helper", Pyro5.nameserver.lookup, ns, "named.one")
        t.step("lookup helper metadata", Pyro5.nameserver.lookup, ns, "named.one", True)
        t.step("lookup helper waits then fails", Pyro5.nameserver.lookup, ns, "named.later", delay_time=0.3)
        t.step("yplookup helper", Pyro5.nameserver.yplookup, ns, ["tag1"], None, False, delay_time=0.1)
        t.step("yplookup helper nothing", Pyro5.nameserver.yplookup, ns, ["nope"], None, False, delay_time=0.2)
    t.step("resolve PYROMETA", Pyro5.api.resolve, f"PYROMETA:tag1@{loc}")
    t.step("resolve PYROMETA none", Pyro5.api.resolve, f"PYROMETA:tag1,tag2@{loc}")
    return t


@pytest.mark.parametrize("serializer", ["serpent", "msgpack"])
def test_pyro5_name_server_client_sees_the_same(serializer):
    transcripts = {}
    # Ember lists a daemon's objects (registered()) only when allowed: Pyro5's behaviour, opted in
    with pyro5_config(SERIALIZER=serializer), ember.config.override(DAEMON_LIST_OBJECTS=True):
        for backend in BACKENDS:
            with name_server(backend) as (uri, bcport):
                transcripts[backend] = ns_harness(uri, bcport, serializer)
    assert_same(transcripts)
    assert len(transcripts["ember"].lines) > 90


def nsc_harness(ns_uri: Pyro5.api.URI) -> Transcript:
    """Pyro5's name server tool, driven through its command handler on a Pyro5 proxy."""
    t = Transcript({ns_uri.location: "NSLOC"})
    commands = [("ping", []), ("list", []), ("register", ["name1", "PYRO:obj1@hostname:9999"]),
                ("lookup", ["name1"]), ("lookup", ["WeirdName"]), ("listmatching", ["name.$"]),
                ("setmeta", ["name1", "m1", "m2"]), ("yplookup_all", ["m1"]), ("yplookup_any", ["m2", "zz"]),
                ("remove", ["name2"]), ("remove", ["name1"]), ("list", [])]
    with Pyro5.api.Proxy(ns_uri) as ns:
        for command, args in commands:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                outcome = t.step(f"nsc {command} {args}", Pyro5.nsc.handle_command, ns, command, args)
            t.note(f"nsc {command} {args} printed", sorted(_set_order(line) for line in out.getvalue().splitlines()))
            del outcome
    return t


def _set_order(line: str) -> str:
    """A printed set with its members sorted: set order follows insertion and the hash seed,
    which neither name server controls."""
    head, brace, rest = line.partition("{")
    if not brace or not rest.endswith("}"):
        return line
    return head + "{" + ", ".join(sorted(rest[:-1].split(", "))) + "}"


def test_pyro5_nsc_commands_print_the_same():
    transcripts = {}
    for backend in BACKENDS:
        with name_server(backend) as (uri, _bcport):
            transcripts[backend] = nsc_harness(uri)
    assert_same(transcripts)


def test_ember_keeps_the_name_servers_own_entry():
    """Where Ember differs on purpose: Pyro5 lets a client overwrite ``Pyro.NameServer``."""
    with name_server("ember") as (uri, _bcport), Pyro5.api.Proxy(uri) as ns:
        with pytest.raises(Pyro5.errors.NamingError, match="cannot be replaced"):
            ns.register("Pyro.NameServer", "PYRO:x@10.0.0.1:1")
        assert ns.lookup("Pyro.NameServer") == uri


def test_ember_removes_the_empty_name():
    """Where Ember differs on purpose: Pyro5 5.17 registers the name "" but its remove("")
    removes nothing (it tests the name for truth); Ember removes it."""
    for backend, removed in (("pyro5", 0), ("ember", 1)):
        with name_server(backend) as (uri, _bcport), Pyro5.api.Proxy(uri) as ns:
            ns.register("", "PYRO:x@10.0.0.1:1")
            assert ns.remove("") == removed


def test_ember_daemon_does_not_list_its_objects_by_default():
    """Where Ember differs on purpose (issue 13): ``Pyro.Daemon.registered()`` is refused
    unless the daemon sets DAEMON_LIST_OBJECTS; Pyro5 lists every object id to anyone."""
    with ember_daemon({"thing": Thing()}) as (_d, uris), \
            Pyro5.api.Proxy(f"PYRO:{Pyro5.core.DAEMON_NAME}@{uris['thing'].location}") as d:
        with pytest.raises(Pyro5.errors.SecurityError):
            d.registered()
        assert d.ping() is None


# ---- the echo server harness ----------------------------------------------------------------

@contextlib.contextmanager
def echo_server(backend: str):
    if backend == "ember":
        with ember_daemon({"test.echoserver": EchoServer()}, servertype="multiplex") as (_d, uris):
            yield uris["test.echoserver"]
        return
    with pyro5_daemon({"test.echoserver": Pyro5.utils.echoserver.EchoServer()}) as (_d, uris):
        yield uris["test.echoserver"]


def echo_harness(uri: Pyro5.api.URI) -> Transcript:
    t = Transcript()
    with Pyro5.api.Proxy(uri) as echo:
        t.step("bind", echo._pyroBind)
        t.note("methods", echo._pyroMethods - {"shutdown"})
        t.note("attrs", echo._pyroAttrs)
        for value in ("hello", None, [1, 2, 3], {"k": (1, 2)}, 1.5, 10**30, "\u20ac"):
            t.step(f"echo {value!r}", echo.echo, value)
        for method in ("error", "error_with_text"):
            exc = t.step(method, getattr(echo, method))
            t.note(f"{method} message", str(exc))
            tb = "".join(Pyro5.errors.get_pyro_traceback(type(exc), exc, exc.__traceback__))
            t.note(f"{method} has a remote traceback", "Remote traceback" in tb and "ValueError" in tb)
        generator = echo.generator()
        t.note("generator is a stream", isinstance(generator, Pyro5.client._StreamResultIterator))
        t.step("generator items", lambda: [next(generator) for _ in range(3)])
        t.step("generator exhausted", next, generator)
        t.step("nan", echo.nan)
        t.step("inf", echo.inf)
        t.step("dunder", echo.__dunder__)
        t.step("oneway_echo", echo.oneway_echo, "fire and forget")
        t.step("verbose", lambda: echo.verbose)
        echo.verbose = False
        t.step("verbose after set", lambda: echo.verbose)
        t.step("private", lambda: echo._private())
        t.step("unknown", lambda: echo.no_such_method())
    return t


def test_pyro5_echo_client_sees_the_same():
    transcripts = {}
    for backend in BACKENDS:
        with echo_server(backend) as uri:
            transcripts[backend] = echo_harness(uri)
    assert_same(transcripts)


# ---- the daemon harness: a Pyro5 client against a daemon serving ordinary objects -------------

@Pyro5.api.expose
@ember.expose
class Thing:
    """Exposed the same way to both libraries (each decorator marks only its own attribute)."""

    def __init__(self) -> None:
        self._value = 1
        self.seen: list[Any] = []

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def fail(self, text: str) -> None:
        raise KeyError(text)

    def generator(self, n: int):
        yield from range(n)

    def context(self) -> Any:
        ctx = Pyro5.api.current_context if _SERVER.get("pyro5") else ember.current_context
        return [ctx.correlation_id is not None, sorted(k for k in ctx.annotations if k.startswith("X"))]

    @Pyro5.api.oneway
    @ember.oneway
    def remember(self, value: Any) -> None:
        self.seen.append(value)

    def seen_values(self) -> list:
        return self.seen

    @property
    def value(self) -> int:
        return self._value

    @value.setter
    def value(self, v: int) -> None:
        self._value = v

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> int:
        return i * 2

    def __iter__(self):
        return iter(["q", "w", "e"])

    def testargs(self, x: Any, *args: Any, **kwargs: Any) -> list:
        return [x, list(args), kwargs]

    def divide(self, a: int, b: int) -> int:
        return a // b

    def iterator(self):
        return iter(["one", "two", "three"])

    def annotated(self) -> list:
        ctx = Pyro5.api.current_context if _SERVER.get("pyro5") else ember.current_context
        ctx.response_annotations["ANN2"] = b"from the daemon"
        return sorted(k for k in ctx.annotations if k.startswith("X"))

    def unserializable(self) -> Any:
        raise ValueError(("xantippe", lambda x: 0))

    def _hidden(self) -> None:
        raise AssertionError("never remotely")


_SERVER: dict[str, bool] = {}


class Partial:
    """Only one method exposed."""

    @Pyro5.api.expose
    @ember.expose
    def name(self) -> str:
        return "partial"

    def hidden(self) -> str:
        raise AssertionError("never remotely")


def daemon_harness(uri: Pyro5.api.URI) -> Transcript:
    t = Transcript({uri.location: "LOC"})
    p = Pyro5.api.Proxy(uri)
    t.note("not connected before the first call", p._pyroConnection is None)
    t.step("bind", p._pyroBind)
    t.note("methods", p._pyroMethods)
    t.note("attrs", p._pyroAttrs)
    t.note("oneway", p._pyroOneway)
    t.step("add", p.add, 1, 2)
    t.step("add strings", p.add, "a", "b")
    t.step("add kwargs", lambda: p.add(a=[1], b=[2]))
    exc = t.step("fail", p.fail, "why")
    t.note("fail args", list(exc.args))
    t.note("fail traceback", "Remote traceback" in "".join(Pyro5.errors.get_pyro_traceback(type(exc), exc,
                                                                                            exc.__traceback__)))
    t.step("generator", lambda: list(p.generator(4)))
    t.step("len", len, p)
    t.step("getitem", lambda: p[5])
    t.step("property", lambda: p.value)
    p.value = 42
    t.step("property set", lambda: p.value)
    t.step("oneway", p.remember, "x")
    deadline = time.monotonic() + 5
    while p.seen_values() != ["x"] and time.monotonic() < deadline:
        time.sleep(0.01)
    t.step("oneway arrived", p.seen_values)
    t.step("private", lambda: p._hidden())
    t.step("varargs", p.testargs, 1, 2, 3, a=4)
    t.step("kwargs only", lambda: p.testargs(1, **{"a": 2}))
    t.step("unicode kwargs", lambda: p.testargs("\u20ac", **{"\u20ac": 2}))
    t.step("zero division", p.divide, 1, 0)
    t.step("type error", p.add, "a", 1)
    t.step("iterator", lambda: list(p.iterator()))
    t.step("iter dunder", lambda: list(p))
    t.step("hasattr method", hasattr, p, "add")
    t.step("hasattr property", hasattr, p, "value")
    t.step("hasattr private", hasattr, p, "_value")
    t.step("hasattr missing", hasattr, p, "non_existing")
    Pyro5.api.current_context.annotations = {"XYZZ": b"from the proxy"}
    try:
        t.step("annotations", p.annotated)
        t.note("response annotation", Pyro5.api.current_context.response_annotations.get("ANN2"))
    finally:
        Pyro5.api.current_context.annotations = {}
    t.step("exception with an unserializable argument", p.unserializable)
    batch = Pyro5.api.BatchProxy(p)
    t.note("batch records None", [batch.add(7, 6), batch.divide(999, 3), batch.divide(1, 0), batch.add(3, 4)])
    results = batch()
    t.step("batch 1", next, results)
    t.step("batch 2", next, results)
    t.step("batch error", next, results)
    t.step("batch stops after error", next, results)
    batch = Pyro5.api.BatchProxy(p)
    batch.add(1, 2)
    t.step("oneway batch", batch, oneway=True)
    t.step("unknown", lambda: p.nope())
    t.step("unknown attribute", lambda: p.nope_attr)
    Pyro5.api.current_context.correlation_id = uuid.uuid4()
    Pyro5.api.current_context.annotations = {"XTRA": b"123"}
    try:
        t.step("context", p.context)
    finally:
        Pyro5.api.current_context.correlation_id = None
        Pyro5.api.current_context.annotations = {}
    batch = Pyro5.api.BatchProxy(p)
    batch.add(1, 1)
    batch.add(2, 2)
    t.step("batch", lambda: list(batch()))
    batch = Pyro5.api.BatchProxy(p)
    batch.add(1, 1)
    batch.fail("in batch")
    results = batch()
    t.step("batch first", next, results)
    t.step("batch failure", next, results)
    dup = copy.copy(p)
    t.step("copy", dup.add, 2, 2)
    dup._pyroRelease()
    t.step("release", p._pyroRelease)
    t.note("released", p._pyroConnection is None)
    t.step("reconnect", p._pyroReconnect)
    t.step("after reconnect", p.add, 3, 3)
    p._pyroRelease()
    p._pyroHandshake = {"hello": [1, 2]}
    t.step("with handshake", p.add, 4, 4)
    p._pyroRelease()
    with Pyro5.api.Proxy(f"PYRO:{Pyro5.core.DAEMON_NAME}@{uri.location}") as d:
        t.step("daemon ping", d.ping)
        t.step("daemon registered", lambda: sorted(d.registered()))
        meta = t.step("daemon get_metadata", d.get_metadata, uri.object)
        del meta
    with Pyro5.api.Proxy(f"PYRO:no.such.object@{uri.location}") as missing:
        t.step("unknown object", missing._pyroBind)
    with Pyro5.api.Proxy(f"PYRO:partial@{uri.location}") as partial:
        t.step("partial name", partial.name)
        t.note("partial methods", partial._pyroMethods)
        t.step("partial hidden", lambda: partial.hidden())
        t.step("partial set unexposed", setattr, partial, "unexposed_set", 999)
    return t


@pytest.mark.parametrize("servertype", ["thread", "multiplex", "asyncio"])
@pytest.mark.parametrize("serializer", ["serpent", "msgpack", "json"])
def test_pyro5_client_sees_the_same_daemon(servertype, serializer):
    transcripts = {}
    with pyro5_config(SERIALIZER=serializer), ember.config.override(DAEMON_LIST_OBJECTS=True):
        _SERVER["pyro5"] = True
        try:
            with pyro5_daemon({"thing": Thing(), "partial": Partial()}) as (_d, uris):
                transcripts["pyro5"] = daemon_harness(uris["thing"])
        finally:
            _SERVER.clear()
        with ember_daemon({"thing": Thing(), "partial": Partial()}, servertype=servertype) as (_d, uris):
            transcripts["ember"] = daemon_harness(uris["thing"])
    assert_same(transcripts)


def test_pyro5_client_sees_an_ember_daemon_go_away():
    with ember_daemon({"thing": Thing()}) as (daemon, uris):
        p = Pyro5.api.Proxy(uris["thing"])
        assert p.add(1, 2) == 3
        daemon.shutdown()
        with pytest.raises(Pyro5.errors.CommunicationError):
            for _ in range(3):  # the close may be seen on the first or a later call
                p.add(1, 2)
        p._pyroRelease()
