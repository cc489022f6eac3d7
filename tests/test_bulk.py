"""Bulk values (issue 16): big bytes, buffers and numpy arrays out of band between Ember peers,
and what Pyro5 peers (and Ember peers without out-of-band buffers) get instead."""

import array
import asyncio
import mmap
import subprocess
import sys
import textwrap

import numpy as np
import Pyro5.api
import pytest

import ember
from ember import serializers
from ember.errors import SerializeError
from ember.protocol import OOB_ANNOTATION, Decoder, Message, MsgType, decode, encode
from ember.serializers.oob import ALIGN, OOB_EXT, OobData, OobPayload, payload_of

from .services import pyro5_daemon

OOB = serializers.get("msgpack", extended=serializers.OOB)
BIG = 1 << 20

DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32",
          "float64", "complex64", "complex128", ">i4", ">f8", "<u2", "datetime64[ms]", "timedelta64[ns]"]


def roundtrip(value, ser=OOB):
    """value -> payload -> frame -> decoded message -> value, as a connection does it (the
    frame arrives in two pieces, as from a socket)."""
    msg = Message(MsgType.RESULT, ser.serializer_id, 0, 1, ser.dumps(value))
    frame = encode(msg, parts=True)
    joined = b"".join(bytes(p) for p in frame) if type(frame) is list else frame
    decoder = Decoder()
    decoder.feed(joined[:100])
    decoder.feed(joined[100:])
    received = decoder.next_message()
    return ser.loads(payload_of(received)), frame, received


def sample(dtype, shape=(64, 33)):
    n = int(np.prod(shape))
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return (np.arange(n) % 3 == 0).reshape(shape)
    if dt.kind in "mM":
        return np.arange(n).astype(dt).reshape(shape)
    values = np.arange(n) % 100
    if dt.kind == "c":
        return (values + 1j * values).astype(dt).reshape(shape)
    return values.astype(dt).reshape(shape)


# ---- the serializer and the frame -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", ["inline", "out of band"])
def test_numpy_dtypes_arrive_as_arrays(dtype, size):
    shape = (4, 3) if size == "inline" else (256, 300)
    arr = sample(dtype, shape)
    back, frame, received = roundtrip(arr)
    assert isinstance(back, np.ndarray)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable
    assert (OOB_ANNOTATION in received.annotations) == (size == "out of band")


@pytest.mark.parametrize("layout", ["C", "F", "strided", "0-d", "empty", "3-d"])
def test_numpy_layouts(layout):
    base = np.arange(300 * 400, dtype=np.float64).reshape(300, 400)
    arr = {"C": base, "F": np.asfortranarray(base), "strided": base[::2, ::3], "0-d": np.array(2.5),
           "empty": np.zeros((0, 7), np.int32), "3-d": base.reshape(20, 15, 400)}[layout]
    back, _, _ = roundtrip(arr)
    assert back.shape == arr.shape and back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    if layout == "F":
        assert back.flags.f_contiguous  # the bytes travel in Fortran order and are not reordered


