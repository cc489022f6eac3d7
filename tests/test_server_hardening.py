"""Issue 13, items 6, 7, 10 and 13: what a client can make a daemon send, build or list.

Every test attacks a real daemon over a socket, on each server type."""

import select
import socket
import threading

import pytest

import ember
from ember import errors, serializers
from ember.protocol import F_BATCH, F_EXCEPTION, F_ONEWAY, Message, MsgType, encode

from .services import Calc, read_reply


class Secretive:
    """A class no converter knows: travels as Pyro5's dict of attributes."""

    def __init__(self):
        self.name = "visible"
        self._token = "s3cret-token"
        self.__key = "mangled-key"  # stored as _Secretive__key
        self.__dunder__ = "dunder"


class StateLeaker:
    """A pickle-minded __getstate__ that hands out everything."""

    def __init__(self):
        self.public = 1
        self._password = "hunter2"

    def __getstate__(self):
        return dict(vars(self))


class LeakyError(ValueError):
    def __init__(self, text):
        super().__init__(text)
        self.code = 42
        self._connection_string = "postgres://admin:pw@db"


@ember.expose
class Target:
    def __init__(self):
        self.kept = None

    def secretive(self):
        return Secretive()

    def state_leaker(self):
        return StateLeaker()

    def leaky_error(self):
        raise LeakyError("lookup failed")

    def fail(self):
        local_secret = "local-variable-value"  # noqa: F841 - must never reach the client
        raise KeyError("missing")

    def kind(self, value):
        return [type(value).__module__, type(value).__name__, getattr(value, "remote_class", None)]

    def give_system_exit(self):
        return SystemExit(3)

    def keep(self, proxy):
        self.kept = proxy
        return [type(proxy).__name__, proxy._sock is None if isinstance(proxy, ember.Proxy) else None]

    async def keep_async(self, proxy):
        self.kept = proxy
        return type(proxy).__name__

    def use_kept(self):
        try:
            self.kept._bind()
        except errors.PyroError as exc:
            return type(exc).__name__
        return "connected"

    def add(self, a, b):
        return a + b

    async def aadd(self, a, b):
        return a + b


