"""Long-run fuzz driver: every server type in its own subprocess, fed by worker processes.

    python fuzz/run.py --servertype all --inputs 1000000 --workers 2 --skip-known --out /tmp/ember-fuzz

prints, every ``--report-every`` seconds and at the end, per server type: inputs run,
inputs/s, crashes, hangs, missing replies, bad replies, stalls of the well-behaved client,
and the server's fd count, RSS and thread count (baseline -> peak -> end). Each finding is
saved as JSON under ``--out`` with the frames that led to it; ``--replay FILE`` sends them
again to a fresh server and shows what happens. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT / "src"), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from fuzz.engine import Finding, Monitor, ServerProcess, Worker, replay  # noqa: E402

SERVERTYPES = ("thread", "multiplex", "asyncio")
FINDING_KINDS = ("crash", "hang", "noreply", "badreply", "refused", "stall")  # "slow" is saved, not counted


def _worker_main(servertype: str, index: int, port: Any, stop: Any, out: Any, seed: int, conns: int,
                 hang_timeout: float, skip_known: bool) -> None:
    def report(f: Finding) -> None:
        out.put(("finding", servertype, index, dict(f)))

    w = Worker(servertype, lambda: port.value, seed, conns=conns, hang_timeout=hang_timeout, report=report,
               skip_known=skip_known)
    last = time.monotonic()
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:  # never outlive the driver
        w.step()
        if w.lost_server:  # the server died: wait for the driver to restart it
            w.lost_server = False
            time.sleep(0.5)
        if time.monotonic() - last >= 1.0:
            out.put(("stats", servertype, index, dict(w.stats)))
            last = time.monotonic()
    for c in w.conns:
        if c is not None:
            c.close()
    out.put(("stats", servertype, index, dict(w.stats)))


class TypeRun:
    """The server, workers, monitor and figures of one server type."""

    def __init__(self, servertype: str, args: argparse.Namespace, ctx: Any, out: Any, findings: list) -> None:
        self.servertype = servertype
        self.args = args
        self.server = ServerProcess(servertype, args.max_message_size, args.target_arg)
        self.server.start()
        self.port = ctx.Value("i", self.server.port)
        self.stop = ctx.Event()
        self.findings = findings
        self.stats: dict[int, dict[str, int]] = {}
        self.crashes = 0
        self.t0 = time.monotonic()
        self.t_end: float | None = None
        self.ctx, self.out = ctx, out
        self.retired: Counter = Counter()  # stats of workers that died
        self.procs = [self._worker(i) for i in range(args.workers)]
        self.monitor = Monitor(self.server, args.stall_threshold, report=self.add_finding)
        for p in self.procs:
            p.start()
        self.monitor.start()
        self.baseline: dict[str, int] | None = None
        self.quarter: dict[str, int] | None = None
        self.end_sample: dict[str, int] | None = None

    def _worker(self, i: int, restart: int = 0) -> Any:
        seed = self.args.seed * 1000 + SERVERTYPES.index(self.servertype) * 100 + i + restart * 10000
        return self.ctx.Process(target=_worker_main, name=f"fuzz-{self.servertype}-{i}", daemon=True,
                                args=(self.servertype, i, self.port, self.stop, self.out, seed, self.args.conns,
                                      self.args.hang_timeout, self.args.skip_known))

    def add_finding(self, f: dict) -> None:
        self.findings.append(f)
        path = Finding(f).save(self.args.out, len(self.findings))
        print(f"[{self.servertype}] FINDING {f['kind']}: {f['detail'][:200]} -> {path}", flush=True)

    def total(self) -> Counter:
        c: Counter = Counter(self.retired)
        for s in self.stats.values():
            c.update(s)
        return c

    def check(self) -> None:
        """Restart a dead server (a crash) or worker; take the leak baseline samples."""
        for i, p in enumerate(self.procs):
            if self.t_end is None and not p.is_alive():
                self.add_finding(dict(Finding.make("worker-died", self.servertype,
                                                   f"fuzz worker {i} exited with {p.exitcode}")))
                self.retired.update(self.stats.pop(i, {}))  # what it ran still counts
                self.procs[i] = p = self._worker(i, restart=len(self.findings))
                p.start()
        if self.t_end is None and not self.server.alive():
            code = self.server.returncode()
            self.crashes += 1
            self.add_finding(dict(Finding.make("crash", self.servertype, f"server process exited with {code}")))
            self.server.stop()
            self.server.restarts += 1
            self.server.start()
            self.port.value = self.server.port
        n = self.total()["inputs"]
        if self.baseline is None and n >= min(self.args.inputs * 0.02, 20000):
            self.baseline = self.server.sample()
        if self.quarter is None and n >= self.args.inputs * 0.25:
            self.quarter = self.server.sample()

    def finish(self) -> None:
        self.stop.set()
        self.t_end = time.monotonic()

    def join(self) -> None:
        for p in self.procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        self.monitor.stop()
        # let lingering streams and oneway threads finish before the last leak sample
        time.sleep(self.args.settle)
        self.end_sample = self.server.sample()
        self.server.stop()

    def figures(self) -> dict[str, Any]:
        t = self.total()
        elapsed = (self.t_end or time.monotonic()) - self.t0
        peak = {k: max((s[k] for _, s in self.monitor.samples), default=0) for k in ("rss_kb", "fds", "threads")}
        fig: dict[str, Any] = {
            "servertype": self.servertype, "inputs": t["inputs"], "seconds": round(elapsed, 1),
            "inputs_per_s": round(t["inputs"] / elapsed, 1) if elapsed else 0.0, "connections": t["connections"],
            "crashes": self.crashes, "hangs": t["hang"], "noreply": t["noreply"], "badreply": t["badreply"],
            "refused": t["refused"], "stalls": self.monitor.stalls, "stall_checks": self.monitor.checks,
            "max_good_client_latency_s": round(self.monitor.max_latency, 3),
            "skipped_known": {k.split(":", 1)[1]: v for k, v in t.items() if k.startswith("skipped:")},
            "baseline": self.baseline, "at_25pct": self.quarter, "peak": peak, "end": self.end_sample,
            "by_kind": {k[3:]: v for k, v in sorted(t.items()) if k.startswith("in:")},
        }
        return fig

    def line(self) -> str:
        t = self.total()
        elapsed = time.monotonic() - self.t0
        s = self.monitor.samples[-1][1] if self.monitor.samples else {"rss_kb": 0, "fds": 0, "threads": 0}
        return (f"{self.servertype:9} inputs={t['inputs']:>9} rate={t['inputs'] / max(elapsed, 1e-9):7.0f}/s "
                f"crash={self.crashes} hang={t['hang']} noreply={t['noreply']} badreply={t['badreply']} "
                f"refused={t['refused']} stall={self.monitor.stalls} fds={s['fds']} rss={s['rss_kb'] // 1024}MB "
                f"threads={s['threads']} skipped={sum(v for k, v in t.items() if k.startswith('skipped:'))}")


def leak_verdict(fig: dict[str, Any]) -> list[str]:
    """Growth that looks like a leak: fds above the baseline after the settle time, or RSS that
    kept growing after the first quarter of the run by more than 64 MB."""
    out = []
    base, quarter, end = fig["baseline"], fig["at_25pct"], fig["end"]
    if base and end and end["fds"] > base["fds"] + 4:
        out.append(f"fds {base['fds']} -> {end['fds']}")
    if quarter and end and end["rss_kb"] - quarter["rss_kb"] > 65536:
        out.append(f"RSS {quarter['rss_kb'] // 1024} MB at 25% -> {end['rss_kb'] // 1024} MB at the end")
    return out


def run(args: argparse.Namespace) -> int:
    types = SERVERTYPES if args.servertype == "all" else tuple(args.servertype.split(","))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    findings: list = []
    runs = {st: TypeRun(st, args, ctx, out, findings) for st in types}
    print(f"fuzzing {', '.join(types)}: {args.inputs} inputs each, {args.workers} worker(s) x {args.conns} "
          f"connection(s), seed {args.seed}, skip-known={args.skip_known}, findings -> {args.out}", flush=True)
    deadline = time.monotonic() + args.duration if args.duration else None
    last_report = time.monotonic()
    active = set(types)
    interrupted: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: interrupted.append(signum))
    while active:
        try:
            kind, st, index, payload = out.get(timeout=0.5)
            if kind == "stats":
                runs[st].stats[index] = payload
            else:
                runs[st].add_finding(payload)
        except queue.Empty:
            pass
        for st in list(active):
            tr = runs[st]
            tr.check()
            if tr.total()["inputs"] >= args.inputs or (deadline and time.monotonic() >= deadline) or interrupted:
                tr.finish()
                active.discard(st)
                print(f"[{st}] target reached: {tr.line()}", flush=True)
        if time.monotonic() - last_report >= args.report_every:
            last_report = time.monotonic()
            print(time.strftime("%H:%M:%S"), flush=True)
            for tr in runs.values():
                print("  " + tr.line(), flush=True)
    for tr in runs.values():  # drain the last stats
        tr.stop.set()
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            kind, st, index, payload = out.get(timeout=0.5)
        except queue.Empty:
            if all(not p.is_alive() for tr in runs.values() for p in tr.procs):
                break
            continue
        if kind == "stats":
            runs[st].stats[index] = payload
        else:
            runs[st].add_finding(payload)
    for tr in runs.values():
        tr.join()
    summary = []
    bad = any(f["kind"] != "slow" for f in findings)
    print("\n=== summary ===")
    for tr in runs.values():
        fig = tr.figures()
        fig["leaks"] = leak_verdict(fig)
        bad = bad or bool(fig["leaks"])
        summary.append(fig)
        b, q, p, e = fig["baseline"] or {}, fig["at_25pct"] or {}, fig["peak"], fig["end"] or {}
        print(f"{fig['servertype']:9} inputs={fig['inputs']} in {fig['seconds']}s ({fig['inputs_per_s']}/s) "
              f"crashes={fig['crashes']} hangs={fig['hangs']} noreply={fig['noreply']} badreply={fig['badreply']} "
              f"refused={fig['refused']} stalls={fig['stalls']}/{fig['stall_checks']} checks "
              f"(max latency {fig['max_good_client_latency_s']}s)")
        print(f"{'':9} fds {b.get('fds')} -> peak {p['fds']} -> end {e.get('fds')}; "
              f"RSS MB {b.get('rss_kb', 0) // 1024} -> 25% {q.get('rss_kb', 0) // 1024} -> peak {p['rss_kb'] // 1024} "
              f"-> end {e.get('rss_kb', 0) // 1024}; threads {b.get('threads')} -> peak {p['threads']} -> end "
              f"{e.get('threads')}; skipped known {fig['skipped_known']}; leaks: {fig['leaks'] or 'none'}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servertype", default="all", help="thread, multiplex, asyncio, a comma list, or all")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per server type (default 1,000,000)")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: no limit)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server type")
    parser.add_argument("--conns", type=int, default=4, help="connections per worker")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-known", action="store_true",
                        help="do not send inputs that hit known issues (marshal size bombs, malformed batches); "
                             "they are counted in the summary")
    parser.add_argument("--hang-timeout", type=float, default=10.0, help="seconds without answer nor close = hang")
    parser.add_argument("--stall-threshold", type=float, default=2.0,
                        help="a well-behaved client's call slower than this = stall")
    parser.add_argument("--max-message-size", type=int, default=1 << 20, help="MAX_MESSAGE_SIZE of the servers")
    parser.add_argument("--target-arg", action="append", default=[],
                        help="extra argument for fuzz/target.py (repeat), e.g. --target-arg=--memreport=/tmp/m.txt")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds to wait before the last leak sample")
    parser.add_argument("--report-every", type=float, default=30.0)
    parser.add_argument("--out", default="/tmp/ember-fuzz", help="directory for findings and summary.json")
    parser.add_argument("--replay", metavar="FILE", help="replay a saved finding against a fresh server and exit")
    args = parser.parse_args(argv)
    if args.replay:
        st = json.loads(Path(args.replay).read_text())["servertype"]
        server = ServerProcess(st, args.max_message_size)
        server.start()
        try:
            t0 = time.monotonic()
            for i, res in enumerate(replay(args.replay, server.port, args.hang_timeout)):
                print(f"connection {i}: {res}")
            probe = Monitor(server)
            print(f"well-behaved call afterwards: {probe.check_once(probe._client()):.3f}s; "
                  f"server alive: {server.alive()} (exit code {server.returncode()}); total {time.monotonic() - t0:.2f}s")
        finally:
            server.stop()
        return 0
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
