"""A real ``redis-server`` for the tests: on a free loopback port, in a temporary directory,
without persistence, stopped by its pid at teardown.

Outside CI a machine without ``redis-server`` skips the Redis tests; in CI (``CI=true``) that
is a failure (``.ci/run`` installs it with apt-get).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_binary() -> str:
    """The path of redis-server, or a skip (a failure in CI)."""
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if found is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        import redis  # noqa: F401
    except ImportError:
        message = "redis-py is not installed (pip install 'ember-rpc[redis]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


class RedisServer:
    """One redis-server process; ``stop()``/``start()`` keep its port (to test an outage)."""

    def __init__(self, directory: Path) -> None:
        self.binary = redis_binary()
        self.directory = directory
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def unique_url(self) -> str:
        """The server's URL with a prefix of its own: an empty registry for one test."""
        return f"{self.url}?prefix=test-{uuid.uuid4().hex[:12]}"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on 127.0.0.1:{self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server shared by the session's tests (each uses its own key prefix)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """A Redis storage URL with a fresh key prefix: an empty registry."""
    return redis_server.unique_url()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own (which it may stop and start again)."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