@pytest.fixture
def target(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    uri = daemon.register(Target(), "target")
    yield daemon, uri


# ---- raw socket helpers ----------------------------------------------------------------------



def _connect_raw(daemon, ser):
    s = socket.create_connection((daemon.host, daemon.port), timeout=10)
    s.sendall(encode(Message(MsgType.CONNECT, ser.serializer_id, 0, 0,
                             ser.dumps({"handshake": None, "object": "target"}))))
    reply = read_reply(s)
    assert reply.type == MsgType.CONNECTOK
    return s


def _invoke(s, ser, seq, method, args, flags=0, kwargs=None):
    s.sendall(encode(Message(MsgType.INVOKE, ser.serializer_id, flags, seq,
                             ser.dumps_call("target", method, args, kwargs or {}))))


# ---- item 10: malformed batches are answered, the connection stays --------------------------

MALFORMED = [
    pytest.param(5, id="args-not-a-sequence"),
    pytest.param([5], id="entry-not-a-sequence"),
    pytest.param([["add"]], id="entry-too-short"),
    pytest.param([["add", 5]], id="entry-args-not-a-sequence"),
    pytest.param([[7, [1, 2]]], id="entry-name-not-a-string"),
    pytest.param([["add", [1, 2], 5]], id="entry-kwargs-not-a-dict"),
    pytest.param([["add", [1, 2]], "x"], id="second-entry-bad"),
]


@pytest.mark.parametrize("calls", MALFORMED)
@pytest.mark.parametrize("sername", ["msgpack", "serpent"])
def test_malformed_batch_gets_exception_reply_and_connection_stays(target, calls, sername):
    daemon, _ = target
    ser = serializers.get(sername)
    s = _connect_raw(daemon, ser)
    try:
        _invoke(s, ser, 1, "<batch>", calls, F_BATCH)
        reply = read_reply(s)
        assert reply is not None, "connection dropped without a reply"
        assert reply.seq == 1 and reply.flags & F_EXCEPTION
        exc = ser.loads(reply.data)
        assert isinstance(exc, errors.SerializeError) and "invalid" in str(exc)
        _invoke(s, ser, 2, "add", (1, 2))  # the same connection serves the next call
        reply = read_reply(s)
        assert reply.seq == 2 and ser.loads(reply.data) == 3
    finally:
        s.close()


def test_malformed_batch_entry_ends_the_batch_there(make_daemon, servertype):
    """The calls before a malformed entry ran (as before a call that raises); none after it."""
    daemon = make_daemon(servertype=servertype)
    obj = Target()
    daemon.register(obj, "target")
    ser = serializers.get("msgpack")
    s = _connect_raw(daemon, ser)
    try:
        _invoke(s, ser, 1, "<batch>", [["keep", ["first"]], ["add", 5], ["keep", ["never"]]], F_BATCH)
        reply = read_reply(s)
        assert reply.seq == 1 and reply.flags & F_EXCEPTION
        assert "invalid batch call #1" in str(ser.loads(reply.data))
        _invoke(s, ser, 2, "add", (1, 2))  # the connection stays
        reply = read_reply(s)
        assert reply.seq == 2 and ser.loads(reply.data) == 3
    finally:
        s.close()
    assert obj.kept == "first"


@pytest.mark.parametrize("calls", MALFORMED)
def test_malformed_oneway_batch_keeps_connection(target, calls, caplog):
    daemon, _ = target
    ser = serializers.get("msgpack")
    s = _connect_raw(daemon, ser)
    try:
        _invoke(s, ser, 1, "<batch>", calls, F_BATCH | F_ONEWAY)  # no reply: oneway
        _invoke(s, ser, 2, "add", (2, 3))
        reply = read_reply(s)
        assert reply is not None and reply.seq == 2 and ser.loads(reply.data) == 5
    finally:
        s.close()
    assert any("invalid" in r.getMessage() for r in caplog.records)  # reported, not silent


@pytest.mark.parametrize("method", ["add", "aadd"])
@pytest.mark.parametrize("flags", [0, F_ONEWAY])
def test_call_with_args_not_a_sequence(target, method, flags):
    daemon, _ = target
    ser = serializers.get("msgpack")
    s = _connect_raw(daemon, ser)
    try:
        _invoke(s, ser, 1, method, 5, flags)
        if not flags:
            reply = read_reply(s)
            assert reply.seq == 1 and reply.flags & F_EXCEPTION
            assert "args must be a list or tuple" in str(ser.loads(reply.data))
        _invoke(s, ser, 2, method, (1, 2))
        reply = read_reply(s)
        assert reply.seq == 2 and ser.loads(reply.data) == 3
    finally:
        s.close()


def test_well_formed_batch_still_works(target):
    _, uri = target
    with ember.Proxy(uri) as p:
        batch = ember.BatchProxy(p)
        batch.add(1, 2)
        batch.add(3, 4)
        assert list(batch()) == [3, 7]


# ---- item 6: objects of unregistered classes send only public attributes --------------------

@pytest.fixture
def raw_dicts():
    """On the client, rebuild the test classes as the plain dicts that arrived."""
    names = [f"{__name__}.Secretive", f"{__name__}.StateLeaker"]
    for name in names:
        ember.register_dict_to_class(name, lambda _n, d: d)
    yield
    for name in names:
        ember.unregister_dict_to_class(name)


@pytest.mark.parametrize("sername", ["msgpack", "serpent", "json", "marshal"])
def test_unregistered_object_sends_only_public_attributes(target, raw_dicts, sername):
    _, uri = target
    with ember.Proxy(uri) as p:
        p._serializer = sername
        got = p.secretive()
        assert got == {"__class__": f"{__name__}.Secretive", "name": "visible"}
        got = p.state_leaker()
        assert got == {"__class__": f"{__name__}.StateLeaker", "public": 1}


def test_exception_sends_public_attributes_only(target):
    _, uri = target
    with ember.Proxy(uri) as p, pytest.raises(errors.RemoteError) as info:
        p.leaky_error()
    exc = info.value
    assert exc.remote_class == f"{__name__}.LeakyError" and exc.args == ("lookup failed",)
    assert exc.attributes.get("code") == 42
    assert not any(k.startswith("_") and k != "_pyroTraceback" for k in exc.attributes)
    assert "postgres" not in repr(exc.attributes)


# ---- item 7: SEND_TRACEBACK off sends only the exception type and message -------------------

def test_traceback_sent_by_default(target):
    _, uri = target
    with ember.Proxy(uri) as p, pytest.raises(KeyError) as info:
        p.fail()
    tb = errors.remote_traceback(info.value)
    assert 'File "' in tb and "test_server_hardening.py" in tb and "KeyError: 'missing'" in tb


@pytest.mark.parametrize("sername", ["msgpack", "serpent", "json", "marshal"])
def test_send_traceback_off_sends_type_and_message_only(make_daemon, servertype, sername):
    daemon = make_daemon(servertype=servertype, config=ember.config.copy())
    daemon.config.SEND_TRACEBACK = False
    daemon.config.DETAILED_TRACEBACK = True  # even then: no frames, no local variables
    uri = daemon.register(Target(), "target")
    with ember.Proxy(uri) as p:
        p._serializer = sername
        with pytest.raises(KeyError) as info:
            p.fail()
        tb = errors.remote_traceback(info.value)
        assert tb == "KeyError: 'missing'\n"
        assert "local-variable-value" not in tb and "File" not in tb
        if sername != "marshal":  # Pyro5's marshal form has no batches
            batch = ember.BatchProxy(p)  # a batch's exception too
            batch.fail()
            with pytest.raises(KeyError) as info:
                list(batch())
            assert errors.remote_traceback(info.value) == "KeyError: 'missing'\n"


# ---- item 13: BaseExceptions that are not Exceptions are not rebuilt ------------------------

@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException"])
@pytest.mark.parametrize("sername", ["msgpack", "serpent", "json", "marshal"])
def test_base_exceptions_from_the_wire_are_not_rebuilt_on_the_server(target, name, sername):
    daemon, _ = target
    ser = serializers.get(sername)
    s = _connect_raw(daemon, ser)
    try:
        wire = {"__class__": f"builtins.{name}", "__exception__": True, "args": [0], "attributes": {}}
        _invoke(s, ser, 1, "kind", (wire,))
        reply = read_reply(s)
        assert not reply.flags & F_EXCEPTION
        assert list(ser.loads(reply.data)) == ["ember.errors", "RemoteError", f"builtins.{name}"]
    finally:
        s.close()


def test_exceptions_that_are_exceptions_are_still_rebuilt(target):
    _, uri = target
    with ember.Proxy(uri) as p:
        assert p.kind(ValueError("x")) == ["builtins", "ValueError", None]


def test_system_exit_from_a_server_is_not_rebuilt_on_the_client(target):
    _, uri = target
    with ember.Proxy(uri) as p:
        got = p.give_system_exit()
    assert isinstance(got, errors.RemoteError) and got.remote_class == "builtins.SystemExit"
    assert got.args == (3,)


def test_dunder_attributes_from_the_wire_are_not_set(target):
    daemon, _ = target
    ser = serializers.get("msgpack")
    s = _connect_raw(daemon, ser)
    try:
        wire = {"__class__": "builtins.ValueError", "__exception__": True, "args": ["x"],
                "attributes": {"__dict__": {"evil": 1}, "__cause__": None, "ok": 1}}
        _invoke(s, ser, 1, "kind", (wire,))
        assert list(ser.loads(read_reply(s).data)) == ["builtins", "ValueError", None]
    finally:
        s.close()


# ---- item 13: proxies from the wire stay unconnected until the server's code uses them ------

class _Recorder:
    """A listener that records whether anything connected (and closes what did)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def connected(self):
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def accept_and_close(self):
        def run():
            conn, _ = self.sock.accept()
            conn.close()
        t = threading.Thread(target=run)
        t.start()
        return t

    def close(self):
        self.sock.close()


@pytest.fixture
def recorder():
    r = _Recorder()
    yield r
    r.close()


@pytest.mark.parametrize("scheme", ["PYRO", "PYRONAME"])
def test_proxy_argument_does_not_connect_until_used(target, recorder, scheme):
    _, uri = target
    if scheme == "PYRO":
        foreign = ember.Proxy(f"PYRO:victim@127.0.0.1:{recorder.port}")
    else:  # resolving the name would connect to the "name server" at the recorder
        foreign = ember.Proxy(f"PYRONAME:victim@127.0.0.1:{recorder.port}")
    with ember.Proxy(uri) as p:
        assert p.keep(foreign) == ["Proxy", True]
        assert not recorder.connected(), "the daemon connected to a proxy it only received"
        # positive control: the proxy does point at the recorder, and using it connects
        t = recorder.accept_and_close()
        assert p.use_kept() in ("ConnectionClosedError", "CommunicationError", "NamingError", "ProtocolError")
        t.join(5)
        assert not t.is_alive()


def test_proxy_argument_to_async_method_does_not_connect(make_daemon, recorder):
    daemon = make_daemon(servertype="asyncio")
    uri = daemon.register(Target(), "target")
    with ember.Proxy(uri) as p:
        assert p.keep_async(ember.Proxy(f"PYRO:victim@127.0.0.1:{recorder.port}")) == "AsyncProxy"
    assert not recorder.connected()


# ---- item 13: the daemon object's registered() listing ---------------------------------------

def test_registered_listing_is_off_by_default_and_configurable(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype, config=ember.config.copy())
    daemon.register(Target(), "hidden.target")
    with ember.Proxy(f"PYRO:Pyro.Daemon@{daemon.location}") as d:
        with pytest.raises(errors.SecurityError, match="DAEMON_LIST_OBJECTS"):
            d.registered()
        assert d.ping() is None
        daemon.config.DAEMON_LIST_OBJECTS = True
        assert set(d.registered()) == {"Pyro.Daemon", "hidden.target"}


def test_calc_service_unaffected(make_daemon, servertype):
    uri = make_daemon(servertype=servertype).register(Calc(), "calc")
    with ember.Proxy(uri) as p:
        assert p.add(2, 2) == 4


# ---- audit: a method raising SystemExit & co. ends that call, not the daemon ----------------

@ember.expose
class Quitter:
    def __init__(self):
        self.oneway_done = threading.Event()

    def sys_exit(self):
        raise SystemExit(1)

    def interrupt(self):
        raise KeyboardInterrupt  # in a worker thread: not Ctrl+C, just a method's exception

    def generator_exit(self):
        raise GeneratorExit

    def stream(self):
        yield 1
        raise SystemExit(2)

    async def async_exit(self):
        raise SystemExit(3)

    @ember.oneway
    def oneway_exit(self):
        self.oneway_done.set()
        raise SystemExit(4)

    def add(self, a, b):
        return a + b


@pytest.fixture
def quitter(make_daemon, servertype):
    cfg = ember.config.copy()
    cfg.THREADPOOL_SIZE, cfg.THREADPOOL_SIZE_MIN = 2, 1  # a leaked worker would show at once
    daemon = make_daemon(servertype=servertype, config=cfg)
    obj = Quitter()
    return daemon, obj, daemon.register(obj, "quitter")


@pytest.mark.parametrize("method", ["sys_exit", "interrupt", "generator_exit"])
def test_method_raising_base_exception_is_answered_and_daemon_survives(quitter, method):
    _, _, uri = quitter
    for _ in range(4):  # more than the thread pool has workers
        with ember.Proxy(uri) as p:
            with pytest.raises(errors.DaemonError, match="a call cannot stop the daemon"):
                getattr(p, method)()
            assert p.add(1, 2) == 3  # the same connection still serves
    with ember.Proxy(uri) as p:
        assert p.add(2, 3) == 5


def test_stream_raising_system_exit(quitter):
    _, _, uri = quitter
    with ember.Proxy(uri) as p:
        items = p.stream()
        assert next(items) == 1
        with pytest.raises(errors.DaemonError, match="SystemExit"):
            next(items)
        assert p.add(1, 2) == 3


def test_batch_and_oneway_raising_system_exit(quitter):
    _, obj, uri = quitter
    with ember.Proxy(uri) as p:
        batch = ember.BatchProxy(p)
        batch.add(1, 1)
        batch.sys_exit()
        results = batch()
        assert next(results) == 2
        with pytest.raises(errors.DaemonError):
            next(results)
        p.oneway_exit()
        assert obj.oneway_done.wait(5)
        assert p.add(1, 2) == 3


def test_async_method_raising_system_exit(make_daemon):
    uri = make_daemon(servertype="asyncio").register(Quitter(), "quitter")
    with ember.Proxy(uri) as p:
        with pytest.raises(errors.DaemonError, match="SystemExit"):
            p.async_exit()
        assert p.add(1, 2) == 3


# ---- Pyro5 clients see the same protections ---------------------------------------------------

def test_pyro5_client_gets_type_and_message_only_and_no_system_exit(make_daemon, servertype):
    Pyro5_api = pytest.importorskip("Pyro5.api")
    import Pyro5.errors

    daemon = make_daemon(servertype=servertype, config=ember.config.copy())
    daemon.config.SEND_TRACEBACK = False
    uri = str(daemon.register(Target(), "target"))
    quitter = str(daemon.register(Quitter(), "quitter"))
    with Pyro5_api.Proxy(uri) as p:
        with pytest.raises(KeyError) as info:
            p.fail()
        assert "".join(info.value._pyroTraceback) == "KeyError: 'missing'\n"
        shown = "".join(Pyro5.errors.get_pyro_traceback(info.type, info.value, info.tb))
        remote = shown.split("Remote traceback:")[1]  # Pyro5 prints the one line as the remote part
        assert "KeyError: 'missing'" in remote and 'File "' not in remote
    with Pyro5_api.Proxy(quitter) as p:
        with pytest.raises(Pyro5.errors.DaemonError, match="SystemExit"):  # not a SystemExit in the client
            p.sys_exit()
        assert p.add(1, 2) == 3
