"""ClientSession and ServerSession (the sans-I/O protocol roles) against Pyro5's byte captures.

Bytes and Message objects only: no socket, no event loop, no daemon. The captures are
PROTOCOL.md section 11 (tests/vectors.py); the rules are its sections 2, 3 and 4.
"""

import marshal
import uuid

import pytest

from ember import context, errors, serializers
from ember.errors import CommunicationError, ConnectionDeniedError, ProtocolError, PyroError
from ember.protocol import (
    BLOB_ANNOTATION,
    DENY_ANNOTATION,
    EMBER_CAPS,
    F_BATCH,
    F_CORR_ID,
    F_EXCEPTION,
    F_ITEMSTREAM,
    F_KEEPSERIALIZED,
    F_ONEWAY,
    MULTIPLEX_CAPS,
    OOB_CAPS,
    STREAM_ANNOTATION,
    ClientSession,
    Handshake,
    Message,
    MsgType,
    ServerSession,
    State,
    decode,
    encode,
    parse_blob_annotation,
)
from ember.protocol.client import parse_metadata
from ember.protocol.states import CLIENT_ALLOWED, SERVER_ALLOWED
from ember.serializers import ExceptionWrapper, SerializedBlob

from .vectors import VECTORS

SERPENT = serializers.get("serpent")
MSGPACK = serializers.get("msgpack")
MARSHAL_ID = 2
LOCATION = "127.0.0.1:9999"
CAPS = {EMBER_CAPS: b"1", MULTIPLEX_CAPS: b"1"}


@pytest.fixture(autouse=True)
def call_context():
    """A CallContext of the test's own: no annotations or correlation id left over by other tests."""
    previous = context.peek()
    fresh = context.CallContext()
    context.set_context(fresh)
    yield fresh
    context.set_context(previous if previous is not None else context.CallContext())


def no_iterator(stream_id):
    raise AssertionError(f"unexpected stream {stream_id}")


def frame_of(mtype, serializer_id=1, flags=0, seq=0, data=b"", annotations=None, correlation_id=None):
    return encode(Message(mtype, serializer_id, flags, seq, data, annotations, correlation_id))


def server_ready():
    session = ServerSession()
    session.feed(VECTORS["A"])
    session.accept(session.next_message(), b"", {}, pipelined=False)
    return session


def client_ready(serializer="serpent"):
    session = ClientSession(serializers.get(serializer))
    session.skip_handshake()
    return session


def received(session, frame):
    """What the client's decoder makes of ``frame`` (type checks included)."""
    session.decoder.feed(frame)
    msg = session.decoder.next_message()
    assert msg is not None
    return msg


# ---- the state tables -----------------------------------------------------------------------


def test_server_state_table():
    assert SERVER_ALLOWED == {
        State.AWAIT_CONNECT: {MsgType.CONNECT},
        State.READY: {MsgType.INVOKE, MsgType.PING},
        State.MUST_CLOSE: set(),
        State.CLOSED: set(),
    }


def test_client_state_table():
    assert CLIENT_ALLOWED == {
        State.AWAIT_CONNECT: {MsgType.CONNECTOK, MsgType.CONNECTFAIL},
        State.READY: {MsgType.RESULT},
        State.MUST_CLOSE: set(),
        State.CLOSED: set(),
    }


def _server_in(state):
    session = ServerSession()
    if state is State.READY:
        session = server_ready()
    elif state is State.MUST_CLOSE:
        session.refuse(None, "no")
    elif state is State.CLOSED:
        session.closed()
    assert session.state is state
    return session


def _client_in(state):
    session = ClientSession(SERPENT)
    if state is State.READY:
        session.skip_handshake()
    elif state is State.MUST_CLOSE:
        with pytest.raises(CommunicationError):
            session.handshake(decode(frame_of(MsgType.CONNECTFAIL, data=SERPENT.dumps("no"))), LOCATION)
    elif state is State.CLOSED:
        session._enter(State.CLOSED)  # a proxy just drops a closed session; only the table says what it allows
    assert session.state is state
    return session


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("role", ["server", "client"])
def test_each_state_decodes_exactly_its_allowed_types(role, state):
    table, make = (SERVER_ALLOWED, _server_in) if role == "server" else (CLIENT_ALLOWED, _client_in)
    for mtype in MsgType:
        session = make(state)
        decoder = session.decoder
        frame = frame_of(mtype, seq=3, data=b"x")
        if mtype in table[state]:
            decoder.feed(frame)
            assert decoder.next_message().type == mtype
        else:
            with pytest.raises(ProtocolError, match=f"invalid msg type {int(mtype)} received"):
                decoder.feed(frame)
    assert session.must_close is (state in (State.MUST_CLOSE, State.CLOSED))


