"""The fuzz driver: a server in a subprocess, connections that feed it inputs in pipelined
groups, and the checks (alive, stall of a well-behaved client, fd/RSS growth).

A *group* on an established connection is ``k`` inputs that keep the framing intact, a
PING sentinel, and optionally one *terminal* input (framing may break) followed by a
half-close. Every frame carries its own sequence number, so the replies tell which inputs
the server got through: an input counts as run when it was answered, when a later frame on
its connection was answered, or when the server closed the connection right after it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import ember
from ember.protocol.framing import Decoder

from . import inputs as fi
from . import known
from .target import TOKEN

ROOT = Path(__file__).resolve().parent.parent


# ---- the server process --------------------------------------------------------------------


class ServerProcess:
    """An Ember daemon (``fuzz/target.py``) of one server type, in a subprocess."""

    def __init__(self, servertype: str, max_message_size: int = 1 << 20, extra_args: list[str] | None = None) -> None:
        self.servertype = servertype
        self.extra_args = extra_args or []
        self.max_message_size = max_message_size
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.restarts = 0

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
        proc = subprocess.Popen(
            [sys.executable, "-m", "fuzz.target", "--servertype", self.servertype,
             "--max-message-size", str(self.max_message_size), *self.extra_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT))
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"fuzz target for {self.servertype} did not start: {line!r}")
        # port first: a monitor that sees the new process alive must also see its port
        self.port = int(line.split()[1])
        self.proc = proc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def sample(self) -> dict[str, int]:
        """RSS (kB), open fds and threads of the server process, from /proc."""
        out = {"rss_kb": 0, "fds": 0, "threads": 0}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out["rss_kb"] = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        out["threads"] = int(line.split()[1])
            out["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            pass
        return out

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(10)
        except (subprocess.TimeoutExpired, OSError):
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        self.proc = None


# ---- findings ------------------------------------------------------------------------------


class Finding(dict):
    """kind (hang, noreply, badreply, crash, stall, refused, leak), detail, and the frames that led to
    it: ``connections`` lists, per connection that was in flight, the frames of its handshake and
    of its current group (the first one is the connection the finding was seen on)."""

    @classmethod
    def make(cls, kind: str, servertype: str, detail: str, connections: list[Any] | None = None) -> Finding:
        conns = [{"frames": [base64.b64encode(f).decode() for f in c.hello + c.sent], "half_close": c.half_closed}
                 for c in connections or []]
        return cls(kind=kind, servertype=servertype, detail=detail, connections=conns)

    def save(self, directory: str | Path, n: int) -> Path:
        Path(directory).mkdir(parents=True, exist_ok=True)
        path = Path(directory) / f"{self['servertype']}-{self['kind']}-{n}.json"
        path.write_text(json.dumps(self, indent=1))
        return path


# ---- one connection ------------------------------------------------------------------------


class Snapshot:
    """The frames of one group on one connection (for reproducers)."""

    __slots__ = ("hello", "sent", "half_closed")

    def __init__(self, c: Conn) -> None:
        self.hello, self.sent, self.half_closed = list(c.hello), list(c.sent), c.half_closed


class Conn:
    """A fuzzing connection: handshake, then groups of inputs."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dec = Decoder(1 << 28, 1 << 24)
        self.seq = 1
        self.groups = 0
        self.hello: list[bytes] = []  # the handshake frame, for reproducers
        self.sent: list[bytes] = []  # the frames of the current group, for reproducers
        self.half_closed = False
        self.closed = False

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF or 1
        return self.seq

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read(self, deadline: float) -> list | None:
        """Messages from one recv (``[]`` for nothing yet at the deadline), None when closed."""
        while True:
            msgs = self.dec.messages()
            if msgs:
                return msgs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(262144)
            except TimeoutError:
                return []
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return None
            self.dec.feed(chunk)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


# ---- a worker: fuzzes one server with a few connections ------------------------------------


