"""``ember bench`` and the measuring loop behind it and ``benchmarks/compare.py``.

Every measurement is bounded by a count *and* a time, so it ends on a slow server too.
Latencies are taken per call with ``time.perf_counter``; rates count completed calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..client import Proxy
from ..errors import PyroError
from ..uri import URI

__all__ = ["Result", "add_arguments", "measure", "percentile", "run"]


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, by nearest rank."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass
class Result:
    """What one measurement found."""

    calls: int
    seconds: float
    latencies_us: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        """Completed calls per second."""
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def latency(self, q: float) -> float:
        return percentile(sorted(self.latencies_us), q)

    def summary(self) -> dict:
        lat = sorted(self.latencies_us)
        out = {"calls": self.calls, "seconds": round(self.seconds, 4), "calls_per_s": round(self.rate, 1)}
        if lat:
            out.update(p50_us=round(percentile(lat, 50), 1), p99_us=round(percentile(lat, 99), 1),
                       min_us=round(lat[0], 1), max_us=round(lat[-1], 1))
        return out

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("latencies_us")
        return d


def measure(call: Callable[[], Any], count: int, max_seconds: float, warmup: int = 20,
            latencies: bool = True, progress: Callable[[int, float], None] | None = None) -> Result:
    """Call ``call()`` up to ``count`` times or for ``max_seconds``, whichever ends first.

    ``warmup`` calls run first, untimed. ``progress(done, elapsed)`` is called about four
    times a second when given.
    """
    for _ in range(warmup):
        call()
    clock = time.perf_counter
    lat: list[float] = []
    record = lat.append
    start = clock()
    deadline = start + max_seconds
    next_report = start + 0.25
    done = 0
    now = start
    while done < count:
        t0 = clock()
        call()
        now = clock()
        if latencies:
            record((now - t0) * 1e6)
        done += 1
        if now >= deadline:
            break
        if progress is not None and now >= next_report:
            progress(done, now - start)
            next_report = now + 0.25
    return Result(done, now - start, lat)


# ---- ember bench -----------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", help="the object to call (PYRO:, PYRONAME:, PYROMETA:)")
    parser.add_argument("-m", "--method", default="ping",
                        help="method to call (default: ping on the daemon object, which any daemon has)")
    parser.add_argument("-a", "--args", default="[]", help="JSON list of positional arguments (default [])")
    parser.add_argument("-n", "--calls", type=int, default=10000, help="stop after this many calls (default 10000)")
    parser.add_argument("-t", "--seconds", type=float, default=10.0, help="or after this many seconds (default 10)")
    parser.add_argument("-s", "--serializer", default=None, help="msgpack, serpent, json or marshal")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        call_args = json.loads(args.args)
        if not isinstance(call_args, list):
            raise ValueError("--args must be a JSON list")
    except ValueError as exc:
        print(f"ember bench: error: {exc}", file=sys.stderr)
        return 2
    uri = URI(args.uri)
    if args.method == "ping" and uri.protocol == "PYRO" and uri.object != "Pyro.Daemon":
        uri = URI(f"PYRO:Pyro.Daemon@{uri.location}")
    proxy: Proxy[Any] = Proxy(uri)
    if args.serializer:
        proxy._serializer = args.serializer
    tty = sys.stderr.isatty()

    def progress(done: int, elapsed: float) -> None:
        line = f"{done}/{args.calls} calls, {done / elapsed:,.0f} calls/s"
        if tty:
            print(f"\r{line}   ", end="", file=sys.stderr, flush=True)

    try:
        with proxy:
            method = getattr(proxy, args.method)
            result = measure(lambda: method(*call_args), args.calls, args.seconds, progress=progress)
    except (PyroError, AttributeError) as exc:
        print(f"\nember bench: error: {exc}", file=sys.stderr)
        return 1
    if tty:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    summary = result.summary()
    if args.json:
        print(json.dumps({"uri": str(uri), "method": args.method, **summary}))
    else:
        print(f"{uri} {args.method}({', '.join(map(repr, call_args))}): {summary['calls']} calls in "
              f"{summary['seconds']:.2f} s = {summary['calls_per_s']:,.0f} calls/s")
        print(f"latency: p50 {summary['p50_us']:.0f} us, p99 {summary['p99_us']:.0f} us, "
              f"min {summary['min_us']:.0f} us, max {summary['max_us']:.0f} us")
    return 0

