"""Big bytes values received straight into their own objects (ember.serializers.direct):
the values arrive intact whatever the chunking, the objects are the ones the socket wrote
into, and ranges a peer lists that do not fit are refused."""

import asyncio
import os
import random
import socket
import struct

import numpy as np
import pytest

import ember
from ember import serializers
from ember.errors import ProtocolError, SerializeError
from ember.protocol import OOB_ANNOTATION, Decoder, Message, MsgType, encode, parse_annotations
from ember.serializers import direct
from ember.serializers.direct import DIRECT_ANNOTATION, DIRECT_MIN
from ember.serializers.oob import payload_of

from .services import read_reply

OOB = serializers.get("msgpack", extended=serializers.OOB)
MIB = 1 << 20


def _frame(value):
    frame = encode(Message(MsgType.RESULT, OOB.serializer_id, 0, 1, OOB.dumps(value)), parts=True)
    return b"".join(bytes(p) for p in frame) if type(frame) is list else frame


def _receive(frame, chunks, use_targets):
    """Decode ``frame`` as a connection does: fed in chunks, or received into recv_target()."""
    dec = Decoder()
    pos = 0
    msg = None
    while msg is None:
        target = dec.recv_target() if use_targets else None
        if target is not None:
            n = min(target.nbytes, next(chunks), len(frame) - pos)
            target[:n] = frame[pos : pos + n]
            dec.received(n)
        else:
            n = min(next(chunks), len(frame) - pos)
            dec.feed(frame[pos : pos + n])
        pos += n
        msg = dec.next_message()
    assert pos == len(frame)
    return msg


def _sizes(seed):
    rng = random.Random(seed)
    while True:
        yield rng.choice([1, 7, 40, 4096, 65536, 300000, 2 * MIB])


