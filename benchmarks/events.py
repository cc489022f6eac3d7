"""Event service throughput: one publisher -> 1 and -> 10 subscribers, memory and SQLite storage.

The service runs as ``ember events`` in its own process (queue policy ``block``, so nothing is
dropped and the figure is sustained delivery); every subscriber is an ``ember.events.Subscriber``
in a process of its own that counts events; the publisher is this process. The clock starts
before the first publish and stops when the last subscriber has received its last event:
deliveries/s = subscribers x events / that time. Three publishing modes: ``publish_many`` in
chunks of ``--chunk`` events (one call, one storage transaction per chunk), one ``publish``
call per event (``single``: each acknowledged, so each stored before the next) and one oneway
``publish`` per event (``oneway``: the publisher does not wait).

Usage: ``python benchmarks/events.py [--events N] [--subscribers 1,10] [--storage memory,sqlite]
[--modes many,single,oneway] [--chunk 100] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

SUBSCRIBER = r"""
import sys, threading, time
from ember.events import Subscriber
uri, expected = sys.argv[1], int(sys.argv[2])
done = threading.Event()

class Count(Subscriber):
    n = 0
    last = 0.0
    def event(self, event):
        self.n += 1
        if self.n >= expected:
            self.last = time.time()
            done.set()

sub = Count(uri).start()
sub.subscribe("bench")
print("ready", flush=True)
done.wait(600)
print(sub.n, repr(sub.last), flush=True)
sub.close()
"""


def start_service(storage: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYRO_EVENTS_QUEUE_POLICY="block")
    proc = subprocess.Popen([sys.executable, "-m", "ember.cli", "events", "-x", "-p", "0", "-s", storage],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"URI = (\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError("ember events did not start")


def run_case(uri: str, subscribers: int, events: int, mode: str, chunk: int) -> float:
    from ember.events import Publisher

    subs = [subprocess.Popen([sys.executable, "-c", SUBSCRIBER, uri, str(events)], stdout=subprocess.PIPE, text=True)
            for _ in range(subscribers)]
    try:
        for p in subs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        with Publisher(uri, oneway=mode == "oneway") as pub:
            pub.proxy._bind()
            start = time.time()
            if mode == "many":
                for i in range(0, events, chunk):
                    pub.publish_many([("bench", j) for j in range(i, min(events, i + chunk))])
            else:
                for i in range(events):
                    pub.publish("bench", i)
            published = time.time() - start
        lasts = []
        for p in subs:
            out, _ = p.communicate(timeout=600)
            n, last = out.split()
            assert int(n) == events, f"subscriber got {n} of {events}"
            lasts.append(float(last))
        took = max(lasts) - start
        print(f"    publishing took {published:.2f} s ({events / published:,.0f} publishes/s), "
              f"last delivery after {took:.2f} s", flush=True)
        return subscribers * events / took
    finally:
        for p in subs:
            if p.poll() is None:
                p.kill()
                p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--subscribers", default="1,10")
    parser.add_argument("--storage", default="memory,sqlite")
    parser.add_argument("--modes", default="many,single,oneway")
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny counts: check that it runs")
    args = parser.parse_args()
    events = 300 if args.quick else args.events
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for storage in args.storage.split(","):
            spec = "memory" if storage == "memory" else f"sqlite:{os.path.join(tmp, 'events.db')}"
            for mode in args.modes.split(","):
                for n in (int(x) for x in args.subscribers.split(",")):
                    proc, uri = start_service(spec)
                    try:
                        name = {"many": f"publish_many({args.chunk})", "oneway": "publish oneway"}.get(mode, "publish")
                        label = f"{storage:6} {name:18}"
                        print(f"{label} 1 -> {n:2} subscriber(s), {events:,} events:", flush=True)
                        rate = run_case(uri, n, events, mode, args.chunk)
                        print(f"    {rate:,.0f} deliveries/s", flush=True)
                        results.append((label, n, rate))
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        proc.communicate(timeout=30)
    print("\nsummary (deliveries/s, all subscribers together):")
    for label, n, rate in results:
        print(f"  {label} 1 -> {n:2}: {rate:>10,.0f}")


if __name__ == "__main__":
    main()
