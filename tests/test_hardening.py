"""Issue 13: no single client can stall, exhaust or read more than it should from a daemon.

Each test attacks a real daemon over a socket on loopback, on every server type.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import pytest

import ember
from ember import errors, serializers
from ember.protocol import HEADER_SIZE, MAGIC, PROTOCOL_VERSION, Message, MsgType, encode

from .services import Calc, read_reply, wait_for

_HEADER = struct.Struct("!4sHBBHHII16sHH")


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _header(mtype: int, ser: int, seq: int, dlen: int, alen: int = 0) -> bytes:
    return _HEADER.pack(b"PYRO", PROTOCOL_VERSION, mtype, ser, 0, seq, dlen, alen, bytes(16), 0, MAGIC)


def _connect_raw(daemon, ser_name: str = "msgpack") -> socket.socket:
    s = socket.create_connection((daemon.host, daemon.port), timeout=10)
    ser = serializers.get(ser_name)
    s.sendall(encode(Message(MsgType.CONNECT, ser.serializer_id, 0, 0, ser.dumps({"handshake": None, "object": "calc"}))))
    reply = read_reply(s, tolerate_reset=True)
    assert reply is not None and reply.type == MsgType.CONNECTOK
    return s


@pytest.fixture
def served(make_daemon, servertype):
    cfg = ember.config.copy()
    cfg.MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024
    cfg.SHM_THRESHOLD = 0  # every payload through the socket: this is about the daemon's receive buffers
    daemon = make_daemon(servertype=servertype, config=cfg)
    uri = daemon.register(Calc(), "calc")
    good = ember.Proxy(uri)
    assert good.add(1, 1) == 2
    yield daemon, uri, good
    good._release()


# ---- item 2: a declared size costs nothing until its bytes arrive ----------------------------

def test_declared_huge_body_allocates_nothing(served):
    daemon, _, good = served
    cfg_limit = 1 << 30
    daemon.server.budget.limit = 4 * cfg_limit  # let both declarations in: only memory is measured here
    before = _rss_kb()
    socks = []
    for _ in range(2):
        s = _connect_raw(daemon)
        s.sendall(_header(MsgType.INVOKE, 4, 1, cfg_limit - 100) + b"\x94")  # 1 GiB declared, one byte sent
        socks.append(s)
    assert wait_for(lambda: daemon.server.budget.in_flight >= 2 * (cfg_limit - 100), 10)
    assert good.add(2, 3) == 5  # others are served meanwhile
    grown = _rss_kb() - before
    assert grown < 200 * 1024, f"RSS grew by {grown} kB for two declared 1 GiB messages"
    for s in socks:
        s.close()
    # the buffers and their share of the budget go with the connections
    assert wait_for(lambda: daemon.server.budget.in_flight == 0, 10)


def test_bytes_in_flight_budget_refuses_with_reason(served):
    daemon, uri, good = served
    hog = _connect_raw(daemon)
    hog.sendall(_header(MsgType.INVOKE, 4, 1, 60 * 1024 * 1024) + b"\x94")
    assert wait_for(lambda: daemon.server.budget.in_flight > 0, 10)
    with ember.Proxy(uri) as p:
        with pytest.raises(errors.MessageTooLargeError, match="MAX_BYTES_IN_FLIGHT"):
            p.echo(b"x" * (8 * 1024 * 1024))
    hog.close()
    assert wait_for(lambda: daemon.server.budget.in_flight == 0, 10)
    with ember.Proxy(uri) as p:  # once the hog is gone, the same call goes through
        assert len(p.echo(b"x" * (8 * 1024 * 1024))) == 8 * 1024 * 1024
    assert good.add(1, 2) == 3


def test_peer_dying_mid_transfer_frees_its_buffer(served):
    daemon, uri, good = served
    s = _connect_raw(daemon)
    ser = serializers.get("msgpack")
    payload = ser.dumps_call("calc", "echo", (b"y" * (20 * 1024 * 1024),), {})
    s.sendall(_header(MsgType.INVOKE, ser.serializer_id, 1, len(payload)) + payload[: len(payload) // 2])
    assert wait_for(lambda: daemon.server.budget.in_flight >= len(payload), 10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, as a killed process
    s.close()
    assert wait_for(lambda: daemon.server.budget.in_flight == 0, 10)
    assert good.add(4, 4) == 8


def test_oversized_declaration_refused_before_reading_and_named(served):
    daemon, uri, good = served
    s = _connect_raw(daemon)
    s.sendall(_header(MsgType.INVOKE, 4, 7, (1 << 30) + 1))
    reply = read_reply(s, tolerate_reset=True)
    assert reply is not None and reply.seq == 7
    with pytest.raises(errors.MessageTooLargeError, match="MAX_MESSAGE_SIZE"):
        raise serializers.get("msgpack").loads(reply.data)
    s.close()
    assert good.add(1, 1) == 2
    assert HEADER_SIZE == 40


# ---- item 1: marshal input is checked before marshal allocates for it ----------------------

_MARSHAL_BOMB = b"[\xff\xff\xff\x7f" * 3 + b"N"  # three nested lists each declaring 2**31-1 items


@pytest.mark.timeout(20)
@pytest.mark.parametrize("mtype", [MsgType.CONNECT, MsgType.INVOKE])
def test_marshal_size_bomb_refused_at_once(make_daemon, servertype, mtype):
    cfg = ember.config.copy()
    daemon = make_daemon(servertype=servertype, config=cfg)
    daemon.validate_handshake = lambda conn, data: "secret" if data == "secret" else None  # a token changes nothing
    uri = daemon.register(Calc(), "calc")
    with ember.Proxy(uri) as good:
        assert good.add(1, 1) == 2
        results: list = []

        def attack() -> None:
            if mtype == MsgType.CONNECT:
                s = socket.create_connection((daemon.host, daemon.port), timeout=10)
            else:
                s = _connect_raw(daemon, "marshal")
            with s:
                for seq in range(20):
                    s.sendall(encode(Message(mtype, 2, 0, seq, _MARSHAL_BOMB)))
                    reply = read_reply(s, tolerate_reset=True)
                    results.append(reply)
                    if reply is None or mtype == MsgType.CONNECT:
                        return

        attack()  # 20 bombs: before the check each took ~8 s, past this test's timeout
        # each bomb gets a prompt refusal; the daemon keeps serving the well-behaved client
        assert good.add(2, 2) == 4
        reply = results[0]
        assert reply is not None
        text = str(serializers.get("marshal").loads(reply.data))
        assert "declares 2147483647 items" in text


def test_serializers_accepted_refuses_before_decoding(make_daemon, servertype):
    cfg = ember.config.copy()
    cfg.SERIALIZERS_ACCEPTED = ["msgpack", "json"]
    daemon = make_daemon(servertype=servertype, config=cfg)
    uri = daemon.register(Calc(), "calc")
    s = socket.create_connection((daemon.host, daemon.port), timeout=10)
    with s:
        s.sendall(encode(Message(MsgType.CONNECT, 2, 0, 0, _MARSHAL_BOMB)))
        reply = read_reply(s, tolerate_reset=True)
        assert reply is not None and reply.type == MsgType.CONNECTFAIL
        assert "SERIALIZERS_ACCEPTED" in str(serializers.get("marshal").loads(reply.data))
    with ember.config.override(SERIALIZER="serpent"), ember.Proxy(uri) as p:
        with pytest.raises(errors.CommunicationError, match="SERIALIZERS_ACCEPTED"):
            p.add(1, 2)
    with ember.Proxy(uri) as p:
        assert p.add(1, 2) == 3
    # a connection made in an accepted serializer cannot switch to another one for a call
    s = _connect_raw(daemon, "json")
    with s:
        s.sendall(encode(Message(MsgType.INVOKE, 2, 0, 1, _MARSHAL_BOMB)))
        reply = read_reply(s, tolerate_reset=True)
        assert reply is not None and "SERIALIZERS_ACCEPTED" in str(serializers.get("marshal").loads(reply.data))
        assert read_reply(s, tolerate_reset=True) is None  # and the connection closes


# ---- item 3: oneway calls are bounded per connection, with back-pressure, never dropped ------

class _Gate:
    """Oneway calls that wait at a gate until the test opens it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.started = 0
        self.done = 0

    @ember.expose
    @ember.oneway
    def work(self, n: int, pad: bytes = b"") -> None:
        with self.lock:
            self.started += 1
        self.gate.wait(30)
        with self.lock:
            self.done += 1

    @ember.expose
    def ping(self) -> str:
        return "pong"


