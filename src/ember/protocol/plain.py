"""The plain lane: a small call or result with nothing but a payload, without a Message.

Most calls are one small INVOKE answered by one small RESULT, with no flags, annotations or
correlation id, each arriving in one chunk. For those, building a :class:`~.framing.Message`,
feeding the :class:`~.framing.Decoder` and running :func:`~.framing.encode` cost more than
the call's own work. :func:`plain_header` recognises such a chunk (checking everything the
decoder would check for it) and :func:`plain_frame` writes such a frame; anything else goes
the general way, unchanged.
"""

from __future__ import annotations

import struct
from typing import Any

from .framing import _HEADER, _TAG, _ZERO_ID, HEADER_SIZE, MAGIC, PROTOCOL_VERSION

__all__ = ["plain_header", "plain_frame", "PLAIN_MAX"]

# the header's fields up to the annotation size (tag and version as one string), and its magic
_START = struct.Struct("!6sBBHHII")
_TAG_VERSION = _HEADER.pack(_TAG, PROTOCOL_VERSION, 0, 0, 0, 0, 0, 0, _ZERO_ID, 0, 0)[:6]
_MAGIC_BYTES = MAGIC.to_bytes(2, "big")

# payloads up to this size may take the plain lane (bigger ones have their own path: parts,
# shared memory, out-of-band buffers)
PLAIN_MAX = 16 * 1024


def plain_header(decoder: Any, chunk: bytes, mtype: int) -> tuple[int, int] | None:
    """``(serializer id, seq)`` when ``chunk`` is exactly one whole frame of type ``mtype``,
    with no flags and no annotations, that ``decoder`` would accept now; else None (the
    chunk then goes to the decoder, which judges it in full). The caller has checked that
    ``decoder.idle`` holds: the chunk is the start of a message."""
    # type, then flags (bytes 6 and 8-9) first: a oneway call or a batch is turned away at once
    if len(chunk) < HEADER_SIZE or chunk[6] != mtype or chunk[8] or chunk[9] or chunk[38:40] != _MAGIC_BYTES:
        return None
    allowed = decoder.allowed_types
    if allowed is not None and mtype not in allowed:
        return None
    head, t, ser, flags, seq, dlen, alen = _START.unpack_from(chunk)
    if (t != mtype or flags or alen or HEADER_SIZE + dlen != len(chunk) or head != _TAG_VERSION
            or dlen > decoder.max_message_size):
        return None
    return ser, seq


def plain_frame(mtype: int, serializer_id: int, seq: int, data: bytes, flags: int = 0) -> bytes:
    """The frame of a message with only a payload: no annotations, no correlation id, and
    ``flags`` as given (not COMPRESSED: ``data`` is sent as it is)."""
    return _HEADER.pack(_TAG, PROTOCOL_VERSION, mtype, serializer_id, flags, seq & 0xFFFF, len(data), 0, _ZERO_ID, 0,
                        MAGIC) + data
