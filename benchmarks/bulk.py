"""Bulk data over TCP: bytes echo and a numpy round trip, Ember against Pyro5, grpc and a plain socket.

Every server runs in its own process pinned to one CPU, the clients run in this process
pinned to the other; contestants are interleaved inside each round (same machine
conditions for all) and the median of the rounds is reported, with ratios to the plain
socket echo and to Pyro5 with marshal (each ratio is the median of the ratios measured
within one round, so load that changes between rounds cancels out).

Every Ember contestant but ``ember-shm`` runs over TCP only: its client offers no same-host
shared memory (``SHM_THRESHOLD`` 0 when it connects); ``ember-shm`` is the thread-pool daemon
and ``Proxy`` with shared memory on, for comparison.

Cases: ``echo(bytes)`` of 1 MiB and 16 MiB (``ember-memoryview`` sends ``memoryview(bytes)``,
which arrives on both sides as a view of the receive buffer, without the copy that makes
``bytes``), and an 8 MiB float64 numpy array sent and
returned (Ember sends the array itself; Pyro5 and grpc, which cannot, send ``tobytes()`` and
rebuild it with ``frombuffer``; the plain socket sends the array's buffer and receives into
one). MB/s counts the bytes moved both ways (2 x payload per call). MB/CPU-s divides the
same bytes by the CPU time client and server used together (all threads, kernel time
included): on a machine shared with other work it still says what a transfer costs.

Usage: ``python benchmarks/bulk.py [--rounds 3] [--seconds 1.0] [--cpus 0,1] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

MIB = 1 << 20
SERVER = r"""
import sys
kind = sys.argv[1]
if kind == "socket":
    import socket, struct, threading
    def serve(conn):
        buf = bytearray(1 << 20)
        head = bytearray(8)
        with conn:
            while True:
                if conn.recv_into(head, 8, socket.MSG_WAITALL) < 8:
                    return
                n = struct.unpack("!Q", head)[0]
                if len(buf) < n:
                    buf = bytearray(n)
                view = memoryview(buf)[:n]
                got = 0
                while got < n:
                    r = conn.recv_into(view[got:])
                    if not r:
                        return
                    got += r
                conn.sendall(head)
                conn.sendall(view)
    lsock = socket.create_server(("127.0.0.1", 0))
    print("%s:%d" % lsock.getsockname(), flush=True)
    while True:
        conn, _ = lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
elif kind.startswith("ember"):
    import ember
    @ember.expose
    class Echo:
        def echo(self, x):
            return x
    servertype = kind.split("-")[1] if "-" in kind else "thread"
    d = ember.Daemon(servertype=servertype)
    print(d.register(Echo(), "echo"), flush=True)
    d.request_loop()
elif kind == "pyro5":
    import Pyro5.api
    from Pyro5 import config
    config.MAX_MESSAGE_SIZE = 1 << 30
    @Pyro5.api.expose
    class Echo:
        def echo(self, x):
            return x
    d = Pyro5.api.Daemon(host="127.0.0.1")
    print(d.register(Echo(), "echo"), flush=True)
    d.requestLoop()
elif kind == "grpc":
    import concurrent.futures, threading, grpc
    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4), options=opts)
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("127.0.0.1:%d" % port, flush=True)
    threading.Event().wait()