@pytest.mark.timeout(120)
def test_oneway_flood_is_bounded_and_nothing_is_dropped(make_daemon, servertype):
    cfg = ember.config.copy()
    cfg.MAX_PENDING_CALLS = 8
    daemon = make_daemon(servertype=servertype, config=cfg)
    gate = _Gate()
    uri = daemon.register(gate, "gate")
    sent = [0]
    flood_done = threading.Event()

    def flood() -> None:
        pad = b"x" * 512  # calls big enough that socket buffers hold only a fraction of them
        with ember.Proxy(uri) as p:
            for i in range(200_000):
                p.work(i, pad)
                sent[0] += 1
        flood_done.set()

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        # the client is held back by TCP once the daemon stops reading: it cannot finish
        assert wait_for(lambda: gate.started >= 8, 10)
        # the socket buffers fill up (oneway calls are small: that takes a while), then the client stalls
        previous = -1
        while sent[0] != previous:
            previous = sent[0]
            time.sleep(0.5)
        assert not flood_done.is_set()
        queued = daemon.server._oneway_pool._work_queue.qsize()
        assert gate.started + queued <= 8, f"{gate.started} running + {queued} queued: more than MAX_PENDING_CALLS"
        with ember.Proxy(uri) as other:  # other connections are served meanwhile
            assert other.ping() == "pong"
    finally:
        gate.gate.set()
    flooder.join(50)
    assert flood_done.is_set()
    assert wait_for(lambda: gate.done == 200_000, 30), f"{gate.done} of 200000 oneway calls ran"