# ---- ServerSession ----------------------------------------------------------------------------


def test_server_starts_awaiting_connect_and_reads_capture_a():
    session = ServerSession()
    assert session.state is State.AWAIT_CONNECT
    assert not session.established and not session.must_close
    session.feed(VECTORS["A"][:5])  # a valid prefix: nothing yet
    assert session.next_message() is None
    session.feed(VECTORS["A"][5:])
    msg = session.next_message()
    assert (msg.type, msg.serializer_id, msg.flags, msg.seq, msg.annotations, msg.correlation_id) == (
        MsgType.CONNECT, 1, 0, 0, {}, None,
    )
    assert SERPENT.loads(msg.data) == {"handshake": "hello", "object": "calc"}
    assert not session.wants_extended(msg)
    assert session.next_message() is None
    assert session.state is State.AWAIT_CONNECT  # reading the CONNECT does not complete the handshake


@pytest.mark.parametrize("name, mtype", [("C", 4), ("K", 6)])
def test_server_refuses_invoke_or_ping_before_the_handshake(name, mtype):
    session = ServerSession()
    with pytest.raises(ProtocolError, match=rf"invalid msg type {mtype} received \(expected: 1\)") as info:
        session.feed(VECTORS[name])
    # and the peer is told so as Pyro5 does: marshal CONNECTFAIL, seq 0, then close
    reply = session.protocol_failure(info.value)
    assert (reply.type, reply.serializer_id, reply.seq) == (MsgType.CONNECTFAIL, MARSHAL_ID, 0)
    assert marshal.loads(reply.data) == f"invalid msg type {mtype} received (expected: 1)"
    assert session.must_close


def test_server_accept_answers_capture_a_like_capture_b():
    session = ServerSession()
    session.feed(VECTORS["A"])
    connect = session.next_message()
    capture_b = decode(VECTORS["B"])
    # the CONNECT as Pyro5 would have handled it: with the correlation id its daemon adopted
    connect.correlation_id = capture_b.correlation_id
    ok = session.accept(connect, capture_b.data, {}, pipelined=True)
    assert (ok.type, ok.serializer_id, ok.seq, ok.correlation_id) == (MsgType.CONNECTOK, 1, 0, capture_b.correlation_id)
    assert ok.annotations == {}  # a Pyro5 CONNECT asked for no capabilities: none offered
    assert encode(ok) == VECTORS["B"]
    assert session.state is State.READY and session.established and not session.extended


def test_server_accept_echoes_seq_serializer_and_correlation_id():
    corr = uuid.uuid4()
    connect = Message(MsgType.CONNECT, 4, 0, 517, MSGPACK.dumps({"handshake": None, "object": "x"}), {}, corr)
    session = ServerSession()
    ok = decode(encode(session.accept(connect, b"\x80", {"APPX": b"v"}, pipelined=False)))
    assert (ok.type, ok.serializer_id, ok.seq, ok.correlation_id, ok.flags) == (
        MsgType.CONNECTOK, 4, 517, corr, F_CORR_ID,
    )
    assert ok.data == b"\x80" and ok.annotations == {"APPX": b"v"}


@pytest.mark.parametrize(
    "asked, pipelined, offered",
    [
        (CAPS, True, CAPS),
        (CAPS, False, {EMBER_CAPS: b"1"}),
        ({EMBER_CAPS: b"1"}, True, {EMBER_CAPS: b"1"}),
        ({MULTIPLEX_CAPS: b"1"}, True, {}),  # EMUX without EMBR is not an Ember peer
        ({EMBER_CAPS: b"0", MULTIPLEX_CAPS: b"1"}, True, {}),
        ({}, True, {}),
    ],
)
def test_server_accept_offers_capabilities_only_when_asked(asked, pipelined, offered):
    session = ServerSession()
    session.feed(frame_of(MsgType.CONNECT, annotations=asked, data=SERPENT.dumps({"handshake": 1, "object": "o"})))
    connect = session.next_message()
    app = {"APPX": b"daemon"}
    ok = decode(encode(session.accept(connect, b"payload", app, pipelined)))
    assert ok.annotations == {"APPX": b"daemon", **offered}
    assert app == {"APPX": b"daemon"}  # the daemon's own dict is left alone
    assert session.extended is (EMBER_CAPS in offered)


