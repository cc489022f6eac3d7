"""Matching clients' regular expressions against names without stalling the name server.

Python's :mod:`re` backtracks: ``(a+)+$`` against 29 ``a`` and a ``!`` takes seconds, each
extra character doubling it, and the matcher holds the GIL the whole time, so no other
thread of the process (no other client's call) runs meanwhile. There is no linear-time
engine in the standard library, and a thread cannot be interrupted, so:

* a pattern whose backtracking is provably small for the names at hand (no repeat or
  alternation nested inside a repeat, and a small product of the choices it offers times
  the length and number of names) is matched in the calling thread: the common case
  (``shop\\..*``, ``(web|api)\\.v[0-9]+``) costs nothing extra;
* any other pattern is matched in a helper process (a small pool, started on first use,
  running ``python -I -S`` with only :mod:`re` and :mod:`json`), so the name server's own
  threads keep running. The helper stops itself with a timer after ``NS_REGEX_TIMEOUT``
  seconds and the name server kills it one second later if it has not answered; the call
  then fails with a :class:`~ember.errors.NamingError` naming the limit.

Refusing "dangerous" patterns by their shape alone was rejected: exponential patterns need
no nesting (``a?a?...a?aaa...``, ``(a|a)(a|a)...``), so a shape filter either refuses
useful patterns or lets bad ones through. The estimate above only decides where a pattern
runs, never whether it may.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

from ..errors import NamingError

__all__ = ["RegexMatcher", "WORKERS"]

WORKERS = 2  # helper processes at most: regex listings are rare, and each one may use a CPU for the budget
_IN_PROCESS_WORK = 200_000  # estimated backtracking steps (over all names) still matched in the calling thread
_KILL_GRACE = 1.0  # seconds after the budget before a helper that did not stop itself is killed

_sre: Any = importlib.import_module("re._parser" if sys.version_info >= (3, 11) else "sre_parse")
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}

# the helper process: reads length-prefixed JSON requests on stdin, answers on stdout
_WORKER = r"""
import json, os, re, signal, sys

if hasattr(os, "nice"):
    os.nice(10)  # a pattern burning its budget here yields the CPU to the name server's own threads

class Overrun(Exception):
    pass

def alarm(signum, frame):
    raise Overrun()

timer = hasattr(signal, "setitimer")
if timer:
    signal.signal(signal.SIGALRM, alarm)
rd, wr = sys.stdin.buffer, sys.stdout.buffer
while True:
    head = rd.read(8)
    if len(head) < 8:
        break
    request = json.loads(rd.read(int.from_bytes(head, "big")))
    try:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, request["budget"])
        try:
            match = re.compile(request["regex"]).match
            reply = {"hits": [i for i, name in enumerate(request["names"]) if match(name)]}
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except Overrun:
        reply = {"overrun": True}
    except Exception as exc:
        reply = {"error": str(exc)}
    data = json.dumps(reply).encode()
    wr.write(len(data).to_bytes(8, "big") + data)
    wr.flush()
