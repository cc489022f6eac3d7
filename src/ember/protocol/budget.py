"""A byte budget shared by the connections of one server.

Large payloads are received into buffers of their own (see :class:`.framing.Decoder`). The
budget caps how many bytes of such payloads one server receives at the same time
(``MAX_BYTES_IN_FLIGHT``): a message that would go over it is refused before any buffer is
allocated for it, so many clients each declaring a large message cannot add up to more
memory than the server was told it may use.
"""

from __future__ import annotations

import threading

__all__ = ["ByteBudget"]


class ByteBudget:
    """``limit`` bytes, reserved and released by decoders from any thread."""

    __slots__ = ("limit", "in_flight", "_lock")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` from the budget; False (nothing taken) when that would exceed it."""
        with self._lock:
            if self.in_flight + nbytes > self.limit:
                return False
            self.in_flight += nbytes
            return True

    def release(self, nbytes: int) -> None:
        """Give back what :meth:`reserve` took."""
        with self._lock:
            self.in_flight -= nbytes
