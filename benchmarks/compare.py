"""Ember vs Pyro5 vs RPyC vs raw sockets, measured in the same run, interleaved.

Every server runs in its own process. Each case runs twice: with client and servers pinned
to one CPU (the stable measure of CPU cost per call on a small machine) and with placement
left to the scheduler. Within a placement the libraries take turns round by round, so all
see the same machine conditions. Every loop is bounded by a count and a time.

    pip install -e '.[bench]'
    python benchmarks/compare.py                 # the full suite, a few minutes
    python benchmarks/compare.py --quick         # tiny counts: checks that everything runs
    python benchmarks/compare.py --json out.json --rounds 5 --placements pinned

Prints a table per placement and writes a JSON file with medians, min/max and the ratios
Ember/Pyro5, Ember/RPyC and Ember/raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import ember  # noqa: E402
from ember.tools.bench import Result, measure, percentile  # noqa: E402

SERIALIZERS = ["msgpack", "serpent", "json", "marshal"]
MB = 1 << 20

# ---- the servers (each started in its own process) -------------------------------------------

SERVER = r"""
import os, sys, time, threading, asyncio
lib, kind = sys.argv[1], sys.argv[2]

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

if lib == "ember":
    import ember
    state = {"n": 0}
    if kind == "asyncio":
        @ember.expose
        class Service:
            async def add(self, a, b): return a + b
            async def echo(self, x): return x
            @ember.oneway
            async def tick(self): state["n"] += 1
            async def count(self): return state["n"]
            async def reset(self): state["n"] = 0
            def rss(self): return rss_kb()
    else:
        @ember.expose
        class Service:
            def add(self, a, b): return a + b
            def echo(self, x): return x
            @ember.oneway
            def tick(self): state["n"] += 1
            def count(self): return state["n"]
            def reset(self): state["n"] = 0
            def rss(self): return rss_kb()
    ember.config.THREADPOOL_SIZE = 100
    d = ember.Daemon(servertype=kind)
    print(d.register(Service(), "svc"), flush=True)
    d.request_loop()
elif lib == "pyro5":
    import Pyro5.api
    from Pyro5 import config
    config.SERVERTYPE = kind
    config.THREADPOOL_SIZE = 100
    state = {"n": 0}
    lock = threading.Lock()
    @Pyro5.api.expose
    class Service:
        def add(self, a, b): return a + b
        def echo(self, x): return x
        @Pyro5.api.oneway
        def tick(self):
            with lock: state["n"] += 1
        def count(self): return state["n"]
        def reset(self): state["n"] = 0
        def rss(self): return rss_kb()
    d = Pyro5.api.Daemon(host="127.0.0.1")
    print(d.register(Service(), "svc"), flush=True)
    d.requestLoop()
elif lib == "rpyc":
    import rpyc
    from rpyc.utils.server import ThreadedServer
    state = {"n": 0}
    class Service(rpyc.Service):
        def exposed_add(self, a, b): return a + b
        def exposed_echo(self, x): return x
        def exposed_tick(self): state["n"] += 1
        def exposed_count(self): return state["n"]
        def exposed_reset(self): state["n"] = 0
        def exposed_rss(self): return rss_kb()
    s = ThreadedServer(Service, hostname="127.0.0.1", port=0, protocol_config={"allow_pickle": False})
    print(f"127.0.0.1:{s.port}", flush=True)
    s.start()
