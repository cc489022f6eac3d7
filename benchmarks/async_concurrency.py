"""Many concurrent calls from one AsyncProxy to an asyncio daemon whose method sleeps.

With 1,000 calls of ``await asyncio.sleep(0.1)`` in flight on one connection, the total
time shows how well calls overlap: 0.1 s is the floor, 1,000 × 0.1 s what strictly
sequential calls would take. The daemon runs in its own process.

Usage: ``python benchmarks/async_concurrency.py [--calls 1000] [--delay 0.1] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

SERVER = r"""
import asyncio, ember
@ember.expose
class Sleeper:
    async def sleep(self, seconds, tag):
        await asyncio.sleep(seconds)
        return tag
d = ember.Daemon(servertype="asyncio")
print(d.register(Sleeper(), "sleeper"), flush=True)
d.request_loop()
"""


async def one_round(uri: str, calls: int, delay: float) -> float:
    import ember

    async with ember.AsyncProxy(uri) as proxy:
        await proxy.sleep(0, -1)  # connect outside the timing
        started = time.perf_counter()
        results = await asyncio.gather(*(proxy.sleep(delay, i) for i in range(calls)))
        elapsed = time.perf_counter() - started
    if results != list(range(calls)):
        raise SystemExit("wrong results")
    return elapsed


def measure(calls: int = 1000, delay: float = 0.1, rounds: int = 3) -> dict:
    """Start the daemon, run the rounds, stop it; returns the timings in seconds."""
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        uri = server.stdout.readline().strip()
        times = [asyncio.run(one_round(uri, calls, delay)) for _ in range(rounds)]
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
    return {"calls": calls, "delay": delay, "median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "sequential_s": calls * delay}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    r = measure(args.calls, args.delay, args.rounds)
    print(f"{r['calls']} concurrent calls of sleep({r['delay']}) on one AsyncProxy: "
          f"median {r['median_s']:.3f} s (min {r['min_s']:.3f}, max {r['max_s']:.3f}); "
          f"sequential would take {r['sequential_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
