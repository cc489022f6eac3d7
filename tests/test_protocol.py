"""The sans-I/O wire layer against Pyro5's byte captures, plus properties."""

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember import protocol, serializers
from ember.errors import MessageTooLargeError, ProtocolError
from ember.protocol import Decoder, Message, MsgType, decode, encode

from .vectors import VECTORS

EXPECTED = {
    # name: (type, serializer, flags, seq, data length, annotations)
    "A": (MsgType.CONNECT, 1, 0, 0, 63, {}),
    "B": (MsgType.CONNECTOK, 1, 0x40, 0, 108, {}),
    "C": (MsgType.INVOKE, 1, 0, 1, 49, {}),
    "D": (MsgType.RESULT, 1, 0x40, 1, 27, {}),
    "E": (MsgType.INVOKE, 1, 0x04, 2, 51, {}),
    "F": (MsgType.CONNECT, 4, 0, 0, 29, {}),
    "G": (MsgType.INVOKE, 4, 0, 1, 14, {}),
    "H": (MsgType.CONNECTOK, 4, 0x40, 0, 59, {}),
    "I": (MsgType.RESULT, 4, 0x40, 1, 1, {}),
    "J": (MsgType.INVOKE, 1, 0, 1, 55, {"ABCD": b"xyz"}),
    "K": (MsgType.PING, 42, 0, 0, 4, {}),
    "L": (MsgType.PING, 42, 0x40, 0, 4, {}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_capture_decodes_and_reencodes_identically(name):
    frame = VECTORS[name]
    msg = decode(frame)
    mtype, ser, flags, seq, dlen, ann = EXPECTED[name]
    assert (msg.type, msg.serializer_id, msg.flags, msg.seq, len(msg.data), msg.annotations) == (
        mtype, ser, flags, seq, dlen, ann,
    )
    if flags & 0x40:
        assert msg.correlation_id == uuid.UUID(bytes=frame[0x14:0x24])
    else:
        assert msg.correlation_id is None
    assert encode(msg) == frame


def test_capture_payloads_deserialize():
    s = serializers.get("serpent")
    assert s.loads_call(decode(VECTORS["C"]).data) == ("calc", "add", (1, 2), {})
    assert s.loads(decode(VECTORS["D"]).data) == 3
    assert s.loads(decode(VECTORS["A"]).data) == {"handshake": "hello", "object": "calc"}
    meta = s.loads(decode(VECTORS["B"]).data)["meta"]
    assert set(meta["methods"]) == {"add", "log"} and set(meta["oneway"]) == {"log"} and not meta["attrs"]
    m = serializers.get("msgpack")
    assert m.loads_call(decode(VECTORS["G"]).data) == ("calc", "add", [1, 2], {})
    assert m.loads(decode(VECTORS["I"]).data) == 3
    assert decode(VECTORS["K"]).data == b"ping" and decode(VECTORS["L"]).data == b"pong"


def test_our_encoding_of_the_capture_calls_is_byte_identical():
    s = serializers.get("serpent")
    msg = Message(MsgType.INVOKE, 1, 0, 1, s.dumps_call("calc", "add", (1, 2), {}))
    assert encode(msg) == VECTORS["C"]
    m = serializers.get("msgpack")
    msg = Message(MsgType.INVOKE, 4, 0, 1, m.dumps_call("calc", "add", (1, 2), {}))
    assert encode(msg) == VECTORS["G"]
    conn = Message(MsgType.CONNECT, 4, 0, 0, m.dumps({"handshake": "hello", "object": "calc"}))
    assert encode(conn) == VECTORS["F"]


def test_stream_start_header_prefix():
    dec = Decoder()
    dec.feed(VECTORS["M"])  # only the first 96 of 252 bytes
    assert dec.next_message() is None
    assert dec.bytes_needed() == 252 - 96


def test_byte_by_byte_feeding():
    dec = Decoder()
    stream = VECTORS["C"] + VECTORS["E"] + VECTORS["J"]
    got = []
    for i in range(len(stream)):
        dec.feed(stream[i : i + 1])
        got.extend(dec.messages())
    assert [m.seq for m in got] == [1, 2, 1]
    assert got[2].annotations == {"ABCD": b"xyz"}


@pytest.mark.parametrize(
    "mutate, text",
    [
        (lambda b: b"XYRO" + b[4:], "bad tag"),
        (lambda b: b[:4] + b"\x01\xf5" + b[6:], "invalid protocol version: 501"),
        (lambda b: b[:4] + b"\x00\x30" + b[6:], "invalid protocol version: 48"),
        (lambda b: b[:0x26] + b"\x00\x00" + b[0x28:], "magic"),
        (lambda b: b[:6] + b"\x09" + b[7:], "message type 9"),
    ],
)
def test_malformed_headers(mutate, text):
    with pytest.raises(ProtocolError, match=text):
        decode(mutate(VECTORS["C"]))


def test_early_rejection_after_six_bytes():
    dec = Decoder()
    with pytest.raises(ProtocolError, match="version: 48"):
        dec.feed(b"PYRO\x00\x30")
    with pytest.raises(ProtocolError):  # a broken decoder stays broken
        dec.feed(VECTORS["C"])


def test_oversized_rejected_from_header_alone():
    header = bytearray(VECTORS["C"][:40])
    header[0x0C:0x10] = (2**32 - 1).to_bytes(4, "big")
    dec = Decoder(max_message_size=1000)
    with pytest.raises(MessageTooLargeError, match="exceeds MAX_MESSAGE_SIZE"):
        dec.feed(bytes(header))
    assert dec.buffered == 40  # nothing allocated for the claimed body


def test_annotation_overrun():
    frame = bytearray(VECTORS["J"])
    frame[0x2C:0x30] = (200).to_bytes(4, "big")  # chunk claims more than the block holds
    with pytest.raises(ProtocolError, match="claims 200 bytes"):
        decode(bytes(frame))


def test_annotation_block_not_consumed_exactly():
    frame = bytearray(VECTORS["J"])
    frame[0x10:0x14] = (12).to_bytes(4, "big")
    frame[0x0C:0x10] = (54).to_bytes(4, "big")
    with pytest.raises(ProtocolError, match="trailing bytes"):
        decode(bytes(frame))


def test_allowed_types():
    dec = Decoder(allowed_types={MsgType.CONNECT})
    with pytest.raises(ProtocolError, match=r"invalid msg type 4 received \(expected: 1\)"):
        dec.feed(VECTORS["C"])


def test_compression_roundtrip_and_only_when_smaller():
    data = b"x" * 1000
    frame = encode(Message(MsgType.RESULT, 4, 0, 7, data), compress=True)
    assert len(frame) < 200 and frame[9] & 0x02
    msg = decode(frame)
    assert msg.data == data and not msg.flags & 0x02
    random_data = bytes(range(256)) * 1
    frame = encode(Message(MsgType.RESULT, 4, 0, 7, random_data), compress=True)
    assert not frame[9] & 0x02


def test_decompression_bomb_bounded():
    import zlib

    bomb = zlib.compress(b"\0" * 10_000_000)
    frame = encode(Message(MsgType.RESULT, 4, protocol.F_COMPRESSED, 1, b""))
    frame = frame[:9] + bytes([0x02]) + frame[10:12] + len(bomb).to_bytes(4, "big") + frame[16:] + bomb
    with pytest.raises(MessageTooLargeError, match="decompressed"):
        decode(frame, max_message_size=100_000)


def test_send_side_size_limit():
    with pytest.raises(MessageTooLargeError):
        encode(Message(MsgType.INVOKE, 4, 0, 1, b"x" * 101), max_message_size=100)


def test_bad_annotation_keys():
    with pytest.raises(ProtocolError, match="4 characters"):
        encode(Message(MsgType.INVOKE, 4, 0, 1, b"", {"TOOLONG": b""}))
    with pytest.raises(ProtocolError, match="must be bytes"):
        encode(Message(MsgType.INVOKE, 4, 0, 1, b"", {"ABCD": "text"}))


annotation_keys = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=4)
messages = st.builds(
    Message,
    type=st.sampled_from(list(MsgType)),
    serializer_id=st.integers(0, 255),
    flags=st.integers(0, 0xFFFF).map(lambda f: f & ~(0x02 | 0x40)),
    seq=st.integers(0, 0xFFFF),
    data=st.binary(max_size=300),
    annotations=st.dictionaries(annotation_keys, st.binary(max_size=40), max_size=4),
    correlation_id=st.none() | st.uuids(),
)


@settings(max_examples=300, deadline=None)
@given(messages, st.booleans())
def test_random_messages_roundtrip(msg, compress):
    frame = encode(msg, compress=compress)
    got = decode(frame)
    expected_flags = msg.flags | (0x40 if msg.correlation_id else 0)
    assert (got.type, got.serializer_id, got.flags, got.seq, got.data, got.annotations, got.correlation_id) == (
        msg.type, msg.serializer_id, expected_flags, msg.seq, msg.data, msg.annotations, msg.correlation_id,
    )


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200) | st.sampled_from(list(VECTORS.values())).flatmap(
    lambda v: st.tuples(st.integers(0, len(v)), st.binary(max_size=8)).map(lambda t: v[: t[0]] + t[1] + v[t[0] + 8 :])
))
def test_garbage_yields_messages_or_protocol_error(blob):
    dec = Decoder(max_message_size=4096)
    try:
        dec.feed(blob)
        while dec.next_message() is not None:
            pass
    except ProtocolError:
        pass
    assert dec.buffered <= len(blob)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(VECTORS.values())), st.data())