elif lib == "raw" and kind == "blocking":
    import socket, struct
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0)); srv.listen(200)
    print(f"127.0.0.1:{srv.getsockname()[1]}", flush=True)
    def serve(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        while True:
            data = c.recv(1 << 20)
            if not data:
                return
            buf += data
            while len(buf) >= 4:
                n = struct.unpack_from(">I", buf)[0]
                if len(buf) < 4 + n:
                    break
                frame = bytes(buf[:4 + n]); del buf[:4 + n]
                c.sendall(frame)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
elif lib == "raw" and kind == "asyncio":
    async def handle(reader, writer):
        sock = writer.get_extra_info("socket")
        import socket as s_
        sock.setsockopt(s_.IPPROTO_TCP, s_.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(int.from_bytes(head, "big"))
                writer.write(head + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(f"127.0.0.1:{srv.sockets[0].getsockname()[1]}", flush=True)
        await srv.serve_forever()
    asyncio.run(main())
"""


class Server:
    """One server process, pinned to ``cpus``."""

    def __init__(self, lib: str, kind: str, cpus: set[int]) -> None:
        self.lib, self.kind = lib, kind
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, lib, kind], stdout=subprocess.PIPE, text=True,
                                     env=env, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError(f"server {lib}/{kind} did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


# ---- clients -----------------------------------------------------------------------------------

def ember_proxy(server: Server, serializer: str = "msgpack") -> Any:
    p = ember.Proxy(server.address)
    p._serializer = serializer
    p._bind()
    return p


def pyro5_proxy(server: Server, serializer: str = "msgpack") -> Any:
    import Pyro5.api

    p = Pyro5.api.Proxy(server.address)
    p._pyroSerializer = serializer
    p._pyroBind()
    return p


def rpyc_conn(server: Server) -> Any:
    import rpyc

    host, port = server.address.split(":")
    return rpyc.connect(host, int(port), config={"allow_pickle": False})


class RawBlocking:
    def __init__(self, server: Server, size: int = 50) -> None:
        host, port = server.address.split(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.frame = struct.pack(">I", size) + b"x" * size
        self.want = len(self.frame)

    def call(self) -> None:
        self.sock.sendall(self.frame)
        got = 0
        while got < self.want:
            chunk = self.sock.recv(self.want - got)
            if not chunk:
                raise ConnectionError("raw server closed")
            got += len(chunk)

    def close(self) -> None:
        self.sock.close()


def raw_asyncio_rate(server: Server, count: int, seconds: float) -> dict:
    host, port = server.address.split(":")

    async def main() -> Any:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frame = struct.pack(">I", 50) + b"x" * 50
        lat = []
        clock = time.perf_counter
        start = clock()
        done = 0
        while done < count and clock() - start < seconds:
            t0 = clock()
            writer.write(frame)
            await reader.readexactly(54)
            lat.append((clock() - t0) * 1e6)
            done += 1
        elapsed = clock() - start
        writer.close()
        return _summary(done, elapsed, lat)

    return asyncio.run(main())


def _summary(calls: int, seconds: float, lat: list[float] | None = None) -> dict:
    return Result(calls, seconds, lat or []).summary()


def _pct(values: list[float], q: float) -> float:
    return percentile(sorted(values), q)


# ---- the cases ----------------------------------------------------------------------------------

def run_threads(calls: list, clients: list, per_thread: int, seconds: float) -> tuple[int, float, list[str]]:
    """Each call function in its own thread, all started together; (calls done, seconds, errors)."""
    totals = [0] * len(calls)
    errors: list[str] = []
    barrier = threading.Barrier(len(calls) + 1)
    stop = [0.0]

    def work(i: int, call: Callable[[], Any], client: Any) -> None:
        if hasattr(client, "_pyroClaimOwnership"):
            client._pyroClaimOwnership()  # Pyro5 proxies belong to one thread
        barrier.wait()
        n = 0
        try:
            while n < per_thread and time.perf_counter() < stop[0]:
                call()
                n += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        totals[i] = n

    workers = [threading.Thread(target=work, args=(i, c, cl)) for i, (c, cl) in enumerate(zip(calls, clients,
                                                                                              strict=True))]
    for w in workers:
        w.start()
    start = time.perf_counter()
    stop[0] = start + seconds
    barrier.wait()
    for w in workers:
        w.join()
    return sum(totals), time.perf_counter() - start, errors


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.results: dict[str, dict[str, list[dict]]] = {}
        self.servers: dict[tuple[str, str], Server] = {}

    def scale(self, count: int, seconds: float) -> tuple[int, float]:
        if self.quick:
            return max(2, count // 500), min(seconds, 0.05)
        return count, seconds

    def record(self, case: str, who: str, summary: dict) -> None:
        self.results.setdefault(case, {}).setdefault(who, []).append(summary)

    def server(self, lib: str, kind: str) -> Server:
        return self.servers[(lib, kind)]

    def start_servers(self, cpus: set[int]) -> None:
        wanted = [("ember", "thread"), ("ember", "multiplex"), ("ember", "asyncio"), ("pyro5", "thread"),
                  ("pyro5", "multiplex"), ("raw", "blocking"), ("raw", "asyncio")]
        if self.args.rpyc:
            wanted.append(("rpyc", "threaded"))
        for lib, kind in wanted:
            self.servers[(lib, kind)] = Server(lib, kind, cpus)

    def stop_servers(self) -> None:
        for s in self.servers.values():
            s.stop()
        self.servers.clear()

    # each case runs one round for every library, so rounds interleave the libraries

    def small_calls(self) -> None:
        count, seconds = self.scale(200_000, self.args.seconds)
        for ser in SERIALIZERS:
            with ember_proxy(self.server("ember", "thread"), ser) as p:
                self.record(f"small call ({ser})", "ember", measure(lambda p=p: p.add(1, 2), count, seconds).summary())
            p5 = pyro5_proxy(self.server("pyro5", "thread"), ser)
            self.record(f"small call ({ser})", "pyro5", measure(lambda p5=p5: p5.add(1, 2), count, seconds).summary())
            p5._pyroRelease()
        if self.args.rpyc:
            conn = rpyc_conn(self.server("rpyc", "threaded"))
            root = conn.root
            self.record("small call (msgpack)", "rpyc", measure(lambda: root.add(1, 2), count, seconds).summary())
            conn.close()
        raw = RawBlocking(self.server("raw", "blocking"))
        self.record("small call (msgpack)", "raw", measure(raw.call, count, seconds).summary())
        raw.close()
        self.record("small call (msgpack)", "raw-asyncio", raw_asyncio_rate(self.server("raw", "asyncio"), count,
                                                                            seconds))

    def oneway(self) -> None:
        count, seconds = self.scale(20_000, self.args.seconds * 2)

        def run(proxy_count: Callable[[], int], reset: Callable[[], None], tick: Callable[[], None]) -> dict:
            reset()
            start = time.perf_counter()
            sent = 0
            while sent < count and time.perf_counter() - start < seconds:
                tick()
                sent += 1
            while proxy_count() < sent and time.perf_counter() - start < seconds + 30:
                time.sleep(0.001)
            executed = proxy_count()
            return _summary(executed, time.perf_counter() - start)

        with ember_proxy(self.server("ember", "thread")) as p:
            self.record("oneway, until executed", "ember", run(p.count, p.reset, p.tick))
        p5 = pyro5_proxy(self.server("pyro5", "thread"))
        self.record("oneway, until executed", "pyro5", run(p5.count, p5.reset, p5.tick))
        p5._pyroRelease()

    def batch(self) -> None:
        count, seconds = self.scale(200, self.args.seconds)
        size = 1000 if not self.quick else 10

        def ember_batch(p: Any) -> None:
            b = ember.BatchProxy(p)
            for i in range(size):
                b.add(i, 1)
            for _ in b():
                pass

        def pyro5_batch(p: Any) -> None:
            import Pyro5.api

            b = Pyro5.api.BatchProxy(p)
            for i in range(size):
                b.add(i, 1)
            for _ in b():
                pass

        with ember_proxy(self.server("ember", "thread")) as p:
            r = measure(lambda: ember_batch(p), count, seconds, warmup=2, latencies=False)
            self.record("batch of 1000", "ember", _summary(r.calls * size, r.seconds))
        p5 = pyro5_proxy(self.server("pyro5", "thread"))
        r = measure(lambda: pyro5_batch(p5), count, seconds, warmup=2, latencies=False)
        self.record("batch of 1000", "pyro5", _summary(r.calls * size, r.seconds))
        p5._pyroRelease()

    def threads(self) -> None:
        count, seconds = self.scale(1_000_000, self.args.seconds * 1.5)
        for nthreads in (8, 32):
            for lib, kind in [("ember", "thread"), ("ember", "multiplex"), ("ember", "asyncio"), ("pyro5", "thread"),
                              ("pyro5", "multiplex"), ("rpyc", "threaded")]:
                if lib == "rpyc" and not self.args.rpyc:
                    continue
                server = self.server(lib, kind)
                if lib == "ember":
                    clients = [ember_proxy(server) for _ in range(nthreads)]
                    calls = [lambda c=c: c.add(1, 2) for c in clients]
                elif lib == "pyro5":
                    clients = [pyro5_proxy(server) for _ in range(nthreads)]
                    calls = [lambda c=c: c.add(1, 2) for c in clients]
                else:
                    clients = [rpyc_conn(server) for _ in range(nthreads)]
                    calls = [lambda c=c: c.root.add(1, 2) for c in clients]
                total, elapsed, errors = run_threads(calls, clients, count // nthreads, seconds)
                if errors:
                    print(f"  {lib}-{kind} x{nthreads}: {len(errors)} client thread(s) failed: {errors[0]}",
                          file=sys.stderr)
                self.record(f"{nthreads} client threads", f"{lib}-{kind}", _summary(total, elapsed))
                for c in clients:
                    if lib == "ember":
                        c._release()
                    elif lib == "pyro5":
                        c._pyroClaimOwnership()
                        c._pyroRelease()
                    else:
                        c.close()

    def async_concurrency(self) -> None:
        count, seconds = self.scale(1000, self.args.seconds)
        inflight = 1000 if not self.quick else 10
        address = self.server("ember", "asyncio").address

        async def main() -> dict:
            async with ember.AsyncProxy(address) as p:
                await p.add(0, 0)
                start = time.perf_counter()
                done = 0
                while done < count * inflight and time.perf_counter() - start < seconds:
                    await asyncio.gather(*(p.add(i, 1) for i in range(inflight)))
                    done += inflight
                return _summary(done, time.perf_counter() - start)

        self.record("1000 concurrent calls, one AsyncProxy", "ember", asyncio.run(main()))

    def big_echo(self) -> None:
        count, seconds = self.scale(2000, self.args.seconds)
        for label, payload in (("1 MB bytes echo", b"\x01" * MB), ("1 MB str echo", "é" * (MB // 2))):
            for ser in (["msgpack"] if label.endswith("bytes echo") else ["msgpack", "json"]):
                with ember_proxy(self.server("ember", "thread"), ser) as p:
                    r = measure(lambda p=p, x=payload: p.echo(x), count, seconds, warmup=2, latencies=False)
                    self.record(f"{label} MB/s", f"ember ({ser})", {"mb_per_s": round(r.rate * 2, 1)})
            best = 0.0
            for ser in SERIALIZERS:
                try:
                    p5 = pyro5_proxy(self.server("pyro5", "thread"), ser)
                    r = measure(lambda p5=p5, x=payload: p5.echo(x), count, seconds, warmup=2, latencies=False)
                    p5._pyroRelease()
                except Exception as exc:  # a serializer that cannot carry the value
                    print(f"  pyro5 {ser}: {label} failed: {type(exc).__name__}", file=sys.stderr)
                    continue
                self.record(f"{label} MB/s", f"pyro5 ({ser})", {"mb_per_s": round(r.rate * 2, 1)})
                best = max(best, r.rate * 2)
            self.record(f"{label} MB/s", "pyro5 (best)", {"mb_per_s": round(best, 1)})
            if self.args.rpyc:
                conn = rpyc_conn(self.server("rpyc", "threaded"))
                r = measure(lambda c=conn, x=payload: c.root.echo(x), count, seconds, warmup=2, latencies=False)
                self.record(f"{label} MB/s", "rpyc", {"mb_per_s": round(r.rate * 2, 1)})
                conn.close()
            if label.endswith("bytes echo"):
                raw = RawBlocking(self.server("raw", "blocking"), MB)
                r = measure(raw.call, count, seconds, warmup=2, latencies=False)
                self.record(f"{label} MB/s", "raw", {"mb_per_s": round(r.rate * 2, 1)})
                raw.close()

    def connect(self) -> None:
        count, seconds = self.scale(100_000, self.args.seconds)

        def ember_once() -> None:
            with ember.Proxy(self.server("ember", "thread").address) as p:
                p.add(1, 2)

        def pyro5_once() -> None:
            import Pyro5.api

            with Pyro5.api.Proxy(self.server("pyro5", "thread").address) as p:
                p.add(1, 2)

        self.record("connect + call + release", "ember", measure(ember_once, count, seconds).summary())
        self.record("connect + call + release", "pyro5", measure(pyro5_once, count, seconds).summary())
        if self.args.rpyc:
            def rpyc_once() -> None:
                c = rpyc_conn(self.server("rpyc", "threaded"))
                c.root.add(1, 2)
                c.close()

            self.record("connect + call + release", "rpyc", measure(rpyc_once, count, seconds).summary())


def idle_connections(args: argparse.Namespace, cpus: set[int]) -> dict:
    """Daemon RSS holding N idle connections, per server type (measured once)."""
    n = 1000 if not args.quick else 20
    out = {}
    for lib, kind in [("ember", "multiplex"), ("ember", "asyncio"), ("ember", "thread"), ("pyro5", "multiplex"),
                      ("pyro5", "thread")]:
        server = Server(lib, kind, cpus)
        try:
            make = ember_proxy if lib == "ember" else pyro5_proxy
            probe = make(server)
            before = probe.rss()
            clients, refused = [], ""
            for _ in range(n):
                try:
                    clients.append(make(server))
                except Exception as exc:
                    refused = f"{type(exc).__name__}: {str(exc)[:80]}"
                    break
            after = probe.rss()
            out[f"{lib}-{kind}"] = {"held": len(clients), "rss_mb_before": round(before / 1024, 1),
                                    "rss_mb": round(after / 1024, 1), "refused": refused}
            for c in clients:
                c._release() if lib == "ember" else c._pyroRelease()
        finally:
            server.stop()
    return out


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import Pyro5

    try:
        import rpyc

        rpyc_version = rpyc.__version__
    except ImportError:
        rpyc_version = None
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "ember": ember.__version__, "pyro5": Pyro5.__version__, "rpyc": rpyc_version,
            "date": time.strftime("%Y-%m-%d %H:%M")}


def median_of(summaries: list[dict], key: str) -> float:
    values = [s[key] for s in summaries if key in s]
    return statistics.median(values) if values else float("nan")


def main_key(summaries: list[dict]) -> str:
    return "mb_per_s" if "mb_per_s" in summaries[0] else "calls_per_s"


def report(results: dict, title: str) -> dict:
    """Print the table of one placement; return medians, min/max and ratios."""
    print(f"\n== {title} ==")
    table: dict[str, Any] = {}
    for case, by_who in results.items():
        key = main_key(next(iter(by_who.values())))
        row: dict[str, Any] = {}
        for who, summaries in by_who.items():
            values = [s[key] for s in summaries]
            entry = {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
                     "max": round(max(values), 1), "unit": key}
            if "p50_us" in summaries[0]:
                entry["p50_us"] = round(median_of(summaries, "p50_us"), 1)
                entry["p99_us"] = round(median_of(summaries, "p99_us"), 1)
            row[who] = entry
        ember_best = max((v["median"] for k, v in row.items() if k.startswith("ember")), default=None)
        ratios = {}
        for other in ("pyro5", "rpyc", "raw"):
            theirs = [v["median"] for k, v in row.items() if k.split(" ")[0].split("-")[0] == other
                      and "(best)" not in k] + [v["median"] for k, v in row.items() if k == f"{other} (best)"]
            if ember_best and theirs and max(theirs) > 0:
                ratios[f"ember/{other}"] = round(ember_best / max(theirs), 2)
        table[case] = {"results": row, "ratios": ratios}
        print(f"\n{case}  [{key}]")
        for who, entry in row.items():
            lat = f"  p50 {entry['p50_us']:.0f} us  p99 {entry['p99_us']:.0f} us" if "p50_us" in entry else ""
            print(f"  {who:24s} {entry['median']:>12,.1f}  (min {entry['min']:,.1f}, max {entry['max']:,.1f}){lat}")
        if ratios:
            print("  " + "   ".join(f"{k} = {v}" for k, v in ratios.items()))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ember vs Pyro5 vs RPyC vs raw sockets, side by side.")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (default 3)")
    parser.add_argument("--seconds", type=float, default=0.5, help="time bound of one measurement (default 0.5)")
    parser.add_argument("--placements", default="pinned,scheduler", help="pinned, scheduler or both (default)")
    parser.add_argument("--cases", default="small,oneway,batch,threads,async,echo,connect,idle",
                        help="comma-separated subset of: small,oneway,batch,threads,async,echo,connect,idle")
    parser.add_argument("--json", default=None, help="where to write the JSON (default benchmarks/results/<date>.json)")
    parser.add_argument("--quick", action="store_true", help="tiny counts, to check that everything runs")
    args = parser.parse_args(argv)
    try:
        import rpyc  # noqa: F401

        args.rpyc = True
    except ImportError:
        print("rpyc is not installed (pip install -e '.[bench]'): its rows are skipped", file=sys.stderr)
        args.rpyc = False
    cases = args.cases.split(",")
    started = time.perf_counter()
    all_cpus = os.sched_getaffinity(0)
    output: dict[str, Any] = {"machine": machine(), "placements": {}}
    for placement in args.placements.split(","):
        cpus = {min(all_cpus)} if placement == "pinned" else set(all_cpus)
        os.sched_setaffinity(0, cpus)
        suite = Suite(args)
        suite.start_servers(cpus)
        try:
            for _ in range(args.rounds if not args.quick else 1):
                for case, method in [("small", suite.small_calls), ("oneway", suite.oneway), ("batch", suite.batch),
                                     ("threads", suite.threads), ("async", suite.async_concurrency),
                                     ("echo", suite.big_echo), ("connect", suite.connect)]:
                    if case in cases:
                        method()
        finally:
            suite.stop_servers()
        title = ("pinned: client and servers on one CPU" if placement == "pinned"
                 else "scheduler: placement left to the OS")
        output["placements"][placement] = report(suite.results, title)
    os.sched_setaffinity(0, all_cpus)
    if "idle" in cases:
        idle = idle_connections(args, all_cpus)
        output["idle_connections"] = idle
        print("\nidle connections: daemon RSS")
        for who, r in idle.items():
            extra = f"  (stopped: {r['refused']})" if r["refused"] else ""
            print(f"  {who:24s} held {r['held']:5d}  RSS {r['rss_mb_before']:.1f} -> {r['rss_mb']:.1f} MB{extra}")
    output["seconds"] = round(time.perf_counter() - started, 1)
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / f"compare-{time.strftime('%Y%m%d-%H%M')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(output, indent=1))
    print(f"\nwhole suite: {output['seconds']} s; JSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
