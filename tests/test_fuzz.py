"""Short fuzz run against every server type (the long run is ``python fuzz/run.py``, see
security-fuzz.md): each server runs in a subprocess on 127.0.0.1 and gets structured and
raw-mutated frames (header, every serializer, handshake, batches, streams) over real sockets.
After the run the server must be alive, have answered a well-behaved client all along, have
left no connection hanging and hold no more file descriptors than before.

Deterministic: a fixed seed for the mutation run, ``derandomize`` for hypothesis.

Every input is sent, including those that hit the issues the fuzzer found (marshal size
bombs, marshal back-references to half-read tuples, malformed batches), all fixed now;
``EMBER_FUZZ_SKIP_KNOWN=1`` leaves them out (to look for something new in a long run).
"""

import os
import random
import socket
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz import inputs as fi  # noqa: E402
from fuzz import known  # noqa: E402
from fuzz.engine import Monitor, ServerProcess, Worker  # noqa: E402

SKIP_KNOWN = os.environ.get("EMBER_FUZZ_SKIP_KNOWN") == "1"
SERVERTYPES = ["thread", "multiplex", "asyncio"]
HANG_TIMEOUT = 8.0


@pytest.fixture(params=SERVERTYPES)
def target(request):
    server = ServerProcess(request.param)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"fuzz target server did not start: {exc}")
        pytest.skip(f"fuzz target server did not start: {exc}")
    findings = []
    # warm up (lazily created server resources: executor threads, event loop pipes) before the baseline
    warm = Worker(server.servertype, lambda: server.port, seed=1, conns=2, report=findings.append, skip_known=True)
    for _ in range(3):
        warm.step()
    for c in warm.conns:
        if c is not None:
            c.close()
    time.sleep(0.5)
    base = server.sample()
    monitor = Monitor(server, stall_threshold=5.0, report=findings.append)
    monitor.start()
    yield server, findings
    monitor.stop()
    alive = server.alive()
    code = server.returncode()
    if alive:  # one more call of the well-behaved client, however short the test was
        good = monitor._client()
        try:
            monitor.check_once(good)
        finally:
            good._release()
    end = _settled_fds(server, base["fds"])
    server.stop()
    assert alive, f"the {request.param} server died (exit code {code})"
    assert end <= base["fds"] + 2, f"{request.param} server holds {end} fds after the run, {base['fds']} before"


def _settled_fds(server, before):
    deadline = time.monotonic() + 10
    while True:
        n = server.sample()["fds"]
        if n <= before + 2 or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def _pool():
    r = random.Random(1234)
    out = []
    while len(out) < 64:
        case = fi.invoke(r, seq=0)
        if not case.data[9] & 0x02 and known.known_issue(case.data) is None:
            out.append(case)
    return out


POOL = _pool()


def _problems(findings):
    """Findings that fail the test: all but "slow" groups (saved to trace stalls; a busy CI machine
    makes some), which are no failure by themselves."""
    return "\n".join(f"{f['kind']}: {f['detail']}" for f in findings if f["kind"] != "slow")


@pytest.mark.timeout(120)
def test_mutation_run_leaves_server_healthy(target):
    """A few thousand seeded inputs: structured, header tweaks, raw payload and frame mutations."""
    server, findings = target
    worker = Worker(server.servertype, lambda: server.port, seed=20261201, conns=3, hang_timeout=HANG_TIMEOUT,
                    report=findings.append, skip_known=SKIP_KNOWN)
    while worker.stats["inputs"] < 2000:
        worker.step()
        assert server.alive(), f"server died: exit code {server.returncode()}"
    for c in worker.conns:
        if c is not None:
            c.close()
    assert not _problems(findings)
    # every kind of input was sent
    kinds = {k.split(":", 1)[1].split("/")[0] for k in worker.stats if k.startswith("in:")}
    assert {"invoke", "raw-payload", "tweak-header", "stream-start", "ping"} <= kinds, kinds
    assert worker.stats["connections"] > 10