class _SlowGate(_Gate):
    @ember.expose
    def slow(self, seconds: float) -> str:
        time.sleep(seconds)
        return "slow"


def test_asyncio_reader_resumes_as_soon_as_a_slot_is_free(make_daemon):
    """At the limit, a call that ends without leaving pending work frees a slot: the reader must
    read on at once, even while every other slot is held by oneway work that will not end
    before it does (here: until a later message is answered)."""
    cfg = ember.config.copy()
    cfg.MAX_PENDING_CALLS = 8
    daemon = make_daemon(servertype="asyncio", config=cfg)
    gate = _SlowGate()
    uri = daemon.register(gate, "gate")

    async def main() -> str:
        async with ember.AsyncProxy(uri) as p:
            for i in range(7):
                await p.work(i)  # oneway: 7 slots held until the gate opens
            slow = asyncio.ensure_future(p.slow(0.3))  # the 8th slot, freed after 0.3 s
            await asyncio.sleep(0.05)
            try:
                return await asyncio.wait_for(p.ping(), 10)
            finally:
                await slow

    try:
        assert asyncio.run(main()) == "pong"
        assert gate.started == 7 and gate.done == 0
    finally:
        gate.gate.set()
    assert wait_for(lambda: gate.done == 7, 10)


# ---- item 5: handshakes and half-sent messages time out; idle connections cannot starve new ones

def _closed_by_peer(s: socket.socket, within: float = 15.0) -> bool:
    """True when the daemon closes ``s`` (b"" or a reset) before ``within`` seconds pass."""
    s.settimeout(within)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.timeout(40)
@pytest.mark.parametrize("sent", [b"", b"PYRO\x01\xf6\x01\x04"], ids=["silent", "half-header"])
def test_handshake_must_complete_in_time_whatever_commtimeout(make_daemon, servertype, sent):
    cfg = ember.config.copy()
    cfg.COMMTIMEOUT = 0.0
    cfg.HANDSHAKE_TIMEOUT = 1.0
    daemon = make_daemon(servertype=servertype, config=cfg)
    uri = daemon.register(Calc(), "calc")
    with socket.create_connection((daemon.host, daemon.port)) as s:
        if sent:
            s.sendall(sent)
        assert _closed_by_peer(s)
    with ember.Proxy(uri) as p:
        assert p.add(1, 2) == 3


@pytest.mark.timeout(40)
def test_half_sent_message_times_out_on_every_server_type(make_daemon, servertype):
    cfg = ember.config.copy()
    cfg.STALL_TIMEOUT = 1.0
    daemon = make_daemon(servertype=servertype, config=cfg)
    uri = daemon.register(Calc(), "calc")
    s = _connect_raw(daemon)
    with s:
        ser = serializers.get("msgpack")
        payload = ser.dumps_call("calc", "add", (1, 2), {})
        s.sendall(_header(MsgType.INVOKE, ser.serializer_id, 1, len(payload)) + payload[:3])
        assert _closed_by_peer(s)
    with ember.Proxy(uri) as p:
        assert p.add(1, 2) == 3


