"""Bulk bytes with bounded memory (issue 16.3): SIZE bytes downloaded and SIZE bytes uploaded
between two processes, reporting each process's peak RSS (VmHWM) and the throughput.

    python benchmarks/streaming.py --size 1GiB --servertype thread --client sync --source file
    python benchmarks/streaming.py --size 1GiB --servertype asyncio --client async --source generated

``--source file`` streams a sparse temporary file (``ember.stream_file`` down,
``ember.upload(path)`` up) and compares CRC-32s; ``--source generated`` makes every chunk
on the fly (chunk i starts with i; the receiver checks every chunk). Prints one JSON line.
tests/test_streaming.py runs this with 1 GiB and checks the peaks stay under 64 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib

import ember

MiB = 1 << 20


def peak_rss() -> int:
    """This process's peak resident set size in bytes (Linux VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def block(chunk_size: int) -> bytes:
    return bytes(range(256)) * (chunk_size // 256) + bytes(chunk_size % 256)


def chunk_at(base: bytes, i: int) -> bytes:
    return i.to_bytes(8, "little") + base[8:]


def check_generated(chunks, total: int, chunk_size: int) -> int:
    """Consume generated chunks, checking each; returns the number of bytes."""
    base = block(chunk_size)
    tail = memoryview(base)[8:]
    n = i = 0
    for chunk in chunks:
        view = memoryview(chunk)
        if len(view) != chunk_size or int.from_bytes(view[:8], "little") != i or view[8:] != tail:
            raise ValueError(f"chunk {i} arrived damaged or out of order")
        n += len(view)
        i += 1
    if n != total:
        raise ValueError(f"{n} bytes arrived, expected {total}")
    return n


def generated(total: int, chunk_size: int):
    base = block(chunk_size)
    for i in range(total // chunk_size):
        yield chunk_at(base, i)


@ember.expose
class Bulk:
    def peak_rss(self) -> int:
        return peak_rss()

    def download_file(self, path: str, chunk_size: int):
        return ember.stream_file(path, chunk_size)

    def download_generated(self, total: int, chunk_size: int):
        return generated(total, chunk_size)

    def upload_crc(self, source) -> list:
        with source:
            n = crc = 0
            for chunk in source.chunks():
                n += len(chunk)
                crc = zlib.crc32(chunk, crc)
        return [n, crc]

    def upload_generated(self, source, total: int, chunk_size: int) -> int:
        with source:
            return check_generated(source.chunks(), total, chunk_size)


def serve(servertype: str) -> None:
    """Serve Bulk until stdin closes; the first line printed is the URI."""
    with ember.Daemon(servertype=servertype) as daemon:
        uri = daemon.register(Bulk, "bulk")
        daemon.start()
        print(uri, flush=True)
        sys.stdin.read()


def crc_of(chunks) -> tuple[int, int]:
    n = crc = 0
    for chunk in chunks:
        n += len(chunk)
        crc = zlib.crc32(chunk, crc)
    return n, crc


def run_sync(uri: str, args: argparse.Namespace) -> dict:
    out: dict = {}
    with ember.Proxy(uri) as p:
        t = time.perf_counter()
        if args.source == "file":
            out["down"] = list(crc_of(p.download_file(args.file, args.chunk)))
        else:
            out["down"] = check_generated(p.download_generated(args.size, args.chunk), args.size, args.chunk)
        out["down_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if args.source == "file":
            out["up"] = p.upload_crc(ember.upload(args.file, args.chunk))
        else:
            out["up"] = p.upload_generated(ember.upload(generated(args.size, args.chunk), args.chunk),
                                           args.size, args.chunk)
        out["up_s"] = time.perf_counter() - t
        out["server_peak_rss"] = p.peak_rss()
    return out


async def run_async(uri: str, args: argparse.Namespace) -> dict:
    out: dict = {}

    async def agenerated():
        for chunk in generated(args.size, args.chunk):
            yield chunk

    async with ember.AsyncProxy(uri) as p:
        t = time.perf_counter()
        n = crc = 0
        chunks = await (p.download_file(args.file, args.chunk) if args.source == "file"
                        else p.download_generated(args.size, args.chunk))
        if args.source == "file":
            async for chunk in chunks:
                n += len(chunk)
                crc = zlib.crc32(chunk, crc)
            out["down"] = [n, crc]
        else:
            i = 0
            base_tail = memoryview(block(args.chunk))[8:]
            async for chunk in chunks:
                if int.from_bytes(chunk[:8], "little") != i or memoryview(chunk)[8:] != base_tail:
                    raise ValueError(f"chunk {i} arrived damaged or out of order")
                n += len(chunk)
                i += 1
            if n != args.size:
                raise ValueError(f"{n} bytes arrived, expected {args.size}")
            out["down"] = n
        out["down_s"] = time.perf_counter() - t
        t = time.perf_counter()
        if args.source == "file":
            out["up"] = await p.upload_crc(ember.upload(args.file, args.chunk))
        else:
            out["up"] = await p.upload_generated(ember.upload(agenerated(), args.chunk), args.size, args.chunk)
        out["up_s"] = time.perf_counter() - t
        out["server_peak_rss"] = await p.peak_rss()
    return out


def client(uri: str, args: argparse.Namespace) -> None:
    out = asyncio.run(run_async(uri, args)) if args.client == "async" else run_sync(uri, args)
    ember.server.uploads.close_upload_daemons()
    out["client_peak_rss"] = peak_rss()
    print(json.dumps(out), flush=True)


def sparse_file(path: str, size: int) -> int:
    """A sparse file of ``size`` bytes with a few marks in it; returns its CRC-32."""
    marks = {0: b"start", size // 2: b"middle", size - 3: b"end"}
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, mark in marks.items():
            f.seek(offset)
            f.write(mark)
    with open(path, "rb") as f:
        return crc_of(ember.stream_file(f, 4 * MiB))[1]


def size_arg(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def bench(args: argparse.Namespace) -> dict:
    """Start a server process and a client process; the merged measurements."""
    env = dict(os.environ)
    me = os.path.abspath(__file__)
    with tempfile.TemporaryDirectory() as tmp:
        expected_crc = None
        if args.source == "file":
            args.file = os.path.join(tmp, "sparse.bin")
            expected_crc = sparse_file(args.file, args.size)
        server = subprocess.Popen([sys.executable, me, "serve", "--servertype", args.servertype],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert server.stdout is not None and server.stdin is not None
            uri = server.stdout.readline().strip()
            if not uri.startswith("PYRO:"):
                raise RuntimeError(f"the server did not start (said {uri!r})")
            cmd = [sys.executable, me, "client", uri, "--size", str(args.size), "--chunk", str(args.chunk),
                   "--client", args.client, "--source", args.source]
            if args.file:
                cmd += ["--file", args.file]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            if done.returncode != 0:
                raise RuntimeError(f"the client failed:\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    result.update(size=args.size, chunk=args.chunk, servertype=args.servertype, client=args.client,
                  source=args.source, expected_crc=expected_crc,
                  down_MBps=round(args.size / result["down_s"] / 1e6), up_MBps=round(args.size / result["up_s"] / 1e6),
                  client_peak_MiB=round(result["client_peak_rss"] / MiB, 1),
                  server_peak_MiB=round(result["server_peak_rss"] / MiB, 1))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "serve", "client"])
    parser.add_argument("uri", nargs="?")
    parser.add_argument("--size", type=size_arg, default=1 << 30)
    parser.add_argument("--chunk", type=size_arg, default=MiB)
    parser.add_argument("--servertype", default="thread", choices=["thread", "multiplex", "asyncio"])
    parser.add_argument("--client", default="sync", choices=["sync", "async"])
    parser.add_argument("--source", default="generated", choices=["generated", "file"])
    parser.add_argument("--file")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    if args.role == "serve":
        serve(args.servertype)
    elif args.role == "client":
        client(args.uri, args)
    else:
        print(json.dumps(bench(args)))


if __name__ == "__main__":
    main()