def test_server_after_accept_takes_invoke_and_ping():
    session = server_ready()
    assert session.state is State.READY and session.decoder.allowed_types == {MsgType.INVOKE, MsgType.PING}
    session.feed(VECTORS["C"])
    call = session.next_message()
    assert (call.type, call.seq) == (MsgType.INVOKE, 1)
    assert SERPENT.loads_call(call.data) == ("calc", "add", (1, 2), {})
    session.feed(VECTORS["E"] + VECTORS["K"])
    oneway, ping = session.next_message(), session.next_message()
    assert (oneway.type, oneway.seq, oneway.flags) == (MsgType.INVOKE, 2, F_ONEWAY)
    assert (ping.type, ping.serializer_id, ping.data) == (MsgType.PING, 42, b"ping")
    assert session.next_message() is None
    with pytest.raises(ProtocolError, match=r"invalid msg type 1 received \(expected: 4, 6\)"):
        session.feed(VECTORS["A"])  # a second CONNECT
    assert session.protocol_failure(ProtocolError("x")) is None  # no reply after the handshake
    assert session.must_close


@pytest.mark.parametrize("name", ["serpent", "marshal", "json", "msgpack"])
def test_server_refuse_in_the_clients_serializer(name):
    ser = serializers.get(name)
    corr = uuid.uuid4()
    connect = Message(MsgType.CONNECT, ser.serializer_id, 0, 12, b"", {}, corr)
    session = ServerSession()
    fail = session.refuse(connect, "unknown object", {"APPX": b"v"})
    fail = decode(encode(fail))
    assert (fail.type, fail.serializer_id, fail.seq, fail.correlation_id) == (
        MsgType.CONNECTFAIL, ser.serializer_id, 12, corr,
    )
    assert ser.loads(fail.data) == "unknown object"
    assert fail.annotations == {"APPX": b"v"}  # no DENY: a refusal, not a denial
    assert session.must_close and session.state is State.MUST_CLOSE
    with pytest.raises(ProtocolError, match="invalid msg type 4 received"):
        session.feed(VECTORS["C"])  # nothing more is read


def test_server_refuse_with_unknown_serializer_or_no_connect_uses_marshal():
    session = ServerSession()
    fail = session.refuse(Message(MsgType.CONNECT, 99, 0, 5), "bad serializer")
    assert (fail.serializer_id, fail.seq) == (MARSHAL_ID, 5)
    assert marshal.loads(fail.data) == "bad serializer"
    fail = ServerSession().refuse(None, "unreadable")
    assert (fail.type, fail.serializer_id, fail.seq, fail.correlation_id) == (MsgType.CONNECTFAIL, MARSHAL_ID, 0, None)
    assert marshal.loads(fail.data) == "unreadable"


def test_server_refuse_with_deny_code():
    session = ServerSession()
    session.feed(VECTORS["A"])
    fail = session.refuse(session.next_message(), "too many connections", {"APPX": b"v"},
                          deny_code=errors.DENY_BUSY)
    assert fail.annotations == {"APPX": b"v", DENY_ANNOTATION: b"1"}
    assert SERPENT.loads(fail.data) == "too many connections"
    assert session.must_close
    # what the proxy makes of it
    client = ClientSession(SERPENT)
    with pytest.raises(ConnectionDeniedError, match="rejected: too many connections") as info:
        client.handshake(received(client, encode(fail)), LOCATION)
    assert info.value.code == errors.DENY_BUSY


@pytest.mark.parametrize(
    "garbage, text",
    [
        (b"XYRO" + VECTORS["A"][4:], "bad tag"),
        (b"GET / HTTP/1.1\r\n", "bad tag"),
        (b"PYRO\x01\xf5" + VECTORS["A"][6:], "invalid protocol version: 501"),
        (b"PYRO\x00\x30", "invalid protocol version: 48"),  # a Pyro4 peer, known after 6 bytes
        (VECTORS["A"][:0x26] + b"\x00\x00" + VECTORS["A"][0x28:], "bad magic"),
    ],
)
def test_server_garbage_during_handshake(garbage, text):
    session = ServerSession()
    with pytest.raises(ProtocolError, match=text) as info:
        session.feed(garbage)
    fail = session.protocol_failure(info.value)
    assert (fail.type, fail.serializer_id, fail.seq) == (MsgType.CONNECTFAIL, MARSHAL_ID, 0)
    assert text in marshal.loads(fail.data)
    assert session.must_close
    with pytest.raises(ProtocolError, match=text):
        session.feed(VECTORS["A"])  # no resynchronisation


