"""Byte streams larger than memory (issue 16.3): downloads as remote iterators of chunks
(``ember.stream_file``), uploads pulled by the server from the client (``ember.upload``),
on every server type, with both proxy flavours, and against Pyro5 peers."""

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time

import Pyro5.api
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ember
from ember import errors
from ember.server.uploads import UploadSource, close_upload_daemons

from .services import pyro5_daemon

CHUNK = 64 * 1024


@pytest.fixture(autouse=True)
def upload_daemons():
    yield
    close_upload_daemons()


def pattern(n: int, seed: int = 0) -> bytes:
    """n bytes that differ from chunk to chunk (so a lost or reordered chunk shows)."""
    out = bytearray()
    i = seed
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "little")).digest() * 64
        i += 1
    return bytes(out[:n])


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.bin"
    data = pattern(5 * CHUNK + 123)
    path.write_bytes(data)
    return path, data


@ember.expose
class Files:
    def __init__(self, root):
        self.root = root
        self.closed = threading.Event()

    def download(self, name, chunk_size=CHUNK):
        return ember.stream_file(os.path.join(self.root, name), chunk_size)

    def generated(self, chunks):
        self.produced = 0
        try:
            for i in range(chunks):
                self.produced += 1
                yield pattern(CHUNK, i)
        finally:
            self.closed.set()

    def views(self, size, chunk_size):
        """memoryview chunks of one buffer: sent without a copy per chunk on this side."""
        data = pattern(size)
        view = memoryview(data)
        for start in range(0, size, chunk_size):
            yield view[start:start + chunk_size]

    def store(self, name, source):
        try:
            with source:
                return ember.write_stream(source.chunks(), os.path.join(self.root, name))
        except Exception as exc:
            self.store_failed = exc
            raise

    def digest(self, source):
        """(size, sha256, what the source says about itself), reading through a file object."""
        with source:
            info = (source.size(), source.name(), source.chunk_size())
            with ember.ChunkReader(source.chunks()) as reader:
                h = hashlib.sha256()
                total = 0
                while block := reader.read(10_000):
                    h.update(block)
                    total += len(block)
            return total, h.hexdigest(), info

    def head(self, source, n):
        """Only the first n bytes, with plain read() calls: the rest is never pulled."""
        with source:
            return source.read(n)


@ember.expose
class AsyncFiles(Files):
    async def adigest(self, source):
        """An ``async def`` method: on the asyncio server the upload arrives as an AsyncProxy
        (the other servers hand coroutine methods the blocking Proxy, as for any proxy)."""
        h = hashlib.sha256()
        total = 0
        if isinstance(source, ember.AsyncProxy):
            async with source:
                async for chunk in await source.chunks():
                    h.update(chunk)
                    total += len(chunk)
        else:
            with source:
                for chunk in source.chunks():
                    h.update(chunk)
                    total += len(chunk)
        return total, h.hexdigest(), type(source).__name__


@pytest.fixture
def files(make_daemon, servertype, tmp_path):
    daemon = make_daemon(servertype=servertype)
    files = AsyncFiles(str(tmp_path))
    return files, daemon.register(files, "files")


# ---- helpers without the network ----------------------------------------------------------

def test_stream_file_path_and_file_object(data_file):
    path, data = data_file
    chunks = list(ember.stream_file(path, CHUNK))
    assert [len(c) for c in chunks] == [CHUNK] * 5 + [123]
    assert b"".join(chunks) == data
    with open(path, "rb") as f:
        f.seek(10)
        assert b"".join(ember.stream_file(f, 1000)) == data[10:]
        assert not f.closed  # the caller's file stays open


def test_stream_file_bad_input(data_file, tmp_path):
    path, _ = data_file
    with pytest.raises(errors.PyroError, match="chunk_size must be a positive"):
        ember.stream_file(path, 0)
    with pytest.raises(errors.PyroError, match="binary mode"):
        with open(path) as text:
            ember.stream_file(text)
    with pytest.raises(errors.PyroError, match="path or a binary file"):
        ember.stream_file(42)
    with pytest.raises(FileNotFoundError):
        ember.stream_file(tmp_path / "missing")  # at once, not at the first chunk
    chunks = ember.stream_file(path, 1000)
    assert len(next(chunks)) == 1000
    chunks.close()
    assert chunks.file.closed and list(chunks) == []


def test_download_of_a_missing_file_fails_the_call(files):
    _obj, uri = files
    with ember.Proxy(uri) as p, pytest.raises(FileNotFoundError):
        p.download("no-such-file")


def test_upload_bad_input():
    with pytest.raises(errors.PyroError, match="cannot stream a int"):
        ember.upload(42)
    with pytest.raises(errors.PyroError, match="does not fit in one message"):
        ember.upload(b"x", chunk_size=ember.config.MAX_MESSAGE_SIZE)

    async def agen():
        yield b"x"

    with pytest.raises(errors.PyroError, match="running event loop"):
        UploadSource(agen(), CHUNK, None)


