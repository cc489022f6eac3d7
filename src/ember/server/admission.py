"""Admission: whether a new connection is let in, and what its handshake answers.

The checks run in this order on every CONNECT: the connection limit, the daemon's
``accept(address)`` hook, the handshake payload (a mapping naming a registered object),
``validate_handshake`` and ``init_connection``. A refusal becomes a CONNECTFAIL through the
connection's :class:`~ember.protocol.ServerSession` (with a deny code when it is a denial).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .. import context, serializers
from ..errors import (
    DENY_BUSY,
    DENY_NAMES,
    DENY_SECURITY,
    DENY_UNSPECIFIED,
    DaemonError,
    SecurityError,
    SerializeError,
)
from ..protocol import SHM_OFFER, Message
from ..transport import shm
from .session_state import Connection, set_call_context

__all__ = ["Admission", "not_accepted"]

log = logging.getLogger("ember.server.daemon")


class Admission:
    """Handshakes for one daemon; counts its open connections."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.active = 0
        self._lock = threading.Lock()
        self._connectok_cache: dict[tuple, bytes] = {}

    def opened(self) -> None:
        with self._lock:
            self.active += 1

    def closed(self) -> None:
        with self._lock:
            self.active -= 1

    def verdict(self, addr: Any) -> tuple[int, str] | None:
        """None to admit a client at ``addr``; ``(deny code, reason)`` to refuse it."""
        daemon = self.daemon
        limit = daemon.max_connections
        if limit is not None and self.active > limit:
            return DENY_BUSY, f"too many connections (this daemon allows {limit})"
        try:
            verdict = daemon.accept(addr)
        except Exception as exc:
            log.exception("admission hook failed for %s", addr)
            return DENY_UNSPECIFIED, f"admission check failed: {exc}"
        if verdict is None:
            return None
        try:
            code, reason = verdict
            return int(code), str(reason)
        except (TypeError, ValueError):
            return DENY_UNSPECIFIED, str(verdict)

    def deny(self, conn: Connection, msg: Message | None, code: int, reason: str) -> Message:
        """A CONNECTFAIL that denies the connection with ``code``."""
        log.warning("denied connection from %s (%s): %s", conn.addr, DENY_NAMES.get(code, code), reason)
        text = f"connection denied ({DENY_NAMES.get(code, 'unspecified')}): {reason}"
        return conn.session.refuse(msg, text, self._annotations(), code)

    def refuse(self, conn: Connection, msg: Message, reason: str) -> Message:
        log.info("refused connection from %s: %s", conn.addr, reason)
        return conn.session.refuse(msg, reason, self._annotations())

    def _annotations(self) -> dict[str, bytes]:
        return self.daemon.annotations()

    def handshake(self, conn: Connection, msg: Message, pipelined: bool) -> Message | None:
        """The answer to a CONNECT (None: the connection just closes)."""
        session = conn.session
        try:
            ser = serializers.by_id(msg.serializer_id)
        except SerializeError:
            log.warning("closing connection from %s: unknown serializer id %d", conn.addr, msg.serializer_id)
            session.close_after_reply()
            return None
        daemon = self.daemon
        accepted = daemon.config.SERIALIZERS_ACCEPTED
        if ser.name not in accepted:  # refused before anything is decoded with it
            return self.refuse(conn, msg, not_accepted(ser.name, daemon.config))
        set_call_context(context.get(), conn, msg)
        denial = self.verdict(conn.addr)
        if denial is not None:
            return self.deny(conn, msg, *denial)
        try:
            data = ser.loads(msg.data)
            if not isinstance(data, dict):
                raise DaemonError("invalid handshake: expected a mapping")
            handshake = data.get("handshake")
            object_id = data["object"]
            conn.handshake = handshake
            class_meta = daemon.registry.metadata_for(object_id)
        except Exception as exc:
            return self.refuse(conn, msg, str(exc))
        try:
            answer = daemon.validate_handshake(conn, handshake)
            daemon.init_connection(conn)
        except Exception as exc:
            code = DENY_SECURITY if isinstance(exc, SecurityError) else DENY_UNSPECIFIED
            return self.deny(conn, msg, code, str(exc) or type(exc).__name__)
        allow_extended = daemon.extended_types if daemon.extended_types is not None else daemon.config.EXTENDED_TYPES
        extended = allow_extended and session.wants_extended(msg)
        # the CONNECTOK payload is the same for every client of a class when the answer is a plain string
        key = (class_meta, msg.serializer_id, extended, answer) if answer is None or type(answer) is str else None
        payload = self._connectok_cache.get(key) if key is not None else None
        if payload is None:
            try:
                payload = serializers.by_id(msg.serializer_id, extended).dumps(
                    {"handshake": answer, "meta": class_meta.as_dict(docs=extended)})
            except Exception as exc:
                return self.refuse(conn, msg, f"handshake answer cannot be serialized: {exc}")
            if key is not None:
                if len(self._connectok_cache) > 256:
                    self._connectok_cache.clear()
                self._connectok_cache[key] = payload
        reply = session.accept(msg, payload, self._annotations(), pipelined, allow_extended,
                               daemon.config.OUT_OF_BAND)
        if session.extended:  # issue 16: an Ember client on this machine may get shared memory
            cfg = daemon.config
            offered = shm.server_offer(conn.stream, msg.annotations, cfg.SHM_THRESHOLD, cfg.MAX_MESSAGE_SIZE)
            if offered is not None:
                session.shm, value = offered
                reply.annotations = dict(reply.annotations, **{SHM_OFFER: value})
        return reply


def not_accepted(name: str, cfg: Any) -> str:
    """Why a message in serializer ``name`` was refused (SERIALIZERS_ACCEPTED)."""
    return (f"serializer {name!r} is not accepted by this daemon (SERIALIZERS_ACCEPTED: "
            f"{', '.join(cfg.SERIALIZERS_ACCEPTED)}); configure the client to use one of those")