"""

# contestant -> server kind
CONTESTANTS = {
    "socket": "socket",
    "ember": "ember",
    "ember-memoryview": "ember",  # sends memoryview(bytes): arrives (and returns) as a view, no copy
    "ember-multiplex": "ember-multiplex",
    "ember-asyncio": "ember-asyncio",
    "ember-aproxy": "ember",  # AsyncProxy client, thread server
    "ember-shm": "ember",  # same-host shared memory on (every other Ember contestant is over TCP only)
    "pyro5-marshal": "pyro5",
    "pyro5-msgpack": "pyro5",
    "grpc": "grpc",
}
CASES = ("bytes-1MiB", "bytes-16MiB", "numpy-8MiB")


def start(kind: str, cpu: int | None) -> tuple[subprocess.Popen, str]:
    """Start one server, pinned with ``taskset`` before it runs: every thread it starts (grpc
    starts its own at ``server.start()``) inherits the CPU."""
    cmd = [sys.executable, "-c", SERVER, kind]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def payload(case: str) -> Any:
    if case == "bytes-1MiB":
        return os.urandom(MIB)
    if case == "bytes-16MiB":
        return os.urandom(16 * MIB)
    import numpy

    return numpy.random.default_rng(1).random(MIB)  # 1 Mi float64 = 8 MiB


def _numpy_case(value: Any) -> bool:
    return type(value).__module__ == "numpy"


class SocketClient:
    """The floor: length-prefixed echo, received into a preallocated buffer."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = bytearray(8)
        self.buf = bytearray(0)

    def call(self, value: Any) -> Any:
        if _numpy_case(value):
            import numpy

            out = numpy.empty_like(value)
            self._echo(memoryview(value).cast("B"), memoryview(out).cast("B"))
            return out
        if len(self.buf) < len(value):
            self.buf = bytearray(len(value))
        view = memoryview(self.buf)[: len(value)]
        self._echo(memoryview(value), view)
        return view

    def _echo(self, data: memoryview, into: memoryview) -> None:
        sock = self.sock
        sock.sendall(struct.pack("!Q", data.nbytes))
        sock.sendall(data)
        sock.recv_into(self.head, 8, socket.MSG_WAITALL)
        got, n = 0, into.nbytes
        while got < n:
            got += sock.recv_into(into[got:])

    def close(self) -> None:
        self.sock.close()


def client(name: str, address: str) -> tuple[Callable[[Any], Any], Callable[[], None]]:
    """(call(value) -> echoed value, close()) for one contestant."""
    if name == "socket":
        c = SocketClient(address)
        return c.call, c.close
    if name == "ember-aproxy":
        import ember

        loop = asyncio.new_event_loop()
        proxy = ember.AsyncProxy(address)
        with ember.config.override(SHM_THRESHOLD=0):  # over TCP: no shared memory offered when connecting
            loop.run_until_complete(proxy._bind())

        def acall(value: Any) -> Any:
            return loop.run_until_complete(proxy.echo(value))

        def aclose() -> None:
            loop.run_until_complete(proxy._release())
            loop.close()

        return acall, aclose
    if name.startswith("ember"):
        import ember

        proxy = ember.Proxy(address)
        # connect now; all but ember-shm over TCP only (the client offers no shared memory)
        with ember.config.override(SHM_THRESHOLD=0 if name != "ember-shm" else max(ember.config.SHM_THRESHOLD, 1)):
            proxy._bind()
        if name == "ember-memoryview":
            return (lambda value: proxy.echo(value if _numpy_case(value) else memoryview(value))), proxy._release
        return proxy.echo, proxy._release
    if name.startswith("pyro5"):
        import Pyro5.api
        from Pyro5 import config

        config.MAX_MESSAGE_SIZE = 1 << 30
        pproxy = Pyro5.api.Proxy(address)
        pproxy._pyroSerializer = name.split("-")[1]

        def pcall(value: Any) -> Any:
            if _numpy_case(value):
                import numpy

                return numpy.frombuffer(pproxy.echo(value.tobytes()), value.dtype)
            return pproxy.echo(value)

        return pcall, pproxy._pyroRelease
    if name == "grpc":
        import grpc

        opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        channel = grpc.insecure_channel(address, options=opts)
        stub = channel.unary_unary("/bench.Echo/Echo")

        def gcall(value: Any) -> Any:
            if _numpy_case(value):
                import numpy

                return numpy.frombuffer(stub(value.tobytes()), value.dtype)
            return stub(value)

        return gcall, channel.close
    raise ValueError(name)


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by every thread of process ``pid`` (Linux schedstat, ns)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def measure(call: Callable[[Any], Any], value: Any, seconds: float, pid: int) -> tuple[float, float]:
    """(MB/s both ways, MB per CPU-second of client and server together) of echoing ``value``
    for about ``seconds``. The second figure does not depend on how much CPU time other
    processes on the machine take away: it is what the transfer costs."""
    nbytes = value.nbytes if _numpy_case(value) else len(value)
    result = call(value)  # warm up (connection, buffers)
    if (result.nbytes if hasattr(result, "nbytes") else len(result)) != nbytes:
        raise RuntimeError(f"echo returned {len(result)} bytes, sent {nbytes}")
    calls = 0
    cpu0 = time.process_time() + server_cpu(pid)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        call(value)
        calls += 1
        now = time.perf_counter()
        if now >= deadline and calls >= 3:
            break
    cpu = time.process_time() + server_cpu(pid) - cpu0
    moved = 2 * nbytes * calls / 1e6
    return moved / (now - t0), moved / max(cpu, 1e-9)


