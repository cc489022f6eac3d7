"""Same-host shared memory (issue 16 item 4): Ember's bytes echo with and without shared
memory against a plain Python socket echo, in one interleaved run.

The servers run in their own processes pinned with ``taskset`` to one CPU; the client pins
itself (the same ``sched_setaffinity`` call taskset makes) to another. Each round runs every
case once, in turn, so all see the same machine conditions; the figure of a case is the
median over the rounds, and its ratio to the plain socket is the median of the per-round
ratios. Throughput counts each echoed payload once (bytes sent per second).

    python benchmarks/shm.py                        # 16 MiB, 5 rounds
    python benchmarks/shm.py --sizes 1 16 --rounds 3 --json out.json
    python benchmarks/shm.py --quick                # tiny counts: checks that everything runs

Cases: ``plain`` (loopback TCP, the server thread ``recv_into`` a preallocated buffer and
``sendall`` it back, the client the same), Ember over a unix socket with shared memory off
(``SHM_THRESHOLD=0``) and on, and Ember over loopback TCP with shared memory on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

import ember  # noqa: E402
from ember.serializers import msgpack_  # noqa: E402
from ember.transport import shm  # noqa: E402

MIB = 1 << 20

SERVER = r"""
import os, socket, struct, sys, threading
kind, arg = sys.argv[1], sys.argv[2]
if kind == "plain":
    def serve(conn):
        buf = bytearray(64 << 20)
        view = memoryview(buf)
        with conn:
            while True:
                head = conn.recv(8, socket.MSG_WAITALL)
                if len(head) < 8:
                    return
                n = struct.unpack("!Q", head)[0]
                got = 0
                while got < n:
                    r = conn.recv_into(view[got:n])
                    if not r:
                        return
                    got += r
                conn.sendall(head)
                conn.sendall(view[:n])
    lsock = socket.create_server(("127.0.0.1", 0))
    print(lsock.getsockname()[1], flush=True)
    while True:
        c, _ = lsock.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    import ember
    if len(sys.argv) > 3 and sys.argv[3] == "keep-packer":
        import ember.serializers.msgpack_ as m
        m._KEEP_PACKER_BELOW = 1 << 30
    @ember.expose
    class Echo:
        def echo(self, data):
            return data
    if kind == "unix":
        d = ember.Daemon(unixsocket=arg)
    else:
        d = ember.Daemon(host="127.0.0.1", port=0)
    print(d.register(Echo(), "echo"), flush=True)
    d.request_loop()
