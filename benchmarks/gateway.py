"""HTTP gateway: Ember's (``ember gateway``, Starlette + uvicorn) vs Pyro5's (``pyro5-httpgateway``).

Same machine, same run, same object, same HTTP client. One name server (Ember's, which
Pyro5's gateway uses as its own) and one daemon serving ``http.bench`` run as processes;
both gateways run as processes with their default options; the client here sends
``GET /pyro/http.bench/add?a=1&b=2`` (Pyro5's query style; the answer is ``"12"``) over a
raw-socket HTTP/1.1 keep-alive client (Pyro5's gateway answers HTTP/1.0 and closes each
connection, so against it the client reconnects every time, as any client must). Rounds
interleave the two gateways; the table gives the median round's requests/s and the p50/p99
latency of all requests.

Usage: ``python benchmarks/gateway.py [--requests N] [--rounds R] [--no-pin] [--json FILE]``.
With ``--pin`` (the default) every process runs on one CPU, as docs/performance.md describes.
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

DAEMON = r"""
import sys, ember
@ember.expose
class Bench:
    def add(self, a, b):
        return a + b
import time
for _ in range(200):  # the name server may still be starting
    try:
        ns = ember.locate_ns("127.0.0.1", int(sys.argv[1]))
        break
    except ember.errors.NamingError:
        time.sleep(0.1)
d = ember.Daemon(servertype="thread")
ns.register("http.bench", d.register(Bench(), "bench"))
print("ready", flush=True)
d.request_loop()
"""
PATH = "/pyro/http.bench/add?a=1&b=2"
EXPECTED = b'"12"'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawClient:
    """A minimal HTTP/1.1 client on one socket: keep-alive when the server allows it, else reconnect."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""
        self.connects = 0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = sock, b""
        self.connects += 1
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def get(self, path: str) -> tuple[int, bytes]:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept: application/json\r\n\r\n".encode()
        for attempt in (0, 1):
            fresh = self.sock is None
            sock = self.sock or self._connect()
            try:
                sock.sendall(request)
                return self._response(sock)
            except (ConnectionError, EOFError):
                self.close()
                if attempt or fresh:
                    raise
        raise AssertionError("unreachable")

    def _recv(self, sock: socket.socket) -> bytes:
        data = sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv(sock)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        version, status = lines[0].split(b" ", 2)[:2]
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip().lower()
        length = headers.get(b"content-length")
        if length is not None:
            n = int(length)
            while len(rest) < n:
                rest += self._recv(sock)
            body, self.buf = rest[:n], rest[n:]
        else:  # body until the server closes
            chunks = [rest]
            try:
                while True:
                    chunks.append(self._recv(sock))
            except EOFError:
                pass
            body = b"".join(chunks)
            self.close()
        keep = headers.get(b"connection")
        if keep == b"close" or (version == b"HTTP/1.0" and keep != b"keep-alive"):
            self.close()
        return int(status), body


def start(args: list[str], cpu: int | None, env: dict | None = None, quiet: bool = False) -> subprocess.Popen:
    """A server process (pinned to ``cpu``); ``quiet``: its output goes to /dev/null (an unread pipe
    would fill up and stop a server that logs every request, as Pyro5's gateway does)."""
    preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    out = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, preexec_fn=preexec)


def wait_http(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}")
        try:
            client = RawClient(port)
            status, body = client.get(PATH)
            client.close()
            if status == 200 and body == EXPECTED:
                return
            raise SystemExit(f"{what} answered {status} {body[:200]!r}")
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start within {timeout} s")