def available(names: list[str]) -> list[str]:
    out = []
    for name in names:
        if name == "grpc":
            try:
                import grpc  # noqa: F401
            except ImportError:
                print("grpc not installed (pip install grpcio): left out", file=sys.stderr)
                continue
        out.append(name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--cpus", default="0,1", help="server CPU, client CPU ('' = no pinning)")
    ap.add_argument("--only", default="", help="comma-separated contestants (default: all)")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--json", default="", help="also write the figures to this file")
    ap.add_argument("--quick", action="store_true", help="one short round: checks that it all runs")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 0.05
    names = available(args.only.split(",") if args.only else list(CONTESTANTS))
    cases = [c for c in args.cases.split(",") if c]
    server_cpu = client_cpu = None
    if args.cpus:
        server_cpu, client_cpu = (int(c) for c in args.cpus.split(","))
        os.sched_setaffinity(0, {client_cpu})
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    results: dict[tuple[str, str], list[float]] = {}
    per_cpu: dict[tuple[str, str], list[float]] = {}
    try:
        for name in names:
            kind = CONTESTANTS[name]
            if kind not in servers:
                servers[kind] = start(kind, server_cpu)
        clients = {name: client(name, servers[CONTESTANTS[name]][1]) for name in names}
        values = {case: payload(case) for case in cases}
        for _ in range(args.rounds):
            for case in cases:
                for name in names:
                    rate, cpu_rate = measure(clients[name][0], values[case], args.seconds,
                                             servers[CONTESTANTS[name]][0].pid)
                    results.setdefault((name, case), []).append(rate)
                    per_cpu.setdefault((name, case), []).append(cpu_rate)
        for _call, close in clients.values():
            close()
    finally:
        for proc, _ in servers.values():
            proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
    median = {key: statistics.median(v) for key, v in results.items()}

    def ratio(name: str, case: str, base: str, table: dict = results) -> float | None:
        """Median over rounds of (this contestant / base) measured in the same round: robust
        to load that changes between rounds."""
        if (base, case) not in table:
            return None
        return statistics.median(a / b for a, b in zip(table[(name, case)], table[(base, case)], strict=True))

    pinned = f"server on CPU {server_cpu}, client on CPU {client_cpu}" if args.cpus else "not pinned"
    print(f"bulk echo, MB/s both ways, median of {args.rounds} rounds of {args.seconds:g} s, {pinned}; "
          "ratios: median of the per-round ratios")
    ratios: dict[str, dict[str, float]] = {}
    for case in cases:
        print(f"{case}:")
        for name in names:
            rate = median[(name, case)]
            shown = []
            for base in ("socket", "pyro5-marshal"):
                r = ratio(name, case, base)
                if r is not None:
                    ratios.setdefault(f"{name} {case}", {})[base] = r
                    shown.append(f"{r:.2f}x {base}")
            rounds = ", ".join(f"{v:.0f}" for v in results[(name, case)])
            cpu_rate = statistics.median(per_cpu[(name, case)])
            cpu_ratio = ratio(name, case, "socket", per_cpu)
            ratios.setdefault(f"{name} {case}", {})["socket, per CPU-second"] = cpu_ratio or 0.0
            cpu_shown = f"{cpu_rate:6.0f} MB/CPU-s" + (f" {cpu_ratio:.2f}x socket" if cpu_ratio else "")
            print(f"  {name:16s} {rate:8.0f}  {'  '.join(shown):34s} {cpu_shown:27s} (rounds: {rounds})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{name} {case}": {"median": median[(name, case)], "rounds": results[(name, case)],
                                          "ratios": ratios.get(f"{name} {case}", {}),
                                          "mb_per_cpu_second": per_cpu[(name, case)]}
                       for name, case in results}, f, indent=1)


if __name__ == "__main__":
    main()