@pytest.mark.timeout(180)
def test_hypothesis_groups(target):
    """hypothesis drives the same generators (through ``st.randoms``): handshakes, calls in every
    serializer, batches, streams and a terminal frame per example; failures shrink."""
    server, findings = target

    @settings(max_examples=25, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def one_group(r):
        worker = Worker(server.servertype, lambda: server.port, seed=0, conns=1, group=8,
                        hang_timeout=HANG_TIMEOUT, report=findings.append, rng=r, skip_known=SKIP_KNOWN,
                        pool=list(POOL))
        try:
            worker.step()
            worker.step()
        finally:
            for c in worker.conns:
                if c is not None:
                    c.close()
        assert server.alive()
        assert not _problems(findings)

    one_group()


def _exchange(port, data, handshake):
    """Send ``data`` (after a valid handshake when asked), half-close; the server must answer or
    close within the hang timeout. Returns what it did."""
    s = socket.create_connection(("127.0.0.1", port), timeout=HANG_TIMEOUT)
    try:
        if handshake:
            s.sendall(fi.connect_frame(4))
            reply = s.recv(65536)
            assert reply[6] == fi.CONNECTOK, reply
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return "reset"
            except TimeoutError:
                pytest.fail(f"no answer and no close within {HANG_TIMEOUT}s after {data!r}")
            if not chunk:
                return "closed" if not got else "answered"
            got += chunk
    finally:
        s.close()


@pytest.mark.timeout(120)
def test_header_fields(target):
    """Every field of the 40-byte header, drawn by hypothesis, before and after the handshake."""
    server, findings = target
    body = fi.SER[4].dumps_call("fz", "add", [1, 2], {})

    @settings(max_examples=40, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(tag=st.sampled_from([b"PYRO", b"PYRP", b"\0\0\0\0"]), version=st.sampled_from([502, 501, 48, 0, 65535]),
           mtype=st.integers(0, 255), ser=st.integers(0, 255), flags=st.integers(0, 0xFFFF),
           seq=st.integers(0, 0xFFFF), dlen=st.one_of(st.just(len(body)), st.integers(0, 2**32 - 1)),
           alen=st.one_of(st.just(0), st.integers(0, 2**32 - 1)), magic=st.sampled_from([0x4DC5, 0, 0xC54D]),
           res=st.integers(0, 0xFFFF), handshake=st.booleans())
    def one_header(tag, version, mtype, ser, flags, seq, dlen, alen, magic, res, handshake):
        hdr = fi.raw_header(tag, version, mtype, ser, flags, seq, dlen, alen, bytes(16), res, magic)
        _exchange(server.port, hdr + body, handshake)
        assert server.alive()
        assert not _problems(findings)

    one_header()


def test_marshal_hazard_walk():
    """The known-issue filter recognises the marshal hazards without decoding them, and lets
    ordinary marshal data through (it must never run marshal.loads on fuzz data itself)."""
    import marshal

    assert known.marshal_danger(b"\xa9\x01{r\x00\x00\x00\x00N0") == "marshal-ref"
    assert known.marshal_danger(b"[\xff\xff\xff\x7f") == "marshal-size"
    assert known.marshal_danger(b"[\x01\x00\x00\x00" * 1999 + b"(\xff\xff\xff\x7f") == "marshal-size"
    assert known.marshal_danger(marshal.dumps(compile("1", "x", "eval"))) == "marshal-code"
    shared = [1, "fz"]
    ordinary = ("fz", "echo", [shared, shared, (shared, 2**80, 1.5, 1j, b"x", {1, 2}, frozenset("ab"))], {"k": None})
    assert known.marshal_danger(marshal.dumps(ordinary)) is None
    frame = fi.raw_header(mtype=fi.INVOKE, ser=4, flags=fi.F_KEEPSERIALIZED, alen=13) + b"BLBI\x00\x00\x00\x05[\xff\xff\xff\x7f"
    assert known.known_issue(frame) == "marshal-size"
    batch = fi.frame(fi.INVOKE, 2, fi.F_BATCH, 1, b"\xa9\x01{r\x00\x00\x00\x00N0")
    assert known.known_issue(batch) == "marshal-ref"  # found before the batch check decodes anything
