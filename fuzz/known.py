"""Known issues the fuzzer can leave out (``--skip-known``): inputs that would hit problems
already reported and being fixed elsewhere, recognised without decoding them, so that a long
run on code without the fix is not dominated by the same crash or freeze again and again.
"""

from __future__ import annotations

import sys
import zlib

from .inputs import F_BATCH, F_KEEPSERIALIZED, INVOKE, SER


class _Stop(Exception):
    pass


def marshal_danger(data: bytes) -> str | None:
    """Walk marshal data the way ``marshal.loads`` reads it (version 4) and say whether loading it
    hits a known CPython hazard (issue 13 item 1 and the crash found by this fuzzer):

    * ``"marshal-size"``: a tuple or list declaring more items than there are bytes left; CPython
      allocates the declared size first and walks it when freeing it (seconds of frozen process);
    * ``"marshal-ref"``: a back-reference (``r``) to a tuple that is still being read: CPython
      hands out the half-built tuple (NULL items) and hashing or printing it crashes the process
      with SIGSEGV, e.g. ``marshal.loads(b"\xa9\x01{r\x00\x00\x00\x00N0")``;
    * ``"marshal-code"``: a code object.

    Malformed data that marshal rejects cleanly returns None.
    """
    n = len(data)
    refs: list[bool] = []  # per ref index: is it a tuple under construction?
    pos = 0

    def need(k: int) -> None:
        if pos + k > n:
            raise _Stop

    def i32() -> int:
        nonlocal pos
        need(4)
        v = int.from_bytes(data[pos : pos + 4], "little", signed=True)
        pos += 4
        return v

    def obj(depth: int) -> None:
        nonlocal pos
        if depth > 2000:  # marshal's own nesting limit: it stops reading there
            raise _Stop
        need(1)
        code = data[pos]
        pos += 1
        flag, t = code & 0x80, chr(code & 0x7F)
        if t in "0NFTS.":
            if flag and t != "0":
                refs.append(False)
            return
        if t == "r":
            idx = i32()
            if 0 <= idx < len(refs) and refs[idx]:
                raise _Danger("marshal-ref")
            return
        if t in "(":
            count = i32()
        elif t == ")":
            need(1)
            count = data[pos]
            pos += 1
        else:
            count = -1
        if count >= 0:  # a tuple: referenced while incomplete
            if count > max(n - pos, 4096):
                raise _Danger("marshal-size")
            slot = len(refs)
            if flag:
                refs.append(True)
            for _ in range(count):
                obj(depth + 1)
            if flag:
                refs[slot] = False
            return
        if flag:
            refs.append(False)
        if t == "i":
            i32()
        elif t == "l":
            digits = abs(i32())
            need(2 * digits)
            pos += 2 * digits
        elif t == "g":
            need(8)
            pos += 8
        elif t == "y":
            need(16)
            pos += 16
        elif t in "fxzZ":  # one (two for a complex) byte-length-prefixed string
            for _ in range(2 if t == "x" else 1):
                need(1)
                k = data[pos]
                need(1 + k)
                pos += 1 + k
        elif t in "stuaA":
            k = i32()
            if k < 0:
                raise _Stop
            need(k)
            pos += k
        elif t in "[<>":
            count = i32()
            if t == "[" and count > max(n - pos, 4096):
                raise _Danger("marshal-size")
            for _ in range(max(count, 0)):
                obj(depth + 1)
        elif t == "{":
            while True:
                need(1)
                if data[pos] == ord("0"):
                    pos += 1
                    break
                obj(depth + 1)
                obj(depth + 1)
        elif t == "c":
            raise _Danger("marshal-code")
        else:
            raise _Stop  # unknown type code: marshal raises ValueError

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 2600))  # Python-to-Python calls use no C stack on 3.11+
    try:
        obj(0)
    except _Stop:
        return None
    except _Danger as exc:
        return exc.args[0]
    finally:
        sys.setrecursionlimit(limit)
    return None


class _Danger(Exception):
    pass


def known_issue(data: bytes) -> str | None:
    """The name of a known, already reported issue this frame would trigger, or None.

    Used with ``--skip-known`` so that a long run on code without the fix is not dominated
    by the same multi-second freeze again and again; the number of skipped inputs is reported.
    """
    if len(data) < 40 or data[:4] != b"PYRO":
        return None
    ser, flags = data[7], int.from_bytes(data[8:10], "big")
    issue = _marshal_issue(data, ser, flags)
    if issue is None and flags & F_BATCH and data[6] == INVOKE and _malformed_batch(data):
        return "malformed-batch"  # (decoded here only once marshal data was found safe)
    return issue


def _marshal_issue(data: bytes, ser: int, flags: int) -> str | None:
    if ser != 2 and not flags & F_KEEPSERIALIZED:  # BLBI annotations are always marshal
        return None
    body = data[40:]
    if flags & 0x02 and ser == 2:
        alen = int.from_bytes(data[16:20], "big")
        try:
            body = body[:alen] + zlib.decompressobj().decompress(body[alen:], 1 << 21)
        except zlib.error:
            return None
    if ser == 2:
        alen = int.from_bytes(data[16:20], "big")
        issue = marshal_danger(body[alen:])
        if issue:
            return issue
    if flags & F_KEEPSERIALIZED:
        return _blbi_danger(data)
    return None


def _blbi_danger(data: bytes) -> str | None:
    alen = int.from_bytes(data[16:20], "big")
    block, pos = data[40 : 40 + alen], 0
    while pos + 8 <= len(block):
        key, length = block[pos : pos + 4], int.from_bytes(block[pos + 4 : pos + 8], "big")
        if key == b"BLBI":
            return marshal_danger(block[pos + 8 : pos + 8 + length])
        pos += 8 + length
    return None


def _malformed_batch(data: bytes) -> bool:
    """A batch INVOKE whose call list is not a list of [method, args, kwargs] sequences (issue 13
    item 10: dropped without a reply; on the asyncio server never answered)."""
    try:
        alen = int.from_bytes(data[16:20], "big")
        payload = data[40 + alen :]
        if data[9] & 0x02:  # COMPRESSED (low byte of the flags)
            payload = zlib.decompress(payload)
        _obj, _method, calls, _kwargs = SER[data[7]].loads_call(payload)
    except Exception:
        return True
    if not isinstance(calls, (list, tuple)):
        return True
    for call in calls:
        if not isinstance(call, (list, tuple)) or len(call) != 3:
            return True
        method, args, kwargs = call
        if not isinstance(method, str) or not isinstance(args, (list, tuple)) or not (kwargs is None or
                                                                                    isinstance(kwargs, dict)):
            return True
    return False
