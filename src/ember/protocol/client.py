"""The client role of the protocol, sans-I/O: what a proxy says and how it reads answers.

:class:`ClientSession` builds the CONNECT, interprets CONNECTOK/CONNECTFAIL (capabilities,
deny codes, metadata), allocates sequence numbers and keeps the table of calls waiting for
a reply (so replies can be matched out of order), builds INVOKE frames (SerializedBlob
forwarding included) and turns a RESULT into a value or a raised exception. Both proxies,
blocking and asyncio, drive one of these per connection and only move its bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .. import context, errors, serializers
from ..config import Config
from ..config import config as default_config
from ..errors import CommunicationError, ConnectionDeniedError, MessageTooLargeError, ProtocolError, PyroError
from ..serializers import OOB, ExceptionWrapper, SerializedBlob
from ..serializers.oob import OobData, payload_of
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
)
from .framing import (
    COMPRESS_THRESHOLD,
    F_BATCH,
    F_COMPRESSED,
    F_CORR_ID,
    F_EXCEPTION,
    F_ITEMSTREAM,
    F_KEEPSERIALIZED,
    T_INVOKE,
    Decoder,
    Message,
    MsgType,
    encode,
)
from .plain import PLAIN_MAX, plain_frame
from .states import CLIENT_ALLOWED, State
from .wirelog import WireLog

__all__ = ["ClientSession", "Handshake", "call_result", "batch_results", "parse_metadata"]

_peek = context.peek  # the call path reads the caller's context on every call


class Handshake:
    """What the daemon answered to CONNECT."""

    __slots__ = ("extended", "serializer", "response", "meta", "multiplex")

    def __init__(self, extended: bool, serializer: Any, response: Any, meta: Any, multiplex: bool) -> None:
        self.extended = extended
        self.serializer = serializer
        self.response = response
        self.meta = meta
        self.multiplex = multiplex


class ClientSession:
    """One proxy connection's protocol state.

    >>> session = ClientSession(serializers.get("msgpack"))
    >>> frame = session.connect_frame("hello", "calc")      # send it
    >>> answer = session.handshake(reply_message, "127.0.0.1:9999")
    >>> seq, frame = session.invoke_frame("calc", "add", (1, 2), None)
    >>> session.result(reply_message, seq)
    3
    """

    __slots__ = ("requested", "serializer", "serializer_id", "extended", "multiplex", "decoder", "state",
                 "seq", "pending", "config", "must_close", "wirelog", "shm")

    def __init__(self, serializer: Any, cfg: Config | None = None) -> None:
        cfg = cfg or default_config
        self.requested = serializer
        self.serializer = serializer  # the extended variant once the daemon agreed to it
        self.serializer_id: int = serializer.serializer_id
        self.extended: int = False  # True, or serializers.OOB with out-of-band buffers
        self.multiplex = False
        self.state = State.AWAIT_CONNECT
        self.must_close = False  # the connection broke the protocol (or was refused) and has to be closed
        self.decoder = Decoder(cfg.MAX_MESSAGE_SIZE, cfg.MAX_ANNOTATIONS_SIZE, CLIENT_ALLOWED[State.AWAIT_CONNECT])
        self.seq = 0
        self.pending: dict[int, Any] = {}
        self.config = cfg  # COMPRESSION and MAX_MESSAGE_SIZE are read per message: they may change
        # LOGWIRE is read once per connection: every message in and out is logged, or none is
        self.wirelog = WireLog("proxy") if cfg.LOGWIRE else None
        if self.wirelog is not None:
            self.decoder.on_message = self.wirelog.received
        # issue 16: same-host shared memory (an ember.transport.shm.ShmChannel set by the proxy
        # after the handshake): outgoing(frame) -> frame, incoming(msg), consumed(msg), dropped(msg), close()
        self.shm: Any = None

    def _enter(self, state: State) -> None:
        self.state = state
        self.decoder.allowed_types = CLIENT_ALLOWED[state]
        self.must_close = state is State.MUST_CLOSE or state is State.CLOSED

    # ---- handshake ----------------------------------------------------------------------

    def connect_frame(self, handshake: Any, object_id: str, multiplex: bool = False,
                      extended: bool = True, shared_memory: bool = False) -> bytes:
        """The CONNECT for ``object_id``, carrying the caller's annotations and Ember's
        capabilities (``extended``: ask for Ember's extended value types, ``EMBR``;
        ``shared_memory``: offer same-host shared memory, ``EMSH``)."""
        ctx = context.peek()
        ann = dict(ctx.annotations) if ctx is not None and ctx.annotations else {}
        if extended:  # without it the daemon treats this client as Pyro5 (and does not pipeline)
            ann[EMBER_CAPS] = CAPS_ON
            if self.config.OUT_OF_BAND:
                ann[OOB_CAPS] = CAPS_ON
        if multiplex:
            ann[MULTIPLEX_CAPS] = CAPS_ON
        if shared_memory and extended:
            ann[SHM_OFFER] = CAPS_ON
        corr = ctx.correlation_id if ctx is not None else None
        payload = self.requested.dumps({"handshake": handshake, "object": object_id})
        msg = Message(MsgType.CONNECT, self.serializer_id, 0, self.seq, payload, ann, corr)
        if self.wirelog is not None:
            self.wirelog.sent(msg)
        return encode(msg, self.config.COMPRESSION, self.config.MAX_MESSAGE_SIZE)

    def handshake(self, reply: Message, location: str | None) -> Handshake:
        """Interpret CONNECTOK/CONNECTFAIL; refusals raise ConnectionDeniedError/CommunicationError."""
        extended = reply.annotations.get(EMBER_CAPS) == CAPS_ON
        data = serializers.by_id(reply.serializer_id, extended).loads(reply.data)
        if reply.type == MsgType.CONNECTFAIL:
            self._enter(State.MUST_CLOSE)
            deny = reply.annotations.get(DENY_ANNOTATION)
            if deny is not None:
                code = int(deny) if deny.isdigit() else errors.DENY_UNSPECIFIED
                raise ConnectionDeniedError(f"connection to {location} rejected: {data}", code)
            raise CommunicationError(f"connection to {location} rejected: {data}")
        if ctx := context.peek():
            ctx.response_annotations = reply.annotations
        response = data.get("handshake") if isinstance(data, dict) else None
        meta = data.get("meta") if isinstance(data, dict) else None
        # the serializer's mode: out-of-band buffers when both sides take them (see serializers.oob)
        mode = OOB if extended and reply.annotations.get(OOB_CAPS) == CAPS_ON else extended
        self.extended = mode
        self.multiplex = reply.annotations.get(MULTIPLEX_CAPS) == CAPS_ON
        self.serializer = serializers.by_id(self.serializer_id, mode)
        self._enter(State.READY)
        return Handshake(extended, self.serializer, response, meta, self.multiplex)

    def skip_handshake(self) -> None:
        """A connected socket has no handshake: ready for calls at once (plain values only)."""
        self._enter(State.READY)

    # ---- calls --------------------------------------------------------------------------

    def next_seq(self) -> int:
        """A sequence number not used by any call still waiting for its reply."""
        seq = self.seq
        pending = self.pending
        while True:
            seq = (seq + 1) & 0xFFFF
            if seq not in pending:
                self.seq = seq
                return seq

    def invoke_frame(self, object_id: str, method: str, args: Any, kwargs: dict | None, flags: int = 0,
                     seq: int | None = None, extra_annotations: dict[str, bytes] | None = None) -> tuple[int, Any]:
        """``(seq, frame)`` of an INVOKE with the caller's annotations and correlation id.

        A lone :class:`SerializedBlob` argument travels KEEPSERIALIZED, and a received blob
        is forwarded byte for byte. The frame is bytes, or ``[header, payload]`` for a large
        payload (to be sent without joining them). ``extra_annotations`` (from client hooks)
        are added to the caller's.
        """
        if seq is None:
            if self.pending:
                seq = self.next_seq()
            else:  # nothing in flight (a blocking proxy): the next number is free
                seq = self.seq = (self.seq + 1) & 0xFFFF
        ctx = _peek()
        if ctx is not None:
            ann, corr = ctx.annotations, ctx.correlation_id
        else:
            ann, corr = None, None
        if extra_annotations:
            ann = dict(ann, **extra_annotations) if ann else extra_annotations
        ser_id = self.serializer_id
        if args and type(args[0]) is SerializedBlob and len(args) == 1 and not kwargs:
            blob = args[0]
            ann = dict(ann) if ann else {}
            ann[BLOB_ANNOTATION] = blob_annotation(blob.info, object_id, method)
            flags |= F_KEEPSERIALIZED
            payload = blob.payload
            if payload is not None and blob.serializer_id is not None:
                # forwarded byte for byte, never deserialized here: the header names the
                # blob's serializer (the target decodes it with that one and answers in it)
                data = payload
                ser_id = blob.serializer_id
            else:  # kept serialized by the daemon, without its annotations: no out-of-band buffers
                data = serializers.by_id(ser_id, bool(self.extended)).dumps_call(object_id, method,
                                                                                  blob.deserialized(), None)
        else:
            data = self.serializer.dumps_call(object_id, method, args, kwargs)
            if (not ann and corr is None and type(data) is bytes and len(data) <= PLAIN_MAX
                    and self.wirelog is None
                    and (len(data) <= COMPRESS_THRESHOLD or not self.config.COMPRESSION)
                    and len(data) <= self.config.MAX_MESSAGE_SIZE):
                # the common small call: its frame without a Message and encode()
                frame = plain_frame(T_INVOKE, ser_id, seq, data, flags & ~(F_COMPRESSED | F_CORR_ID))
                return seq, frame if self.shm is None else self.shm.outgoing(frame)
        cfg = self.config
        msg = Message(T_INVOKE, ser_id, flags, seq, data, ann, corr)
        if self.wirelog is not None:
            self.wirelog.sent(msg)
        frame = encode(msg, cfg.COMPRESSION, cfg.MAX_MESSAGE_SIZE, parts=True)
        if self.shm is not None:  # issue 16: a large payload goes through shared memory
            frame = self.shm.outgoing(frame)
        return seq, frame

    def result(self, reply: Message, seq: int, make_iterator: Callable[[str], Any]) -> Any:
        """The value of the RESULT answering call ``seq`` (raises the remote exception).

        A reply for another call is a protocol error on a connection that answers in order.
        """
        shm = self.shm
        # issue 16: the payload is in shared memory, or the daemon asks for the regions (EMSH)
        if shm is not None and (SHM_DESCRIPTOR in reply.annotations or SHM_OFFER in reply.annotations):
            try:
                shm.incoming(reply)
            except ProtocolError:
                self._enter(State.MUST_CLOSE)  # the regions cannot be trusted any more
                raise
            try:
                return self._result(reply, seq, make_iterator)
            finally:
                shm.consumed(reply)
        return self._result(reply, seq, make_iterator)

    def dropped(self, reply: Message) -> None:
        """A reply nobody waits for any more (a cancelled call): free what it holds."""
        if self.shm is not None and (SHM_DESCRIPTOR in reply.annotations or SHM_OFFER in reply.annotations):
            try:
                self.shm.incoming(reply)
            except ProtocolError:
                return
            self.shm.dropped(reply)

    def _result(self, reply: Message, seq: int, make_iterator: Callable[[str], Any]) -> Any:
        if reply.seq != seq:
            self._enter(State.MUST_CLOSE)
            raise ProtocolError(f"invalid reply sequence number {reply.seq} (expected {seq})")
        data: Any = reply.data
        if reply.annotations:
            ctx = _peek()
            if ctx is not None:
                ctx.response_annotations = reply.annotations
            if OOB_ANNOTATION in reply.annotations:
                data = OobData(data, reply.annotations[OOB_ANNOTATION], reply.direct)
        ser = self.serializer
        if reply.serializer_id != self.serializer_id:
            # the answer to a forwarded SerializedBlob comes in the blob's serializer
            ser = serializers.by_id(reply.serializer_id, self.extended)
        if not reply.flags:
            return ser.loads(data)  # the usual plain result
        try:
            return call_result(reply, ser, make_iterator)
        except MessageTooLargeError:
            self._enter(State.MUST_CLOSE)  # the daemon refused a call for its size and closes the connection
            raise


def parse_metadata(meta: Any, uri: Any) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(methods, attrs, oneway) from the daemon's metadata mapping."""
    if not isinstance(meta, dict):
        raise ProtocolError("invalid metadata from daemon")
    methods = frozenset(meta.get("methods") or ())
    attrs = frozenset(meta.get("attrs") or ())
    if not methods and not attrs:
        raise PyroError(f"remote object '{uri}' doesn't expose any methods or attributes: on the server, "
                        "mark its class with @ember.expose (or each remote method and property)")
    return methods, attrs, frozenset(meta.get("oneway") or ())


def call_result(reply: Message, ser: Any, make_iterator: Callable[[str], Any]) -> Any:
    """The value of a RESULT: raises the remote exception, returns batch results as a
    generator, and a stream as ``make_iterator(stream_id)``."""
    rflags = reply.flags
    if rflags & F_ITEMSTREAM:
        stream_id = reply.annotations.get(STREAM_ANNOTATION)
        if not stream_id:
            raise PyroError("result of call is an iterator, but the server is not configured to allow streaming")
        return make_iterator(stream_id.decode("ascii"))
    result = ser.loads(payload_of(reply))
    if rflags & F_EXCEPTION:
        raise result
    if rflags & F_BATCH:
        return batch_results(result)
    return result


def batch_results(results: list) -> Iterator[Any]:
    """Batch results in order; a failed call raises its exception when reached.

    The daemon stops a batch at its first failure, so only the last result can be one.
    """
    if results and isinstance(results[-1], ExceptionWrapper):
        yield from results[:-1]
        results[-1].raise_it()
    yield from results
