"""Issue 13 audit: the exposure checks hold on every server type and on every call path
(plain, oneway, batch, oneway batch, KEEPSERIALIZED, attribute access, async def methods,
the daemon's own object). Each attempt goes to a real daemon over a raw socket; a private
or unexposed member that ran would leave a mark, and no mark may appear."""

import socket

import pytest

import ember
from ember import serializers
from ember.protocol import (
    BLOB_ANNOTATION,
    F_BATCH,
    F_EXCEPTION,
    F_KEEPSERIALIZED,
    F_ONEWAY,
    Message,
    MsgType,
    blob_annotation,
    encode,
)

from .services import read_reply

MARKS = []


class Guarded:
    """Only ``visible``, ``avisible`` and ``prop`` are exposed."""

    def __init__(self):
        self._secret = "s3cret"
        self.plain_attr = "not exposed"

    @ember.expose
    def visible(self):
        return "yes"

    @ember.expose
    async def avisible(self):
        return "ayes"

    @ember.expose
    @property
    def prop(self):
        return 11

    def hidden(self):
        MARKS.append("hidden")

    async def ahidden(self):
        MARKS.append("ahidden")

    def _private(self):
        MARKS.append("_private")

    def __mangled(self):
        MARKS.append("mangled")

    def __call__(self):
        MARKS.append("__call__")

    def __reduce__(self):
        MARKS.append("__reduce__")
        return (Guarded, ())

    @classmethod
    def cls_hidden(cls):
        MARKS.append("cls_hidden")

    @staticmethod
    def static_hidden():
        MARKS.append("static_hidden")


FORBIDDEN = ["hidden", "ahidden", "_private", "_Guarded__mangled", "__call__", "__reduce__", "__init__",
             "__class__", "__dict__", "__getattribute__", "__delattr__", "__init_subclass__", "__subclasshook__",
             "cls_hidden", "static_hidden", "plain_attr", "_secret", "nothing_here"]
FORBIDDEN_ATTRS = ["_secret", "plain_attr", "__dict__", "__class__", "_pyroDaemon", "_pyroId", "hidden", "visible"]


@pytest.fixture
def guarded(make_daemon, servertype):
    MARKS.clear()
    daemon = make_daemon(servertype=servertype)
    obj = Guarded()
    daemon.register(obj, "guarded")
    daemon.register(Guarded, "guarded.class")  # a class: an instance per connection
    yield daemon, obj
    MARKS.clear()




class Raw:
    def __init__(self, daemon, object_id):
        self.ser = serializers.get("msgpack")
        self.object_id = object_id
        self.seq = 0
        self.s = socket.create_connection((daemon.host, daemon.port), timeout=10)
        self.s.sendall(encode(Message(MsgType.CONNECT, 4, 0, 0, self.ser.dumps({"handshake": None,
                                                                                 "object": object_id}))))
        assert read_reply(self.s).type == MsgType.CONNECTOK

    def call(self, method, args=(), flags=0, data=None, annotations=None):
        self.seq += 1
        payload = data if data is not None else self.ser.dumps_call(self.object_id, method, args, {})
        self.s.sendall(encode(Message(MsgType.INVOKE, 4, flags, self.seq, payload, annotations)))
        if flags & F_ONEWAY:
            return None
        reply = read_reply(self.s)
        assert reply is not None and reply.seq == self.seq
        return reply.flags, self.ser.loads(reply.data)

    def close(self):
        self.s.close()


def _refused(outcome):
    flags, value = outcome
    if flags & F_EXCEPTION:
        return isinstance(value, (AttributeError, ember.errors.PyroError))
    if flags & F_BATCH:  # a batch answers a list ending in the wrapped exception
        last = value[-1]
        return isinstance(last, ember.serializers.ExceptionWrapper) and isinstance(last.exception, AttributeError)
    return False


@pytest.mark.parametrize("object_id", ["guarded", "guarded.class"])
def test_nothing_unexposed_reachable_on_any_path(guarded, object_id):
    daemon, _ = guarded
    raw = Raw(daemon, object_id)
    try:
        for name in FORBIDDEN:
            assert _refused(raw.call(name)), f"plain call {name}"
            raw.call(name, flags=F_ONEWAY)
            assert _refused(raw.call("<batch>", [[name, []]], F_BATCH)), f"batch {name}"
            raw.call("<batch>", [[name, []]], F_BATCH | F_ONEWAY)
            blob = blob_annotation("info", object_id, name)
            assert _refused(raw.call(name, flags=F_KEEPSERIALIZED, data=b"\x90",
                                     annotations={BLOB_ANNOTATION: blob})), f"keepserialized {name}"
        for attr in FORBIDDEN_ATTRS:
            assert _refused(raw.call("__getattr__", [attr])), f"get {attr}"
            assert _refused(raw.call("__setattr__", [attr, "changed"])), f"set {attr}"
        # the exposed members still work on the same connection, and after every oneway attempt
        assert raw.call("visible") == (0, "yes")
        assert raw.call("__getattr__", ["prop"]) == (0, 11)
        if daemon.server_description.startswith("asyncio"):
            assert raw.call("avisible") == (0, "ayes")
    finally:
        raw.close()
    assert MARKS == []


def test_private_state_unchanged(guarded):
    daemon, obj = guarded
    raw = Raw(daemon, "guarded")
    try:
        raw.call("__setattr__", ["_secret", "changed"])
        raw.call("__setattr__", ["plain_attr", "changed"])
        raw.call("<batch>", [["__setattr__", ["_secret", "changed"]]], F_BATCH)
    finally:
        raw.close()
    assert obj._secret == "s3cret" and obj.plain_attr == "not exposed"


def test_daemon_object_internals_unreachable(guarded):
    daemon, _ = guarded
    raw = Raw(daemon, "Pyro.Daemon")
    try:
        for name in ("_daemon", "__init__", "shutdown", "register", "unregister", "close"):
            assert _refused(raw.call(name)), name
        for attr in ("_daemon", "__dict__"):
            assert _refused(raw.call("__getattr__", [attr])), attr
        assert raw.call("ping") == (0, None)
    finally:
        raw.close()
    assert daemon.registry.get("guarded") is not None