@pytest.mark.timeout(60)
def test_idle_connections_do_not_starve_the_thread_pool(make_daemon):
    cfg = ember.config.copy()
    cfg.THREADPOOL_SIZE = 4
    cfg.THREADPOOL_SIZE_MIN = 1
    cfg.THREADPOOL_EVICT_IDLE = 0.2
    cfg.HANDSHAKE_TIMEOUT = 60.0  # long: eviction, not the handshake timeout, frees the workers here
    daemon = make_daemon(servertype="thread", config=cfg)
    uri = daemon.register(Calc(), "calc")
    idle_proxies = [ember.Proxy(uri) for _ in range(4)]
    for p in idle_proxies:
        assert p.add(1, 1) == 2
    silent = [socket.create_connection((daemon.host, daemon.port)) for _ in range(20)]  # never say anything
    try:
        time.sleep(0.3)
        for _ in range(3):
            with ember.Proxy(uri) as p:
                assert p.add(2, 3) == 5
        for p in idle_proxies:  # an evicted proxy reconnects on its next call
            assert p.add(1, 1) == 2
    finally:
        for s in silent:
            s.close()
        for p in idle_proxies:
            p._release()


@pytest.mark.timeout(60)
def test_refusing_when_every_worker_is_in_a_call_costs_no_thread(make_daemon):
    cfg = ember.config.copy()
    cfg.THREADPOOL_SIZE = 2
    cfg.THREADPOOL_SIZE_MIN = 2
    daemon = make_daemon(servertype="thread", config=cfg)
    gate = threading.Event()

    class Slow:
        @ember.expose
        def wait(self) -> bool:
            return gate.wait(30)

    uri = daemon.register(Slow(), "slow")
    busy = [threading.Thread(target=lambda: ember.Proxy(uri).wait(), daemon=True) for _ in range(2)]
    for t in busy:
        t.start()
    try:
        assert wait_for(lambda: all(c.in_call for c in daemon.server.pool.busy) and len(daemon.server.pool.busy) == 2, 10)
        threads_before = threading.active_count()
        for _ in range(30):
            with pytest.raises(errors.ConnectionDeniedError, match="no free workers") as info:
                ember.Proxy(uri).wait()
            assert info.value.code == errors.DENY_BUSY
        assert threading.active_count() <= threads_before
    finally:
        gate.set()
        for t in busy:
            t.join(10)


@pytest.mark.timeout(60)
def test_large_messages_of_changing_sizes_arrive_intact(make_daemon, servertype):
    """Receive buffers are reused from one large message to the next: sizes going up and down
    (and oneway calls in between) must never hand a message a buffer it does not fit in."""
    daemon = make_daemon(servertype=servertype)

    class Sink:
        @ember.expose
        def echo(self, x: bytes) -> bytes:
            return x

        @ember.expose
        @ember.oneway
        def drop(self, x: bytes) -> None:
            pass

    uri = daemon.register(Sink(), "sink")
    sizes = [300_000, 1_500_000, 1_100_000, 3_000_000, 700_000, 2_000_000, 2_000_001, 1_200_000]
    with ember.Proxy(uri) as p:
        for i in range(3 * len(sizes)):
            data = bytes([i % 251]) * sizes[i % len(sizes)]
            if i % 3 == 0:
                p.drop(data)
            assert p.echo(data) == data


@pytest.mark.timeout(60)
def test_client_that_never_reads_its_replies_stalls_nobody(make_daemon, servertype):
    cfg = ember.config.copy()
    cfg.STALL_TIMEOUT = 1.0
    daemon = make_daemon(servertype=servertype, config=cfg)
    uri = daemon.register(Calc(), "calc")
    s = _connect_raw(daemon)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ser = serializers.get("msgpack")
    payload = ser.dumps_call("calc", "echo", (b"z" * (2 * 1024 * 1024),), {})
    with s:
        sender = threading.Thread(target=_send_calls, args=(s, ser, payload), daemon=True)
        sender.start()  # 16 MiB of replies it will never read (its sends block once the daemon's do)
        with ember.Proxy(uri) as other:
            for _ in range(5):
                assert other.add(1, 2) == 3
        # the daemon gives up on it after STALL_TIMEOUT without progress
        def gone() -> bool:
            return daemon.server.budget.in_flight == 0 and _closed_by_peer(s, 0.2)
        assert wait_for(gone, 20)
        sender.join(10)


