"""What both proxies (blocking and asyncio) say and understand on the wire, without I/O:
the CONNECT message, the handshake answer, call payloads, and replies turned into results."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .. import context, errors, serializers
from ..blob import BLOB_ANNOTATION, SerializedBlob, blob_annotation
from ..errors import CommunicationError, ConnectionDeniedError, ProtocolError, PyroError
from ..protocol import (
    DENY_ANNOTATION,
    EMBER_CAPS,
    F_BATCH,
    F_EXCEPTION,
    F_ITEMSTREAM,
    F_KEEPSERIALIZED,
    MULTIPLEX_CAPS,
    Message,
    MsgType,
)
from ..serializers import _classes

__all__ = ["EMBER_CAPS", "MULTIPLEX_CAPS", "RESULT_TYPES", "HANDSHAKE_REPLY_TYPES", "connect_message",
           "Handshake", "handshake_result", "call_payload", "call_result", "parse_metadata"]

_ON = b"1"
RESULT_TYPES = frozenset({MsgType.RESULT})
HANDSHAKE_REPLY_TYPES = frozenset({MsgType.CONNECTOK, MsgType.CONNECTFAIL})


def connect_message(ser: Any, handshake: Any, object_id: str, seq: int, multiplex: bool = False) -> Message:
    """The CONNECT for ``object_id``, carrying the caller's annotations and Ember's capabilities."""
    ctx = context.peek()
    ann = dict(ctx.annotations) if ctx is not None and ctx.annotations else {}
    ann[EMBER_CAPS] = _ON
    if multiplex:
        ann[MULTIPLEX_CAPS] = _ON
    corr = ctx.correlation_id if ctx is not None else None
    payload = ser.dumps({"handshake": handshake, "object": object_id})
    return Message(MsgType.CONNECT, ser.serializer_id, 0, seq, payload, ann, corr)


class Handshake:
    """What the daemon answered to CONNECT."""

    __slots__ = ("extended", "serializer", "response", "meta", "multiplex")

    def __init__(self, extended: bool, serializer: Any, response: Any, meta: Any, multiplex: bool) -> None:
        self.extended = extended
        self.serializer = serializer
        self.response = response
        self.meta = meta
        self.multiplex = multiplex


def handshake_result(reply: Message, location: str | None, serializer_id: int) -> Handshake:
    """Interpret CONNECTOK/CONNECTFAIL; raises ConnectionDeniedError/CommunicationError on refusal."""
    extended = reply.annotations.get(EMBER_CAPS) == _ON
    data = serializers.by_id(reply.serializer_id, extended).loads(reply.data)
    if reply.type == MsgType.CONNECTFAIL:
        deny = reply.annotations.get(DENY_ANNOTATION)
        if deny is not None:
            code = int(deny) if deny.isdigit() else errors.DENY_UNSPECIFIED
            raise ConnectionDeniedError(f"connection to {location} rejected: {data}", code)
        raise CommunicationError(f"connection to {location} rejected: {data}")
    if ctx := context.peek():
        ctx.response_annotations = reply.annotations
    response = data.get("handshake") if isinstance(data, dict) else None
    meta = data.get("meta") if isinstance(data, dict) else None
    multiplex = reply.annotations.get(MULTIPLEX_CAPS) == _ON
    return Handshake(extended, serializers.by_id(serializer_id, extended), response, meta, multiplex)


def parse_metadata(meta: Any, uri: Any) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(methods, attrs, oneway) from the daemon's metadata mapping."""
    if not isinstance(meta, dict):
        raise ProtocolError("invalid metadata from daemon")
    methods = frozenset(meta.get("methods") or ())
    attrs = frozenset(meta.get("attrs") or ())
    if not methods and not attrs:
        raise PyroError(f"remote object '{uri}' doesn't expose any methods or attributes")
    return methods, attrs, frozenset(meta.get("oneway") or ())


def call_payload(ser: Any, object_id: str, method: str, args: Any, kwargs: dict | None,
                 ann: dict | None, serializer_id: int) -> tuple[bytes, dict | None, int]:
    """(payload, annotations, extra flags) of an INVOKE; a lone SerializedBlob argument
    travels KEEPSERIALIZED, and a received blob is forwarded byte for byte."""
    if len(args) == 1 and type(args[0]) is SerializedBlob and not kwargs:
        blob = args[0]
        ann = dict(ann) if ann else {}
        ann[BLOB_ANNOTATION] = blob_annotation(blob.info, object_id, method)
        if blob.is_blob and blob.serializer_id == serializer_id:
            return blob.payload, ann, F_KEEPSERIALIZED
        return ser.dumps_call(object_id, method, blob.deserialized(), None), ann, F_KEEPSERIALIZED
    return ser.dumps_call(object_id, method, args, kwargs), ann, 0


def call_result(reply: Message, ser: Any, make_iterator: Callable[[str], Any]) -> Any:
    """The value of a RESULT: raises the remote exception, returns batch results as a
    generator, and a stream as ``make_iterator(stream_id)``."""
    rflags = reply.flags
    if rflags & F_ITEMSTREAM:
        stream_id = reply.annotations.get("STRM")
        if not stream_id:
            raise PyroError("result of call is an iterator, but the server is not configured to allow streaming")
        return make_iterator(stream_id.decode("ascii"))
    result = ser.loads(reply.data)
    if rflags & F_EXCEPTION:
        raise result
    if rflags & F_BATCH:
        return batch_results(result)
    return result


def batch_results(results: list) -> Iterator[Any]:
    """Batch results in order; a failed call raises its exception when reached.

    The daemon stops a batch at its first failure, so only the last result can be one.
    """
    if results and isinstance(results[-1], _classes.ExceptionWrapper):
        yield from results[:-1]
        results[-1].raise_it()
    yield from results
