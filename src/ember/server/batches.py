"""Running a batch: the calls a ``BatchProxy`` sent in one message, in order, on one object.

Each entry is ``(name, args)`` or ``(name, args, kwargs)``. Its shape is checked as the loop
reaches it, with the values the loop unpacks anyway (a separate pass over a batch of a
thousand calls cost a tenth of its time): a name when it is first looked up, args at every
call, kwargs when the call failed (empty kwargs of another type than dict count as none). A
malformed entry ends the batch with a :class:`~ember.errors.SerializeError` reply, the calls
before it having run, as calls before one that raises have.
"""

from __future__ import annotations

import reprlib
import types
from collections.abc import Callable
from typing import Any

from ..errors import SerializeError
from ..protocol import F_BATCH, F_ONEWAY, Message, MsgType
from ..serializers import ExceptionWrapper
from .exposure import resolve_method
from .guards import contained
from .values import PLAIN, is_iterator

__all__ = ["run_batch"]

_SEQUENCES = frozenset({list, tuple})


def run_batch(call: Any) -> Message | None:
    """Run every call of the batch ``call`` (a :class:`~ember.server.dispatch.Call` whose
    ``args`` are the entries) in order; stop at the first failure."""
    d = call.dispatcher
    msg, ser, obj = call.msg, call.ser, call.obj
    oneway = msg.flags & F_ONEWAY
    results: list[Any] = []
    append = results.append
    funcs: dict[str, Callable] = {}
    for entry in call.args:
        try:
            if len(entry) == 2:  # Ember clients leave out empty kwargs
                name, args = entry
                kwargs = None
            else:
                name, args, kwargs = entry
            func = funcs.get(name)
        except (TypeError, ValueError):  # not a sequence, or not of 2 or 3 items; a name that cannot be one
            return _malformed(call, entry, oneway)
        if type(args) not in _SEQUENCES:
            return _malformed(call, entry, oneway)
        try:
            if func is None:  # a name is checked once, when it is first looked up
                if type(name) is not str:
                    return _malformed(call, entry, oneway)
                func = funcs[name] = resolve_method(obj, name)
            result = func(*args, **kwargs) if kwargs else func(*args)
            if type(result) not in PLAIN:
                if type(result) is types.CoroutineType:
                    result = d.driver.await_coroutine(result)
                if is_iterator(result):
                    result = list(result)  # generators inside a batch are not streamed
            append(result)
        except BaseException as caught:
            if kwargs is not None and type(kwargs) is not dict:  # checked when it failed: `**kwargs` did
                return _malformed(call, entry, oneway)
            exc = contained(caught)
            if call.info is not None:
                d.hooks.fire("call_failed", call.info, exc)
            if d.stats is not None:
                d.stats.record(call.object_id, call.method, call.t0, True)
            if oneway:
                d.report_error(call.conn, name, exc)
                return None
            exc._pyroTraceback = d.traceback_lines(exc)  # type: ignore[attr-defined]
            append(ExceptionWrapper(exc))
            break
    else:
        if call.info is not None:
            d.hooks.fire("call_finished", call.info, results)
        if d.stats is not None:
            d.stats.record(call.object_id, call.method, call.t0, False)
    if oneway:
        return None
    try:
        data = ser.dumps(results)
    except Exception as exc:
        return d.exception_reply(msg, ser, exc)
    return Message(MsgType.RESULT, msg.serializer_id, F_BATCH, msg.seq, data, d.reply_annotations(),
                   msg.correlation_id)


def _malformed(call: Any, entry: Any, oneway: int) -> Message | None:
    """The answer to a batch with an entry of the wrong shape: an exception reply (reported
    in the log for a oneway batch), the connection kept."""
    index = next(i for i, e in enumerate(call.args) if e is entry)
    exc = SerializeError(f"invalid batch call #{index}: expected (method name, args) or (method name, args, "
                         f"kwargs), got {reprlib.repr(entry)}")
    if oneway:
        call._oneway_failed(exc)
        return None
    return call.failed(exc)