"""


class Server:
    def __init__(self, kind: str, arg: str, cpu: int, variant: str = "") -> None:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        cmd = [sys.executable, "-c", SERVER, kind, arg, variant]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu), *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError(f"{kind} server did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def plain_echo(port: int, payload: bytes, count: int) -> float:
    """Seconds for ``count`` echoes of ``payload`` over a plain socket."""
    n = len(payload)
    buf = bytearray(n)
    view = memoryview(buf)
    head = n.to_bytes(8, "big")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        for _ in range(count):
            sock.sendall(head)
            sock.sendall(payload)
            sock.recv(8, socket.MSG_WAITALL)
            got = 0
            while got < n:
                got += sock.recv_into(view[got:])
        elapsed = time.perf_counter() - t0
    assert buf == payload
    return elapsed


def ember_echo(uri: str, payload: bytes, count: int, threshold: int, keep_packer: bool = False) -> float:
    """Seconds for ``count`` echoes through an Ember proxy (``threshold`` = SHM_THRESHOLD)."""
    saved = ember.config.SHM_THRESHOLD, msgpack_._KEEP_PACKER_BELOW
    ember.config.SHM_THRESHOLD = threshold
    if keep_packer:
        msgpack_._KEEP_PACKER_BELOW = 1 << 30
    try:
        with ember.Proxy(uri) as proxy:
            proxy._bind()
            uses_shm = proxy._session.shm is not None
            if bool(threshold) != uses_shm:
                raise RuntimeError(f"shared memory {'not ' if threshold else ''}in use on {uri}")
            result = proxy.echo(payload)  # warm up: the regions grow to the payload's size
            t0 = time.perf_counter()
            for _ in range(count):
                result = proxy.echo(payload)
            elapsed = time.perf_counter() - t0
    finally:
        ember.config.SHM_THRESHOLD, msgpack_._KEEP_PACKER_BELOW = saved
    assert result == payload
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16], help="payload sizes in MiB (default 16)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (median reported; default 5, at least 3)")
    ap.add_argument("--seconds", type=float, default=1.0, help="target seconds per case per round")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--quick", action="store_true", help="tiny counts, to check that everything runs")
    ap.add_argument("--keep-packer", action="store_true",
                    help="also run the Ember cases with msgpack keeping its pack buffer between large messages "
                         "(what Ember's transport does once the serializer stops reallocating per message)")
    args = ap.parse_args()
    if not shm.available():
        sys.exit("shared memory needs Linux (memfd_create, SCM_RIGHTS)")
    rounds = 1 if args.quick else max(3, args.rounds)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    os.sched_setaffinity(0, {client_cpu})
    tmp = tempfile.mkdtemp(prefix="ember-shm-bench-")
    servers = {"plain": Server("plain", "-", server_cpu), "unix": Server("unix", f"{tmp}/echo.sock", server_cpu),
               "tcp": Server("tcp", "-", server_cpu)}
    if args.keep_packer:
        servers["unix-kept"] = Server("unix", f"{tmp}/kept.sock", server_cpu, "keep-packer")
    cases: dict[str, Any] = {
        "plain socket (TCP)": lambda p, c: plain_echo(int(servers["plain"].address), p, c),
        "ember unix, shm off": lambda p, c: ember_echo(servers["unix"].address, p, c, 0),
        "ember unix, shm on": lambda p, c: ember_echo(servers["unix"].address, p, c, 1 << 20),
        "ember TCP loopback, shm on": lambda p, c: ember_echo(servers["tcp"].address, p, c, 1 << 20),
    }
    if args.keep_packer:
        cases["ember unix, shm off, kept"] = lambda p, c: ember_echo(servers["unix-kept"].address, p, c, 0, True)
        cases["ember unix, shm on, kept"] = lambda p, c: ember_echo(servers["unix-kept"].address, p, c, 1 << 20,
                                                                    True)
    results: dict[str, dict[str, Any]] = {}
    try:
        for size in args.sizes:
            payload = os.urandom(size * MIB)
            # count per case: about --seconds at the plain socket's speed, at least 3
            per = plain_echo(int(servers["plain"].address), payload, 2) / 2
            count = 2 if args.quick else max(3, int(args.seconds / max(per, 1e-6)))
            rates: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(rounds):
                for name, run in cases.items():
                    rates[name].append(size * MIB * count / run(payload, count) / 1e6)
            plain = rates["plain socket (TCP)"]
            print(f"\n{size} MiB echo, {count} echoes x {rounds} rounds, server on CPU {server_cpu}, "
                  f"client on CPU {client_cpu}")
            print(f"  {'case':30} {'MB/s (median)':>14} {'min':>8} {'max':>8} {'x plain':>8}")
            out = results[f"{size} MiB"] = {}
            for name, values in rates.items():
                med = statistics.median(values)
                # the ratio of each round (same machine conditions), then the median of those
                ratio = statistics.median(v / p for v, p in zip(values, plain, strict=True))
                out[name] = {"median_MBps": round(med, 1), "min": round(min(values), 1), "max": round(max(values), 1),
                             "ratio_to_plain": round(ratio, 2)}
                print(f"  {name:30} {med:14.0f} {min(values):8.0f} {max(values):8.0f} {ratio:8.2f}")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"python": sys.version.split()[0], "cpus": [server_cpu, client_cpu],
                                               "rounds": rounds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