class Worker:
    """Feeds inputs to one server; counts them and reports findings through ``report``."""

    def __init__(self, servertype: str, port_getter: Any, seed: int, conns: int = 4, group: int = 24,
                 hang_timeout: float = 10.0, report: Any = None, rng: Any = None, skip_known: bool = False,
                 pool: list[fi.Case] | None = None, slow: float = 2.0) -> None:
        self.servertype = servertype
        self.port_getter = port_getter
        self.r = rng if rng is not None else random.Random(seed)
        self.nconns = conns
        self.group = group
        self.hang_timeout = hang_timeout
        self.report = report or (lambda f: None)
        self.stats: Counter[str] = Counter()
        self.conns: list[Conn | None] = [None] * conns
        self.stream_ids: list[str] = []
        self.lost_server = False
        self.skip_known = skip_known
        self.slow = slow  # a group answered slower than this is saved (kind "slow") to trace stalls
        self.pool: list[fi.Case] = pool if pool is not None else []  # captured valid frames, mutated again and again
        # the last groups sent, so that a crash can be traced back to the inputs before it
        self.recent: deque[Snapshot] = deque(maxlen=12)

    def _tweaked(self, seq: int) -> fi.Case:
        base = self.r.choice(self.pool)
        data, oneway = fi.tweak_header(self.r, base.data, seq)
        return fi.Case(data, base.kind.replace("invoke", "tweak-header"), reply=not oneway, seq=seq)

    def _mutated(self, seq: int) -> fi.Case:
        base = self.r.choice(self.pool)
        return fi.Case(fi.mutate_payload(self.r, base.data, seq), base.kind.replace("invoke", "raw-payload"),
                       reply=base.reply, seq=seq)

    def _gen(self, make: Any) -> fi.Case:
        """A case from ``make()``; with ``skip_known``, one that hits no known issue (counted)."""
        case = make()
        if self.skip_known:
            for _ in range(20):
                issue = known.known_issue(case.data)
                if issue is None:
                    break
                self.stats["skipped:" + issue] += 1
                case = make()
        return case

    # each connection cycles: open -> handshake (plain or fuzzed) -> groups -> close
    def _open(self, i: int) -> Conn | None:
        r = self.r
        try:
            c = Conn(self.port_getter(), self.hang_timeout)
        except OSError:
            self.stats["connect_errors"] += 1
            if not self.lost_server and self.recent:
                self.stats["crash-context"] += 1
                self.report(Finding.make("crash-context", self.servertype, "connection refused: the last groups this "
                                         "worker sent before (oldest first)", list(self.recent)))
                self.recent.clear()
            self.lost_server = True
            return None
        self.stats["connections"] += 1
        if r.randrange(4) == 0:
            case = self._gen(lambda: fi.connect_case(r))
        else:
            case = fi.Case(fi.connect_frame(r.choice(fi.SERIALIZER_IDS), 0, TOKEN, fi.OBJECT,
                                            {"EMBR": b"1"} if r.randrange(2) else None), "connect/plain")
        c.hello.append(case.data)
        if not c.send(case.data):
            c.close()
            return None
        deadline = time.monotonic() + self.hang_timeout
        while True:
            msgs = c.read(deadline)
            if msgs is None:
                if case.kind != "connect/plain":
                    self.stats["inputs"] += 1
                    self.stats["in:" + case.kind] += 1
                else:
                    self._finding("refused", "a valid CONNECT was closed without an answer", c)
                c.close()
                return None
            if not msgs:
                self._finding("hang", f"no answer to a CONNECT within {self.hang_timeout}s", c)
                c.close()
                return None
            m = msgs[0]
            if case.kind != "connect/plain":
                self.stats["inputs"] += 1
                self.stats["in:" + case.kind] += 1
            if m.type == fi.CONNECTOK:
                if "EMUX" in m.annotations:  # replies may overlap; this driver reads in order
                    c.close()
                    return None
                return c
            if m.type == fi.CONNECTFAIL:
                if case.kind == "connect/plain":
                    self._finding("refused", f"valid CONNECT refused: {m.data[:200]!r}", c)
                c.close()  # the server closes after CONNECTFAIL; a hang there shows in the next handshake
                return None
            self._finding("badreply", f"answer of type {m.type} to a CONNECT", c)
            c.close()
            return None

    def _make_group(self, c: Conn) -> tuple[list[fi.Case], fi.Case | None, int]:
        r = self.r
        cases = []
        for _ in range(r.randrange(1, self.group + 1)):
            seq = c.next_seq()
            k = r.randrange(10)
            if k < 3 or len(self.pool) < 64:
                case = self._gen(lambda s=seq: fi.invoke(r, seq=s, stream_ids=self.stream_ids))
                if not case.data[9] & 0x02:  # captured for mutation: uncompressed frames only
                    if len(self.pool) < 2048:
                        self.pool.append(case)
                    else:
                        self.pool[r.randrange(2048)] = case
            elif k < 5:
                case = self._gen(lambda s=seq: self._tweaked(s))
            elif k < 9:
                case = self._gen(lambda s=seq: self._mutated(s))
            elif r.randrange(2):
                ser = r.choice(fi.SERIALIZER_IDS)
                call = fi.SER[ser].dumps_call("fz", "gen", [r.randrange(10)], {})
                case = fi.Case(fi.frame(fi.INVOKE, ser, 0, seq, call), "stream-start", seq=seq)
            else:
                case = fi.Case(fi.ping(seq), "ping", seq=seq)
            cases.append(case)
        pong = c.next_seq()
        terminal = None
        if r.randrange(7) == 0:
            k = r.randrange(6)
            seq = c.next_seq()
            if k < 2:
                terminal = self._gen(lambda: fi.raw_case(r, seq, self.stream_ids, keep=False))
            elif k < 4:
                terminal = fi.header_case(r, seq)
            elif k == 4:
                terminal = fi.garbage_case(r)
            else:
                terminal = self._gen(lambda: fi.Case(fi.connect_case(r).data, "connect-after-handshake",
                                                     terminal=True, reply=False))
        return cases, terminal, pong

    def _finding(self, kind: str, detail: str, c: Conn, half_close: bool = False) -> None:
        self.stats[kind] += 1
        others = [x for x in self.conns if x is not None and x is not c and not x.closed]
        self.report(Finding.make(kind, self.servertype, detail, [c] + others))

    def step(self) -> None:
        """One round: a group on every connection, then the replies of each."""
        pending = []
        for i in range(self.nconns):
            c = self.conns[i]
            if c is None or c.closed:
                c = self.conns[i] = self._open(i)
                if c is None:
                    continue
            cases, terminal, pong = self._make_group(c)
            frames = [x.data for x in cases] + [fi.ping(pong)]
            if terminal is not None:
                frames.append(terminal.data)
            c.sent = frames
            ok = c.send(b"".join(frames))
            if ok and terminal is not None:
                c.half_closed = True
                try:
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            pending.append((i, c, cases, terminal, pong))
        for i, c, cases, terminal, pong in pending:
            self.recent.append(Snapshot(c))
            t0 = time.monotonic()
            hangs = self.stats["hang"]
            self._collect(c, cases, terminal, pong)
            took = time.monotonic() - t0
            if took > self.slow and self.stats["hang"] == hangs:
                # not a finding by itself (the machine may be busy), but the frames behind a stall
                self._finding("slow", f"a group took {took:.1f}s to be answered", c)
            c.groups += 1
            if c.closed or terminal is not None or c.groups >= 40:
                c.close()
                self.conns[i] = None

    def _collect(self, c: Conn, cases: list[fi.Case], terminal: fi.Case | None, pong: int) -> None:
        expected = {x.seq for x in cases if x.reply}
        answered: set[int] = set()
        got_pong = False
        deadline = time.monotonic() + self.hang_timeout
        closed = False
        while True:
            if got_pong and (expected <= answered) and terminal is None:
                break
            try:
                msgs = c.read(deadline)
            except ember.errors.ProtocolError as exc:
                self._finding("badreply", f"server sent an invalid frame: {exc}", c, terminal is not None)
                closed = True
                break
            if msgs is None:
                closed = True
                break
            if not msgs:
                if got_pong and not expected <= answered:
                    break  # the missing replies are reported below
                what = "no close after the half-close" if got_pong else "no answer and no close"
                self._finding("hang", f"{what} within {self.hang_timeout}s", c, terminal is not None)
                closed = True
                break
            for m in msgs:
                if m.type == fi.PING and m.seq == pong:
                    got_pong = True
                elif m.type in (fi.RESULT, fi.PING):
                    answered.add(m.seq)
                    sid = m.annotations.get("STRM")
                    if sid and len(self.stream_ids) < 64:
                        self.stream_ids.append(sid.decode("latin-1"))
                    elif sid:
                        self.stream_ids[self.r.randrange(64)] = sid.decode("latin-1")
                else:
                    self._finding("badreply", f"message type {m.type} on an established connection", c,
                                  terminal is not None)
        # which inputs ran
        term_ran = 0
        if got_pong:
            ran = len(cases)
            missing = expected - answered
            if missing and not closed:
                kinds = sorted({x.kind for x in cases if x.seq in missing})
                self._finding("noreply", f"no reply to seq {sorted(missing)} ({kinds}) within {self.hang_timeout}s, "
                                         "though a later PING was answered", c)
            if terminal is not None and closed:
                term_ran = 1
                self.stats["in:" + terminal.kind] += 1
        else:
            last = max(answered, default=-1)
            ran = 0
            for x in cases:
                if x.seq <= last or x.seq in answered:
                    ran += 1
                else:
                    if closed:
                        ran += 1  # the one the server closed the connection on
                        self.stats["closed_on:" + x.kind] += 1
                    break
        for x in cases[:ran]:
            self.stats["in:" + x.kind] += 1
        self.stats["inputs"] += ran + term_ran
        if closed:
            c.close()


