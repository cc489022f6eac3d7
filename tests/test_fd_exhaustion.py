"""Issue 13 audit: a daemon out of file descriptors (``ulimit -n``) survives, says so in one
clear log line (not a traceback per attempt, not a busy loop), keeps serving the clients it
has, and accepts again once connections close. The daemon runs in a subprocess whose
RLIMIT_NOFILE is set low with resource.setrlimit."""

import queue
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import ember

resource = pytest.importorskip("resource")  # POSIX only

FD_LIMIT = 64

CHILD = textwrap.dedent("""
    import logging, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    import ember

    @ember.expose
    class Calc:
        def add(self, a, b):
            return a + b

    cfg = ember.config.copy()
    cfg.HANDSHAKE_TIMEOUT = 120.0  # the flood must hold its descriptors for the whole test
    daemon = ember.Daemon(servertype=sys.argv[1], config=cfg)
    print(daemon.register(Calc(), "calc"), flush=True)
    daemon.request_loop()
""")


class _Lines:
    """The child's stderr, read line by line on a thread."""

    def __init__(self, stream):
        self.all = []
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            self.all.append(line)
            self.queue.put(line)

    def wait_for(self, text, timeout=20):
        while True:
            try:
                line = self.queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no log line with {text!r}; got: {''.join(self.all)}") from None
            if text in line:
                return line


@pytest.mark.timeout(90)
@pytest.mark.parametrize("servertype", ["multiplex", "asyncio", "thread"])
def test_out_of_file_descriptors(servertype):
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(limit=FD_LIMIT), servertype],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    flood = []
    try:
        uri = proc.stdout.readline().strip()
        assert uri.startswith("PYRO:calc@"), proc.stderr.read()
        log = _Lines(proc.stderr)
        host, port = uri.split("@")[1].rsplit(":", 1)
        early = ember.Proxy(uri)
        early._timeout = 20
        assert early.add(1, 1) == 2  # connected before the flood
        for _ in range(FD_LIMIT + 40):  # more than the daemon can hold: the rest wait in its backlog
            flood.append(socket.create_connection((host, int(port)), timeout=20))
        line = log.wait_for("cannot accept new connections")
        assert "Too many open files" in line and f"is {FD_LIMIT}" in line
        assert early.add(2, 2) == 4  # the daemon is alive and serves the connection it has
        assert early.add(3, 3) == 6
        assert proc.poll() is None
        for s in flood:
            s.close()
        flood.clear()
        log.wait_for("accepting new connections again")
        with ember.Proxy(uri) as late:
            late._timeout = 20
            assert late.add(4, 4) == 8
        early._release()
    finally:
        for s in flood:
            s.close()
        proc.terminate()
        proc.wait(20)
        proc.stdout.close()
    log.thread.join(10)
    proc.stderr.close()
    text = "".join(log.all)
    # one line when it starts (and one when it ends) per episode: not one per attempt
    assert text.count("cannot accept new connections") <= 5, text
    assert "Traceback" not in text and "out of system resource" not in text, text
