"""The annotation block of a frame: ``(id, length, bytes)`` chunks, written and read."""

from __future__ import annotations

import struct

from ..errors import ProtocolError

__all__ = ["encode_annotations", "parse_annotations"]

_ANN = struct.Struct("!4sI")


def encode_annotations(annotations: dict[str, bytes]) -> bytes:
    """The annotation block of a frame: 4-character ASCII ids, each with its bytes."""
    parts = []
    for key, value in annotations.items():
        if len(key) != 4:
            raise ProtocolError(f"annotation id must be exactly 4 characters, got {key!r}")
        try:
            bkey = key.encode("ascii")
        except UnicodeEncodeError:
            raise ProtocolError(f"annotation id must be ASCII, got {key!r}") from None
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ProtocolError(f"annotation {key!r} value must be bytes, got {type(value).__name__}")
        parts.append(_ANN.pack(bkey, len(value)))
        parts.append(bytes(value))
    return b"".join(parts)


def parse_annotations(block: bytes | memoryview) -> dict[str, bytes]:
    """Parse an annotation block; it must be consumed exactly."""
    result: dict[str, bytes] = {}
    pos = 0
    end = len(block)
    while pos < end:
        if end - pos < 8:
            raise ProtocolError(f"annotation block has {end - pos} trailing bytes, too few for a chunk header")
        bkey, length = _ANN.unpack_from(block, pos)
        pos += 8
        if length > end - pos:
            raise ProtocolError(
                f"annotation chunk {bkey!r} claims {length} bytes but only {end - pos} remain in the block"
            )
        try:
            key = bkey.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(f"annotation id {bkey!r} is not ASCII") from None
        result[key] = bytes(block[pos : pos + length])
        pos += length
    return result