@pytest.mark.parametrize("use_targets", [True, False], ids=["recv_into", "feed"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_values_arrive_intact_and_without_a_copy(use_targets, seed):
    big = [os.urandom(n) for n in (DIRECT_MIN, 300000, 3 * MIB)]
    arr = np.arange(100000, dtype=np.float64)
    value = {"big": big, "arr": arr, "view": memoryview(os.urandom(200000)), "small": b"s" * 100}
    msg = _receive(_frame(value), _sizes(seed), use_targets)
    assert DIRECT_ANNOTATION in msg.annotations and msg.direct is not None
    back = OOB.loads(payload_of(msg))
    assert back["big"] == big and back["small"] == value["small"] and np.array_equal(back["arr"], arr)
    assert bytes(back["view"]) == bytes(value["view"])
    # the bytes values are the objects the payload was received into
    assert all(any(b is obj for obj in msg.direct.objects) for b in back["big"])


def test_small_bytes_and_other_kinds_are_not_listed():
    value = [b"x" * (DIRECT_MIN - 1), bytearray(300000), memoryview(b"m" * 300000), np.zeros(50000)]
    frame = _frame(value)
    msg = _receive(frame, _sizes(4), True)
    assert DIRECT_ANNOTATION not in msg.annotations and msg.direct is None
    back = OOB.loads(payload_of(msg))
    assert back[0] == value[0] and back[1] == value[1] and type(back[1]) is bytearray


def test_without_direct_receiving_values_are_copied(monkeypatch):
    monkeypatch.setattr(direct, "AVAILABLE", False)
    big = os.urandom(MIB)
    msg = _receive(_frame([big]), _sizes(5), True)
    assert msg.direct is None and OOB.loads(payload_of(msg)) == [big]


def _with_ranges(value, ranges):
    """A frame for ``value`` whose EBYT annotation lists ``ranges`` instead of the real ones."""
    payload = OOB.dumps(value)
    payload.direct = struct.pack(f"!{2 * len(ranges)}Q", *(x for r in ranges for x in r)) if ranges else b"\x00"
    return _frame_of(payload)


def _frame_of(payload):
    frame = encode(Message(MsgType.RESULT, OOB.serializer_id, 0, 1, payload), parts=True)
    return b"".join(bytes(p) for p in frame)


def _ranges_of(value):
    msg = _receive(_frame(value), _sizes(6), True)
    raw = msg.annotations[DIRECT_ANNOTATION]
    return [struct.unpack_from("!QQ", raw, i) for i in range(0, len(raw), 16)]


@pytest.mark.parametrize("bad", ["odd-length", "before-structure", "past-the-end", "too-small", "overlapping",
                                 "unsorted"])
def test_ranges_that_do_not_fit_are_refused(bad):
    value = [os.urandom(300000), os.urandom(300000)]
    (s1, n1), (s2, n2) = _ranges_of(value)
    ranges = {
        "before-structure": [(0, n1)],
        "past-the-end": [(s2, n2 + 1)],
        "too-small": [(s1, DIRECT_MIN - 1)],
        "overlapping": [(s1, n1), (s1 + 10, n2)],
        "unsorted": [(s2, n2), (s1, n1)],
        "odd-length": [],
    }[bad]
    frame = _with_ranges(value, ranges)
    with pytest.raises(ProtocolError, match=DIRECT_ANNOTATION):
        _receive(frame, _sizes(7), True)


def test_a_range_over_another_kind_of_value_is_refused():
    value = [os.urandom(300000), np.zeros(40000)]
    ((s1, n1),) = _ranges_of(value)
    arr_start = s1 + n1 + (-(s1 + n1) % 64)
    frame = _with_ranges(value, [(s1, n1), (arr_start, 40000 * 8)])
    msg = _receive(frame, _sizes(8), True)
    with pytest.raises(SerializeError, match="does not match"):
        OOB.loads(payload_of(msg))


# ---- over sockets ------------------------------------------------------------------------


@ember.expose
class Echo:
    def echo(self, x):
        return x

    def kinds(self, *values):
        return [type(v).__name__ for v in values]


@pytest.mark.timeout(60)
def test_proxies_against_every_server_type(ember_daemon, ember_servertypes):
    uri = ember_daemon(servertype=ember_servertypes).register(Echo(), "echo")
    values = [os.urandom(n) for n in (300000, MIB + 5, 16 * MIB)]
    with ember.config.override(SHM_THRESHOLD=0):  # over TCP, not shared memory
        proxy = ember.Proxy(uri)
        proxy._bind()
    with proxy:
        assert proxy._session.shm is None
        for value in values:
            back = proxy.echo(value)
            assert type(back) is bytes and back == value
        assert proxy.echo(values) == values
        assert proxy.kinds(values[1], bytearray(values[0]), memoryview(values[0])) == ["bytes", "bytearray",
                                                                                        "memoryview"]

    async def main():
        with ember.config.override(SHM_THRESHOLD=0):
            async with ember.AsyncProxy(uri) as p:
                return await asyncio.gather(*(p.echo(v) for v in values))

    assert asyncio.run(main()) == values


def test_daemon_refuses_ranges_that_do_not_fit_and_serves_others(ember_daemon):
    daemon = ember_daemon(servertype="thread")
    uri = daemon.register(Echo(), "echo")
    with socket.create_connection((daemon.host, daemon.port), timeout=10) as s:
        connect = Message(MsgType.CONNECT, OOB.serializer_id, 0, 0, OOB.dumps({"handshake": None, "object": "echo"}),
                          {"EMBR": b"1", "EOOB": b"1"})
        s.sendall(encode(connect))
        assert read_reply(s).type == MsgType.CONNECTOK
        payload = OOB.dumps_call("echo", "echo", (os.urandom(300000),), None)
        payload.direct = struct.pack("!QQ", 0, 300000)  # starts inside the structure
        s.sendall(b"".join(bytes(p) for p in encode(Message(MsgType.INVOKE, OOB.serializer_id, 0, 1, payload),
                                                    parts=True)))
        reply = read_reply(s)
        assert reply is None or reply.flags & 0x01  # told (or closed), never served
        assert s.recv(1) == b""  # and the connection is closed
    with ember.Proxy(uri) as p:
        assert p.echo(b"still serving") == b"still serving"


def test_frames_carry_the_annotation_only_between_ember_peers_with_out_of_band_buffers():
    plain = serializers.get("msgpack")
    frame = encode(Message(MsgType.RESULT, plain.serializer_id, 0, 1, plain.dumps(os.urandom(300000))), parts=True)
    head = frame[0] if type(frame) is list else frame
    alen = struct.unpack_from("!I", head, 16)[0]
    assert DIRECT_ANNOTATION not in parse_annotations(head[40 : 40 + alen])
    assert OOB_ANNOTATION not in parse_annotations(head[40 : 40 + alen])
