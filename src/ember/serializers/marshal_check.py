"""Check untrusted marshal data before ``marshal.loads`` sees it.

``marshal.loads`` trusts the sizes its input declares: a list or tuple header announcing
2³¹ items makes it allocate (and later walk) room for all of them before it finds the input
ends after a few bytes, so 16 bytes of nested list headers can occupy a process for
seconds. Well-formed data can never declare more items than it has bytes (every item takes
at least one), so :func:`check_marshal` refuses data whose declared container sizes, or
long-integer digit counts, exceed the bytes that carry them.

Cost: one regular-expression scan (in C) for list and tuple headers (0.4 µs for a small
call); only when the declared sizes it finds add up to more than the data's length (hostile
input, or a ``(`` or ``[`` inside a string followed by bytes that read as a big count) is the
data walked item by item to decide exactly (a few µs for a small call).
"""

from __future__ import annotations

import re
import struct

from ..errors import SerializeError

__all__ = ["check_marshal", "may_share"]

_FLAG_REF = 0x80
# type codes of objects whose size field makes marshal allocate (and walk) room for every item
# up front: tuple '(' and list '[' (4-byte item count), each also with the FLAG_REF bit. (A long's
# digit count costs nothing: its memory is never touched before marshal finds the data short.)
_SIZED = re.compile(rb"[\x28\x5b\xa8\xdb](....)", re.S)
_I32 = struct.Struct("<i")
# a back-reference ('r' + 4-byte index) to one of the first 65536 objects, and a tuple marked
# for back-references ('(' or ')' with FLAG_REF): together they may build a tuple that refers
# to itself while it is still being read, which crashes CPython (a NULL item)
_SMALL_REF = re.compile(rb"r..\x00\x00", re.S)
_REF_TUPLE = re.compile(rb"[\xa8\xa9]")
# any plausible back-reference (an index below 2**24): the decoded value may share its parts
_ANY_REF = re.compile(rb"r...\x00", re.S)


def may_share(data: bytes | bytearray | memoryview) -> bool:
    """Whether marshal data can hold one container in several places (back-references)."""
    return _ANY_REF.search(data) is not None

# fixed sizes of the payload that follows a type code
_FIXED = {ord("N"): 0, ord("F"): 0, ord("T"): 0, ord("S"): 0, ord("."): 0, ord("0"): 0,
          ord("i"): 4, ord("g"): 8, ord("y"): 16, ord("r"): 4}
# a 4-byte length, then that many bytes
_LEN4 = {ord("s"), ord("t"), ord("u"), ord("a"), ord("A")}
# a 1-byte length, then that many bytes
_LEN1 = {ord("z"), ord("Z")}


def check_marshal(data: bytes | bytearray | memoryview) -> None:
    """Raise :class:`SerializeError` if ``data`` declares more than it carries, or refers back
    to a tuple it is still reading."""
    if _SMALL_REF.search(data) is not None and _REF_TUPLE.search(data) is not None:
        _walk(memoryview(data).cast("B"))
        return
    found = _SIZED.findall(data)
    if not found:
        return
    size = len(data)
    if len(found) == 1:
        declared = abs(int.from_bytes(found[0], "little", signed=True))
    else:
        declared = sum(map(abs, struct.unpack(f"<{len(found)}i", b"".join(found))))
    if declared > size:
        _walk(memoryview(data).cast("B"))


def _bad(what: str) -> SerializeError:
    return SerializeError(f"invalid marshal data: {what}")


def _walk(buf: memoryview) -> None:
    """Walk the whole value; whenever a container opens, the items still owed by every open
    container must fit in the bytes left (each item takes at least one byte), and a
    back-reference must not point at a tuple that is still open."""
    end = len(buf)
    pos = 0
    owed = 0  # items announced by open lists/tuples/sets and not yet started
    # per open container: [items still to start (-1: a dict, until its '0'), its index in refs or -1]
    stack: list[list[int]] = []
    refs: list[bool] = []  # objects marked for back-references, in marshal's order; True: a tuple being read
    while True:
        if pos >= end:
            raise _bad("data ends inside a value (truncated)")
        flagged = buf[pos] & _FLAG_REF
        code = buf[pos] & ~_FLAG_REF
        pos += 1
        if stack and stack[-1][0] == -1 and code == ord("0"):
            _close(stack.pop(), refs)  # end of a dict: it was an item of the container around it
        else:
            if stack and stack[-1][0] > 0:
                stack[-1][0] -= 1
                owed -= 1
            ref = -1
            if flagged:
                ref = len(refs)
                refs.append(False)
            if code in _FIXED:
                if code == ord("r"):
                    index = _int(buf, pos, end)
                    if not 0 <= index < len(refs):
                        raise _bad(f"back-reference {index} to an object not read yet")
                    if refs[index]:
                        raise _bad("back-reference to a tuple that is still being read")
                pos += _FIXED[code]
            elif code in _LEN4:
                n = _int(buf, pos, end)
                if n < 0:
                    raise _bad("negative string size")
                pos += 4 + n
            elif code in _LEN1:
                if pos >= end:
                    raise _bad("truncated short string")
                pos += 1 + buf[pos]
            elif code == ord("f") or code == ord("x"):  # floats (and complex) as text
                for _ in range(1 if code == ord("f") else 2):
                    if pos >= end:
                        raise _bad("truncated float")
                    pos += 1 + buf[pos]
            elif code == ord("l"):
                pos += 4 + 2 * abs(_int(buf, pos, end))
            elif code in _CONTAINERS:
                if code == ord(")"):
                    if pos >= end:
                        raise _bad("truncated small tuple")
                    n = buf[pos]
                    pos += 1
                else:
                    n = _int(buf, pos, end)
                    pos += 4
                    if n < 0:
                        raise _bad("negative container size")
                owed += n
                if owed > end - pos:
                    raise _bad(f"a container declares {n} items but only {end - pos} bytes remain")
                if n:
                    if ref >= 0 and code in _TUPLES:
                        refs[ref] = True  # open until its last item is read
                    stack.append([n, ref])
                    continue
            elif code == ord("{"):
                stack.append([-1, ref])
                continue
            elif code == ord("c"):
                raise _bad("code objects are refused")
            else:
                raise _bad(f"unknown type code {code:#04x}")
            if pos > end:
                raise _bad("data ends inside a value (truncated)")
        while stack and stack[-1][0] == 0:
            _close(stack.pop(), refs)
        if not stack:
            return


def _close(entry: list[int], refs: list[bool]) -> None:
    """A container is complete: a tuple may be referred to from now on."""
    if entry[1] >= 0:
        refs[entry[1]] = False


_TUPLES = frozenset((ord("("), ord(")")))
_CONTAINERS = frozenset((ord("("), ord("["), ord("<"), ord(">"), ord(")")))


def _int(buf: memoryview, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise _bad("truncated size field")
    return int(_I32.unpack_from(buf, pos)[0])
