"""A name server under a pathological regex: how long other clients wait, what a regex listing costs.

Starts ``ember ns`` in a process of its own, registers a name of ``--length`` characters
("a" * (length - 1) + "!"), and while one client asks ``list(regex="(a+)+$")`` (2**length
backtracking steps for Python's re), another pings in a loop; prints the ping latencies
seen during the attack and how the attack ended. Then times ``list(regex=...)`` over
``--names`` names for a pattern matched in place and one matched in the helper process.

    python benchmarks/ns_regex_attack.py [--length 29] [--budget 1.0] [--names 1000] [--servertype thread]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import ember
from ember import errors


def start_ns(budget: float, servertype: str, uri_file: str) -> subprocess.Popen:
    env = dict(os.environ, PYRO_NS_REGEX_TIMEOUT=str(budget), PYRO_SERVERTYPE=servertype)
    proc = subprocess.Popen([sys.executable, "-m", "ember.naming", "-n", "127.0.0.1", "-p", "0", "-x",
                             "--uri-file", uri_file], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("Press"):
            return proc
    raise SystemExit("ember ns did not start")


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.2f} ms, max {max(values) * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=29, help="length of the attacked name")
    parser.add_argument("--budget", type=float, default=1.0, help="NS_REGEX_TIMEOUT of the name server")
    parser.add_argument("--names", type=int, default=1000, help="names registered for the listing timings")
    parser.add_argument("--servertype", default="thread")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri_file = os.path.join(tmp, "ns.uri")
        proc = start_ns(args.budget, args.servertype, uri_file)
        try:
            with open(uri_file) as f:
                uri = f.read().strip()
            with ember.Proxy(uri) as ns:
                ns.register("a" * (args.length - 1) + "!", "PYRO:x@127.0.0.1:1")
            done = threading.Event()
            outcome: dict[str, object] = {}

            def attack() -> None:
                with ember.Proxy(uri) as bad:
                    bad._bind()
                    started = time.perf_counter()
                    try:
                        bad.list(regex="(a+)+$")
                        outcome["end"] = "answered"
                    except errors.NamingError as exc:
                        outcome["end"] = f"NamingError: {str(exc)[:90]}..."
                    outcome["seconds"] = time.perf_counter() - started
                    done.set()

            with ember.Proxy(uri) as good:
                good._bind()
                baseline = []
                for _ in range(200):
                    t = time.perf_counter()
                    good.ping()
                    baseline.append(time.perf_counter() - t)
                thread = threading.Thread(target=attack)
                thread.start()
                during = []
                while not done.is_set():
                    t = time.perf_counter()
                    good.ping()
                    during.append(time.perf_counter() - t)
                thread.join()
            print(f"{args.servertype} server, (a+)+$ against a {args.length}-character name, "
                  f"NS_REGEX_TIMEOUT={args.budget:g}")
            print(f"  ping before the attack: {ms(baseline)} ({len(baseline)} pings)")
            print(f"  ping during the attack: {ms(during)} ({len(during)} pings)")
            print(f"  the attack ended after {outcome['seconds']:.2f} s: {outcome['end']}")

            with ember.Proxy(uri) as ns:
                for i in range(args.names):
                    ns.register(f"shop.dept{i % 10}.item{i}", "PYRO:x@127.0.0.1:1")
                for pattern, where in ((r"shop\.dept3\..*", "in place"), (r"shop\.(dept3|dept4)\.(item|x)+1$",
                                                                             "helper process")):
                    times = []
                    for _ in range(20):
                        t = time.perf_counter()
                        found = ns.list(regex=pattern)
                        times.append(time.perf_counter() - t)
                    print(f"  list(regex={pattern!r}) over {args.names + 2} names ({where}, {len(found)} found): "
                          f"{ms(times)}")
        finally:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    main()
