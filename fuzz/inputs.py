"""Fuzz inputs: valid frames with mutated fields (structured) and byte mutations of
captured valid frames (raw).

Every generator takes a ``random.Random``-like object ``r`` (only ``random``, ``randrange``,
``choice`` and ``getrandbits`` are used), so the same code runs from a seeded
``random.Random`` in the long-run driver and from hypothesis' ``st.randoms()`` in the
test suite, where failures shrink.

An input is a :class:`Case`: the bytes of one frame plus what the driver may expect of it.
``terminal`` inputs may break the framing (wrong lengths, bad header, garbage): the driver
sends them last on a connection and then half-closes it, so the server must answer or close.
"""

from __future__ import annotations

import marshal
import struct
import uuid
import zlib
from typing import Any

from ember import serializers
from ember.protocol import annotations as ann
from ember.protocol.framing import MAGIC, PROTOCOL_VERSION, Message, encode

from .target import TOKEN

HEADER = struct.Struct("!4sHBBHHII16sHH")
CONNECT, CONNECTOK, CONNECTFAIL, INVOKE, RESULT, PING = 1, 2, 3, 4, 5, 6
F_ONEWAY, F_BATCH, F_ITEMSTREAM, F_KEEPSERIALIZED, F_CORR = 0x04, 0x08, 0x10, 0x20, 0x40
SERIALIZER_IDS = (1, 2, 3, 4)  # serpent, marshal, json, msgpack
SER = {i: serializers.by_id(i) for i in SERIALIZER_IDS}
OBJECT = "fz"
_UNLIMITED = 1 << 32

INTERESTING_INTS = (0, 1, -1, 2, 127, 128, 255, 256, 32767, 32768, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1,
                    2**32, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**30))
