"""Scale-out figures (docs/scale-out.md): several name servers on one Redis, replicated daemons.

Measures, on one machine (every process on loopback):

1. name lookups/s through 1 and through 3 ``ember ns`` processes sharing one Redis registry,
   with ``--clients`` client processes spread over the name servers;
2. calls/s by name (a new ``PYRONAME:`` proxy per call) with the client lookup cache on
   (``NS_LOOKUP_CACHE`` = 2 s) and off (0), over 2 replicas;
3. failover: SIGKILL one of 2 replicas while 4 client threads call an ``@idempotent`` method
   by name; the time until every client has completed a call that started after the kill,
   and how many calls failed (0 expected); the same with a method that is not idempotent
   (those calls in flight fail: counted);
4. name gone: the time from the SIGKILL until the name server no longer lists the dead replica
   (bounded by ``NS_LEASE_TIME``; ``--lease`` sets it for the daemons).

Starts its own ``redis-server`` (``--redis URL`` to use another) and stops everything it
started, by pid. ``python benchmarks/scale_out.py`` (about a minute); ``--quick`` for a
smoke run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import ember


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the replica daemon (this script run with --replica) ----------------------------------------

@ember.expose
class Worker:
    worker_id = "?"

    @ember.idempotent
    def work(self, n: int) -> tuple[int, str]:
        return n + 1, self.worker_id

    def work_once(self, n: int) -> tuple[int, str]:
        """Not idempotent: a call in flight when the server dies is not run again."""
        time.sleep(0.001)
        return n + 1, self.worker_id


def serve_replica(worker_id: str, name: str) -> None:
    Worker.worker_id = worker_id
    with ember.Daemon(host="127.0.0.1", ns=True) as daemon:
        uri = daemon.register(Worker, name, replicated=True)
        print("ready", uri, flush=True)
        daemon.request_loop()


# ---- processes -----------------------------------------------------------------------------------

class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], ready: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env or dict(os.environ))
        self.procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            if ready in line:
                return proc, line.strip()
        raise RuntimeError(f"{args} did not start")

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)


def start_redis(procs: Processes, directory: str) -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found (apt-get install redis-server), or pass --redis URL")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.procs.append(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def start_ns(procs: Processes, storage: str) -> str:
    port = free_port()
    procs.start([sys.executable, "-m", "ember.naming", "-n", "127.0.0.1", "-p", str(port), "-x", "-s", storage],
                "Press Ctrl-C")
    return f"127.0.0.1:{port}"


def replica_env(hosts: list[str], lease: float) -> dict:
    return dict(os.environ, PYRO_NS_HOSTS=",".join(hosts), PYRO_NS_HOST="127.0.0.1", PYRO_NS_PORT=str(free_port()),
                PYRO_NS_LEASE_TIME=str(lease))


def start_replica(procs: Processes, worker_id: str, name: str, hosts: list[str], lease: float):
    proc, line = procs.start([sys.executable, os.path.abspath(__file__), "--replica", worker_id, name], "ready",
                             replica_env(hosts, lease))
    return proc, line.split()[1]


# ---- 1. lookups/s --------------------------------------------------------------------------------

def _lookup_client(host: str, name: str, seconds: float, result: multiprocessing.Queue) -> None:
    with ember.Proxy(f"PYRO:Pyro.NameServer@{host}") as ns:
        ns.lookup(name)
        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            ns.lookup(name)
            count += 1
    result.put(count)


def lookups_per_second(hosts: list[str], clients: int, seconds: float) -> float:
    result: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_lookup_client, args=(hosts[i % len(hosts)], "bench.svc", seconds, result))
               for i in range(clients)]
    for w in workers:
        w.start()
    total = sum(result.get(timeout=seconds + 60) for _ in workers)
    for w in workers:
        w.join()
    return total / seconds


# ---- 2. calls/s by name --------------------------------------------------------------------------

def calls_by_name(seconds: float, cache: float) -> float:
    with ember.config.override(NS_LOOKUP_CACHE=cache):
        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            with ember.Proxy("PYRONAME:bench.svc") as p:
                p.work(count)
            count += 1
    return count / seconds


# ---- 3./4. failover and name gone ------------------------------------------------------------------

def failover(procs: Processes, hosts: list[str], lease: float, method: str, threads: int = 4) -> dict:
    name = f"bench.fail.{uuid.uuid4().hex[:6]}"
    doomed, doomed_uri = start_replica(procs, "doomed", name, hosts, lease)
    start_replica(procs, "survivor", name, hosts, lease)
    stop = threading.Event()
    kill_time: list[float] = []
    recovered: dict[int, float] = {}
    failures: list[float] = []

    def client(index: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                with ember.Proxy(f"PYRONAME:{name}") as p:
                    for _ in range(20):
                        started = time.monotonic()
                        getattr(p, method)(n)
                        n += 1
                        if kill_time and started > kill_time[0] and index not in recovered:
                            recovered[index] = time.monotonic() - kill_time[0]
            except ember.errors.CommunicationError:
                failures.append(time.monotonic())

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    kill_time.append(time.monotonic())
    Processes.kill(doomed)
    with ember.Proxy(f"PYRO:Pyro.NameServer@{hosts[-1]}") as ns:
        while doomed_uri in ns.replicas(name):
            time.sleep(0.01)
        gone = time.monotonic() - kill_time[0]
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join()
    return {"failover_s": max(recovered.values()) if len(recovered) == threads else float("nan"),
            "failed_calls": len(failures), "name_gone_s": gone}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replica", nargs=2, metavar=("ID", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--redis", help="use this Redis instead of starting a redis-server")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput run")
    parser.add_argument("--clients", type=int, default=3, help="client processes for the lookup runs")
    parser.add_argument("--lease", type=float, default=ember.config.NS_LEASE_TIME,
                        help="NS_LEASE_TIME of the replica daemons (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: short runs, short lease")
    args = parser.parse_args()
    if args.replica:
        serve_replica(*args.replica)
        return
    if args.quick:
        args.seconds, args.lease, args.clients = 0.5, 1.0, 2
    procs = Processes()
    tmp = tempfile.mkdtemp(prefix="ember-scale-out-")
    try:
        storage = (args.redis or start_redis(procs, tmp)) + f"?prefix=bench-{uuid.uuid4().hex[:8]}"
        hosts = [start_ns(procs, storage) for _ in range(3)]
        for i in range(2):
            start_replica(procs, f"r{i}", "bench.svc", hosts, args.lease)
        print(f"Redis {storage}; name servers {', '.join(hosts)}; {os.cpu_count()} CPUs; "
              f"lease {args.lease:g} s; {args.clients} lookup client processes, {args.seconds:g} s per run")
        one = lookups_per_second(hosts[:1], args.clients, args.seconds)
        three = lookups_per_second(hosts, args.clients, args.seconds)
        print(f"lookups/s, 1 name server:   {one:10,.0f}")
        print(f"lookups/s, 3 name servers:  {three:10,.0f}")
        with ember.config.override(NS_HOSTS=hosts, NS_HOST="127.0.0.1", NS_PORT=free_port()):
            off = calls_by_name(args.seconds, 0.0)
            on = calls_by_name(args.seconds, 2.0)
            print(f"calls/s by name (new PYRONAME proxy per call), cache off: {off:10,.0f}")
            print(f"calls/s by name (new PYRONAME proxy per call), cache on:  {on:10,.0f}")
            for method in ("work", "work_once"):
                r = failover(procs, hosts, args.lease, method)
                kind = "idempotent" if method == "work" else "not idempotent"
                print(f"failover after SIGKILL ({kind}): every client served again after {r['failover_s'] * 1000:.0f} ms, "
                      f"{r['failed_calls']} failed call(s); name gone after {r['name_gone_s']:.2f} s "
                      f"(lease {args.lease:g} s)")
    finally:
        procs.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
