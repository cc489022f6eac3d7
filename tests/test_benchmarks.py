"""The benchmark programs run (tiny counts, no timing assertions: figures live in docs/performance.md)."""

import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def bench(script, *args):
    return subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True,
                          timeout=120)


def test_small_call_benchmark_runs():
    r = bench("small_call.py", "--calls", "50", "--rounds", "1")
    assert r.returncode == 0, r.stderr
    assert "ratio" in r.stdout.lower()


def test_async_concurrency_benchmark_runs():
    r = bench("async_concurrency.py", "--calls", "20", "--delay", "0.01", "--rounds", "1")
    assert r.returncode == 0, r.stderr
    assert "20 concurrent calls" in r.stdout
