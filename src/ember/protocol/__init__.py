"""The Pyro5 wire protocol (version 502), sans-I/O, for both roles.

Bytes in, :class:`Message` out, and back; nothing here touches a socket, a thread or an
event loop. :mod:`.framing` holds the header, flags, :class:`Message`, :func:`encode` and
the incremental :class:`Decoder`; :mod:`.annotations` the annotation ids Ember uses;
:mod:`.client` the :class:`ClientSession` a proxy drives and :mod:`.server` the
:class:`ServerSession` a daemon drives for each connection. The names that lived in the
single ``ember.protocol`` module of earlier releases are all importable from here.
"""

from __future__ import annotations

from .annotations import (
    BLOB_ANNOTATION,
    CAPS_ON,
    DENY_ANNOTATION,
    EMBER_CAPS,
    MULTIPLEX_CAPS,
    OOB_ANNOTATION,
    OOB_CAPS,
    SHM_DESCRIPTOR,
    SHM_OFFER,
    STREAM_ANNOTATION,
    blob_annotation,
    parse_blob_annotation,
)
from .budget import ByteBudget
from .client import ClientSession, Handshake
from .framing import (
    COMPRESS_THRESHOLD,
    F_BATCH,
    F_COMPRESSED,
    F_CORR_ID,
    F_EXCEPTION,
    F_ITEMSTREAM,
    F_KEEPSERIALIZED,
    F_ONEWAY,
    HEADER_SIZE,
    LARGE_PAYLOAD,
    MAGIC,
    PING_SERIALIZER_ID,
    PROTOCOL_VERSION,
    T_INVOKE,
    T_RESULT,
    Decoder,
    Flags,
    Message,
    MsgType,
    check_prefix,
    decode,
    encode,
    parse_annotations,
)
from .server import ServerSession
from .states import State

__all__ = [
    "ByteBudget",
    "BLOB_ANNOTATION", "CAPS_ON", "COMPRESS_THRESHOLD", "DENY_ANNOTATION", "EMBER_CAPS", "F_BATCH", "F_COMPRESSED",
    "F_CORR_ID", "F_EXCEPTION", "F_ITEMSTREAM", "F_KEEPSERIALIZED", "F_ONEWAY", "HEADER_SIZE", "LARGE_PAYLOAD",
    "MAGIC", "MULTIPLEX_CAPS", "OOB_ANNOTATION", "OOB_CAPS",
    "PING_SERIALIZER_ID", "PROTOCOL_VERSION", "STREAM_ANNOTATION", "T_INVOKE", "T_RESULT",
    "ClientSession", "State", "Decoder", "Flags", "Handshake", "Message", "MsgType", "ServerSession",
    "blob_annotation", "check_prefix", "decode", "encode", "parse_annotations", "parse_blob_annotation",
]
__all__ += ["SHM_DESCRIPTOR", "SHM_OFFER"]  # issue 16