"""


def _choices(items: Any, longest: int, in_repeat: bool, top: bool = False) -> float:
    """How many ways the matcher can try ``items`` (a parsed pattern) on one name, at most;
    infinite when a repeat or alternation sits inside a repeat (no small bound). ``top``:
    ``items`` is the whole pattern, so a repeat ending it never backtracks (``re.match``
    succeeds with whatever it took, as in ``shop\\..*``)."""
    total = 1.0
    last = len(items) - 1
    for index, (op, arg) in enumerate(items):
        kind = str(op)
        if kind in _REPEATS:
            low, high, body = arg
            if in_repeat or _choices(body, longest, True) > 1:
                return math.inf
            if not (top and index == last):
                total *= min(high, longest) - min(low, longest) + 1
        elif kind == "BRANCH":
            if in_repeat:
                return math.inf
            total *= sum(_choices(alt, longest, in_repeat) for alt in arg[1])
        elif kind == "SUBPATTERN":
            total *= _choices(arg[-1], longest, in_repeat)
        elif kind in ("ASSERT", "ASSERT_NOT"):
            total *= _choices(arg[1], longest, in_repeat)
        elif kind == "ATOMIC_GROUP":
            total *= _choices(arg, longest, in_repeat)
        elif kind == "GROUPREF_EXISTS":
            if in_repeat:
                return math.inf
            _group, yes, no = arg
            total *= _choices(yes, longest, False) + (_choices(no, longest, False) if no else 1)
        if total == math.inf:
            return total
    return total


def estimated_work(pattern: re.Pattern, names: list[str]) -> float:
    """A bound on the backtracking steps ``pattern.match`` takes over ``names`` (infinite: unknown)."""
    if not names:
        return 0.0
    longest = max(len(n) for n in names)
    try:
        parsed = _sre.parse(pattern.pattern, pattern.flags)
    except Exception:  # bytes patterns, parser changes: no estimate
        return math.inf
    return _choices(parsed, longest, False, top=True) * (longest + 1) * len(names)


class _Worker:
    """One helper process."""

    def __init__(self) -> None:
        if not sys.executable:
            raise NamingError("cannot match this regex safely: no Python executable to run the helper process")
        try:
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _WORKER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise NamingError(f"cannot match this regex safely: the helper process did not start: {exc}") from None
        self.killed = False  # by the deadline timer: never reused, even if it answered just in time

    def exchange(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Send a request and wait for its answer; None when the helper died (was killed)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        data = json.dumps(request).encode()
        try:
            self.proc.stdin.write(len(data).to_bytes(8, "big") + data)
            self.proc.stdin.flush()
            head = self.proc.stdout.read(8)
            if len(head) < 8:
                return None
            reply = self.proc.stdout.read(int.from_bytes(head, "big"))
            result: dict[str, Any] = json.loads(reply)
            return result
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        self.killed = True
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        self.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a killed process always ends
            pass
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _close_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.close()
    workers.clear()


class RegexMatcher:
    """Selects the names a client's regex matches (``re.match``) within ``timeout`` seconds.

    Thread-safe; :meth:`close` ends the helper processes (also done when it is collected).
    """

    def __init__(self, timeout: float, workers: int = WORKERS) -> None:
        self.timeout = timeout
        self.max_workers = workers
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._cond = threading.Condition()
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_all, self._all)

    def select(self, pattern: re.Pattern, names: list[str]) -> list[str]:
        """The names ``pattern`` matches, in order; :class:`NamingError` past the time budget."""
        if estimated_work(pattern, names) <= _IN_PROCESS_WORK:
            return [name for name in names if pattern.match(name)]
        deadline = time.monotonic() + self.timeout
        worker = self._checkout(pattern, deadline)
        keep = False
        try:
            budget = max(deadline - time.monotonic(), 0.001)
            timer = threading.Timer(budget + _KILL_GRACE, worker.kill)
            timer.daemon = True
            timer.start()
            try:
                reply = worker.exchange({"regex": pattern.pattern, "budget": budget, "names": names})
            finally:
                timer.cancel()
                timer.join()  # after this, worker.killed is final
            if reply is None and self._closed:
                raise NamingError("the name server is shutting down")
            if reply is None or reply.get("overrun"):
                raise self._overrun(pattern)
            if "error" in reply:
                raise NamingError(f"regex {pattern.pattern!r} failed: {reply['error']}")
            keep = not worker.killed
            return [names[i] for i in reply["hits"]]
        finally:
            self._checkin(worker, keep)

    def _overrun(self, pattern: re.Pattern) -> NamingError:
        return NamingError(
            f"regex {pattern.pattern!r} took longer than {self.timeout:g} s to match the names (config item "
            f"NS_REGEX_TIMEOUT): it backtracks too much; avoid nested repeats such as (a+)+ or (a|ab)*, "
            f"or filter with prefix/group instead")

    def _checkout(self, pattern: re.Pattern, deadline: float) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise NamingError("the name server is shutting down")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self.max_workers:
                    worker = _Worker()
                    self._all.append(worker)
                    return worker
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    raise NamingError(
                        f"regex {pattern.pattern!r} could not be matched within {self.timeout:g} s (config item "
                        f"NS_REGEX_TIMEOUT): every regex helper process was busy with other clients' patterns")

    def _checkin(self, worker: _Worker, keep: bool) -> None:
        with self._cond:
            if keep and not self._closed and not worker.killed and worker.proc.poll() is None:
                self._idle.append(worker)
            else:
                if worker in self._all:
                    self._all.remove(worker)
                worker.close()
            self._cond.notify()

    def close(self) -> None:
        """End the helper processes. Idempotent."""
        with self._cond:
            self._closed = True
            self._idle.clear()
            self._cond.notify_all()
        self._finalizer()
