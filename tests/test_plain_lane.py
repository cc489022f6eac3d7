"""The plain lane (ember.protocol.plain, ember.server.plain_call): the common small call is
framed, parsed and answered without the general machinery. It must be taken for plain
calls, and behave exactly like the general path for everything a call can do."""

import asyncio
import socket
import threading

import Pyro5.api
import pytest

import ember
from ember import current_context
from ember.protocol import HEADER_SIZE, T_INVOKE, T_RESULT, Decoder, decode, encode
from ember.protocol.plain import PLAIN_MAX, plain_frame, plain_header
from ember.server.drivers import multiplex, threadpool


@ember.expose
class Service:
    def __init__(self):
        self.seen = []

    def add(self, a, b):
        return a + b

    def context(self):
        ctx = current_context
        return [ctx.seq, ctx.msg_flags, ctx.serializer_id, dict(ctx.annotations), ctx.correlation_id is None,
                list(ctx.client_sock_addr)[:1]]

    def annotate_replace(self):
        current_context.response_annotations = {"RESP": b"replaced"}
        return 1

    def annotate_mutate(self):
        current_context.response_annotations["RESP"] = b"mutated"
        return 2

    def fail(self, text):
        raise ValueError(text)

    def exit(self):
        raise SystemExit(3)

    def items(self, n):
        return (i * i for i in range(n))

    async def later(self, x):
        await asyncio.sleep(0)
        return x * 2

    def big(self, n):
        return b"x" * n

    def thing(self):
        return threading.Lock()  # msgpack cannot serialize it


@pytest.fixture
def lane(monkeypatch):
    """Counts the replies the plain lane produced (the drivers that have one)."""
    taken = []
    original = threadpool.answer_plain

    def counting(*args):
        frame = original(*args)
        if frame is not None:
            taken.append(frame)
        return frame

    monkeypatch.setattr(threadpool, "answer_plain", counting)
    monkeypatch.setattr(multiplex, "answer_plain", counting)
    return taken


@pytest.fixture
def served(make_daemon, servertype, lane):
    daemon = make_daemon(servertype=servertype)
    uri = daemon.register(Service(), "svc")
    with ember.Proxy(uri) as proxy:
        yield daemon, proxy, servertype


def test_plain_calls_take_the_lane(served, lane):
    _, proxy, servertype = served
    assert [proxy.add(i, 1) for i in range(50)] == [i + 1 for i in range(50)]
    if servertype == "asyncio":
        assert not lane  # the asyncio daemon has no plain lane: everything goes the general way
    else:
        assert len(lane) >= 49  # the first call resolves the method the general way


def test_call_context_is_filled(served):
    _, proxy, _ = served
    first = proxy.context()
    second = proxy.context()
    assert second[0] == (first[0] + 1) & 0xFFFF
    assert first[1:] == [0, 4, {}, True, ["127.0.0.1"]]
    assert second[1:] == first[1:]


@pytest.mark.parametrize("method,value,text", [("annotate_replace", 1, b"replaced"), ("annotate_mutate", 2, b"mutated")])
def test_response_annotations_reach_the_caller(served, method, value, text):
    _, proxy, _ = served
    ctx = ember.current_context
    for _ in range(3):
        ctx.response_annotations = {}
        assert getattr(proxy, method)() == value
        assert ctx.response_annotations.get("RESP") == text


def test_exceptions_are_answered_and_the_connection_stays(served, lane):
    _, proxy, _ = served
    assert proxy.add(1, 2) == 3
    for text in ("first", "second"):
        with pytest.raises(ValueError, match=text) as info:
            proxy.fail(text)
        assert "raise ValueError(text)" in "".join(info.value._pyroTraceback)
    with pytest.raises(ember.errors.DaemonError, match="SystemExit"):
        proxy.exit()
    assert proxy.add(2, 2) == 4


def test_results_the_plain_lane_hands_over(served):
    _, proxy, _ = served
    for _ in range(2):
        assert list(proxy.items(4)) == [0, 1, 4, 9]
        assert proxy.later(21) == 42
        assert proxy.big(PLAIN_MAX * 2) == b"x" * (PLAIN_MAX * 2)
        with pytest.raises(ember.errors.SerializeError):
            proxy.thing()
    assert proxy.add(1, 1) == 2


