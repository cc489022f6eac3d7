"""Serializers: a value table per format, Ember's extended types, and cross-reading with Pyro5."""

import builtins
import datetime
import decimal
import enum
import math
import pathlib
import re
import uuid
from dataclasses import dataclass

import pytest

import ember
from ember import errors, serializers
from ember.errors import SecurityError, SerializeError
from ember.uri import URI

NAMES = ["serpent", "marshal", "json", "msgpack"]
B64 = {"data": "AP8=", "encoding": "base64"}
DT = datetime.datetime(2024, 1, 2, 3, 4, 5, 123456)
D = datetime.date(2024, 1, 2)
U = uuid.UUID("12345678-1234-5678-1234-567812345678")
DEC = decimal.Decimal("3.14")
ERR = SerializeError

# value, then what each serializer gives back in Pyro5-compatible mode (ERR = refused)
TABLE = [
    (0, {}),
    (-17, {}),
    (2**40, {}),
    (2**70, {}),
    (-(2**70), {}),
    (1.5, {}),
    (float("inf"), {}),
    ("héllo ✓ 日本", {}),
    (b"\x00\xff", {"serpent": B64, "json": B64}),
    ((1, "a"), {"json": [1, "a"], "msgpack": [1, "a"]}),
    ([1, [2, 3]], {}),
    ({"k": [1, 2], "n": None}, {}),
    ({1, 2, 3}, {"json": [1, 2, 3], "msgpack": [1, 2, 3]}),
    (None, {}),
    (True, {}),
    (False, {}),
    (DT, {"serpent": DT.isoformat(), "json": DT.isoformat(), "marshal": ERR}),
    (D, {"serpent": D.isoformat(), "json": D.isoformat(), "marshal": ERR}),
    (DEC, {"serpent": "3.14", "json": "3.14", "msgpack": "3.14", "marshal": ERR}),
    (U, {"serpent": str(U), "json": str(U), "msgpack": str(U), "marshal": str(U)}),
    (1 + 2j, {"json": ERR}),
]


def _same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list) and isinstance(b, list) and all(type(x) is int for x in a + b):
        return sorted(a) == sorted(b)  # sets arrive as lists in json/msgpack
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value, special", TABLE, ids=[repr(v)[:20] for v, _ in TABLE])
def test_value_table_pyro5_compatible_mode(name, value, special):
    ser = serializers.get(name)
    expected = special.get(name, value)
    if expected is ERR:
        with pytest.raises(SerializeError):
            ser.dumps(value)
        return
    got = ser.loads(ser.dumps(value))
    assert _same(expected, got), (expected, got)


EXTENDED_VALUES = [U, DEC, DT, D, datetime.time(1, 2, 3), datetime.timedelta(seconds=90), pathlib.Path("/tmp/x")]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", EXTENDED_VALUES, ids=repr)
def test_extended_mode_types_come_back_as_themselves(name, value):
    ser = serializers.get(name, extended=True)
    got = ser.loads(ser.dumps({"v": [value]}))
    assert got["v"][0] == value and type(got["v"][0]) is type(value)


def test_nan_roundtrips_everywhere():
    for name in NAMES:
        ser = serializers.get(name)
        assert math.isnan(ser.loads(ser.dumps(float("nan"))))


def test_serpent_bytes_repr():
    with ember.config.override(SERPENT_BYTES_REPR=True):
        ser = serializers.get("serpent")
        assert ser.loads(ser.dumps(b"\x00\xff")) == b"\x00\xff"
    assert ember.tobytes(B64) == b"\x00\xff"
    assert ember.tobytes(bytearray(b"ab")) == b"ab"
    with pytest.raises(TypeError):
        ember.tobytes(42)


@pytest.mark.parametrize("name", NAMES)
def test_exceptions_keep_class_args_attributes_and_traceback(name):
    ser = serializers.get(name)
    exc = ValueError("bad", 3)
    exc._pyroTraceback = ["Traceback...\n", "ValueError: bad\n"]
    exc.code = 7
    got = ser.loads(ser.dumps(exc))
    assert type(got) is ValueError and got.args in (("bad", 3), ["bad", 3]) or list(got.args) == ["bad", 3]
    assert got.code == 7 and errors.remote_traceback(got) == "Traceback...\nValueError: bad\n"
    got = ser.loads(ser.dumps(errors.NamingError("no such name")))
    assert type(got) is errors.NamingError and str(got) == "no such name"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_exception_class_becomes_remote_error(name):
    ser = serializers.get(name)

    class Oops(Exception):
        pass

    got = ser.loads(ser.dumps(Oops("boom")))
    assert isinstance(got, errors.RemoteError)
    assert got.remote_class.endswith("Oops") and "boom" in str(got)


