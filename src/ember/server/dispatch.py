"""The Dispatcher: every rule of a call, for every server type, without I/O.

One per daemon. A driver hands it each decoded message: :meth:`Dispatcher.handle` answers
a CONNECT or a PING and runs an INVOKE synchronously; the asyncio driver instead asks
:meth:`Dispatcher.prepare` for a :class:`Call` and awaits :meth:`Call.run_async`. Both runs
end in the same :meth:`Call.complete`/:meth:`Call.failed`, which build the reply and fire
the daemon's hooks. Exposure, instancing, batches, streamed iterators, oneway calls and
exception replies live here and nowhere else. What needs the driver's machinery (running a
coroutine from a thread, scheduling oneway work) goes through the driver's public methods.
"""

from __future__ import annotations

import inspect
import logging
import time
import types
from collections.abc import Callable
from time import perf_counter
from typing import Any

from .. import context, serializers
from ..errors import (
    DaemonError,
    MessageTooLargeError,
    ProtocolError,
    PyroError,
    SerializeError,
    format_exception_only,
    format_traceback,
)
from ..protocol import (
    BLOB_ANNOTATION,
    F_BATCH,
    F_EXCEPTION,
    F_ITEMSTREAM,
    F_KEEPSERIALIZED,
    F_ONEWAY,
    HEADER_SIZE,
    SHM_DESCRIPTOR,
    STREAM_ANNOTATION,
    T_INVOKE,
    T_RESULT,
    Message,
    MsgType,
    parse_blob_annotation,
)
from ..serializers import SerializedBlob, payload_of
from . import meta as metamod
from .admission import Admission, not_accepted
from .async_values import SyncIterator, async_flavour
from .batches import run_batch
from .exposure import resolve_method
from .guards import contained
from .hooks import CallInfo, HookList
from .session_state import Connection, set_call_context
from .statistics import Statistics
from .streams import close_iterator
from .values import PLAIN, is_iterator

__all__ = ["Dispatcher", "Call"]

log = logging.getLogger("ember.server.dispatch")
_T_PING = int(MsgType.PING)
_T_CONNECT = int(MsgType.CONNECT)


