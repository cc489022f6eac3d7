"""Wire logging (config ``LOGWIRE``): every message a session sends or receives.

The sessions (:mod:`.client`, :mod:`.server`) see every message of their connection, so
they are the one place per direction that logs: received messages as their
:class:`~.framing.Decoder` builds them, sent ones as they are encoded. With ``LOGWIRE``
off (the default) a session holds no :class:`WireLog` and pays one ``is None`` test per
message.

Records go to the ``ember.wire`` logger: one at INFO per message with the header fields
(role, direction, type, serializer id, flags, seq, payload and annotation sizes,
annotation ids, correlation id), and one at DEBUG with the payload bytes.
"""

from __future__ import annotations

import logging
from typing import Any

from .framing import Message, MsgType

__all__ = ["WireLog", "log_message", "LOGGER_NAME"]

LOGGER_NAME = "ember.wire"
log = logging.getLogger(LOGGER_NAME)


def _type_name(mtype: int) -> str:
    try:
        return MsgType(mtype).name
    except ValueError:
        return str(mtype)


def log_message(role: str, direction: str, msg: Message) -> None:
    """Log one message: its header at INFO, its payload at DEBUG (``ember.wire`` logger).

    ``data`` is the payload size before compression (the decoder has undone it; the encoder
    has not applied it yet), ``annotations`` the size of the annotation block on the wire.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    ann = msg.annotations
    ann_size = sum(8 + len(v) for v in ann.values()) if ann else 0
    name = _type_name(msg.type)
    log.info("%s %s %s ser=%d flags=%#04x seq=%d data=%d annotations=%d %s corr=%s", role, direction, name,
             msg.serializer_id, msg.flags, msg.seq, len(msg.data), ann_size, sorted(ann) if ann else "[]",
             msg.correlation_id)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s %s seq=%d payload %r", role, direction, name, msg.seq, bytes(msg.data))


class WireLog:
    """Logs one connection's messages; ``role`` says whose ("proxy", "daemon"), with the peer if known."""

    __slots__ = ("role",)

    def __init__(self, role: str, peer: Any = None) -> None:
        self.role = role if peer is None else f"{role} ({_peer(peer)})"

    def received(self, msg: Message) -> None:
        log_message(self.role, "received", msg)

    def sent(self, msg: Message) -> None:
        log_message(self.role, "sent", msg)


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer) if peer else "?"