def test_truncated_captures_never_complete(frame, data):
    cut = data.draw(st.integers(0, len(frame) - 1))
    dec = Decoder()
    dec.feed(frame[:cut])
    assert dec.next_message() is None
    dec.feed(frame[cut:])
    if len(frame) != 96:  # M is itself a truncated capture
        assert dec.next_message() is not None


@pytest.mark.parametrize("chunk", [1, 7, 24, 1000, 65536, 300_000, 10**7])
def test_large_payloads_through_feed_and_recv_target(chunk):
    """Big payloads go to a buffer of their own, whatever the chunking; messages around them are intact."""
    big = bytes(range(256)) * 2048  # 512 KiB, above LARGE_PAYLOAD
    frames = [encode(Message(MsgType.INVOKE, 4, 0, 1, b"small")),
              encode(Message(MsgType.INVOKE, 4, 0, 2, big, {"XTRA": b"ann"})),
              encode(Message(MsgType.INVOKE, 4, 0, 3, b"after"))]
    stream = b"".join(frames)
    dec = Decoder()
    got = []
    pos = 0
    while pos < len(stream):
        target = dec.recv_target()
        if target is not None and chunk % 2:  # odd chunk sizes also exercise recv_into
            n = min(len(target), chunk, len(stream) - pos)
            target[:n] = stream[pos:pos + n]
            dec.received(n)
            pos += n
        else:
            dec.feed(stream[pos:pos + chunk])
            pos += chunk
        while (msg := dec.next_message()) is not None:
            got.append(msg)
    assert [m.seq for m in got] == [1, 2, 3]
    assert bytes(got[1].data) == big and got[1].annotations == {"XTRA": b"ann"}
    assert got[0].data == b"small" and got[2].data == b"after"
    assert dec.buffered == 0