def test_server_garbage_after_handshake_gets_no_reply():
    session = server_ready()
    with pytest.raises(ProtocolError, match="bad tag") as info:
        session.feed(b"!" * 16)
    assert session.protocol_failure(info.value) is None
    assert session.must_close


def test_server_pong():
    session = server_ready()
    session.feed(VECTORS["K"])
    ping = session.next_message()
    pong = session.pong(ping)
    assert (pong.type, pong.serializer_id, pong.seq, pong.data) == (MsgType.PING, 42, 0, b"pong")
    # with the correlation id Pyro5's daemon generated, the echo is capture L byte for byte
    ping.correlation_id = decode(VECTORS["L"]).correlation_id
    assert encode(session.pong(ping)) == VECTORS["L"]
    other = session.pong(Message(MsgType.PING, 7, 0, 4242, b"anything"))
    assert (other.serializer_id, other.seq, other.data) == (7, 4242, b"pong")
    assert session.state is State.READY


def test_server_connected_socket_has_no_handshake():
    session = ServerSession(established=True)
    assert session.state is State.READY and session.established and not session.must_close
    session.feed(VECTORS["C"])
    assert session.next_message().type == MsgType.INVOKE
    with pytest.raises(ProtocolError, match=r"invalid msg type 1 received \(expected: 4, 6\)") as info:
        session.feed(VECTORS["A"])  # a CONNECT is rejected like any unexpected type
    assert session.protocol_failure(info.value) is None


def test_server_close_after_reply_and_closed():
    session = server_ready()
    session.close_after_reply()
    assert session.state is State.MUST_CLOSE and session.must_close and not session.established
    session.closed()
    session.close_after_reply()  # a closed connection stays closed
    assert session.state is State.CLOSED and session.must_close


def test_server_limits_from_the_header():
    session = ServerSession(max_message_size=10)
    with pytest.raises(errors.MessageTooLargeError):
        session.feed(VECTORS["A"])


def test_server_messages_sent_together_are_judged_in_turn():
    """A client may send its first call right behind CONNECT (Pyro5's daemon reads one
    message at a time): the INVOKE is checked against the state the CONNECT led to."""
    session = ServerSession()
    session.feed(VECTORS["A"] + VECTORS["C"])
    connect = session.next_message()
    assert connect.type == MsgType.CONNECT
    session.accept(connect, b"", {}, pipelined=False)
    call = session.next_message()
    assert (call.type, call.seq) == (MsgType.INVOKE, 1)
    # and a message that is not allowed any more is refused, after the one before it was taken
    session = ServerSession()
    session.feed(VECTORS["A"] + VECTORS["C"])
    session.refuse(session.next_message(), "unknown object")
    with pytest.raises(ProtocolError, match="invalid msg type 4 received"):
        session.next_message()
    session = server_ready()
    session.feed(VECTORS["C"] + VECTORS["A"])
    assert session.next_message().type == MsgType.INVOKE
    with pytest.raises(ProtocolError, match="invalid msg type 1 received"):
        session.next_message()


# ---- ClientSession ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, capture", [("serpent", "A"), ("msgpack", "F")])
@pytest.mark.parametrize("multiplex", [False, True])
def test_client_connect_frame(name, capture, multiplex):
    session = ClientSession(serializers.get(name))
    msg = decode(session.connect_frame("hello", "calc", multiplex=multiplex))
    pyro5 = decode(VECTORS[capture])
    assert (msg.type, msg.serializer_id, msg.flags, msg.seq, msg.correlation_id) == (
        MsgType.CONNECT, pyro5.serializer_id, 0, 0, None,
    )
    assert msg.data == pyro5.data  # the handshake/object mapping, byte for byte as Pyro5 writes it
    # EOOB: out-of-band buffers (config OUT_OF_BAND, on by default)
    assert msg.annotations == {**(CAPS if multiplex else {EMBER_CAPS: b"1"}), OOB_CAPS: b"1"}
    assert session.state is State.AWAIT_CONNECT