class Dispatcher:
    """Turns decoded messages into replies for one daemon."""

    def __init__(self, daemon: Any, custom_annotations: bool = True) -> None:
        self.daemon = daemon  # the facade: its public, overridable hooks (annotations, validate_handshake, ...)
        self.config = daemon.config
        self.registry = daemon.registry
        self.streams = daemon.streams
        self.hooks = HookList()
        self.hooked = False  # any hooks installed (checked on the hot path)
        self.admission = Admission(daemon)
        self.driver: Any = None  # set by the daemon: await_coroutine(), run_oneway(), pipelined
        self._has_annotations_hook = custom_annotations  # the daemon overrides annotations()
        self.stats: Statistics | None = None  # set by the daemon when it keeps statistics
        # SERIALIZERS_ACCEPTED: checked on every message before its payload is decoded
        self.accepted_ids = frozenset(serializers.get(name).serializer_id for name in self.config.SERIALIZERS_ACCEPTED)

    def add_hook(self, hook: Any) -> None:
        self.hooks.add(hook)
        self.hooked = True

    def remove_hook(self, hook: Any) -> None:
        self.hooks.remove(hook)
        self.hooked = bool(self.hooks)

    # ---- connections ----------------------------------------------------------------------

    def connection_opened(self, conn: Connection) -> None:
        if self.stats is not None:
            self.stats.opened()
        if self.hooked:
            self.hooks.fire("connection_opened", conn)

    def disconnecting(self, conn: Connection) -> None:
        """The daemon's ``client_disconnect`` hook, while the connection's socket and tracked
        resources are still open (the order Pyro5 calls its ``clientDisconnect`` in)."""
        try:
            self.daemon.client_disconnect(conn)
        except Exception:
            log.exception("client_disconnect hook failed")

    def connection_closed(self, conn: Connection) -> None:
        """Release what a connection held (its streams, tracked resources, session instances)."""
        self.streams.connection_closed(conn)
        for resource in list(conn.tracked_resources):
            try:
                resource.close()
            except Exception:
                log.exception("error closing tracked resource %r", resource)
        conn.tracked_resources.clear()
        conn.instances.clear()
        if self.stats is not None:
            self.stats.closed()
        if self.hooked:
            self.hooks.fire("connection_closed", conn)

    def protocol_failure(self, conn: Connection, exc: Exception) -> Message | None:
        """The peer sent bytes that are not a valid message: log; the reply (if any) tells it why."""
        log.warning("closing connection from %s: %s", conn.addr, exc)
        session = conn.session
        established = session.established
        reply = session.protocol_failure(exc)
        rejected = session.decoder.rejected
        if established and reply is None and rejected is not None and rejected[0] == T_INVOKE:
            # a call too large to read: answer it with an exception naming the limit, so the
            # client sees why (not just a closed connection); the connection then closes
            _mtype, ser_id, seq, corr = rejected
            try:
                ser = serializers.by_id(ser_id, session.extended)
            except SerializeError:
                return None
            return self.exception_reply(Message(T_INVOKE, ser_id, 0, seq, b"", None, corr), ser, _refused_call(exc))
        return reply

    # ---- messages -------------------------------------------------------------------------

    def handle(self, conn: Connection, msg: Message) -> Message | None:
        """Handle one received message and return the reply, or None when there is none."""
        mtype = msg.type
        if mtype == T_INVOKE:
            try:
                call = self.prepare(conn, msg, None)
                if type(call) is not Call:
                    return call  # type: ignore[return-value]
                return call.run_sync()
            except BaseException as exc:
                return self.call_crashed(conn, msg, contained(exc))
        if self.stats is not None:
            self.stats.bytes_in += message_size(msg)
        if mtype == _T_PING:
            return conn.session.pong(msg)
        if mtype == _T_CONNECT:
            return self.admission.handshake(conn, msg, self.driver.pipelined)
        conn.session.close_after_reply()
        return None

    def prepare(self, conn: Connection, msg: Message, ctx: context.CallContext | None) -> Call | Message | None:
        """Decode an INVOKE and find what to call: a :class:`Call`, or the reply to send
        right away (an exception reply, or None for none). ``ctx`` None means this
        thread's/task's context; the asyncio driver passes a fresh one per call."""
        shm = conn.session.shm
        if shm is not None and SHM_DESCRIPTOR in msg.annotations:  # issue 16: the payload is in shared memory
            try:
                shm.incoming(msg)
            except ProtocolError as exc:
                return self._bad_shared_memory(conn, msg, exc)
            try:
                return self.prepare(conn, msg, ctx)  # the descriptor is gone from msg: no second round
            finally:
                shm.consumed(msg)
        stats = self.stats
        if stats is not None:
            stats.bytes_in += message_size(msg)
        try:
            ser = serializers.by_id(msg.serializer_id, conn.session.extended)
        except SerializeError as exc:
            log.warning("closing connection from %s: %s", conn.addr, exc)
            conn.session.close_after_reply()
            return None
        if msg.serializer_id not in self.accepted_ids:
            log.warning("closing connection from %s: serializer %s is not accepted", conn.addr, ser.name)
            conn.session.close_after_reply()
            return self.exception_reply(msg, ser, SerializeError(not_accepted(ser.name, self.config)))
        if ctx is None:
            ctx = context.get()
        set_call_context(ctx, conn, msg)
        flags = msg.flags
        method = "?"
        obj = None
        func = None  # stays None for a batch, whose calls are in args
        registry = self.registry
        try:
            if flags & F_KEEPSERIALIZED:
                info, object_id, method = parse_blob_annotation(msg.annotations.get(BLOB_ANNOTATION))
                args, kwargs = (SerializedBlob(info, msg.data, True, msg.serializer_id),), None
            else:
                object_id, method, args, kwargs = ser.loads_call(msg.data if not msg.annotations else payload_of(msg))
                if type(args) is not tuple and type(args) is not list:
                    raise SerializeError(f"invalid call payload: args must be a list or tuple, not "
                                         f"{type(args).__name__}")
                if not flags & F_BATCH:
                    # registered instances: the exposure checks were done once for this (object, method)
                    cached = registry.resolved.get((object_id, method))
                    if cached is not None and registry.resolved_gen == metamod.generation:
                        if registry.reaping:
                            registry.touch(object_id)
                        obj, func = cached
            if obj is None:
                obj = registry.instance(object_id, conn)
                if flags & F_BATCH:
                    method, kwargs = "<batch>", None
                else:
                    func = resolve_method(obj, method)
                    registry.remember(object_id, method, obj, func)
            call = Call(self, conn, msg, ser, ctx, object_id, obj, method, func, args, kwargs)
            if stats is not None:
                call.t0 = perf_counter()
                next(stats.calls_started)
            return call
        except Exception as exc:
            if flags & F_ONEWAY:
                self.report_error(conn, method, exc)
                return None
            if obj is not None:
                self._maybe_callback_error(obj, method, conn, exc)
            return self.exception_reply(msg, ser, exc)

    def call_crashed(self, conn: Connection, msg: Message, exc: Exception) -> Message | None:
        """Last resort for an exception that escaped the call path (a bug, or input no check
        foresaw): log it and still answer the caller, keeping the connection (None for oneway
        calls, which get no answer)."""
        log.error("unexpected error in a call from %s", conn.addr, exc_info=exc)
        return self._error_answer(conn, msg, exc)

    def _bad_shared_memory(self, conn: Connection, msg: Message, exc: ProtocolError) -> Message | None:
        """A call whose shared-memory descriptor does not fit (issue 16): the caller is told
        why, then the connection closes (the regions cannot be trusted any more)."""
        log.warning("closing connection from %s: %s", conn.addr, exc)
        conn.session.close_after_reply()
        return self._error_answer(conn, msg, _refused_call(exc) if isinstance(exc, MessageTooLargeError) else exc)

    def _error_answer(self, conn: Connection, msg: Message, exc: Exception) -> Message | None:
        """The exception reply to a call that went wrong outside the method (None for oneway calls,
        and when the call's serializer is unknown: then the connection closes)."""
        if msg.flags & F_ONEWAY:
            return None
        try:
            ser = serializers.by_id(msg.serializer_id, conn.session.extended)
        except SerializeError:
            conn.session.close_after_reply()
            return None
        return self.exception_reply(msg, ser, exc)

    # ---- replies --------------------------------------------------------------------------

    def reply_annotations(self) -> dict[str, bytes]:
        return self.daemon.annotations()

    def exception_reply(self, msg: Message, ser: Any, exc: BaseException) -> Message:
        """The RESULT carrying a raised exception (with its traceback, as Pyro5 sends it)."""
        if not isinstance(exc, StopIteration):
            log.debug("call failed with %s: %s", type(exc).__name__, exc)
        exc._pyroTraceback = self.traceback_lines(exc)  # type: ignore[attr-defined]
        try:
            data = ser.dumps(exc)
        except Exception as ser_exc:
            fallback = PyroError(
                f"Error serializing exception: {ser_exc}. Original exception: {type(exc).__name__}: {exc}"
            )
            fallback._pyroTraceback = exc._pyroTraceback  # type: ignore[attr-defined]
            data = ser.dumps(fallback)
        return Message(MsgType.RESULT, msg.serializer_id, F_EXCEPTION, msg.seq, data, self.reply_annotations(),
                       msg.correlation_id)

    def traceback_lines(self, exc: BaseException) -> list[str]:
        """The ``_pyroTraceback`` an error reply carries: the full traceback (Pyro5's way), or
        with ``SEND_TRACEBACK`` off only the last line (type and message), so no file path,
        source line or local variable of the server reaches the client."""
        cfg = self.config
        if not cfg.SEND_TRACEBACK:
            return format_exception_only(type(exc), exc)
        return format_traceback(type(exc), exc, exc.__traceback__, cfg.DETAILED_TRACEBACK)

    def stream_reply(self, conn: Connection, msg: Message, ser: Any, iterator: Any) -> Message:
        """The RESULT announcing a streamed iterator (the client then pulls its items)."""
        ann = dict(self.reply_annotations())
        if self.config.ITER_STREAMING:
            try:
                ann[STREAM_ANNOTATION] = self.streams.add(iterator, conn).encode("ascii")
            except DaemonError as exc:
                return self.exception_reply(msg, ser, exc)
        else:
            close_iterator(iterator)
        # the marker exception Pyro5 sends so that clients without streaming fail loudly
        data = ser.dumps({"__class__": "Pyro5.errors.ProtocolError", "__exception__": True,
                          "args": ("result of call is an iterator",), "attributes": {"_pyroTraceback": None}})
        return Message(MsgType.RESULT, msg.serializer_id, F_EXCEPTION | F_ITEMSTREAM, msg.seq, data, ann,
                       msg.correlation_id)

    def report_error(self, conn: Any, method: str, exc: BaseException, what: str = "oneway call") -> None:
        """Hand an exception no caller will see to ``methodcall_error_handler`` (or the log)."""
        handler = self.daemon.methodcall_error_handler
        if handler is not None:
            try:
                handler(conn, method, exc)
            except Exception:
                log.exception("methodcall_error_handler failed")
        else:
            log.warning("exception in %s %s: %s: %s", what, method, type(exc).__name__, exc)

    def _maybe_callback_error(self, obj: Any, method: str, conn: Connection, exc: BaseException) -> None:
        meta = metamod.class_meta(obj if isinstance(obj, type) else type(obj))
        if method in meta.callbacks:
            self.report_error(conn, method, exc, "callback")

    def await_coroutine(self, coro: Any) -> Any:
        """Run a coroutine a method returned, from a worker thread (the driver knows how)."""
        return self.driver.await_coroutine(coro)


