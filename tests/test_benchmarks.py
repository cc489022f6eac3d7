"""The benchmark programs run (tiny counts, no timing assertions: figures live in docs/performance.md)."""

import json
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def bench(script, *args):
    return subprocess.run([sys.executable, os.path.join(BENCH, script), *args], capture_output=True, text=True,
                          timeout=120)


def test_small_call_benchmark_runs(tmp_path):
    out = tmp_path / "small.json"
    r = bench("small_call.py", "--calls", "50", "--rounds", "1", "--seconds", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    for placement in ("one", "split"):
        assert f"placement {placement}" in r.stdout
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"one", "split"}
    for res in results.values():
        assert set(res["median"]) == {"socket", "ember", "pyro5"}
        assert all(rate > 0 for rate in res["median"].values())
        assert set(res["ratios"]) == {"ember/socket", "ember/pyro5"}


def test_async_concurrency_benchmark_runs():
    r = bench("async_concurrency.py", "--calls", "20", "--delay", "0.01", "--rounds", "1")
    assert r.returncode == 0, r.stderr
    assert "20 concurrent calls" in r.stdout


def test_compare_suite_runs_quick(tmp_path):
    out = tmp_path / "compare.json"
    r = bench("compare.py", "--quick", "--placements", "pinned", "--json", str(out))
    assert r.returncode == 0, r.stderr
    import json

    data = json.loads(out.read_text())
    cases = data["placements"]["pinned"]
    assert "small call (msgpack)" in cases and "batch of 1000" in cases and "8 client threads" in cases
    assert "ember" in cases["small call (msgpack)"]["results"]
    assert "ember/pyro5" in cases["small call (msgpack)"]["ratios"]
    assert data["idle_connections"]["ember-multiplex"]["held"] > 0


def test_ember_bench_command(make_daemon):
    from .services import Calc

    uri = make_daemon().register(Calc(), "calc")
    r = subprocess.run([sys.executable, "-m", "ember.cli", "bench", str(uri), "-m", "add", "-a", "[1, 2]", "-n", "200",
                        "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json

    result = json.loads(r.stdout)
    assert result["calls"] == 200 and result["method"] == "add" and result["p50_us"] > 0
    r = subprocess.run([sys.executable, "-m", "ember.cli", "bench", str(uri), "-n", "50"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "calls/s" in r.stdout and "p99" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ember.cli", "bench", str(uri), "-m", "nope", "-n", "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no exposed" in r.stderr


def test_events_benchmark_runs():
    r = bench("events.py", "--quick", "--subscribers", "1,2", "--storage", "memory,sqlite", "--modes", "many")
    assert r.returncode == 0, r.stderr
    assert "deliveries/s" in r.stdout and "sqlite" in r.stdout


def test_scale_out_benchmark_runs():
    from .redis_fixture import redis_binary

    redis_binary()  # a skip without redis-server (a failure in CI)
    r = bench("scale_out.py", "--quick")
    assert r.returncode == 0, r.stderr
    assert "lookups/s, 3 name servers" in r.stdout and "cache on" in r.stdout and "name gone after" in r.stdout


def test_gateway_benchmark_runs(tmp_path):
    out = tmp_path / "gateway.json"
    r = bench("gateway.py", "--requests", "20", "--rounds", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "ratio ember/pyro5" in r.stdout
    import json

    data = json.loads(out.read_text())
    assert data["results"]["ember"]["requests"] == 20 and data["results"]["pyro5"]["requests"] == 20
    assert data["results"]["ember"]["connections"] == 1  # keep-alive; Pyro5's gateway closes every connection


def test_bulk_benchmark_runs_quick(tmp_path):
    out = tmp_path / "bulk.json"
    r = bench("bulk.py", "--quick", "--cpus", "", "--json", str(out))
    assert r.returncode == 0, r.stderr
    import json

    data = json.loads(out.read_text())
    for case in ("bytes-1MiB", "bytes-16MiB", "numpy-8MiB"):
        assert data[f"socket {case}"]["median"] > 0 and data[f"ember {case}"]["median"] > 0
        assert f"pyro5-marshal {case}" in data
    assert "x socket" in r.stdout