def replay(path: str | Path, port: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Send the frames of a saved finding to a server, one socket per recorded connection (in
    the order recorded, all at once); report per connection what came back and how long it took."""
    f = json.loads(Path(path).read_text())
    socks = []
    t0 = time.monotonic()
    for conn in f["connections"]:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        frames = [base64.b64decode(x) for x in conn["frames"]]
        if frames:  # handshake first, then (once it is answered) the group, as the fuzzer did
            s.sendall(frames[0])
            s.recv(65536)
            s.sendall(b"".join(frames[1:]))
        if conn.get("half_close"):
            s.shutdown(socket.SHUT_WR)
        socks.append((s, len(frames)))
    results = []
    for s, nframes in socks:
        dec = Decoder(1 << 28, 1 << 24)
        replies: list[tuple[int, int, int]] = []
        closed = False
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                dec.feed(chunk)
                replies.extend((m.type, m.seq, m.flags) for m in dec.messages())
        except (TimeoutError, ConnectionError):
            pass
        s.close()
        results.append({"frames": nframes, "replies": len(replies), "closed": closed,
                        "elapsed": round(time.monotonic() - t0, 3)})
    return results


# ---- the checks ----------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Watches a server: alive, a well-behaved client's latency (stall), fds/RSS/threads."""

    def __init__(self, server: ServerProcess, stall_threshold: float = 2.0, interval: float = 0.25,
                 report: Any = None) -> None:
        super().__init__(name=f"fuzz-monitor-{server.servertype}", daemon=True)
        self.server = server
        self.stall_threshold = stall_threshold
        self.interval = interval
        self.report = report or (lambda f: None)
        self.stop_event = threading.Event()
        self.checks = 0
        self.stalls = 0
        self.max_latency = 0.0
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.crashes: list[int | None] = []

    def _client(self) -> Any:
        p = ember.Proxy(f"PYRO:fz@127.0.0.1:{self.server.port}")
        p._handshake = TOKEN
        p._timeout = max(self.stall_threshold * 5, 10.0)
        return p

    def check_once(self, proxy: Any) -> float:
        t0 = time.monotonic()
        assert proxy.add(20, 22) == 42
        return time.monotonic() - t0

    def run(self) -> None:
        proxy = None
        port = 0
        last_sample = 0.0
        while not self.stop_event.wait(self.interval):
            if not self.server.alive():
                continue  # the driver notices and restarts it
            if time.monotonic() - last_sample >= 1.0:
                self.samples.append((time.monotonic(), self.server.sample()))
                last_sample = time.monotonic()
            try:
                if proxy is None or self.checks % 20 == 0:  # a fresh connection now and then (accept path)
                    if proxy is not None:
                        proxy._release()
                    proxy = self._client()
                    port = self.server.port
                latency = self.check_once(proxy)
            except Exception as exc:  # noqa: BLE001 - any failure of the good client is a finding
                # not a stall when the server died (a crash, reported by the driver) or was restarted
                if self.server.alive() and self.server.port == port and not self.stop_event.is_set():
                    self.stalls += 1
                    self.report(Finding.make("stall", self.server.servertype,
                                             f"well-behaved client failed: {type(exc).__name__}: {exc}"))
                if proxy is not None:
                    proxy._release()
                proxy = None
                self.checks += 1
                continue
            self.checks += 1
            self.max_latency = max(self.max_latency, latency)
            if latency > self.stall_threshold:
                self.stalls += 1
                self.report(Finding.make("stall", self.server.servertype,
                                         f"well-behaved client waited {latency:.2f}s for add(20, 22)"))
        if proxy is not None:
            proxy._release()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)
