"""The daemon's plain lane: the common small call answered without the general machinery.

A call that arrives as one chunk holding one INVOKE with no flags and no annotations, for a
method of a registered object whose lookup is cached, on a daemon without hooks, statistics
or reply annotations, is decoded, run and answered here in one function: no
:class:`~ember.protocol.Message` on the way in, no :func:`~ember.protocol.encode` on the way
out (the reply is one :func:`~ember.protocol.plain.plain_frame`). Everything the general path
does for such a call is done here too (the serializer must be accepted, the call context is
filled, a coroutine is awaited, the object of a reaped registration is touched); any other
case — the first call of a method, an exception, an iterator result, a large or annotated
reply — is handed to the general path (:class:`~ember.server.dispatch.Call`), so its
behaviour is the same whichever lane a call took.
"""

from __future__ import annotations

import types
from typing import Any

from .. import context, serializers
from ..errors import SerializeError
from ..protocol import COMPRESS_THRESHOLD, HEADER_SIZE, T_INVOKE, T_RESULT, Message
from ..protocol.plain import PLAIN_MAX, plain_frame, plain_header
from . import meta as metamod
from .dispatch import Call, Dispatcher
from .guards import contained
from .session_state import Connection, fill_call_context
from .values import PLAIN

__all__ = ["answer_plain"]

_by_id = serializers.by_id
_get_context = context.get
_COROUTINE = types.CoroutineType


def answer_plain(d: Dispatcher, encode: Any, conn: Connection, chunk: bytes) -> Any:
    """The reply frame to send for ``chunk`` when it is a plain call (bytes, or what
    ``encode`` makes of a reply the general way); None when it is not one: then nothing was
    done, and the chunk goes to the connection's decoder as usual."""
    session = conn.session
    header = plain_header(session.decoder, chunk, T_INVOKE)
    if header is None or d.hooked or d.stats is not None or d._has_annotations_hook or session.wirelog is not None:
        return None
    ser_id, seq = header
    if ser_id not in d.accepted_ids:
        return None
    try:
        ser = _by_id(ser_id, session.extended)
    except SerializeError:
        return None  # the general path closes the connection
    ctx = _get_context()
    fill_call_context(ctx, conn, seq, 0, ser_id, {}, None)
    try:
        object_id, method, args, kwargs = ser.loads_call(chunk[HEADER_SIZE:])
    except Exception as exc:  # as the general path answers it: refused data, a class that may not be rebuilt
        return encode(d.exception_reply(_invoke_message(ser_id, seq, ctx), ser, exc), session)
    if type(args) is not tuple and type(args) is not list:
        return None
    registry = d.registry
    cached = registry.resolved.get((object_id, method))
    if cached is None or registry.resolved_gen != metamod.generation:
        return None  # the first call of a method, or an object of a session: the general path (decodes it again)
    if registry.reaping:
        registry.touch(object_id)
    obj, func = cached
    try:
        result = func(*args, **kwargs) if kwargs else func(*args)
        if type(result) is _COROUTINE:
            result = d.driver.await_coroutine(result)
    except BaseException as exc:
        call = Call(d, conn, _invoke_message(ser_id, seq, ctx), ser, ctx, object_id, obj, method, func, args, kwargs)
        return encode(call.failed(contained(exc)), session)
    if type(result) in PLAIN:
        try:
            data = ser.dumps(result)
        except Exception:
            data = None  # the general path answers the error
        if (type(data) is bytes and len(data) <= PLAIN_MAX and not ctx.response_annotations
                and (len(data) <= COMPRESS_THRESHOLD or not d.config.COMPRESSION)):
            frame = plain_frame(T_RESULT, ser_id, seq, data)
            shm = session.shm
            return frame if shm is None else shm.outgoing(frame)
    call = Call(d, conn, _invoke_message(ser_id, seq, ctx), ser, ctx, object_id, obj, method, func, args, kwargs)
    return encode(call.complete(result), session)


def _invoke_message(ser_id: int, seq: int, ctx: Any) -> Message:
    """The INVOKE a plain call stands for, for the general path's replies (it reads the header fields)."""
    return Message(T_INVOKE, ser_id, 0, seq, b"", ctx.annotations, None)
