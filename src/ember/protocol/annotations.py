"""The annotation ids Ember uses on the wire, and the codecs of the structured ones.

Pyro5 ignores annotations it does not know, so Ember peers recognise each other through
them: both sides send ``EMBR`` (extended value types) and ``EMUX`` (replies may come out of
order) in CONNECT/CONNECTOK, and ``EOOB`` (big buffers and numpy arrays out of band, each
message that has some carrying ``EBUF``); a daemon puts the deny code in ``DENY`` on a CONNECTFAIL.
``BLBI`` and ``STRM`` are Pyro5's own (SerializedBlob routing, iterator streams).
"""

from __future__ import annotations

import marshal
from typing import Any

from ..errors import SerializeError
from ..serializers.marshal_check import check_marshal
from ..serializers.oob import OOB_ANNOTATION

__all__ = ["EMBER_CAPS", "MULTIPLEX_CAPS", "OOB_CAPS", "OOB_ANNOTATION",
           "DENY_ANNOTATION", "BLOB_ANNOTATION", "STREAM_ANNOTATION", "CAPS_ON",
           "SHM_OFFER", "SHM_DESCRIPTOR", "blob_annotation", "parse_blob_annotation"]

EMBER_CAPS = "EMBR"
MULTIPLEX_CAPS = "EMUX"
OOB_CAPS = "EOOB"
DENY_ANNOTATION = "DENY"
BLOB_ANNOTATION = "BLBI"
STREAM_ANNOTATION = "STRM"
CAPS_ON = b"1"  # the value of a capability annotation that is switched on
# issue 16 (shared memory, see ember.transport.shm): CONNECT asks with EMSH=1, CONNECTOK offers
# (token + side socket name); EMSD on a message: its payload is in the sender's shared region
SHM_OFFER = "EMSH"
SHM_DESCRIPTOR = "EMSD"


def blob_annotation(info: Any, object_id: str, method: str) -> bytes:
    """The ``BLBI`` value of a KEEPSERIALIZED call: ``(info, object id, method)``, always marshal."""
    try:
        return marshal.dumps((info, object_id, method))
    except ValueError as exc:
        raise SerializeError(f"SerializedBlob info must be marshal-serializable (plain values): {exc}") from None


def parse_blob_annotation(raw: bytes | None) -> tuple[Any, str, str]:
    """(info, object id, method) from a ``BLBI`` annotation; SerializeError when malformed."""
    if raw is None:
        raise SerializeError("KEEPSERIALIZED call without a BLBI annotation")
    check_marshal(raw)  # a hostile annotation must not declare more than it carries
    try:
        value = marshal.loads(raw)
    except (ValueError, EOFError, TypeError) as exc:
        raise SerializeError(f"malformed BLBI annotation: {exc}") from None
    if not (isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], str) and isinstance(value[2], str)):
        raise SerializeError("malformed BLBI annotation: expected (info, object id, method)")
    return value
