"""Small-call throughput: Ember, Pyro5 and a plain-socket echo floor, in one interleaved run.

Each server runs in its own process; the client (this process) does ``add(1, 2)`` in a
loop, or, for the floor, sends 24 bytes and reads them back from a server that echoes with
a thread per connection (``recv_into`` + ``sendall``). Rounds interleave the contestants so
all see the same machine conditions.

Placements (``--placement``):

- ``one``: client and every server pinned to CPU 0 -- what a call costs in CPU;
- ``split``: servers pinned to CPU 0, the client to CPU 1 -- what a call costs in latency;
- ``none``: placement left to the scheduler.

Prints calls/s per contestant (median of the rounds, and each round) and the ratios
Ember/socket and Ember/Pyro5 (medians of the per-round ratios). Usage::

    python benchmarks/small_call.py --placement one,split --rounds 5
    python benchmarks/small_call.py --serializer marshal --pyro5-serializer marshal
    python benchmarks/small_call.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

SERVER = r"""
import sys
kind, serializer = sys.argv[1], sys.argv[2]
if kind == "socket":
    import socket, threading
    def serve(conn):
        buf = bytearray(24)
        view = memoryview(buf)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                got = 0
                while got < 24:
                    n = conn.recv_into(view[got:])
                    if not n:
                        return
                    got += n
                conn.sendall(buf)
    lsock = socket.create_server(("127.0.0.1", 0))
    print(lsock.getsockname()[1], flush=True)
    while True:
        c, _ = lsock.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
elif kind.startswith("ember"):
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

PLACEMENTS = {"one": (0, 0), "split": (0, 1), "none": (None, None)}


def start(kind: str, serializer: str, cpu: int | None) -> tuple[subprocess.Popen, str]:
    """Start one server process; pinned with ``taskset`` before it starts, so every thread it
    makes (Pyro5 starts its pool threads with the daemon) inherits the CPU."""
    cmd = [sys.executable, "-c", SERVER, kind, serializer]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


class SocketClient:
    """The floor: 24 bytes out, 24 bytes back, over one TCP connection."""

    def __init__(self, port: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.msg = b"x" * 24
        self.buf = bytearray(24)
        self.view = memoryview(self.buf)

    def call(self) -> None:
        self.sock.sendall(self.msg)
        got = 0
        while got < 24:
            n = self.sock.recv_into(self.view[got:])
            if not n:
                raise ConnectionError("socket echo server closed")
            got += n

    def close(self) -> None:
        self.sock.close()


def client(kind: str, target: str, serializer: str) -> tuple:
    if kind == "socket":
        c = SocketClient(target)
        return c.call, c.close
    if kind.startswith("ember"):
        import ember

        proxy = ember.Proxy(target)
        proxy._serializer = serializer
        add = proxy.add
        return (lambda: add(1, 2)), proxy._release
    import Pyro5.api

    proxy = Pyro5.api.Proxy(target)
    proxy._pyroSerializer = serializer
    return (lambda: proxy.add(1, 2)), proxy._pyroRelease


def measure(kind: str, target: str, serializer: str, calls: int, seconds: float) -> float:
    call, close = client(kind, target, serializer)
    try:
        for _ in range(200):
            call()
        start_t = time.perf_counter()
        deadline = start_t + seconds
        done = calls
        for i in range(calls):
            call()
            if not i & 1023 and time.perf_counter() > deadline:
                done = i + 1
                break
        return done / (time.perf_counter() - start_t)
    finally:
        close()


def run_placement(name: str, kinds: list[str], args: argparse.Namespace) -> dict:
    server_cpu, client_cpu = PLACEMENTS[name]
    all_cpus = set(range(os.cpu_count() or 1))
    os.sched_setaffinity(0, {client_cpu} if client_cpu is not None else all_cpus)
    servers = {}
    try:
        for kind in kinds:
            ser = args.pyro5_serializer if kind == "pyro5" else args.serializer
            proc, target = start(kind, ser, server_cpu)
            servers[kind] = (proc, target, ser)
        rounds: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                proc, target, ser = servers[kind]
                rounds[kind].append(measure(kind, target, ser, args.calls, args.seconds))
    finally:
        for proc, _, _ in servers.values():
            proc.kill()
            proc.wait()
            proc.stdout.close()
        os.sched_setaffinity(0, all_cpus)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    ratios = {}
    for other in ("socket", "pyro5"):
        if other in rounds:
            ratios[f"ember/{other}"] = statistics.median(
                e / o for e, o in zip(rounds["ember"], rounds[other], strict=True))
    if "ember-stats" in rounds:
        ratios["ember-stats/ember"] = statistics.median(
            s / e for s, e in zip(rounds["ember-stats"], rounds["ember"], strict=True))
    return {"rounds": rounds, "median": med, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=30000, help="calls per measurement (default 30000)")
    ap.add_argument("--seconds", type=float, default=5.0, help="time bound per measurement (default 5)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--serializer", default="msgpack", help="Ember's serializer (default msgpack)")
    ap.add_argument("--pyro5-serializer", default="msgpack",
                    help="Pyro5's serializer (default msgpack; marshal is its fastest)")
    ap.add_argument("--placement", default="one,split", help="comma-separated: one, split, none")
    ap.add_argument("--only", default="socket,ember,pyro5", help="contestants: socket, ember, pyro5, ember-stats")
    ap.add_argument("--pin", action="store_true", help="same as --placement one (kept for old commands)")
    ap.add_argument("--statistics", action="store_true", help="also an Ember daemon with statistics on")
    ap.add_argument("--quick", action="store_true", help="tiny counts: checks that it all runs")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    if args.pin:
        args.placement = "one"
    if args.quick:
        args.calls, args.rounds, args.seconds = 500, 1, 1.0
    kinds = [k for k in args.only.split(",") if k]
    if args.statistics and "ember-stats" not in kinds:
        kinds.append("ember-stats")
    if "ember" not in kinds:
        ap.error("--only must include ember")
    results = {}
    for placement in args.placement.split(","):
        if placement not in PLACEMENTS:
            ap.error(f"unknown placement {placement!r}; use one, split or none")
        if PLACEMENTS[placement][1] and (os.cpu_count() or 1) < 2:
            ap.error("placement 'split' needs two CPUs")
        res = results[placement] = run_placement(placement, kinds, args)
        print(f"small call add(1, 2), Ember {args.serializer}, Pyro5 {args.pyro5_serializer}, "
              f"placement {placement}, median of {args.rounds} rounds")
        for kind, value in res["median"].items():
            print(f"  {kind:11s} {value:10.0f} calls/s  "
                  f"(rounds: {', '.join(f'{v:.0f}' for v in res['rounds'][kind])})")
        for name, value in res["ratios"].items():
            print(f"  {name:20s} {value:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