def run_round(client: RawClient, requests: int, seconds: float) -> dict:
    """``requests`` calls (or ``seconds``, whichever ends first) on ``client``."""
    latencies = []
    perf = time.perf_counter
    start_all = perf()
    deadline = start_all + seconds
    for _ in range(requests):
        t0 = perf()
        status, body = client.get(PATH)
        latencies.append(perf() - t0)
        if status != 200 or body != EXPECTED:
            raise SystemExit(f"bad answer {status} {body[:200]!r}")
        if t0 > deadline:
            break
    elapsed = perf() - start_all
    return {"requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed, "latencies": latencies}


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (from /proc): a cost measure that the
    other load on a shared machine hardly disturbs, unlike requests/s."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / _TICK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per gateway per round (default 300)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time bound per gateway per round (default 2)")
    parser.add_argument("--rounds", type=int, default=40, help="rounds, each running both gateways (default 40)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each round")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="run every process on one CPU (default; --no-pin leaves placement to the OS)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    cpu = min(os.sched_getaffinity(0)) if args.pin else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    ns_port, ember_port, pyro5_port = free_port(), free_port(), free_port()
    env = dict(os.environ, PYRO_NS_HOST="127.0.0.1", PYRO_NS_PORT=str(ns_port))
    procs = []
    try:
        ns = start([sys.executable, "-m", "ember", "ns", "-n", "127.0.0.1", "-p", str(ns_port), "-x"], cpu, quiet=True)
        procs.append(ns)
        daemon = start([sys.executable, "-c", DAEMON, str(ns_port)], cpu)
        procs.append(daemon)
        for _ in range(100):
            if daemon.stdout.readline().strip() == "ready" or daemon.poll() is not None:
                break
        gateways = {
            "ember": start([sys.executable, "-m", "ember", "gateway", "-H", "127.0.0.1", "-p", str(ember_port),
                            "-n", "127.0.0.1", "--ns-port", str(ns_port), "--no-events"], cpu, quiet=True),
            "pyro5": start([sys.executable, "-m", "Pyro5.utils.httpgateway", "-H", "127.0.0.1", "-p", str(pyro5_port),
                            "-e", r"http\."], cpu, env, quiet=True),
        }
        procs.extend(gateways.values())
        ports = {"ember": ember_port, "pyro5": pyro5_port}
        for name, proc in gateways.items():
            wait_http(ports[name], proc, f"{name} gateway")
        clients = {name: RawClient(port) for name, port in ports.items()}
        # what serves a request: the gateway, the name server (Pyro5's gateway asks it on every request), the daemon
        server_pids = {name: [gateways[name].pid, ns.pid, daemon.pid] for name in ports}
        for client in clients.values():  # warm up
            run_round(client, min(200, args.requests), 5.0)
        rounds: dict[str, list[dict]] = {name: [] for name in ports}
        for i in range(args.rounds):
            for name, client in clients.items():
                before = cpu_seconds(server_pids[name])
                rounds[name].append(run_round(client, args.requests, args.seconds))
                rounds[name][-1]["cpu"] = cpu_seconds(server_pids[name]) - before
            if args.verbose:
                print(f"round {i + 1}: " + ", ".join(f"{n} {r[-1]['rps']:,.0f}/s" for n, r in rounds.items()),
                      file=sys.stderr, flush=True)
        connects = {name: client.connects for name, client in clients.items()}
        for client in clients.values():
            client.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.stdout:
                proc.stdout.close()

    results = {}
    for name, runs in rounds.items():
        rps = [r["rps"] for r in runs]
        all_latencies = [x for r in runs for x in r["latencies"]]
        requests = sum(r["requests"] for r in runs)
        results[name] = {"rps": requests / sum(r["seconds"] for r in runs),
                         "rps_min": min(rps), "rps_max": max(rps),
                         "p50_us": pct(all_latencies, 0.50) * 1e6, "p99_us": pct(all_latencies, 0.99) * 1e6,
                         "requests": requests, "connections": connects[name],
                         "server_cpu_us": sum(r["cpu"] for r in runs) / requests * 1e6}
    # each round ran both gateways one after the other: their ratio in that round saw the same machine
    pair_ratios = [e["rps"] / p["rps"] for e, p in zip(rounds["ember"], rounds["pyro5"], strict=True)]
    ratio = results["ember"]["rps"] / results["pyro5"]["rps"]
    placement = f"pinned to CPU {cpu}" if cpu is not None else "placement left to the OS"
    try:
        import httptools  # noqa: F401  (uvicorn parses HTTP with it when it is installed)

        parser_name = "httptools"
    except ImportError:
        parser_name = "h11"
    print(f"HTTP gateway, GET {PATH}, {args.rounds} rounds of up to {args.requests} requests, {placement}, "
          f"uvicorn with {parser_name}")
    print(f"{'gateway':8} {'requests/s':>11} {'rounds min-max':>16} {'p50 µs':>8} {'p99 µs':>8} {'connections':>12} "
          f"{'server CPU µs/request':>22}")
    for name, r in results.items():
        print(f"{name:8} {r['rps']:11,.0f} {r['rps_min']:7,.0f}-{r['rps_max']:<8,.0f} {r['p50_us']:8.0f} "
              f"{r['p99_us']:8.0f} {r['connections']:12,} {r['server_cpu_us']:22.0f}")
    latency_ratio = results["pyro5"]["p50_us"] / results["ember"]["p50_us"]
    # /proc counts CPU time in clock ticks (10 ms): a tiny run may show none
    cpu_ratio = (results["pyro5"]["server_cpu_us"] / results["ember"]["server_cpu_us"]
                 if results["ember"]["server_cpu_us"] else float("nan"))
    print(f"ratio ember/pyro5 (requests/s): {ratio:.2f} overall; per round median {statistics.median(pair_ratios):.2f} "
          f"(min {min(pair_ratios):.2f}, max {max(pair_ratios):.2f}); p50 latency {latency_ratio:.2f}x lower; "
          f"server CPU per request {cpu_ratio:.2f}x lower")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"path": PATH, "placement": placement, "uvicorn_http": parser_name, "rounds": args.rounds,
                       "results": results, "ratio": ratio, "round_ratios": pair_ratios,
                       "python": sys.version.split()[0]}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