def test_chunk_reader():
    reader = ember.ChunkReader(iter([b"abc", bytearray(b""), memoryview(b"defg"), {"data": "aGk=", "encoding": "base64"}]))
    assert reader.read(2) == b"ab"
    assert reader.read(3) == b"cde"
    buf = bytearray(10)
    assert reader.readinto(buf) == 2 and buf[:2] == b"fg"
    assert reader.read() == b"hi"
    assert reader.read(5) == b"" and reader.read() == b""
    reader.close()
    with pytest.raises(ValueError):
        reader.read(1)
    bad = ember.ChunkReader([b"ok", 7])
    assert bad.read(2) == b"ok"
    with pytest.raises(errors.PyroError, match="delivered a int"):
        bad.read(1)


@given(chunks=st.lists(st.binary(max_size=50), max_size=20), sizes=st.lists(st.integers(-1, 70), max_size=30))
def test_chunk_reader_reads_every_byte_once_in_order(chunks, sizes):
    data = b"".join(chunks)
    reader = ember.ChunkReader(iter(chunks))
    got = bytearray()
    for size in sizes:
        part = reader.read(size)
        assert len(part) <= len(data) if size < 0 else len(part) <= size
        got += part
    got += reader.read()
    assert bytes(got) == data
    assert reader.read(1) == b""


@given(data=st.binary(max_size=3000), chunk_size=st.integers(1, 1000))
def test_iter_chunks_keeps_every_byte(data, chunk_size):
    from ember.client.streaming import iter_chunks

    for source in (data, io.BytesIO(data), [data[:7], data[7:]]):
        parts = [bytes(p) for p in iter_chunks(source, chunk_size)]
        assert b"".join(parts) == data
        assert all(0 < len(p) <= chunk_size for p in parts)


def test_chunk_reader_is_a_file_for_the_stdlib():
    data = pattern(300_000)
    reader = io.BufferedReader(ember.ChunkReader(ember.stream_file(io.BytesIO(data), 7000)))
    out = io.BytesIO()
    import shutil

    shutil.copyfileobj(reader, out, 4096)
    assert out.getvalue() == data


def test_iter_chunks_splits_large_chunks_without_copying():
    from ember.client.streaming import iter_chunks

    data = bytearray(pattern(10_000))
    parts = list(iter_chunks(data, 4096))
    assert [len(p) for p in parts] == [4096, 4096, 1808]
    assert all(isinstance(p, memoryview) and p.obj is data for p in parts)
    parts = list(iter_chunks([b"", bytes(data)], 4096))
    assert b"".join(parts) == data and len(parts) == 3


def test_write_stream(tmp_path):
    assert ember.write_stream([b"ab", memoryview(b"cd")], tmp_path / "x") == 4
    assert (tmp_path / "x").read_bytes() == b"abcd"
    with pytest.raises(errors.PyroError, match="path or a binary file"):
        ember.write_stream([b"x"], io.StringIO())
    with pytest.raises(errors.PyroError, match="delivered a str"):
        ember.write_stream(["text"], io.BytesIO())


# ---- downloads --------------------------------------------------------------------------------

def test_download_file(files, data_file, tmp_path):
    _obj, uri = files
    path, data = data_file
    with ember.Proxy(uri) as p:
        chunks = p.download(path.name)
        assert isinstance(chunks, ember.client.RemoteIterator)
        assert ember.write_stream(chunks, tmp_path / "copy.bin") == len(data)
        assert p.download(path.name, 1000).__next__() == data[:1000]
    assert (tmp_path / "copy.bin").read_bytes() == data


@pytest.mark.parametrize("serializer", ["msgpack", "serpent", "marshal", "json"])
def test_download_memoryviews_with_every_serializer(files, serializer, tmp_path):
    _obj, uri = files
    with ember.Proxy(uri) as p:
        p._serializer = serializer
        target = tmp_path / f"views-{serializer}.bin"
        assert ember.write_stream(p.views(100_000, 30_000), target) == 100_000  # base64 dicts decoded too
        assert b"".join(ember.ChunkReader(p.views(100_000, 30_000))) == pattern(100_000)
    assert target.read_bytes() == pattern(100_000)


def test_download_async(files, data_file, tmp_path):
    _obj, uri = files
    path, data = data_file

    async def main():
        async with ember.AsyncProxy(uri) as p:
            return await ember.awrite_stream(await p.download(path.name), tmp_path / "copy.bin")

    assert asyncio.run(main()) == len(data)
    assert (tmp_path / "copy.bin").read_bytes() == data