def _send_calls(s: socket.socket, ser, payload: bytes) -> None:
    try:
        for seq in range(1, 9):
            s.sendall(encode(Message(MsgType.INVOKE, ser.serializer_id, 0, seq, payload)))
    except OSError:
        pass  # the daemon gave up on this client (STALL_TIMEOUT) while it was still sending


# ---- streams: one connection cannot pile up open iterators -----------------------------------

def test_open_item_streams_per_connection_are_bounded(make_daemon, servertype):
    cfg = ember.config.copy()
    cfg.ITER_STREAM_MAX = 5

    class Gen:
        @ember.expose
        def numbers(self):
            yield from range(3)

    daemon = make_daemon(servertype=servertype, config=cfg)
    uri = daemon.register(Gen(), "gen")
    with ember.Proxy(uri) as p:
        open_ones = [p.numbers() for _ in range(5)]
        with pytest.raises(errors.DaemonError, match="ITER_STREAM_MAX"):
            p.numbers()
        assert list(open_ones[0]) == [0, 1, 2]  # a stream iterated to its end frees its place
        assert list(p.numbers()) == [0, 1, 2]
        with ember.Proxy(uri) as other:  # the limit is per connection
            assert list(other.numbers()) == [0, 1, 2]


_SELF_TUPLE = b"\xa9\x01{r\x00\x00\x00\x00N0"  # a tuple holding a dict keyed by the tuple itself, still half read


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["connect", "blob-annotation"])
def test_marshal_back_reference_to_an_open_tuple_cannot_crash_the_daemon(servertype, where):
    """CPython's marshal.loads crashes (SIGSEGV) on a back-reference to a tuple it is still
    reading; the daemon must refuse such data before marshal sees it. The daemon runs in a
    process of its own, so a regression fails this test instead of killing the test run."""
    import subprocess
    import sys

    code = ("import ember, sys; d = ember.Daemon(servertype=sys.argv[1]); "
            "d.register(ember.expose(type('X', (), {'ping': lambda self: 1})), 'x'); "
            "print(d.port, flush=True); d.request_loop()")
    proc = subprocess.Popen([sys.executable, "-c", code, servertype], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            if where == "connect":
                s.sendall(encode(Message(MsgType.CONNECT, 2, 0, 0, _SELF_TUPLE)))
            else:
                mp = serializers.get("msgpack")
                s.sendall(encode(Message(MsgType.CONNECT, 4, 0, 0, mp.dumps({"handshake": None, "object": "x"}))))
                assert read_reply(s, tolerate_reset=True).type == MsgType.CONNECTOK
                s.sendall(encode(Message(MsgType.INVOKE, 4, 0x20, 1, mp.dumps_call("x", "ping", [], {}),
                                         {"BLBI": _SELF_TUPLE})))
            reply = read_reply(s, tolerate_reset=True)
            assert reply is not None, "no answer"
            assert "still being read" in str(serializers.by_id(reply.serializer_id).loads(reply.data))
        assert proc.poll() is None, f"the daemon died (exit code {proc.returncode})"
        uri = f"PYRO:x@127.0.0.1:{port}"
        with ember.Proxy(uri) as p:
            assert p.ping() == 1
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("payload, serializer", [
    (b"# serpent utf-8 python3.2\n{'__class__':'Pyro5.core.URI'}", "serpent"),
    (b'{"__class__": "Pyro5.core.URI", "state": 5}', "json"),
])
def test_malformed_class_dicts_are_serialize_errors(payload, serializer):
    with pytest.raises(errors.SerializeError, match="invalid data for class Pyro5.core.URI"):
        serializers.get(serializer).loads(payload)


def test_marshal_values_sharing_their_parts_cost_linear_time(make_daemon, servertype):
    """40 levels of lists, each holding the level below twice by back-reference: 400 bytes of
    marshal standing for 2**40 leaves. Decoding, raising it in an exception and answering
    must touch each distinct part once (it took the daemon past every timeout before)."""
    import marshal

    daemon = make_daemon(servertype=servertype)

    class Thrower:
        @ember.expose
        def fail(self, value):
            raise ValueError(value)

    uri = daemon.register(Thrower(), "thrower")
    value: list = [1]
    for _ in range(40):
        value = [value, value]
    with ember.config.override(SERIALIZER="marshal"), ember.Proxy(uri) as p:
        p._timeout = 10
        with pytest.raises(ValueError) as info:
            p.fail(value)
        assert len(marshal.dumps(info.value.args[0])) < 2000  # the parts are still shared
        assert "[[[[" in "".join(ember.errors.remote_traceback(info.value) or "")