def test_client_connect_frame_carries_context_and_current_seq(call_context):
    corr = uuid.uuid4()
    call_context.correlation_id = corr
    call_context.annotations = {"ABCD": b"xyz"}
    session = ClientSession(SERPENT)
    session.next_seq()
    session.next_seq()
    msg = decode(session.connect_frame({"token": 1}, "calc"))
    assert (msg.seq, msg.flags, msg.correlation_id) == (2, F_CORR_ID, corr)  # the counter, not advanced
    assert msg.annotations == {"ABCD": b"xyz", EMBER_CAPS: b"1", OOB_CAPS: b"1"}
    assert call_context.annotations == {"ABCD": b"xyz"}  # the caller's dict is left alone
    assert SERPENT.loads(msg.data) == {"handshake": {"token": 1}, "object": "calc"}
    assert session.seq == 2


def test_client_handshake_on_capture_b(call_context):
    call_context.response_annotations = {"OLD_": b"from an earlier reply"}
    session = ClientSession(SERPENT)
    answer = session.handshake(received(session, VECTORS["B"]), LOCATION)
    assert isinstance(answer, Handshake)
    assert answer.response == "hello"
    assert answer.meta["methods"] == {"add", "log"} and answer.meta["oneway"] == {"log"}
    assert not answer.meta["attrs"]
    assert answer.extended is False and answer.multiplex is False
    assert answer.serializer is SERPENT and session.serializer is SERPENT
    assert parse_metadata(answer.meta, "PYRO:calc@" + LOCATION) == (
        frozenset({"add", "log"}), frozenset(), frozenset({"log"}),
    )
    assert session.state is State.READY and not session.must_close
    assert call_context.response_annotations == {}  # what this reply carried: nothing


def test_client_handshake_on_capture_h():
    session = ClientSession(MSGPACK)
    answer = session.handshake(received(session, VECTORS["H"]), LOCATION)
    assert set(answer.meta["methods"]) == {"add", "log"} and set(answer.meta["oneway"]) == {"log"}
    assert answer.extended is False and session.state is State.READY


def test_client_and_server_agree_on_ember_capabilities(call_context):
    client = ClientSession(MSGPACK)
    server = ServerSession()
    server.feed(client.connect_frame("hello", "calc", multiplex=True))
    connect = server.next_message()
    payload = serializers.get("msgpack", extended=True).dumps({"handshake": "hi", "meta": {"methods": ["add"]}})
    ok = server.accept(connect, payload, {"APPX": b"v"}, pipelined=True)
    answer = client.handshake(received(client, encode(ok)), LOCATION)
    assert answer.extended and answer.multiplex and client.extended and client.multiplex
    # both announced EOOB: the msgpack variant that sends big buffers out of band
    assert client.serializer is serializers.get("msgpack", extended=serializers.OOB) and client.serializer.oob
    assert server.extended == serializers.OOB
    assert client.requested is MSGPACK
    assert answer.response == "hi" and answer.meta == {"methods": ["add"]}
    assert call_context.response_annotations == {"APPX": b"v", **CAPS, OOB_CAPS: b"1"}
    # a daemon that does not pipeline: extended values, calls answered in order
    client = ClientSession(MSGPACK)
    server = ServerSession()
    server.feed(client.connect_frame("hello", "calc", multiplex=True))
    answer = client.handshake(received(client, encode(server.accept(server.next_message(), payload, {}, False))),
                              LOCATION)
    assert answer.extended and not answer.multiplex


@pytest.mark.parametrize("deny, code", [(b"3", errors.DENY_SECURITY), (b"1", errors.DENY_BUSY),
                                        (b"junk", errors.DENY_UNSPECIFIED)])
def test_client_handshake_denied(deny, code):
    session = ClientSession(SERPENT)
    fail = frame_of(MsgType.CONNECTFAIL, data=SERPENT.dumps("go away"), annotations={DENY_ANNOTATION: deny})
    with pytest.raises(ConnectionDeniedError, match=f"connection to {LOCATION} rejected: go away") as info:
        session.handshake(received(session, fail), LOCATION)
    assert info.value.code == code
    assert session.must_close and session.state is State.MUST_CLOSE


def test_client_handshake_refused_without_deny():
    session = ClientSession(SERPENT)
    fail = frame_of(MsgType.CONNECTFAIL, data=SERPENT.dumps("unknown object"))
    with pytest.raises(CommunicationError, match=f"connection to {LOCATION} rejected: unknown object") as info:
        session.handshake(received(session, fail), LOCATION)
    assert not isinstance(info.value, ConnectionDeniedError)
    assert session.must_close
    with pytest.raises(ProtocolError):
        session.decoder.feed(VECTORS["D"])