def test_statistics_still_see_every_call(make_daemon, servertype, lane):
    daemon = make_daemon(servertype=servertype, statistics=True)
    uri = daemon.register(Service(), "svc")
    with ember.Proxy(uri) as proxy:
        for _ in range(20):
            proxy.add(1, 1)
    assert not lane  # statistics on: every call goes the general way, which counts it
    stats = daemon.statistics()
    assert stats["calls"] == 20 and stats["methods"]["svc.add"]["calls"] == 20


def test_pyro5_client_takes_the_lane(make_daemon, lane):
    daemon = make_daemon(servertype="thread")
    uri = daemon.register(Service(), "svc")
    ctx = Pyro5.api.current_context  # plain calls: nothing in the caller's context to send along
    ctx.annotations, ctx.correlation_id = {}, None
    with Pyro5.api.Proxy(str(uri)) as proxy:
        assert [proxy.add(i, i) for i in range(20)] == [2 * i for i in range(20)]
        with pytest.raises(ValueError, match="from pyro5"):
            proxy.fail("from pyro5")
        assert proxy.add(1, 1) == 2
    assert len(lane) >= 19


# ---- the frame functions ------------------------------------------------------------------


def test_plain_frame_decodes_as_the_general_encoder_writes_it():
    frame = plain_frame(T_RESULT, 4, 70000, b"payload", 0)
    msg = decode(frame)
    assert (msg.type, msg.serializer_id, msg.flags, msg.seq, msg.data, msg.annotations, msg.correlation_id) == \
        (T_RESULT, 4, 0, 70000 & 0xFFFF, b"payload", {}, None)
    assert frame == encode(msg)


def test_plain_header_accepts_only_what_the_decoder_would_take_as_plain():
    dec = Decoder(max_message_size=100, allowed_types={T_RESULT})
    good = plain_frame(T_RESULT, 4, 9, b"abc")
    assert plain_header(dec, good, T_RESULT) == (4, 9)
    assert plain_header(dec, good[:-1], T_RESULT) is None  # incomplete
    assert plain_header(dec, good + good, T_RESULT) is None  # two messages in one chunk
    assert plain_header(dec, good, T_INVOKE) is None  # another type
    assert plain_header(dec, plain_frame(T_RESULT, 4, 9, b"abc", 0x04), T_RESULT) is None  # flags
    assert plain_header(dec, b"PYRX" + good[4:], T_RESULT) is None  # bad tag
    assert plain_header(dec, good[:-len(b"abc") - 2] + b"\x00\x00abc", T_RESULT) is None  # bad magic
    assert plain_header(dec, plain_frame(T_RESULT, 4, 9, b"y" * 101), T_RESULT) is None  # over the size limit
    dec.allowed_types = {T_INVOKE}
    assert plain_header(dec, good, T_RESULT) is None  # not allowed in the decoder's state
    assert len(good) == HEADER_SIZE + 3


def test_a_reply_for_another_call_is_still_refused(make_daemon):
    """A plain RESULT with the wrong sequence number takes the general path, which refuses it."""
    daemon = make_daemon(servertype="thread")
    uri = daemon.register(Service(), "svc")
    proxy = ember.Proxy(uri)
    try:
        assert proxy.add(1, 1) == 2
        real_sock = proxy._sock
        # a fake peer: answers the next call with a plain RESULT for another sequence number
        a, b = socket.socketpair()
        proxy.__dict__["_sock"] = a
        ser = proxy._session.serializer

        def answer():
            b.recv(65536)
            b.sendall(plain_frame(T_RESULT, proxy._session.serializer_id, 4242, ser.dumps(99)))

        t = threading.Thread(target=answer)
        t.start()
        with pytest.raises(ember.errors.ProtocolError, match="sequence number"):
            proxy.add(2, 2)
        t.join()
        b.close()
        real_sock.close()
    finally:
        proxy._release()
