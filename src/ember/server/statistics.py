"""Daemon statistics: calls, errors, calls in flight, latency percentiles per object and
method, message bytes in and out, and connections.

``Daemon(statistics=True)`` (or config ``STATISTICS``) gives the daemon's dispatcher a
:class:`Statistics` to feed and ``daemon.statistics()`` reads it. Latency percentiles come from the last ``window`` calls
of each method (a ring buffer: constant memory, recent behaviour).
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import deque
from typing import Any

__all__ = ["Statistics"]


class _MethodStats:
    __slots__ = ("calls", "errors", "latencies")

    def __init__(self, window: int) -> None:
        # itertools.count: next() is atomic under the GIL, so a call's end takes no lock
        self.calls = itertools.count()
        self.errors = itertools.count()
        self.latencies: deque[float] = deque(maxlen=window)  # append is atomic too


def _value(counter: itertools.count) -> int:
    """A counter's current value, without taking one."""
    return next(copy.copy(counter))


def _percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latency samples (seconds), in milliseconds."""
    if not samples:
        return {}
    samples.sort()
    last = len(samples) - 1

    def pick(q: float) -> float:
        return round(samples[min(last, int(q * len(samples)))] * 1000.0, 4)

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": round(samples[-1] * 1000.0, 4)}


class Statistics:
    """Counts what a daemon does; thread-safe. The dispatcher feeds it directly (not as a
    hook, which would cost a :class:`~.hooks.CallInfo` per call): a start time and an atomic
    counter when a call begins, atomic counters and a ring-buffer append when it ends."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self.started = time.time()
        self._lock = threading.Lock()
        self._methods: dict[tuple[str, str], _MethodStats] = {}
        self.calls_started = itertools.count()  # next() is atomic: no lock when a call begins
        self._finished = itertools.count()
        self.connections_open = 0
        self.connections_total = 0
        self.bytes_in = 0  # plain ints bumped by the dispatcher: a rare lost increment under a race is acceptable
        self.bytes_out = 0

    def opened(self) -> None:
        with self._lock:
            self.connections_open += 1
            self.connections_total += 1

    def closed(self) -> None:
        with self._lock:
            self.connections_open -= 1

    def record(self, object_id: str, method: str, t0: float, failed: bool) -> None:
        """A call that began at ``t0`` (``time.perf_counter()``) ended."""
        elapsed = time.perf_counter() - t0
        stats = self._methods.get((object_id, method))
        if stats is None:
            with self._lock:
                stats = self._methods.setdefault((object_id, method), _MethodStats(self.window))
        next(stats.calls)
        if failed:
            next(stats.errors)
        stats.latencies.append(elapsed)
        next(self._finished)

    # ---- reading -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything counted so far, as plain values (safe to send over the wire)."""
        with self._lock:
            finished = _value(self._finished)
            started = _value(self.calls_started)
            in_flight = started - finished
            methods = {key: (_value(s.calls), _value(s.errors), list(s.latencies))
                       for key, s in list(self._methods.items())}
            conns = {"open": self.connections_open, "total": self.connections_total}
        per_method = {
            f"{object_id}.{method}": {"calls": calls, "errors": errors, "latency_ms": _percentiles(samples)}
            for (object_id, method), (calls, errors, samples) in sorted(methods.items())
        }
        return {
            "since": self.started,
            "uptime": round(time.time() - self.started, 3),
            "calls": sum(m["calls"] for m in per_method.values()),
            "errors": sum(m["errors"] for m in per_method.values()),
            "in_flight": in_flight,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "connections": conns,
            "methods": per_method,
        }