def test_client_reads_pyro5_protocol_failure_in_marshal():
    """A Pyro5 daemon that could not read our CONNECT answers in marshal, whatever we speak."""
    server = ServerSession()
    with pytest.raises(ProtocolError) as info:
        server.feed(b"PYRO\x00\x30")
    client = ClientSession(MSGPACK)
    with pytest.raises(CommunicationError, match="rejected: invalid protocol version: 48"):
        client.handshake(received(client, encode(server.protocol_failure(info.value))), LOCATION)


@pytest.mark.parametrize(
    "name, call, flags, seq, capture",
    [
        ("serpent", ("calc", "add", (1, 2), {}), 0, 1, "C"),
        ("serpent", ("calc", "log", ("hi",), {}), F_ONEWAY, 2, "E"),
        ("msgpack", ("calc", "add", (1, 2), {}), 0, 1, "G"),
    ],
)
def test_client_invoke_frame_matches_captures(name, call, flags, seq, capture):
    pyro5 = decode(VECTORS[capture])
    assert (pyro5.flags, pyro5.seq) == (flags, seq)
    session = client_ready(name)
    got_seq, frame = session.invoke_frame(*call, flags=flags, seq=seq)
    assert got_seq == seq
    assert frame == VECTORS[capture]
    assert decode(frame).data == pyro5.data


def test_client_first_invoke_has_seq_1():
    session = client_ready()
    seq, frame = session.invoke_frame("calc", "add", (1, 2), {})
    assert seq == 1 and frame == VECTORS["C"]
    seq, frame = session.invoke_frame("calc", "log", ("hi",), {}, flags=F_ONEWAY)
    assert seq == 2 and frame == VECTORS["E"]  # a oneway call uses up a number too


def test_client_invoke_frame_carries_context_annotations(call_context):
    call_context.annotations = {"ABCD": b"xyz"}
    session = client_ready()
    _, frame = session.invoke_frame("test.obj", "annotate", (), {}, seq=1)
    assert frame == VECTORS["J"]
    corr = uuid.uuid4()
    call_context.correlation_id = corr
    _, frame = session.invoke_frame("test.obj", "annotate", (), {}, seq=1, extra_annotations={"HOOK": b"h"})
    msg = decode(frame)
    assert msg.annotations == {"ABCD": b"xyz", "HOOK": b"h"} and msg.correlation_id == corr
    assert msg.flags == F_CORR_ID
    assert call_context.annotations == {"ABCD": b"xyz"}


def test_client_next_seq_skips_pending_and_wraps():
    session = ClientSession(SERPENT)
    assert [session.next_seq(), session.next_seq()] == [1, 2]
    session.pending = {3: "waiting", 4: "waiting"}
    assert session.next_seq() == 5
    session.seq = 0xFFFE
    session.pending = {}
    assert [session.next_seq(), session.next_seq(), session.next_seq()] == [0xFFFF, 0, 1]
    session.seq = 0xFFFD
    session.pending = {0xFFFE: 1, 0xFFFF: 1, 0: 1}
    assert session.next_seq() == 1
    assert session.seq == 1


def test_client_result_of_capture_d():
    session = client_ready()
    seq, _ = session.invoke_frame("calc", "add", (1, 2), {})
    assert session.result(received(session, VECTORS["D"]), seq, no_iterator) == 3
    assert not session.must_close
    session = client_ready("msgpack")
    assert session.result(received(session, VECTORS["I"]), 1, no_iterator) == 3


def test_client_result_without_flags():
    session = client_ready()
    reply = received(session, frame_of(MsgType.RESULT, seq=9, data=SERPENT.dumps([1, "two"])))
    assert reply.flags == 0
    assert session.result(reply, 9, no_iterator) == [1, "two"]


def test_client_result_for_another_call_breaks_the_connection():
    session = client_ready()
    with pytest.raises(ProtocolError, match=r"invalid reply sequence number 1 \(expected 2\)"):
        session.result(received(session, VECTORS["D"]), 2, no_iterator)
    assert session.must_close and session.state is State.MUST_CLOSE
    with pytest.raises(ProtocolError, match="invalid msg type 5 received"):
        session.decoder.feed(VECTORS["D"])


