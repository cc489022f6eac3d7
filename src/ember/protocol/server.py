"""The server role of the protocol, sans-I/O: one :class:`ServerSession` per connection.

It is the one place that knows which message types a connection accepts in which state,
how a CONNECT is accepted (CONNECTOK with the capabilities both sides have) or refused
(CONNECTFAIL, with a ``DENY`` code when it is a denial), what a peer that broke the
protocol is told (a marshal-encoded CONNECTFAIL while still in the handshake, as Pyro5
does), and when the connection must close. The daemon decides *whether* to admit and
*what* to answer; the session turns that into messages. Bytes in through :meth:`feed`,
messages out through :meth:`next_message`.
"""

from __future__ import annotations

from typing import Any

from .. import serializers
from ..errors import SerializeError
from ..serializers import OOB
from .annotations import CAPS_ON, DENY_ANNOTATION, EMBER_CAPS, MULTIPLEX_CAPS, OOB_CAPS
from .framing import Decoder, Message, MsgType, encode
from .states import SERVER_ALLOWED, State
from .wirelog import WireLog

__all__ = ["ServerSession", "MARSHAL_ID"]

MARSHAL_ID = 2  # CONNECTFAIL for a peer whose serializer is unknown goes out in marshal, as Pyro5's
_DEFAULT_MAX = 1073741824


class ServerSession:
    """The daemon's protocol state for one connection.

    ``established`` sessions (a connected socket, which has no handshake) start ``READY``.
    ``extended`` is true once an Ember peer agreed to extended value types (``EMBR``).
    """

    __slots__ = ("decoder", "state", "extended", "must_close", "wirelog", "shm")

    def __init__(self, max_message_size: int = _DEFAULT_MAX, max_annotations_size: int = 1048576,
                 established: bool = False, logwire: bool = False, peer: Any = None, budget: Any = None) -> None:
        self.state = State.READY if established else State.AWAIT_CONNECT
        self.decoder = Decoder(max_message_size, max_annotations_size, SERVER_ALLOWED[self.state], budget)
        self.extended: int = False  # True, or serializers.OOB with out-of-band buffers
        # the connection has to be closed (after sending the reply just produced, if any);
        # a plain attribute, read after every message
        self.must_close = False
        # LOGWIRE (config): every message in (as decoded) and out (in :meth:`encode`) is logged
        self.wirelog = WireLog("daemon", peer) if logwire else None
        if self.wirelog is not None:
            self.decoder.on_message = self.wirelog.received
        # issue 16: same-host shared memory (an ember.transport.shm.ShmChannel, set at CONNECT)
        self.shm: Any = None

    def _enter(self, state: State) -> None:
        self.state = state
        self.decoder.allowed_types = SERVER_ALLOWED[state]
        self.must_close = state is State.MUST_CLOSE or state is State.CLOSED

    @property
    def established(self) -> bool:
        """The handshake is done (or there is none): calls are accepted."""
        return self.state is State.READY

    def close_after_reply(self) -> None:
        """Mark the connection to be closed once the current reply is sent."""
        if self.state is not State.CLOSED:
            self._enter(State.MUST_CLOSE)

    def closed(self) -> None:
        """The connection is gone: a message half received is dropped with its buffer."""
        self._enter(State.CLOSED)
        self.decoder.discard()
        shm, self.shm = self.shm, None
        if shm is not None:
            shm.close()

    # ---- bytes in -----------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes received from the peer (validated as soon as a header is in)."""
        self.decoder.feed(data)

    def next_message(self) -> Message | None:
        """The next whole message, or None until more bytes arrive."""
        return self.decoder.next_message()

    # ---- bytes out ----------------------------------------------------------------------

    def encode(self, reply: Message, compress: bool = False, max_message_size: int = _DEFAULT_MAX) -> Any:
        """The frame of a message to send on this connection (bytes, or ``[header, payload]``
        for a large payload: see :func:`.framing.encode`); every reply goes through here."""
        if self.wirelog is not None:
            self.wirelog.sent(reply)
        return encode(reply, compress, max_message_size, parts=True)

    # ---- handshake ------------------------------------------------------------------------

    @staticmethod
    def wants_extended(connect: Message) -> bool:
        """The client announced Ember's extended value types."""
        return connect.annotations.get(EMBER_CAPS) == CAPS_ON

    def accept(self, connect: Message, payload: bytes, annotations: dict[str, bytes], pipelined: bool,
               allow_extended: bool = True, allow_oob: bool = True) -> Message:
        """The CONNECTOK answering ``connect``; calls are accepted from now on.

        ``pipelined`` says the server may answer calls out of order; it is announced
        (``EMUX``) only to a client that asked for it. Extended value types (``EMBR``) are
        agreed when the client asked and ``allow_extended``; out-of-band buffers (``EOOB``) with
        them when the client asked and ``allow_oob`` (``extended`` is then ``serializers.OOB``).
        """
        extended = allow_extended and self.wants_extended(connect)
        # EMUX only with extended types agreed: that is how an Ember peer is recognised
        multiplex = extended and pipelined and connect.annotations.get(MULTIPLEX_CAPS) == CAPS_ON
        oob = extended and allow_oob and connect.annotations.get(OOB_CAPS) == CAPS_ON
        if extended or multiplex:
            annotations = dict(annotations)
            if extended:
                annotations[EMBER_CAPS] = CAPS_ON
            if multiplex:
                annotations[MULTIPLEX_CAPS] = CAPS_ON  # calls on this connection may overlap
            if oob:
                annotations[OOB_CAPS] = CAPS_ON
        self.extended = OOB if oob else extended
        self._enter(State.READY)
        return Message(MsgType.CONNECTOK, connect.serializer_id, 0, connect.seq, payload, annotations,
                       connect.correlation_id)

    def refuse(self, connect: Message | None, reason: str, annotations: dict[str, bytes] | None = None,
               deny_code: int | None = None) -> Message:
        """A CONNECTFAIL carrying ``reason`` (and the deny code, if any); the connection closes after it.

        The reason goes out in the client's serializer when it is known, else in marshal.
        """
        self._enter(State.MUST_CLOSE)
        ser_id, seq, corr = (connect.serializer_id, connect.seq, connect.correlation_id) if connect else (MARSHAL_ID,
                                                                                                          0, None)
        try:
            ser = serializers.by_id(ser_id)
        except SerializeError:
            ser_id, ser = MARSHAL_ID, serializers.by_id(MARSHAL_ID)
        try:
            payload = ser.dumps(reason)
        except SerializeError:
            payload = ser.dumps("connection refused")
        ann = dict(annotations) if annotations else {}
        if deny_code is not None:
            ann[DENY_ANNOTATION] = str(deny_code).encode()
        return Message(MsgType.CONNECTFAIL, ser_id, 0, seq, payload, ann, corr)

    def protocol_failure(self, exc: Exception) -> Message | None:
        """The peer sent bytes that are not a valid message: the connection must close;
        during the handshake the peer is told why (CONNECTFAIL in marshal, as Pyro5)."""
        was_established = self.state is State.READY
        self._enter(State.MUST_CLOSE)
        if was_established:
            return None
        return Message(MsgType.CONNECTFAIL, MARSHAL_ID, 0, 0, serializers.by_id(MARSHAL_ID).dumps(str(exc)))

    @staticmethod
    def pong(ping: Message) -> Message:
        """The answer to a PING."""
        return Message(MsgType.PING, ping.serializer_id, 0, ping.seq, b"pong", correlation_id=ping.correlation_id)