@pytest.mark.parametrize("name", NAMES)
def test_unregistered_class_is_refused(name):
    ser = serializers.get(name)

    class Thing:
        def __init__(self):
            self.a = 1

    data = ser.dumps(Thing())
    with pytest.raises(SecurityError, match="double underscores"):  # defined in a function: '<locals>'?
        ser.loads(ser.dumps({"__class__": "__main__.Thing", "a": 1}))
    with pytest.raises(SerializeError, match="unsupported serialized class"):
        ser.loads(ser.dumps({"__class__": "os.system", "a": 1}))
    with pytest.raises((SerializeError, SecurityError)):
        ser.loads(data)


@pytest.mark.parametrize("name", NAMES)
def test_uri_roundtrip(name):
    ser = serializers.get(name)
    for text in ("PYRO:obj@localhost:5555", "PYRO:obj@./u:/tmp/sock", "PYRONAME:a.b@nshost:9090"):
        assert ser.loads(ser.dumps(URI(text))) == URI(text)


@ember.register_type
@dataclass
class Point:
    x: int
    y: int


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


ember.register_type(Color, "tests.Color")


@ember.register_type
class AppError(Exception):
    pass


@pytest.mark.parametrize("name", NAMES)
def test_registered_types_roundtrip(name):
    ser = serializers.get(name)
    value = {"p": Point(1, 2), "c": Color.BLUE, "e": AppError("x", 1)}
    got = ser.loads(ser.dumps(value))
    assert got["p"] == Point(1, 2) and got["c"] is Color.BLUE
    assert type(got["e"]) is AppError and list(got["e"].args) == ["x", 1]


def test_register_type_refuses_other_classes():
    with pytest.raises(TypeError):
        ember.register_type(int)


def test_custom_converters_and_most_specific_wins():
    class Base:
        pass

    class Sub(Base):
        pass

    ember.register_class_to_dict(Base, lambda o: {"__class__": "t.Base"})
    ember.register_class_to_dict(Sub, lambda o: {"__class__": "t.Sub"})
    ember.register_dict_to_class("t.Base", lambda n, d: "base")
    ember.register_dict_to_class("t.Sub", lambda n, d: "sub")
    try:
        ser = serializers.get("msgpack")
        assert ser.loads(ser.dumps([Base(), Sub()])) == ["base", "sub"]
    finally:
        for cls in (Base, Sub):
            ember.unregister_class_to_dict(cls)
        for n in ("t.Base", "t.Sub"):
            ember.unregister_dict_to_class(n)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe\x00garbage", b"# serpent utf-8 python3.2\n(1,", b"{" * 5000])
def test_garbage_raises_serialize_error(name, garbage):
    with pytest.raises(SerializeError):
        serializers.get(name).loads(garbage)


def test_lookup_by_name_and_id():
    assert serializers.get("json").serializer_id == 3
    assert serializers.get(4).name == "msgpack"
    with pytest.raises(SerializeError, match="unknown serializer 'pickle'"):
        serializers.get("pickle")
    with pytest.raises(SerializeError, match="unknown serializer id 99"):
        serializers.by_id(99)


# ---- cross-reading with the real Pyro5 package ------------------------------------------

import Pyro5.core  # noqa: E402
import Pyro5.errors  # noqa: E402
import Pyro5.serializers as pyro5_serializers  # noqa: E402


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value, special", TABLE, ids=[repr(v)[:20] for v, _ in TABLE])
def test_pyro5_reads_ember_and_ember_reads_pyro5(name, value, special):
    ours = serializers.get(name)
    theirs = pyro5_serializers.serializers[name]
    try:
        pyro_bytes = theirs.dumps(value)
    except Exception:
        pyro_bytes = None
    if special.get(name) is ERR:
        with pytest.raises(SerializeError):
            ours.dumps(value)
    else:
        ember_bytes = ours.dumps(value)
        assert _same(theirs.loads(ember_bytes), ours.loads(ember_bytes)) or _same(
            ours.loads(ember_bytes), theirs.loads(ember_bytes)
        )
    if pyro_bytes is not None:
        assert _same(theirs.loads(pyro_bytes), ours.loads(pyro_bytes))


@pytest.mark.parametrize("name", NAMES)
def test_calls_cross_read(name):
    ours = serializers.get(name)
    theirs = pyro5_serializers.serializers[name]
    obj, method, args, kwargs = theirs.loadsCall(ours.dumps_call("calc", "add", (1, "x"), {"k": 2}))
    assert (obj, method, list(args), kwargs) == ("calc", "add", [1, "x"], {"k": 2})
    obj, method, args, kwargs = ours.loads_call(theirs.dumpsCall("calc", "add", (1, "x"), {"k": 2}))
    assert (obj, method, list(args), kwargs) == ("calc", "add", [1, "x"], {"k": 2})