@pytest.mark.parametrize("name", ["serpent", "json", "marshal", "msgpack"])
def test_client_result_raises_the_remote_exception(name, call_context):
    ser = serializers.get(name)
    session = client_ready(name)
    reply = frame_of(MsgType.RESULT, ser.serializer_id, F_EXCEPTION, 4, ser.dumps(ValueError("bad value")),
                     {"RESP": b"r"}, uuid.uuid4())
    with pytest.raises(ValueError, match="bad value"):
        session.result(received(session, reply), 4, no_iterator)
    assert call_context.response_annotations == {"RESP": b"r"}
    assert not session.must_close  # an exception reply is an answer like any other


@pytest.mark.parametrize("name", ["serpent", "json", "marshal", "msgpack"])
def test_client_batch_results(name):
    ser = serializers.get(name)
    session = client_ready(name)
    data = ser.dumps([2, "x", ExceptionWrapper(ValueError("boom"))])
    results = session.result(received(session, frame_of(MsgType.RESULT, ser.serializer_id, F_BATCH | F_CORR_ID, 1,
                                                        data, correlation_id=uuid.uuid4())), 1, no_iterator)
    assert next(results) == 2
    assert next(results) == "x"
    with pytest.raises(ValueError, match="boom"):
        next(results)
    data = ser.dumps([2, "x", None])
    results = session.result(received(session, frame_of(MsgType.RESULT, ser.serializer_id, F_BATCH, 2, data)), 2,
                             no_iterator)
    assert list(results) == [2, "x", None]


def test_client_batch_of_pyro5_wire_form():
    """The batch reply exactly as PROTOCOL.md 4.5 shows it (the wrapper as a plain dict)."""
    data = (b"# serpent utf-8 python3.2\n[2,'x',{'__class__':'Pyro5.core._ExceptionWrapper','exception':"
            b"{'__class__':'builtins.ValueError','__exception__':True,'args':('bad',),"
            b"'attributes':{'_pyroTraceback':['Traceback\\n']}}}]")
    session = client_ready()
    results = session.result(received(session, frame_of(MsgType.RESULT, 1, F_BATCH | F_CORR_ID, 1, data,
                                                        correlation_id=uuid.uuid4())), 1, no_iterator)
    assert [next(results), next(results)] == [2, "x"]
    with pytest.raises(ValueError, match="bad") as info:
        next(results)
    assert info.value._pyroTraceback == ["Traceback\n"]


def test_client_stream_result():
    session = client_ready()
    stream_id = "fd66eff1-64d8-4063-8f99-e2ccb7ddd86c"
    started = []
    reply = frame_of(MsgType.RESULT, 1, F_EXCEPTION | F_ITEMSTREAM | F_CORR_ID, 1,
                     SERPENT.dumps(ProtocolError("result of call is an iterator")),
                     {STREAM_ANNOTATION: stream_id.encode()}, uuid.uuid4())
    assert session.result(received(session, reply), 1, lambda sid: started.append(sid) or "iterator") == "iterator"
    assert started == [stream_id]
    reply = frame_of(MsgType.RESULT, 1, F_EXCEPTION | F_ITEMSTREAM, 2,
                     SERPENT.dumps(ProtocolError("result of call is an iterator")))
    with pytest.raises(PyroError, match="not configured to allow streaming"):
        session.result(received(session, reply), 2, no_iterator)


def test_client_local_blob_goes_keepserialized():
    session = client_ready()
    blob = SerializedBlob({"route": "b"}, {"k": [1, 2]})
    seq, frame = session.invoke_frame("b", "accept", (blob,), {})
    msg = decode(frame)
    assert (msg.type, msg.seq, msg.flags) == (MsgType.INVOKE, seq, F_KEEPSERIALIZED)
    assert marshal.loads(msg.annotations[BLOB_ANNOTATION]) == ({"route": "b"}, "b", "accept")  # always marshal
    assert parse_blob_annotation(msg.annotations[BLOB_ANNOTATION]) == ({"route": "b"}, "b", "accept")
    obj, method, data, _kwargs = SERPENT.loads_call(msg.data)
    assert (obj, method, data) == ("b", "accept", {"k": [1, 2]})  # the args slot holds the blob's data itself