INTERESTING_32 = (0, 1, 2, 7, 8, 39, 40, 41, 127, 128, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 262143, 262144,
                  1 << 20, (1 << 20) + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
STRINGS = ("", "a", "fz", "Pyro.Daemon", "Pyro.NameServer", "\x00", "\udcff"[:0] + "\u20ac", "é" * 3, "a" * 300,
           "__class__", "builtins.ValueError", "%s%n", "\n", "PYRO", "PYRO:fz@127.0.0.1:1")
METHODS = ("add", "echo", "gen", "fail", "note", "value", "unexposed", "_private", "_Target__secret", "__secret",
           "__getattr__", "__setattr__", "__init__", "__dict__", "__class__", "__call__", "__reduce__", "__len__",
           "__iter__", "<batch>", "ping", "registered", "info", "get_metadata", "get_next_stream_item",
           "close_stream", "add.__globals__", "", "x" * 500, "__getattribute__", "__del__", "_pyroId")
OBJECTS = (OBJECT, OBJECT, OBJECT, "Pyro.Daemon", "Pyro.NameServer", "", "nope", "fz\x00", "x" * 1000)
CLASS_NAMES = ("builtins.ValueError", "builtins.SystemExit", "builtins.KeyboardInterrupt", "builtins.StopIteration",
               "Pyro5.errors.CommunicationError", "Pyro5.errors.NamingError", "Pyro5.core.URI",
               "Pyro5.client.Proxy", "Pyro5.server.Daemon", "Pyro5.core._ExceptionWrapper", "os.system",
               "__main__.Evil", "ember.errors.PyroError", "uuid.UUID", "decimal.Decimal", "datetime.datetime",
               "datetime.date", "datetime.time", "datetime.timedelta", "pathlib.Path", "float", "struct.error",
               "sqlite3.OperationalError", "builtins.object", "builtins.type", "", "builtins.BaseException")


class Case:
    """One fuzz input: a frame and what may be expected of it."""

    __slots__ = ("data", "kind", "terminal", "reply", "seq")

    def __init__(self, data: bytes, kind: str, terminal: bool = False, reply: bool = True, seq: int = -1) -> None:
        self.data = data
        self.kind = kind
        self.terminal = terminal
        self.reply = reply  # the server must answer it (or close the connection)
        self.seq = seq

    def __repr__(self) -> str:
        return f"<Case {self.kind} seq={self.seq} terminal={self.terminal} reply={self.reply} {self.data!r}>"


def rbytes(r: Any, n: int) -> bytes:
    return r.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def frame(mtype: int, ser: int, flags: int, seq: int, payload: bytes, annotations: dict[str, bytes] | None = None,
          corr: Any = None) -> bytes:
    return encode(Message(mtype, ser, flags, seq, payload, annotations or {}, corr), max_message_size=_UNLIMITED)


def raw_header(tag: bytes = b"PYRO", version: int = PROTOCOL_VERSION, mtype: int = INVOKE, ser: int = 4,
               flags: int = 0, seq: int = 0, dlen: int = 0, alen: int = 0, corr: bytes = bytes(16), res: int = 0,
               magic: int = MAGIC) -> bytes:
    return HEADER.pack(tag, version, mtype, ser, flags, seq, dlen, alen, corr, res, magic)


# ---- values -------------------------------------------------------------------------------


def value(r: Any, depth: int = 0) -> Any:
    """A random value: scalars, containers, ``__class__`` dicts, deep nesting."""
    k = r.randrange(24 if depth < 4 else 11)
    if k == 0:
        return None
    if k == 1:
        return bool(r.getrandbits(1))
    if k == 2:
        return r.choice(INTERESTING_INTS)
    if k == 3:
        return r.randrange(-1000, 1000)
    if k == 4:
        return r.choice((0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 1e308, 5e-324))
    if k == 5:
        return r.choice(STRINGS)
    if k == 6:
        return rbytes(r, r.randrange(0, 40)).decode("latin-1")
    if k == 7:
        return rbytes(r, r.randrange(0, 40))
    if k == 8:
        return complex(r.randrange(-5, 5), r.randrange(-5, 5))
    if k == 9:
        return r.choice(METHODS)
    if k == 10:
        return r.randrange(-(2**70), 2**70)
    if k in (11, 12):
        return [value(r, depth + 1) for _ in range(r.randrange(5))]
    if k == 13:
        return tuple(value(r, depth + 1) for _ in range(r.randrange(5)))
    if k in (14, 15):
        return {_key(r): value(r, depth + 1) for _ in range(r.randrange(5))}
    if k == 16:
        return {r.choice((1, 2, "a", "b", 3.5, None)) for _ in range(r.randrange(4))}
    if k == 17:
        return frozenset(r.choice((1, "x")) for _ in range(r.randrange(3)))
    if k in (18, 19):
        return class_dict(r, depth)
    if k == 20:
        return nested(r) if depth == 0 and r.randrange(3) == 0 else r.choice(STRINGS)
    if k == 21:
        return {"data": r.choice(("", "AAAA", "!!!", "QUJD", "x" * 9)), "encoding": r.choice(("base64", "hex", 5))}
    if k == 22:
        return [value(r, depth + 1)] * r.randrange(1, 50)
    return {"object": r.choice(OBJECTS), "method": r.choice(METHODS), "params": [], "kwargs": {}}


def _key(r: Any) -> Any:
    return r.choice(("a", "b", "__class__", "state", "args", "value", "", "exception", "__exception__", "attributes",
                     1, 2.5, None, True, "x" * 50))


def class_dict(r: Any, depth: int) -> dict:
    name = r.choice(CLASS_NAMES)
    d: dict[str, Any] = {"__class__": name}
    shape = r.randrange(6)
    if shape == 0:
        d["__exception__"] = r.choice((True, False, 1, None))
        d["args"] = r.choice(((), ("x",), [1, 2], None, "s", ({"__class__": "builtins.ValueError"},)))
        d["attributes"] = r.choice(({}, {"_pyroTraceback": ["a\n"]}, {"__class__": 1}, {"x": value(r, depth + 1)},
                                    None, [1], {"__dict__": {}}, {"with_traceback": 1}))
    elif shape == 1:
        d["state"] = r.choice((("PYRO", "fz", None, "127.0.0.1", 1), ("PYRO", "x"), None, 5, "s",
                               ("PYRO:fz@127.0.0.1:1", (), ("x",), (), "hello", None),
                               ("PYRO:fz@127.0.0.1:1", (), (), (), None, "marshal"), [1, 2, 3, 4, 5, 6, 7],
                               ("PYRO", "fz", "/tmp/nonexistent-fuzz-sock", None, None)))
    elif shape == 2:
        d["value"] = value(r, depth + 1) if depth < 4 else r.choice(("nan", "1", "2024-01-02", 5, None))
    elif shape == 3:
        d["exception"] = class_dict(r, depth + 1) if depth < 4 else None
    elif shape == 4:
        d[_key(r)] = value(r, depth + 1) if depth < 4 else 1
    return d


_NESTED: dict[tuple[int, int], Any] = {}


def nested(r: Any) -> Any:
    """Deep nesting (recursion limits of decoders and of the ``__class__`` walk); built once per shape."""
    key = (r.choice((50, 200, 900, 1100, 2100, 5000)), r.randrange(3))
    v = _NESTED.get(key)
    if v is None:
        n, kind = key
        v = 1
        for _ in range(n):
            v = [v] if kind == 0 else ({"a": v} if kind == 1 else (v,))
        _NESTED[key] = v
    return v


# ---- calls --------------------------------------------------------------------------------


def call_parts(r: Any) -> tuple[Any, Any, Any, Any, int]:
    """(object, method, args, kwargs, flags) of a structured call, valid or not."""
    flags = 0
    k = r.randrange(16)
    obj: Any = OBJECT
    kwargs: Any = {}
    if k == 0:
        method, args = "add", [r.randrange(100), r.randrange(100)]
    elif k == 1:
        method, args = "add", [value(r), value(r)]
    elif k in (2, 3):
        method, args = "echo", [value(r)]
    elif k == 4:
        method, args = "fail", [value(r)]
    elif k == 5:
        method, args = "note", [value(r)]
        flags |= F_ONEWAY
    elif k == 6:
        method, args, kwargs = "__getattr__", [r.choice(("value", "_value", "__dict__", "unexposed", "add", "x",
                                                          "_Target__secret", "__class__"))], None
    elif k == 7:
        method, args, kwargs = "__setattr__", [r.choice(("value", "_value", "__class__", "add", "x")), value(r)], None
    elif k == 8:
        method, args = "gen", [r.choice((0, 3, 100, -1, "x", None))]
    elif k == 9:
        obj, method = "Pyro.Daemon", r.choice(("ping", "registered", "info", "get_metadata", "get_next_stream_item",
                                               "close_stream", "_daemon", "__init__", "register"))
        args = r.choice(([], ["fz"], [value(r)], [r.choice(STRINGS)], ["Pyro.Daemon"]))
    elif k == 10:
        obj, method, args = OBJECT, "<batch>", batch_entries(r)
        kwargs = None
        flags |= F_BATCH | (F_ONEWAY if r.randrange(4) == 0 else 0)
    else:
        obj = r.choice(OBJECTS)
        method = r.choice(METHODS)
        args = r.choice(([], [value(r)], [value(r), value(r)], value(r)))
        kwargs = r.choice(({}, None, {"value": value(r)}, {"a": 1, "b": 2}, value(r)))
    if r.randrange(8) == 0:
        obj = value(r)
    if r.randrange(10) == 0:
        method = value(r)
    if r.randrange(10) == 0:
        args = value(r)
    if r.randrange(10) == 0:
        kwargs = value(r)
    return obj, method, args, kwargs, flags


def batch_entries(r: Any) -> Any:
    entries: list[Any] = []
    for _ in range(r.randrange(6)):
        k = r.randrange(8)
        if k < 3:
            entries.append([r.choice(("add", "echo", "fail", "gen", "note")), [1, 2] if k == 0 else [value(r)], {}])
        elif k == 3:
            entries.append([r.choice(METHODS), value(r), value(r)])
        elif k == 4:
            entries.append(value(r))
        elif k == 5:
            entries.append(["add", 5, {}])
        elif k == 6:
            entries.append(["add", [1], None])
        else:
            entries.append([r.choice(METHODS)] + [value(r) for _ in range(r.randrange(5))])
    return entries if r.randrange(8) else value(r)


def serialize_call(ser_id: int, obj: Any, method: Any, args: Any, kwargs: Any) -> bytes | None:
    try:
        return SER[ser_id].dumps_call(obj, method, args, kwargs)
    except Exception:
        return None


def annotations(r: Any) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for _ in range(r.randrange(4)):
        key = r.choice(("STRM", "BLBI", "EMBR", "EMUX", "DENY", "CORR", "HMAC", "trcp", "ABCD",
                        rbytes(r, 4).decode("latin-1")))
        if any(ord(c) > 127 for c in key):
            key = "X" + key[1:].encode("ascii", "replace").decode()[:3].ljust(3, "x")
        n = r.choice((0, 1, 4, 36, 100, 4096, 70000)) if r.randrange(20) else 300000
        out[key] = r.choice((b"1", b"0", rbytes(r, min(n, 64)) * max(1, n // 64)))
    return out


def invoke(r: Any, ser_id: int | None = None, seq: int = 0, stream_ids: list[str] | None = None) -> Case:
    """A structured INVOKE (well-formed frame; fields, flags and payload mutated)."""
    ser_id = ser_id if ser_id is not None else r.choice(SERIALIZER_IDS)
    if stream_ids and r.randrange(4) == 0:
        sid = r.choice(stream_ids)
        method = r.choice(("get_next_stream_item", "get_next_stream_item", "close_stream"))
        sid_value: Any = r.choice((sid, sid, sid[:-1], sid.upper(), sid + "x", value(r)))
        obj, args, kwargs, flags = "Pyro.Daemon", [sid_value], {}, (F_ONEWAY if method == "close_stream" else 0)
    else:
        obj, method, args, kwargs, flags = call_parts(r)
    ann_map: dict[str, bytes] = {}
    wire_ser = ser_id
    if r.randrange(12) == 0:
        flags |= F_KEEPSERIALIZED
        info = r.choice((None, "info", 5, ("x",), b"b"))
        try:
            ann_map[ann.BLOB_ANNOTATION] = r.choice((
                marshal.dumps((info, r.choice(OBJECTS), r.choice(METHODS))),
                marshal.dumps(value(r, 3)) if r.randrange(2) else rbytes(r, 12),
                b"",
            ))
        except ValueError:
            ann_map[ann.BLOB_ANNOTATION] = b""
    if r.randrange(6) == 0:
        ann_map.update(annotations(r))
    if r.randrange(10) == 0:
        flags ^= r.choice((0x01, 0x10, 0x04, 0x08, 0x40, 0x80, 0x8000, r.getrandbits(16) & ~0x02))
    if r.randrange(25) == 0:
        wire_ser = r.choice((0, 5, 42, 255, 1, 2, 3, 4))  # payload in one format, header naming another
    payload = serialize_call(ser_id, obj, method, args, kwargs)
    if payload is None:
        payload = serialize_call(ser_id, OBJECT, "echo", [type(args).__name__], {}) or b""
    if r.randrange(40) == 0:
        try:
            payload = SER[ser_id].dumps(value(r))  # not a call at all
        except Exception:
            payload = b"\x00"
    if r.randrange(60) == 0:
        payload += rbytes(r, 300000)  # past LARGE_PAYLOAD: the big-body receive path
    compressed = r.randrange(12) == 0
    corr = None
    if r.randrange(8) == 0:
        corr = uuid.UUID(int=r.getrandbits(128))
    data = frame(INVOKE, wire_ser, flags & ~0x02, seq, payload, ann_map, corr) if not compressed else \
        _compressed(INVOKE, wire_ser, flags, seq, payload, ann_map)
    oneway = bool(flags & F_ONEWAY)
    return Case(data, f"invoke/{SER[ser_id].name}", reply=not oneway, seq=seq)


def _compressed(mtype: int, ser: int, flags: int, seq: int, payload: bytes, ann_map: dict[str, bytes]) -> bytes:
    z = zlib.compress(payload, 4)
    a = b"".join(struct.pack("!4sI", k.encode("latin-1"), len(v)) + v for k, v in ann_map.items())
    return raw_header(mtype=mtype, ser=ser, flags=(flags | 0x02) & 0xFFFF, seq=seq, dlen=len(z), alen=len(a)) + a + z


def ping(seq: int) -> bytes:
    return frame(PING, 42, 0, seq, b"ping")


def connect_frame(ser_id: int, seq: int = 0, handshake: Any = TOKEN, obj: Any = OBJECT,
                  annotations_map: dict[str, bytes] | None = None) -> bytes:
    payload = SER[ser_id].dumps({"handshake": handshake, "object": obj})
    return frame(CONNECT, ser_id, 0, seq, payload, annotations_map)


def connect_case(r: Any) -> Case:
    """A structured CONNECT: handshake data, object, keys, annotations and serializer varied."""
    ser_id = r.choice(SERIALIZER_IDS)
    k = r.randrange(10)
    hs: Any = TOKEN if k < 5 else value(r)
    body: Any = {"handshake": hs, "object": r.choice(OBJECTS) if r.randrange(3) == 0 else OBJECT}
    if k == 5:
        body.pop("object")
    elif k == 6:
        body = value(r)
    elif k == 7:
        body[_key(r)] = value(r)
    elif k == 8:
        body["object"] = value(r)
    try:
        payload = SER[ser_id].dumps(body)
    except Exception:
        payload = SER[ser_id].dumps({"handshake": type(body).__name__, "object": OBJECT})
    if r.randrange(40) == 0:
        ser_id, payload = 2, marshal_bomb(r)
    amap = annotations(r) if r.randrange(3) == 0 else {}
    if r.randrange(3) == 0:
        amap[ann.EMBER_CAPS] = b"1"
    wire_ser = ser_id if r.randrange(12) else r.choice((0, 5, 42, 255, 1, 2, 3, 4))
    flags = 0 if r.randrange(6) else r.getrandbits(16) & ~0x02
    return Case(frame(CONNECT, wire_ser, flags, r.randrange(65536), payload, amap), f"connect/{SER[ser_id].name}")


def marshal_bomb(r: Any) -> bytes:
    """marshal data whose declared container sizes exceed the bytes that carry them."""
    depth = r.randrange(1, 4)
    code = r.choice((b"[", b"(", b"<", b">", b"{", b"["))
    n = r.choice((2**31 - 1, 2**24, 2**20, 1000))
    if code == b"{":
        return b"{" * depth
    return (code + struct.pack("<i", n)) * depth


# ---- raw mutation -------------------------------------------------------------------------


def mutate(r: Any, data: bytes, start: int = 0) -> bytes:
    """Byte-level mutation of ``data[start:]`` (AFL-style: flips, interesting values, splices)."""
    b = bytearray(data)
    for _ in range(1 + (r.randrange(8) == 0) * r.randrange(1, 6)):
        n = len(b)
        lo = min(start, n)
        k = r.randrange(11)
        pos = r.randrange(lo, n) if n > lo else lo
        if k == 0 and n > lo:
            b[pos] ^= 1 << r.randrange(8)
        elif k == 1 and n > lo:
            b[pos] = r.choice((0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x5B, 0x28, 0x7B, 0x72, 0x3C))
        elif k == 2 and n - lo >= 4:
            pos = r.randrange(lo, n - 3)
            b[pos : pos + 4] = struct.pack(r.choice(("<I", ">I")), r.choice(INTERESTING_32))
        elif k == 3 and n - lo >= 2:
            pos = r.randrange(lo, n - 1)
            b[pos : pos + 2] = struct.pack(r.choice(("<H", ">H")), r.choice(INTERESTING_32) & 0xFFFF)
        elif k == 4:
            b[pos:pos] = rbytes(r, r.randrange(1, 16))
        elif k == 5 and n > lo:
            del b[pos : pos + r.randrange(1, 16)]
        elif k == 6 and n > lo:
            end = min(n, pos + r.randrange(1, 32))
            b[pos:pos] = b[pos:end] * r.randrange(1, 4)
        elif k == 7:
            del b[max(lo, r.randrange(lo, n + 1)) :]
        elif k == 8:
            b += rbytes(r, r.randrange(1, 64))
        elif k == 9 and n > lo:
            b[pos] = (b[pos] + r.choice((1, -1, 16, -16))) & 0xFF
        else:
            b[pos:pos] = marshal_bomb(r)[: r.randrange(1, 16)] if r.randrange(2) else b"\x00" * r.randrange(1, 9)
    return bytes(b)


def fix_lengths(data: bytes) -> bytes:
    """Rewrite the data-length field after the payload was mutated (annotation block untouched)."""
    if len(data) < 40:
        return data
    alen = struct.unpack_from("!I", data, 16)[0]
    dlen = max(len(data) - 40 - alen, 0)
    return data[:12] + struct.pack("!I", dlen) + data[16:]


def raw_case(r: Any, seq: int, stream_ids: list[str] | None = None, keep: bool | None = None) -> Case:
    """A captured valid frame, byte-mutated: in the payload only, framing kept (``keep``), or anywhere."""
    base = invoke(r, seq=seq, stream_ids=stream_ids)
    data = base.data
    alen = struct.unpack_from("!I", data, 16)[0]
    flags = struct.unpack_from("!H", data, 8)[0]
    if keep is None:
        keep = r.randrange(3) > 0
    if keep and flags & 0x02:
        return base  # a compressed payload cannot be mutated without breaking the zlib stream
    if keep:
        mutated = fix_lengths(mutate(r, data, 40 + alen))
        return Case(mutated, base.kind.replace("invoke", "raw-payload"), reply=base.reply, seq=seq)
    return Case(mutate(r, data), base.kind.replace("invoke", "raw-frame"), terminal=True, reply=False, seq=seq)


def header_case(r: Any, seq: int) -> Case:
    """A frame whose header fields are drawn from interesting values (framing may break)."""
    ser = r.choice((1, 2, 3, 4, 0, 42, 255))
    payload = serialize_call(ser if ser in SER else 4, OBJECT, "add", [1, 2], {}) or b""
    a = b""
    if r.randrange(3) == 0:
        a = struct.pack("!4sI", b"ABCD", 3) + b"xyz"
    dlen, alen = len(payload), len(a)
    fields: dict[str, Any] = {}
    for _ in range(r.randrange(1, 4)):
        f = r.randrange(10)
        if f == 0:
            fields["tag"] = r.choice((b"PYRP", b"\x00PYR", b"pyro", rbytes(r, 4)))
        elif f == 1:
            fields["version"] = r.choice((0, 48, 501, 503, 0xFFFF, 0x01F6))
        elif f == 2:
            fields["mtype"] = r.choice((0, 1, 2, 3, 5, 6, 7, 255))
        elif f == 3:
            fields["flags"] = r.getrandbits(16)
        elif f == 4:
            fields["dlen"] = r.choice(INTERESTING_32 + (dlen - 1, dlen + 1, dlen + 1000))
        elif f == 5:
            fields["alen"] = r.choice(INTERESTING_32 + (alen + 1, max(alen - 1, 0)))
        elif f == 6:
            fields["magic"] = r.choice((0, 0x4DC4, 0xC54D, 0xFFFF))
        elif f == 7:
            fields["corr"] = rbytes(r, 16)
        elif f == 8:
            fields["res"] = r.getrandbits(16)
        else:
            fields["seq"] = r.getrandbits(16)
    hdr = raw_header(**{"ser": ser, "seq": seq, "dlen": dlen, "alen": alen, **fields})
    tail = r.choice((b"", rbytes(r, 8), b"PYRO"))
    return Case(hdr + a + payload + tail, "header", terminal=True, reply=False, seq=seq)


def garbage_case(r: Any) -> Case:
    k = r.randrange(5)
    if k == 0:
        data = rbytes(r, r.randrange(1, 100))
    elif k == 1:
        data = b"PYRO\x01\xf6" + rbytes(r, r.randrange(0, 60))
    elif k == 2:
        data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    elif k == 3:
        data = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rbytes(r, 40)  # a TLS ClientHello
    else:
        data = b"PYRO"[: r.randrange(1, 5)]
    return Case(data, "garbage", terminal=True, reply=False)


def with_seq(data: bytes, seq: int) -> bytes:
    return data[:10] + struct.pack("!H", seq & 0xFFFF) + data[12:]


def tweak_header(r: Any, data: bytes, seq: int) -> tuple[bytes, bool]:
    """A captured valid frame with one header field changed, lengths kept: another serializer id
    (the payload read as another format), flag bits, a correlation id. Returns (frame, oneway)."""
    b = bytearray(with_seq(data, seq))
    k = r.randrange(3)
    if k == 0:
        b[7] = r.choice((1, 2, 3, 4, 0, 5, 42, 255))
    elif k == 1:
        flags = struct.unpack_from("!H", b, 8)[0] ^ r.choice((0x01, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100, 0x8000))
        struct.pack_into("!H", b, 8, flags & ~0x02)
    else:
        struct.pack_into("!H", b, 8, struct.unpack_from("!H", b, 8)[0] | 0x40)
        b[20:36] = rbytes(r, 16)
    return bytes(b), bool(b[9] & F_ONEWAY)


def mutate_payload(r: Any, data: bytes, seq: int) -> bytes:
    """A captured valid frame, bytes of its payload mutated, the length field fixed up."""
    data = with_seq(data, seq)
    alen = struct.unpack_from("!I", data, 16)[0]
    return fix_lengths(mutate(r, data, 40 + alen))