def test_out_of_band_buffers_are_views_of_the_one_receive_buffer():
    arr = np.arange(BIG // 8, dtype=np.float64)
    view = memoryview(bytes(range(256)) * 1024)
    value, frame, received = roundtrip({"a": arr, "v": view, "small": b"abc"})
    assert type(frame) is list and len(frame) >= 3  # header, structure, (padding,) buffers: not joined
    assert type(received.data) in (bytearray, mmap.mmap)  # a large payload lands in one buffer
    got_arr, got_view = value["a"], value["v"]
    np.testing.assert_array_equal(got_arr, arr)
    assert np.shares_memory(got_arr, np.frombuffer(received.data, np.uint8))  # no copy
    assert type(got_view) is memoryview and got_view.obj is received.data and got_view == view
    assert value["small"] == b"abc"
    # each buffer starts at an offset aligned to 64 bytes in the payload
    data_addr = np.frombuffer(received.data, np.uint8).ctypes.data
    assert (got_arr.ctypes.data - data_addr) % ALIGN == 0


def test_bytes_like_values_keep_their_type():
    values = [b"b" * BIG, bytearray(b"y" * BIG), array.array("d", range(BIG // 8)), array.array("h", range(30000)),
              memoryview(np.arange(40000, dtype=np.int32)), memoryview(b"m" * 100)[::2]]
    back, _, received = roundtrip(values)
    assert OOB_ANNOTATION in received.annotations
    assert type(back[0]) is bytes and back[0] == values[0]
    assert type(back[1]) is bytearray and back[1] == values[1]
    assert type(back[2]) is array.array and back[2].typecode == "d" and back[2] == values[2]
    assert type(back[3]) is array.array and back[3].typecode == "h" and back[3] == values[3]
    assert type(back[4]) is memoryview and back[4].format == "i" and back[4].tolist() == values[4].tolist()
    assert back[5] == b"m" * 50  # small: inline, as msgpack bin


def test_decoder_reuses_its_spare_buffer_for_a_bigger_message():
    # a free spare buffer is resized for the next large message: growing it must leave
    # memory that can be received into (a shared anonymous map cannot grow)
    decoder = Decoder()
    for size in (2 * BIG, 3 * BIG, 5 * BIG, 2 * BIG):
        frame = encode(Message(MsgType.RESULT, 4, 0, 1, b"s" * size))
        decoder.feed(frame[:100])
        target = decoder.recv_target()
        target[: len(frame) - 100] = frame[100:]  # as recv_into writes it
        decoder.received(len(frame) - 100)
        msg = decoder.next_message()
        assert len(msg.data) == size and msg.data[-1:] == b"s"
        del msg, target


def test_small_bytes_stay_inline_and_threshold_is_config():
    _, frame, received = roundtrip(b"x" * 1000)
    assert OOB_ANNOTATION not in received.annotations
    with ember.config.override(OUT_OF_BAND_THRESHOLD=100):
        back, _, received = roundtrip((b"x" * 1000, 5))
    assert OOB_ANNOTATION in received.annotations and back == [b"x" * 1000, 5]


def test_call_payload_with_buffers_in_args_and_kwargs():
    arr = np.ones((512, 512))
    data = OOB.dumps_call("obj", "method", (1, b"q" * BIG, [arr]), {"k": bytearray(BIG)})
    assert type(data) is OobPayload
    msg = decode(b"".join(bytes(p) for p in encode(Message(MsgType.INVOKE, 4, 0, 1, data), parts=True)))
    obj, method, args, kwargs = OOB.loads_call(payload_of(msg))
    assert (obj, method, args[0], args[1]) == ("obj", "method", 1, b"q" * BIG)
    np.testing.assert_array_equal(args[2][0], arr)
    assert kwargs == {"k": bytearray(BIG)}


def test_compressed_frame_with_buffers():
    arr = np.zeros(BIG // 8)
    msg = Message(MsgType.RESULT, 4, 0, 1, OOB.dumps([arr, b"z" * BIG]))
    frame = encode(msg, compress=True, parts=True)
    assert type(frame) is bytes and len(frame) < BIG  # joined and compressed, annotation kept
    back = OOB.loads(payload_of(decode(frame)))
    np.testing.assert_array_equal(back[0], arr)
    assert back[1] == b"z" * BIG


@pytest.mark.parametrize("dtype", ["object", "U5", [("a", "i4"), ("b", "f8")]])
def test_arrays_that_are_not_plain_memory_are_refused(dtype):
    arr = np.array([1, 2], dtype=object) if dtype == "object" else np.zeros(3, dtype=dtype)
    with pytest.raises(SerializeError, match="dtype"):
        OOB.dumps(arr)


@pytest.mark.parametrize("bad", [
    ("n", 0, 16, ("O", (2,), "C")),  # object dtype
    ("n", 0, 16, ("<f8", (3,), "C")),  # size does not match the shape
    ("n", 0, 16, ("<f8", (2,), "X")),  # order
    ("b", 0, 10 ** 9, None),  # beyond the payload
    ("b", -1, 4, None),
    ("q", 0, 4, None),  # unknown kind
    "junk",
])
def test_malformed_placeholders_are_refused(bad):
    import marshal

    import msgpack

    structure = msgpack.packb(msgpack.ExtType(OOB_EXT, marshal.dumps(bad)))
    pad = bytes(-len(structure) % ALIGN)
    payload = OobData(structure + pad + bytes(64), len(structure).to_bytes(8, "big"))
    with pytest.raises(SerializeError):
        OOB.loads(payload)


@pytest.mark.parametrize("code", [OOB_EXT, 0x41])
def test_placeholder_declaring_more_than_it_carries_is_refused(code):
    import msgpack

    hostile = b"[" + (10 ** 9).to_bytes(4, "little")  # a marshal list of a billion items, none sent
    structure = msgpack.packb(msgpack.ExtType(code, hostile))
    payload = OobData(structure + bytes(-len(structure) % ALIGN) + bytes(64), len(structure).to_bytes(8, "big"))
    with pytest.raises(SerializeError):
        OOB.loads(payload)


def test_malformed_annotation_is_refused():
    with pytest.raises(SerializeError, match="EBUF"):
        OobData(b"abc", b"\x00")
    with pytest.raises(SerializeError, match="EBUF"):
        OobData(b"abc", (99).to_bytes(8, "big"))


@pytest.mark.parametrize("name", ["msgpack", "marshal", "serpent", "json"])
@pytest.mark.parametrize("extended", [False, True])
def test_without_out_of_band_arrays_become_lists(name, extended):
    ser = serializers.get(name, extended)
    value = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "f": np.float32(1.5), "i": np.int64(7)}
    back = ser.loads(ser.dumps(value))
    assert back == {"a": [[0, 1, 2], [3, 4, 5]], "f": 1.5, "i": 7}


def test_numpy_is_not_imported_unless_an_array_travels(tmp_path):
    program = textwrap.dedent("""
        import sys, threading, array
        import ember
        @ember.expose
        class Echo:
            def echo(self, x):
                return x
            def make(self):
                import numpy
                return numpy.arange(100000.0)
        daemon = ember.Daemon()
        uri = daemon.register(Echo(), "echo")
        threading.Thread(target=daemon.request_loop, daemon=True).start()
        with ember.Proxy(uri) as p:
            assert p.echo(b"x" * 300000) == b"x" * 300000
            assert p.echo(bytearray(300000)) == bytearray(300000)
            assert p.echo(memoryview(b"y" * 300000)) == b"y" * 300000
            assert p.echo(array.array("i", range(1000))) == array.array("i", range(1000))
            assert p.echo([1, "two", b"3"]) == [1, "two", b"3"]
            print("before", "numpy" in sys.modules)
            arr = p.make()
            print("after", type(arr).__name__, arr.shape)
        daemon.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["before False", "after ndarray (100000,)"]


# ---- over real connections ----------------------------------------------------------------------


@ember.expose
class Bulk:
    def echo(self, x):
        return x

    def describe(self, *args, **kwargs):
        return [type(a).__name__ for a in args] + sorted(f"{k}={type(v).__name__}" for k, v in kwargs.items())

    def total(self, arr):
        return float(arr.sum())

    def make(self, n):
        return np.arange(n, dtype=np.float64).reshape(-1, 8), {"raw": b"r" * n}


@pytest.mark.timeout(60)
def test_proxy_against_every_server_type(ember_daemon, ember_servertypes):
    uri = ember_daemon(servertype=ember_servertypes).register(Bulk(), "bulk")
    arr = np.random.default_rng(0).random((1024, 256))
    with ember.Proxy(uri) as p:
        for value in (b"a" * (3 * BIG), bytearray(b"b" * BIG)):
            back = p.echo(value)
            assert type(back) is type(value) and back == value
        back = p.echo(arr)
        assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)
        assert p.describe(arr, memoryview(b"x" * BIG), b"y" * BIG, a=np.zeros(3), b=array.array("d", [1.0])) == [
            "ndarray", "memoryview", "bytes", "a=ndarray", "b=array"]
        assert p.total(np.ones((100, 100))) == 10000.0
        made, extra = p.make(80000)
        assert made.shape == (10000, 8) and made[-1, -1] == 79999.0 and extra == {"raw": b"r" * 80000}


@pytest.mark.timeout(60)
def test_async_proxy_against_every_server_type(ember_daemon, ember_servertypes):
    uri = ember_daemon(servertype=ember_servertypes).register(Bulk(), "bulk")
    arr = np.arange(BIG, dtype=np.int32).reshape(1024, -1, order="F")

    async def main():
        async with ember.AsyncProxy(uri) as p:
            results = await asyncio.gather(p.echo(arr), p.echo(b"q" * (2 * BIG)), p.echo(memoryview(b"m" * BIG)))
            return results

    back, raw, view = asyncio.run(main())
    assert back.shape == arr.shape and np.array_equal(back, arr)
    assert raw == b"q" * (2 * BIG) and type(raw) is bytes
    assert type(view) is memoryview and view == b"m" * BIG


@ember.expose
class Forwarder:
    def __init__(self, target):
        self.target = target

    def forward(self, arr):
        # a call made while serving one carries that call's annotations (EBUF among them)
        with ember.Proxy(self.target) as p:
            return p.describe(1, "two"), p.echo(arr), p.echo(b"small")


def test_call_made_while_serving_one_with_buffers(ember_daemon):
    target = ember_daemon().register(Bulk(), "bulk")
    uri = ember_daemon().register(Forwarder(target), "fwd")
    arr = np.arange(BIG // 4, dtype=np.float32)
    with ember.Proxy(uri) as p:
        described, back, small = p.forward(arr)
    assert described == ["int", "str"] and np.array_equal(back, arr) and small == b"small"


def test_out_of_band_off_sends_lists(ember_daemon):
    uri = ember_daemon().register(Bulk(), "bulk")
    with ember.config.override(OUT_OF_BAND=False), ember.Proxy(uri) as p:
        assert p.echo(np.arange(4).reshape(2, 2)) == [[0, 1], [2, 3]]
        assert p.echo(b"z" * BIG) == b"z" * BIG


def test_daemon_with_out_of_band_off(ember_daemon):
    cfg = ember.config.copy()
    cfg.OUT_OF_BAND = False
    uri = ember_daemon(config=cfg).register(Bulk(), "bulk")
    with ember.Proxy(uri) as p:
        assert p.echo(np.arange(3)) == [0, 1, 2]


def test_compat_layer_sends_lists(ember_daemon):
    from ember.compat.Pyro5 import api as compat

    uri = ember_daemon().register(Bulk(), "bulk")
    with compat.Proxy(uri) as p:
        assert p.echo(np.arange(3, dtype=np.uint8)) == [0, 1, 2]


# ---- Pyro5 peers --------------------------------------------------------------------------------


@pytest.fixture
def pyro5_echo():
    @Pyro5.api.expose
    class PyroEcho:
        def echo(self, x):
            return x

        def kind(self, x):
            return type(x).__name__

    with pyro5_daemon() as daemon:
        yield str(daemon.register(PyroEcho(), "echo"))


@pytest.mark.parametrize("serializer", ["msgpack", "marshal", "serpent", "json"])
def test_ember_client_sends_arrays_and_buffers_to_pyro5(pyro5_echo, serializer):
    with ember.Proxy(pyro5_echo) as p:
        p._serializer = serializer
        assert p.kind(np.zeros((2, 2))) == "list"
        assert p.echo(np.arange(6, dtype=np.int8).reshape(3, 2)) == [[0, 1], [2, 3], [4, 5]]
        assert p.echo(np.array([True, False])) == [True, False]
        assert p.echo(np.float64(2.5)) == 2.5
        big = b"k" * BIG
        back = p.echo(big)
        if serializer in ("serpent", "json"):
            back = ember.tobytes(back)
        assert back == big
        back = p.echo(memoryview(big))
        assert (ember.tobytes(back) if serializer in ("serpent", "json") else back) == big


@pytest.mark.parametrize("serializer", ["msgpack", "marshal", "serpent", "json"])
def test_pyro5_client_gets_lists_and_bytes_from_ember(ember_daemon, serializer):
    uri = ember_daemon().register(Bulk(), "bulk")
    with Pyro5.api.Proxy(str(uri)) as p:
        p._pyroSerializer = serializer
        arr, extra = p.make(16)
        assert arr == [[float(i) for i in range(8)], [float(i) for i in range(8, 16)]]
        raw = extra["raw"]
        if serializer in ("serpent", "json"):
            raw = ember.tobytes(raw)
        assert raw == b"r" * 16
        if serializer == "json":
            return  # Pyro5's json cannot send bytes
        big = b"p" * BIG
        back = p.echo(big)
        if serializer in ("serpent", "json"):
            back = ember.tobytes(back)
        assert back == big