def test_download_is_pulled_not_pushed(files):
    """Back-pressure: the server makes a chunk only when the client asks for one."""
    obj, uri = files
    with ember.Proxy(uri) as p, p.generated(1000) as chunks:
        for i in range(3):
            assert next(chunks) == pattern(CHUNK, i)
        assert obj.produced == 3


def test_download_stopped_early_closes_the_server_generator(files):
    obj, uri = files
    with ember.Proxy(uri) as p:
        with p.generated(1000) as chunks:
            assert next(chunks) == pattern(CHUNK, 0)
        assert obj.closed.wait(10)  # the client's close reached the daemon: no more chunks made


KILLED_CLIENT = """
import os, signal, sys
import ember
with ember.Proxy(sys.argv[1]) as p:
    if sys.argv[2] == "download":
        chunks = p.generated(1000)
        next(chunks)
        print("pulled", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def gen():
        yield b"x" * 1000
        yield b"y" * 1000
        os.kill(os.getpid(), signal.SIGKILL)  # dies while the server pulls the third chunk

    p.store("partial.bin", ember.upload(gen()))
"""


def run_killed_client(uri, what):
    proc = subprocess.run([sys.executable, "-c", KILLED_CLIENT, str(uri), what], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -9, proc.stderr


def test_client_killed_mid_download_frees_the_stream(make_daemon, servertype, tmp_path):
    with ember.config.override(ITER_STREAM_LINGER=0):
        daemon = make_daemon(servertype=servertype)
    files = Files(str(tmp_path))
    uri = daemon.register(files, "files")
    run_killed_client(uri, "download")
    assert files.closed.wait(10)  # the generator was closed when the connection dropped
    deadline = time.monotonic() + 10
    while len(daemon.streams) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(daemon.streams) == 0


def test_client_killed_mid_upload_fails_the_method(files, tmp_path):
    obj, uri = files
    run_killed_client(uri, "upload")
    deadline = time.monotonic() + 10
    while getattr(obj, "store_failed", None) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert isinstance(obj.store_failed, errors.CommunicationError)
    assert (tmp_path / "partial.bin").read_bytes() == b"x" * 1000 + b"y" * 1000


# ---- uploads ----------------------------------------------------------------------------------

def test_upload_file_path(files, data_file, tmp_path):
    _obj, uri = files
    path, data = data_file
    with ember.Proxy(uri) as p:
        assert p.store("copy.bin", ember.upload(path, CHUNK)) == len(data)
        total, digest, info = p.digest(ember.upload(str(path), 10_000))
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert (total, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert list(info) == [len(data), str(path), 10_000]


def test_upload_generator_and_file_object(files):
    _obj, uri = files
    produced = []

    def gen():
        for i in range(20):
            produced.append(i)
            yield pattern(CHUNK, i)

    expected = b"".join(pattern(CHUNK, i) for i in range(20))
    with ember.Proxy(uri) as p:
        total, digest, info = p.digest(ember.upload(gen()))
        assert (total, digest) == (len(expected), hashlib.sha256(expected).hexdigest())
        assert info[0] is None and info[1] is None
        f = io.BytesIO(expected)
        assert list(p.digest(ember.upload(f, 5000))[:2]) == [total, digest]
    assert produced == list(range(20))


def test_upload_is_pulled_not_pushed(files):
    """Back-pressure: the source is read only as far as the server reads."""
    _obj, uri = files
    produced = []

    def gen():
        for i in range(1000):
            produced.append(i)
            yield pattern(CHUNK, i)

    with ember.Proxy(uri) as p:
        head = p.head(ember.upload(gen()), 10)
    assert head == pattern(CHUNK, 0)[:10]
    assert produced == [0]


def test_upload_with_async_proxy_and_async_source(files, servertype):
    _obj, uri = files
    expected = b"".join(pattern(CHUNK, i) for i in range(8))

    async def main():
        async def agen():
            for i in range(8):
                await asyncio.sleep(0)
                yield pattern(CHUNK, i)

        async with ember.AsyncProxy(uri) as p:
            from_async = await p.digest(ember.upload(agen()))
            to_async_method = await p.adigest(ember.upload(io.BytesIO(expected)))
            return from_async, to_async_method

    from_async, to_async_method = asyncio.run(main())
    digest = hashlib.sha256(expected).hexdigest()
    assert list(from_async[:2]) == [len(expected), digest]
    assert list(to_async_method) == [len(expected), digest,
                                     "AsyncProxy" if servertype == "asyncio" else "Proxy"]


@ember.expose
class Mixer:
    def mix(self, source):
        with source:
            with source.chunks() as chunks:
                first = next(chunks)
                try:
                    source.read(10)
                except errors.PyroError as exc:
                    return len(first), str(exc)
                return len(first), "read() after chunks() was allowed"


def test_upload_chunks_and_read_do_not_mix(make_daemon):
    uri = make_daemon().register(Mixer)
    with ember.Proxy(uri) as p:
        size, message = p.mix(ember.upload(pattern(3 * CHUNK), CHUNK))
    assert size == CHUNK and "cannot be mixed" in message


def test_upload_read_once_and_closed(files, data_file):
    _obj, uri = files
    path, data = data_file
    src = ember.upload(path)
    with ember.Proxy(uri) as p:
        assert p.digest(src)[0] == len(data)
        with pytest.raises(errors.PyroError):
            p.digest(src)  # read and closed: unregistered from the upload daemon


def test_upload_source_released_when_the_server_stops_early(files):
    _obj, uri = files
    finished = threading.Event()

    def gen():
        try:
            for i in range(1000):
                yield pattern(CHUNK, i)
        finally:
            finished.set()

    with ember.Proxy(uri) as p:
        assert len(p.head(ember.upload(gen()), CHUNK)) == CHUNK
    assert finished.wait(10)


def test_upload_source_error_reaches_the_server(files):
    _obj, uri = files

    def gen():
        yield b"abc"
        raise OSError("disk went away")

    with ember.Proxy(uri) as p:
        with pytest.raises(OSError, match="disk went away"):
            p.digest(ember.upload(gen()))


# ---- Pyro5 peers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("serializer", ["serpent", "marshal", "msgpack", "json"])
def test_pyro5_client_downloads_from_ember(files, data_file, serializer):
    _obj, uri = files
    path, data = data_file
    with Pyro5.api.Proxy(str(uri)) as p:
        p._pyroSerializer = serializer
        received = b"".join(ember.tobytes(c) for c in p.download(path.name))  # serpent/json: base64 dicts
    assert received == data


@Pyro5.api.expose
class PyroFiles:
    def digest(self, source):
        """A Pyro5 server reading an Ember upload: it got a Pyro5 proxy; chunks() streams."""
        with source:
            h = hashlib.sha256()
            for chunk in source.chunks():
                h.update(ember.tobytes(chunk))
            return h.hexdigest()

    def digest_by_read(self, source):
        with source:
            h = hashlib.sha256()
            while chunk := ember.tobytes(source.read(-1)):
                h.update(chunk)
            return h.hexdigest()


@pytest.fixture
def pyro5_files():
    with pyro5_daemon() as daemon:
        yield str(daemon.register(PyroFiles(), "files"))


def test_ember_uploads_to_a_pyro5_server(pyro5_files, data_file):
    path, data = data_file
    with ember.Proxy(pyro5_files) as p:
        assert p.digest(ember.upload(path, CHUNK)) == hashlib.sha256(data).hexdigest()
        assert p.digest_by_read(ember.upload(path, CHUNK)) == hashlib.sha256(data).hexdigest()


# ---- 1 GiB each way, two processes, bounded memory -------------------------------------------------

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "streaming.py")
LIMIT = 64 << 20


@pytest.mark.timeout(240)
@pytest.mark.parametrize("servertype, client, source", [
    ("thread", "sync", "file"),
    ("multiplex", "async", "generated"),
    ("asyncio", "async", "file"),
    ("asyncio", "sync", "generated"),
])
def test_one_gib_each_way_with_bounded_memory(servertype, client, source):
    """1 GiB downloaded and 1 GiB uploaded between a server process and a client process:
    the data arrives whole (CRC-32 of a sparse file, or every generated chunk checked) and
    neither process's peak RSS (VmHWM) reaches 64 MiB."""
    size = 1 << 30
    r = subprocess.run([sys.executable, BENCH, "--size", str(size), "--servertype", servertype, "--client", client,
                        "--source", source, "--timeout", "200"], capture_output=True, text=True, timeout=230)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    if source == "file":
        assert result["down"] == [size, result["expected_crc"]]
        assert result["up"] == [size, result["expected_crc"]]
    else:
        assert result["down"] == size and result["up"] == size
    assert 0 < result["client_peak_rss"] < LIMIT, result
    assert 0 < result["server_peak_rss"] < LIMIT, result


@Pyro5.api.expose
class PyroSource:
    """What a Pyro5 program offers to upload to an Ember server: any object with chunks()."""

    def __init__(self, data):
        self.data = data
        self.pulled = 0

    def chunks(self):
        for start in range(0, len(self.data), CHUNK):
            self.pulled += 1
            yield self.data[start:start + CHUNK]


def test_pyro5_client_uploads_to_ember(files, data_file, tmp_path):
    _obj, uri = files
    _path, data = data_file
    source = PyroSource(data)
    with pyro5_daemon() as daemon:
        daemon.register(source)
        with Pyro5.api.Proxy(str(uri)) as p:
            assert p.store("from-pyro5.bin", source) == len(data)  # Pyro5 passes its registered object as a proxy
    assert (tmp_path / "from-pyro5.bin").read_bytes() == data
    assert source.pulled == 6
