"""daemon.statistics(): calls, errors, in-flight calls, latency percentiles, bytes, connections."""

import threading

import pytest

import ember
from ember import errors

from .services import Calc, wait_for


def test_statistics_count_what_the_daemon_did(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype, statistics=True)
    uri = daemon.register(Calc, "calc")
    with ember.Proxy(uri) as p:
        for i in range(10):
            assert p.add(i, 1) == i + 1
        with pytest.raises(ValueError):
            p.fail()
        stats = daemon.statistics()
        assert stats["connections"] == {"open": 1, "total": 1}
    add = stats["methods"]["calc.add"]
    assert add["calls"] == 10 and add["errors"] == 0
    assert set(add["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert 0 < add["latency_ms"]["p50"] <= add["latency_ms"]["p99"] <= add["latency_ms"]["max"]
    fail = stats["methods"]["calc.fail"]
    assert (fail["calls"], fail["errors"]) == (1, 1)
    assert stats["calls"] == 11 and stats["errors"] == 1 and stats["in_flight"] == 0
    # every message is counted whole: at least a 40-byte header each way per call and handshake
    assert stats["bytes_in"] >= 12 * 40 and stats["bytes_out"] >= 12 * 40
    assert wait_for(lambda: daemon.statistics()["connections"]["open"] == 0)


def test_calls_in_flight_are_seen(make_daemon):
    daemon = make_daemon(servertype="thread", statistics=True)
    uri = daemon.register(Calc, "calc")

    def slow():
        with ember.Proxy(uri) as p:
            p.sleepy(0.5)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert wait_for(lambda: daemon.statistics()["in_flight"] == 1)
    finally:
        thread.join()
    assert daemon.statistics()["in_flight"] == 0


def test_statistics_are_off_unless_asked_for(make_daemon):
    daemon = make_daemon()
    with pytest.raises(errors.DaemonError, match=r"Daemon\(statistics=True\)"):
        daemon.statistics()
    with ember.config.override(STATISTICS=True):
        on = make_daemon()
    assert on.statistics()["calls"] == 0
