"""The states of one connection, for both roles, and which message types each allows.

A connection starts in ``AWAIT_CONNECT`` (the daemon waits for CONNECT; the proxy waits for
CONNECTOK/CONNECTFAIL), becomes ``READY`` once the handshake succeeded (or at once on a
connected socket, which has no handshake), ``MUST_CLOSE`` after a refusal or a protocol
failure, and ``CLOSED`` when its owner closed it. The sessions in :mod:`.client` and
:mod:`.server` are the only code that moves between them.
"""

from __future__ import annotations

import enum

from .framing import MsgType

__all__ = ["State", "CLIENT_ALLOWED", "SERVER_ALLOWED"]


class State(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    READY = "ready"
    MUST_CLOSE = "must-close"
    CLOSED = "closed"


_NOTHING: frozenset[int] = frozenset()

# message types a daemon accepts from a client, per state
SERVER_ALLOWED: dict[State, frozenset[int]] = {
    State.AWAIT_CONNECT: frozenset({MsgType.CONNECT}),
    State.READY: frozenset({MsgType.INVOKE, MsgType.PING}),
    State.MUST_CLOSE: _NOTHING,
    State.CLOSED: _NOTHING,
}

# message types a proxy accepts from a daemon, per state
CLIENT_ALLOWED: dict[State, frozenset[int]] = {
    State.AWAIT_CONNECT: frozenset({MsgType.CONNECTOK, MsgType.CONNECTFAIL}),
    State.READY: frozenset({MsgType.RESULT}),
    State.MUST_CLOSE: _NOTHING,
    State.CLOSED: _NOTHING,
}
