"""The examples in examples/ run as documented."""

import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def test_inprocess_example():
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "inprocess.py")], capture_output=True, text=True,
                         timeout=30, check=True)
    assert "hello, world" in out.stdout


def test_calc_server_and_client():
    server = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "calc_server.py")], stdout=subprocess.PIPE,
                              text=True)
    try:
        uri = server.stdout.readline().split("serving at ")[1].strip()
        out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "calc_client.py"), uri], capture_output=True,
                             text=True, timeout=30, check=True)
        assert "add(1, 2) = 3" in out.stdout and "countdown: [3, 2, 1]" in out.stdout
        assert "ZeroDivisionError" in out.stdout and "batch: [0, 2, 4]" in out.stdout
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(10)
        server.stdout.close()


def test_echo_server_cli():
    import ember

    proc = subprocess.Popen([sys.executable, "-m", "ember.cli", "echo", "-p", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("Ember echo server running")
        uri = proc.stdout.readline().split("uri = ")[1].strip()
        assert uri.startswith("PYRO:test.echoserver@127.0.0.1:")
        with ember.Proxy(uri) as echo:
            assert echo.echo([1, "two"]) == [1, "two"]
            assert list(echo.generator()) == ["one", "two", "three"]
            try:
                echo.error()
            except ValueError as exc:  # what Pyro5's echo server raises
                assert str(exc) == "this is the generated error from echoserver echo() method"
            else:
                raise AssertionError("expected ValueError")
            echo.verbose = False
            assert echo.verbose is False
            echo.shutdown()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_by_name_example():
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "by_name.py")], capture_output=True, text=True,
                         timeout=30, check=True)
    assert "apples in stock: 3" in out.stdout and "pears in stock: 0" in out.stdout


def test_asyncio_example():
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "asyncio_service.py")], capture_output=True,
                         text=True, timeout=30, check=True)
    assert "menu: ['soup', 'pasta', 'pie']" in out.stdout and "30 dishes in" in out.stdout
    assert "courses: ['starter', 'main', 'dessert']" in out.stdout


def test_events_example():
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "events.py")], capture_output=True, text=True,
                         timeout=30, check=True)
    assert "#1 weather.rotterdam: {'temp': 11.5, 'sky': 'rain'}" in out.stdout
    assert "#4 weather.rotterdam" in out.stdout and "subscriber received 3 events; last seq 4" in out.stdout
    assert "async subscriber got: ['Ajax 2 - 1 Feyenoord', 'Tulips in bloom']" in out.stdout
