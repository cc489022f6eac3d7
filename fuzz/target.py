"""The server under fuzz: one Ember daemon of the given type in its own process.

``python -m fuzz.target --servertype thread`` prints ``PORT <n>`` on stdout once it is
listening on 127.0.0.1 and serves until stdin closes (so it never outlives the driver).

The exposed object has the shapes the fuzzer needs (plain calls, a generator for item
streams, a oneway method, a property, an exception). Its unexposed and private methods end
the process with exit code 97: reaching one of them is an exposure bypass, which the
driver reports as a crash with that code.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
import tracemalloc
from typing import Any

import ember
from ember import expose, oneway

TOKEN = "fuzz-token"  # the handshake data a connection must present
EXPOSURE_BREACH = 97  # exit code when a method that must be unreachable ran


class Target:
    def __init__(self) -> None:
        self._value: Any = 0

    @expose
    def add(self, a: Any, b: Any) -> Any:
        return a + b

    @expose
    def echo(self, value: Any) -> Any:
        return value

    @expose
    def gen(self, n: Any = 3) -> Any:
        count = n if type(n) is int and 0 <= n <= 100 else 3
        yield from range(count)

    @expose
    def fail(self, message: Any = "boom") -> None:
        raise ValueError(message)

    @expose
    @oneway
    def note(self, value: Any = None) -> None:
        self._value = value

    @expose
    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, v: Any) -> None:
        self._value = v

    def unexposed(self, *args: Any, **kwargs: Any) -> None:
        os._exit(EXPOSURE_BREACH)

    @expose
    def _private(self, *args: Any, **kwargs: Any) -> None:
        os._exit(EXPOSURE_BREACH)

    def __secret(self, *args: Any, **kwargs: Any) -> None:  # name-mangled
        os._exit(EXPOSURE_BREACH)


class FuzzDaemon(ember.Daemon):
    def validate_handshake(self, conn: Any, data: Any) -> Any:
        if data != TOKEN:
            raise ember.errors.SecurityError("handshake refused")
        return "welcome"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servertype", default="thread", choices=["thread", "multiplex", "asyncio"])
    parser.add_argument("--max-message-size", type=int, default=1 << 20,
                        help="MAX_MESSAGE_SIZE of the daemon (default 1 MiB, see security-fuzz.md)")
    parser.add_argument("--linger", type=float, default=5.0, help="ITER_STREAM_LINGER")
    parser.add_argument("--memreport", metavar="FILE",
                        help="trace allocations; at exit write to FILE what grew since --memreport-after seconds")
    parser.add_argument("--memreport-after", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.memreport:
        tracemalloc.start(8)
        threading.Thread(target=memreport, args=(args.memreport, args.memreport_after), daemon=True).start()
    ember.config.MAX_MESSAGE_SIZE = args.max_message_size
    ember.config.ITER_STREAM_LINGER = args.linger
    ember.config.THREADPOOL_SIZE = 200
    daemon = FuzzDaemon(host="127.0.0.1", port=0, servertype=args.servertype)
    daemon.register(Target(), "fz")
    print(f"PORT {daemon.port}", flush=True)

    def watch_stdin() -> None:
        sys.stdin.read()
        daemon.shutdown()

    threading.Thread(target=watch_stdin, daemon=True).start()
    daemon.request_loop()
    daemon.close()


def memreport(path: str, after: float) -> None:
    """Every 20 s (after a first snapshot at ``after`` s), write what grew since that snapshot,
    so the file reflects the running server (not the one that already closed its connections)."""
    time.sleep(after)
    first = tracemalloc.take_snapshot()
    while True:
        time.sleep(20)
        gc.collect()
        stats = tracemalloc.take_snapshot().compare_to(first, "traceback")
        with open(path, "w") as f:
            f.write(f"{time.strftime('%H:%M:%S')} traced now {tracemalloc.get_traced_memory()[0]} bytes\n")
            for stat in stats[:25]:
                f.write(f"{stat.size_diff:+d} B {stat.count_diff:+d} blocks\n")
                f.write("".join(f"    {line}\n" for line in stat.traceback.format()[-8:]))


if __name__ == "__main__":
    main()