def _refused_call(exc: Exception) -> MessageTooLargeError:
    """What the caller of a call too large for the daemon is told."""
    return MessageTooLargeError(
        f"{exc}: the daemon refused the call and closed the connection; send less data per call "
        f"(in chunks, or as a stream) or raise MAX_MESSAGE_SIZE on the daemon")


def message_size(msg: Message) -> int:
    """A received message's size: header, annotation chunks and payload."""
    ann = msg.annotations
    return HEADER_SIZE + len(msg.data) + (_annotation_bytes(ann) if ann else 0)


def _annotation_bytes(annotations: dict[str, bytes]) -> int:
    return sum(8 + len(v) for v in annotations.values())


class Call:
    """One decoded call, ready to run: synchronously (:meth:`run_sync`) or on an event
    loop (:meth:`run_async`). ``func`` None means a batch, whose calls are in ``args``."""

    __slots__ = ("dispatcher", "conn", "msg", "ser", "ctx", "object_id", "obj", "method", "func", "args", "kwargs",
                 "info", "t0")

    def __init__(self, dispatcher: Dispatcher, conn: Connection, msg: Message, ser: Any, ctx: context.CallContext,
                 object_id: str, obj: Any, method: str, func: Callable | None, args: Any, kwargs: Any) -> None:
        self.dispatcher = dispatcher
        self.conn = conn
        self.msg = msg
        self.ser = ser
        self.ctx = ctx
        self.object_id = object_id
        self.obj = obj
        self.method = method
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.info: CallInfo | None = None
        self.t0 = 0.0  # when statistics are kept: time.perf_counter() at the start

    @property
    def oneway(self) -> bool:
        return bool(self.msg.flags & F_ONEWAY)

    def _start_hooks(self) -> BaseException | None:
        """Fire call_started; an exception there refuses the call (returned, to be answered)."""
        msg = self.msg
        info = self.info = CallInfo(self.conn, self.object_id, self.method,
                                    bool(msg.flags & F_ONEWAY), self.func is None, msg.correlation_id,
                                    msg.annotations, time.perf_counter())
        info.args, info.kwargs = self.args, self.kwargs
        try:
            for hook in self.dispatcher.hooks.call_started:
                hook(info)
        except Exception as exc:
            return exc
        return None

    # ---- running --------------------------------------------------------------------------

    def run_sync(self) -> Message | None:
        """Run on this thread; the reply (None for oneway calls)."""
        d = self.dispatcher
        if d.hooked and (refused := self._start_hooks()) is not None:
            return self.failed(refused)
        func = self.func
        if func is None:
            return run_batch(self)
        if self.msg.flags & F_ONEWAY:
            self._schedule_oneway()
            return None
        args, kwargs = self.args, self.kwargs
        try:
            result = func(*args, **kwargs) if kwargs is not None else func(*args)
            if type(result) is types.CoroutineType:
                result = d.driver.await_coroutine(result)
        except Exception as exc:
            return self.failed(exc)
        except BaseException as exc:
            return self.failed(contained(exc))
        return self.complete(result)

    async def run_async(self, run_in_thread: Callable[[Callable[[], Any]], Any]) -> Message | None:
        """Run from an event loop: ``async def`` methods are awaited here, everything else goes
        to a worker thread through ``run_in_thread(fn)`` (an awaitable)."""
        d = self.dispatcher
        func = self.func
        if func is not None and inspect.iscoroutinefunction(func):
            context.set_context(self.ctx)  # this task's own context
            if d.hooked and (refused := self._start_hooks()) is not None:
                return self.failed(refused)
            self.args, self.kwargs = async_flavour(self.args, self.kwargs)
            if self.msg.flags & F_ONEWAY:
                d.driver.spawn(self._oneway_async(), self.conn)
                return None
            args, kwargs = self.args, self.kwargs
            try:
                result = await (func(*args, **kwargs) if kwargs else func(*args))
            except Exception as exc:
                return self.failed(exc)
            except BaseException as exc:
                return self.failed(contained(exc))
            return self.complete(result)
        if func is not None and self.msg.flags & F_ONEWAY:
            return self.run_sync()  # schedules the work and returns at once
        return await run_in_thread(self._run_in_thread)

    def _run_in_thread(self) -> Message | None:
        context.set_context(self.ctx)
        return self.run_sync()

    # ---- outcomes -------------------------------------------------------------------------

    def complete(self, result: Any) -> Message:
        """The RESULT for a method's return value (a stream for iterators and async generators)."""
        d = self.dispatcher
        msg, ser = self.msg, self.ser
        if self.info is not None:
            d.hooks.fire("call_finished", self.info, result)
        if d.stats is not None:
            d.stats.record(self.object_id, self.method, self.t0, False)
        if type(result) not in PLAIN:
            if is_iterator(result):
                return d.stream_reply(self.conn, msg, ser, result)
            if type(result) is types.AsyncGeneratorType:
                return d.stream_reply(self.conn, msg, ser, SyncIterator(result, d.await_coroutine))
        try:
            data = ser.dumps(result)
        except Exception as exc:
            return d.exception_reply(msg, ser, exc)
        ann = self.ctx.response_annotations
        if d._has_annotations_hook:
            hook = d.reply_annotations()
            if hook:
                ann = dict(hook, **ann)
        return Message(T_RESULT, msg.serializer_id, 0, msg.seq, data, ann, msg.correlation_id)

    def failed(self, exc: BaseException) -> Message:
        """The exception reply for a call that raised."""
        d = self.dispatcher
        if self.info is not None:
            d.hooks.fire("call_failed", self.info, exc)
        if d.stats is not None:
            d.stats.record(self.object_id, self.method, self.t0, True)
        if self.obj is not None:
            d._maybe_callback_error(self.obj, self.method, self.conn, exc)
        return d.exception_reply(self.msg, self.ser, exc)

    # ---- oneway ---------------------------------------------------------------------------

    def _oneway_body(self) -> None:
        d = self.dispatcher
        func = self.func
        assert func is not None
        try:
            result = func(*self.args, **(self.kwargs or {}))
            if type(result) is types.CoroutineType:
                d.driver.await_coroutine(result)
        except Exception as exc:
            self._oneway_failed(exc)
        except BaseException as exc:
            self._oneway_failed(contained(exc))
        else:
            self._oneway_done()

    def _oneway_done(self) -> None:
        d = self.dispatcher
        if self.info is not None:
            d.hooks.fire("call_finished", self.info, None)
        if d.stats is not None:
            d.stats.record(self.object_id, self.method, self.t0, False)

    def _oneway_failed(self, exc: BaseException) -> None:
        d = self.dispatcher
        if self.info is not None:
            d.hooks.fire("call_failed", self.info, exc)
        if d.stats is not None:
            d.stats.record(self.object_id, self.method, self.t0, True)
        d.report_error(self.conn, self.method, exc)

    def _schedule_oneway(self) -> None:
        d = self.dispatcher
        if not d.config.ONEWAY_THREADED:
            self._oneway_body()
            return
        call_ctx = self.ctx.copy()

        def run() -> None:
            context.set_context(call_ctx)
            self._oneway_body()

        d.driver.run_oneway(run, self.conn)

    async def _oneway_async(self) -> None:
        func = self.func
        assert func is not None
        try:
            await (func(*self.args, **self.kwargs) if self.kwargs else func(*self.args))
        except Exception as exc:
            self._oneway_failed(exc)
        except BaseException as exc:
            self._oneway_failed(contained(exc))
        else:
            self._oneway_done()