def test_client_received_blob_is_forwarded_byte_for_byte(call_context):
    call_context.annotations = {"ABCD": b"xyz"}
    incoming = SERPENT.dumps_call("b", "accept", {"k": [1, 2]}, {})
    blob = SerializedBlob("info", incoming, is_blob=True, serializer_id=1)
    session = client_ready()
    _, frame = session.invoke_frame("b", "accept", (blob,), {}, seq=3)
    msg = decode(frame)
    assert msg.data == incoming and msg.flags == F_KEEPSERIALIZED
    assert msg.annotations.keys() == {"ABCD", BLOB_ANNOTATION} and msg.annotations["ABCD"] == b"xyz"
    assert marshal.loads(msg.annotations[BLOB_ANNOTATION]) == ("info", "b", "accept")
    assert call_context.annotations == {"ABCD": b"xyz"}
    # a blob in another serializer keeps its bytes and its own serializer id (issue 15)
    session = client_ready("msgpack")
    _, frame = session.invoke_frame("b", "accept", (blob,), {}, seq=3)
    msg = decode(frame)
    assert msg.serializer_id == 1 and msg.flags == F_KEEPSERIALIZED and msg.data == incoming
    # and the answer, which comes in the blob's serializer, is read with that one
    reply = frame_of(MsgType.RESULT, 1, 0, 3, SERPENT.dumps({"ok": [1]}))
    assert session.result(received(session, reply), 3, no_iterator) == {"ok": [1]}


def test_client_never_deserializes_a_forwarded_blob():
    garbage = b"\xff\x00 not any serializer's output"
    for sid in (1, 2, 3, 4):
        blob = SerializedBlob("route", garbage, is_blob=True, serializer_id=sid)
        for name in ("serpent", "json", "marshal", "msgpack"):
            msg = decode(client_ready(name).invoke_frame("b", "accept", (blob,), {}, seq=1)[1])
            assert (msg.serializer_id, msg.data, msg.flags) == (sid, garbage, F_KEEPSERIALIZED)


def test_client_blob_among_other_arguments_is_a_normal_call():
    session = client_ready()
    blob = SerializedBlob("info", {"k": 1})
    for args, kwargs in (((blob, 2), {}), ((blob,), {"x": 1})):
        _, frame = session.invoke_frame("b", "accept", args, kwargs)
        msg = decode(frame)
        assert not msg.flags & F_KEEPSERIALIZED and BLOB_ANNOTATION not in msg.annotations


@pytest.mark.parametrize("name", ["B", "H"])
def test_client_rejects_a_result_before_the_handshake_and_a_connectok_after(name):
    session = ClientSession(SERPENT)
    with pytest.raises(ProtocolError, match=r"invalid msg type 5 received \(expected: 2, 3\)"):
        session.decoder.feed(VECTORS["D"])
    session = ClientSession(SERPENT)
    session.handshake(received(session, VECTORS[name]), LOCATION)
    with pytest.raises(ProtocolError, match=r"invalid msg type 2 received \(expected: 5\)"):
        session.decoder.feed(VECTORS[name])
    session = client_ready()
    with pytest.raises(ProtocolError, match=r"invalid msg type 6 received \(expected: 5\)"):
        session.decoder.feed(VECTORS["L"])


def test_a_whole_conversation_in_bytes():
    """CONNECT, CONNECTOK, INVOKE, RESULT and PING between the two roles, bytes only."""
    client = ClientSession(SERPENT)
    server = ServerSession()
    server.feed(client.connect_frame("hello", "calc"))
    connect = server.next_message()
    request = SERPENT.loads(connect.data)
    ok = server.accept(connect, SERPENT.dumps({"handshake": request["handshake"],
                                               "meta": {"methods": {"add"}, "oneway": (), "attrs": ()}}), {}, False)
    answer = client.handshake(received(client, encode(ok)), LOCATION)
    assert answer.response == "hello" and answer.extended  # both sides are Ember
    seq, frame = client.invoke_frame(request["object"], "add", (1, 2), {})
    client.pending[seq] = "call"
    server.feed(frame)
    call = server.next_message()
    obj, method, args, kwargs = serializers.get(1, server.extended).loads_call(call.data)
    assert (obj, method, args, kwargs) == ("calc", "add", (1, 2), {})
    reply = Message(MsgType.RESULT, call.serializer_id, F_CORR_ID, call.seq, SERPENT.dumps(sum(args)), {},
                    uuid.uuid4())
    assert client.result(received(client, encode(reply)), seq, no_iterator) == 3
    assert client.next_seq() == seq + 1