@pytest.mark.parametrize("name", NAMES)
def test_exceptions_and_uris_cross_read(name):
    ours = serializers.get(name)
    theirs = pyro5_serializers.serializers[name]
    got = theirs.loads(ours.dumps(errors.NamingError("nope")))
    assert type(got) is Pyro5.errors.NamingError and str(got) == "nope"
    got = ours.loads(theirs.dumps(Pyro5.errors.DaemonError("unknown object")))
    assert type(got) is errors.DaemonError
    exc = KeyError("k")
    exc._pyroTraceback = ["tb\n"]
    got = theirs.loads(ours.dumps(exc))
    assert type(got) is KeyError and got._pyroTraceback == ["tb\n"]
    got = theirs.loads(ours.dumps(URI("PYRO:x@h:1")))
    assert isinstance(got, Pyro5.core.URI) and str(got) == "PYRO:x@h:1"
    got = ours.loads(theirs.dumps(Pyro5.core.URI("PYRO:x@./u:/tmp/s")))
    assert got == URI("PYRO:x@./u:/tmp/s")


# ---- the tables of docs/protocol-and-serializers.md are what the code does (issue 14.14) ----------------

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol-and-serializers.md"
DOC_HEADER = "| sent | serpent | json | marshal | msgpack |"
# the values each row's first cell names (a row the test does not know fails: keep both in step)
ROW_SAMPLES = {
    "`None`, `bool`, `int` (any size), `float` (also NaN, inf), `str`":
        [None, True, False, 0, -17, 2**80, -(2**70), 1.5, float("nan"), float("inf"), "", "é ☃"],
    "`bytes`, `bytearray`": [b"\x00\xffab", bytearray(b"xy")],
    "`list`": [[1, "a", [2]]],
    "`tuple`": [(1, "a"), ()],
    "`set`": [{1, 2}],
    "`frozenset`": [frozenset({"a"})],
    "`dict` with `str` keys": [{"a": 1, "b": [2]}],
    "`dict` with `int` keys": [{1: "a", 2: "b"}],
    "`UUID`": [U],
    "`Decimal`": [DEC],
    "`datetime`, `date`": [DT, D],
    "`time`": [datetime.time(3, 4, 5)],
    "`timedelta`": [datetime.timedelta(days=1, seconds=5)],
    "`complex`": [1 + 2j],
    "`pathlib` path": [pathlib.Path("/tmp/x")],
    "`UUID`, `Decimal`, `datetime`, `date`, `time`, `timedelta`, `pathlib` path":
        [U, DEC, DT, D, datetime.time(3, 4, 5), datetime.timedelta(seconds=5), pathlib.Path("/tmp/x")],
}


def doc_tables():
    """The two tables headed DOC_HEADER: [{row label: {serializer: cell}}] (plain, then Ember to Ember)."""
    lines = DOC.read_text().splitlines()
    names = [c.strip() for c in DOC_HEADER.strip("|").split("|")][1:]
    tables = []
    for i, line in enumerate(lines):
        if line.strip() != DOC_HEADER:
            continue
        rows = {}
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
            assert len(cells) == len(names) + 1, row
            rows[cells[0]] = dict(zip(names, cells[1:], strict=True))
        tables.append(rows)
    return tables


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def check_cell(cell, value, ser):
    """Round-trip ``value`` through ``ser`` and check the result against a table cell."""
    try:
        result = ser.loads(ser.dumps(value))
    except SerializeError:
        assert cell == "refused", f"{value!r} refused, the table says {cell!r}"
        return
    if cell == "as sent":
        assert _same(value, result), (value, result)
    elif cell == "base64 dict":
        assert set(result) == {"data", "encoding"} and ember.tobytes(result) == bytes(value)
    elif cell == "ISO `str`":
        assert result == value.isoformat()
    elif cell == "`float` (seconds)":
        assert _same(result, value.total_seconds())
    elif cell == "`dict`, keys become `str`":
        assert result == {str(k): v for k, v in value.items()}
    else:
        name = cell.strip("`")
        assert cell == f"`{name}`", f"unknown cell {cell!r}"
        assert type(result).__name__ == name, f"{value!r} arrived as {result!r}, the table says {cell}"
        if isinstance(value, (set, frozenset)):
            assert set(result) == set(value)
        elif name in ("list", "tuple", "set", "frozenset", "bytes", "str"):
            assert result == getattr(builtins, name)(value)
        else:
            assert result == value


def test_docs_type_tables_are_what_each_serializer_does():
    tables = doc_tables()
    assert len(tables) == 2, "two tables: with a Pyro5 peer (plain), between Ember peers (extended)"
    plain, ember_only = tables
    assert set(plain) | set(ember_only) == set(ROW_SAMPLES)
    for extended in (False, True):
        for label, cells in plain.items():
            for name, cell in cells.items():
                if extended:  # a row whose types all appear in an Ember-to-Ember row is overridden by it
                    cell = next((rows[name] for lab, rows in ember_only.items()
                                 if set(re.findall(r"`([^`]+)`", label)) <= set(re.findall(r"`([^`]+)`", lab))),
                                cell)
                ser = serializers.by_id(serializers.get(name).serializer_id, extended)
                for value in ROW_SAMPLES[label]:
                    check_cell(cell, value, ser)
    # the Ember-to-Ember rows are checked on their own too
    for label, cells in ember_only.items():
        for name, cell in cells.items():
            ser = serializers.by_id(serializers.get(name).serializer_id, True)
            for value in ROW_SAMPLES[label]:
                check_cell(cell, value, ser)
