"""Small-call throughput, Ember vs Pyro5, measured in the same run (a first, narrow benchmark).

Each server runs in its own process; the client does ``add(1, 2)`` in a loop. Rounds are
interleaved so both libraries see the same machine conditions. Prints calls/s and the
ratio Ember/Pyro5. Usage: ``python benchmarks/small_call.py [--calls N] [--rounds R] [--pin]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SERVER = r"""
import sys
kind, serializer = sys.argv[1], sys.argv[2]
if kind.startswith("ember"):
    import ember
    @ember.expose
    class Calc:
        def add(self, a, b):
            return a + b
    d = ember.Daemon(servertype="thread", statistics=kind == "ember-stats")
    print(d.register(Calc(), "calc"), flush=True)
    d.request_loop()
else:
    import Pyro5.api
    from Pyro5 import config
    config.SERIALIZER = serializer
    @Pyro5.api.expose
    class Calc:
        def add(self, a, b):
            return a + b
    d = Pyro5.api.Daemon(host="127.0.0.1")
    print(d.register(Calc(), "calc"), flush=True)
    d.requestLoop()
"""


def start(kind: str, serializer: str, cpu: int | None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, kind, serializer], stdout=subprocess.PIPE, text=True)
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    return proc, proc.stdout.readline().strip()


def measure(kind: str, uri: str, serializer: str, calls: int) -> float:
    if kind.startswith("ember"):
        import ember

        proxy = ember.Proxy(uri)
        proxy._serializer = serializer
        release = proxy._release
    else:
        import Pyro5.api

        proxy = Pyro5.api.Proxy(uri)
        proxy._pyroSerializer = serializer
        release = proxy._pyroRelease
    proxy.add(1, 2)
    start_t = time.perf_counter()
    deadline = start_t + 20
    for i in range(calls):
        proxy.add(1, 2)
        if not i & 1023 and time.perf_counter() > deadline:
            calls = i + 1
            break
    elapsed = time.perf_counter() - start_t
    release()
    return calls / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serializer", default="msgpack")
    ap.add_argument("--pin", action="store_true", help="pin client and servers to CPU 0")
    ap.add_argument("--statistics", action="store_true",
                    help="also measure an Ember daemon with statistics on (ember-stats), interleaved")
    args = ap.parse_args()
    kinds = ("ember", "pyro5", "ember-stats") if args.statistics else ("ember", "pyro5")
    cpu = 0 if args.pin else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    servers = {kind: start(kind, args.serializer, cpu) for kind in kinds}
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for _ in range(args.rounds):
            for kind in kinds:
                results[kind].append(measure(kind, servers[kind][1], args.serializer, args.calls))
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
            proc.stdout.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    placement = "pinned to one CPU" if args.pin else "scheduler placement"
    print(f"small call add(1, 2), {args.serializer}, {placement}")
    for kind, value in med.items():
        print(f"  {kind:11s} {value:10.0f} calls/s  (rounds: {', '.join(f'{v:.0f}' for v in results[kind])})")
    print(f"  ratio Ember/Pyro5: {med['ember'] / med['pyro5']:.2f}")
    if args.statistics:
        print(f"  ratio Ember with statistics / without: {med['ember-stats'] / med['ember']:.3f}")


if __name__ == "__main__":
    main()
