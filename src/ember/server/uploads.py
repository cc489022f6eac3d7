"""Uploads larger than memory: the server pulls the client's bytes, one chunk per call.

``ember.upload(source)`` registers an :class:`UploadSource` (weakly) in a small daemon of
the uploading process and returns it; passed as an argument, it travels as an ordinary
proxy (the ``Pyro5.client.Proxy`` form), so the receiving method, on any server type and
on a Pyro5 peer too, calls ``source.chunks()`` and iterates a remote iterator: every chunk
is read from the file (or iterator) only when the receiver asks for it, so neither side
ever holds more than a chunk or two, however large the upload.

Why pull through a callback rather than push on the call's own connection: the Pyro5
protocol has one reply per call and a blocking server reads a connection's next message
only after the reply, so the bytes must come on another connection; pulling them (instead
of pushing into a server-side queue) needs no thread on the server, works on the
single-threaded multiplex server, and gives back-pressure without a buffer.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import stat
import threading
from collections.abc import AsyncIterable, Iterator
from typing import Any

from ..client.streaming import DEFAULT_CHUNK_SIZE, as_buffer, check_chunk_size, iter_chunks
from ..config import config as global_config
from ..errors import PyroError
from .daemon import Daemon
from .decorators import expose

__all__ = ["UploadSource", "close_upload_daemons", "upload", "upload_daemon"]

_daemons: dict[str, Daemon] = {}
_daemons_lock = threading.Lock()


def upload_daemon(host: str | None = None) -> Daemon:
    """The process's upload daemon for ``host`` (default: config ``HOST``), started on first
    use in a background thread and shut down at exit (or by :func:`close_upload_daemons`).
    The receiving server connects to it, so ``host`` must be an address it can reach."""
    host = host or global_config.HOST
    with _daemons_lock:
        daemon = _daemons.get(host)
        if daemon is None:
            daemon = Daemon(host=host, servertype="thread")
            daemon.start()
            _daemons[host] = daemon
        return daemon


def close_upload_daemons() -> None:
    """Shut down the upload daemons this process started (idempotent)."""
    with _daemons_lock:
        daemons = list(_daemons.values())
        _daemons.clear()
    for daemon in daemons:
        daemon.shutdown()


atexit.register(close_upload_daemons)


def _known_size(source: Any) -> int | None:
    """The number of bytes left in a path, regular file or bytes-like source, else None."""
    try:
        if isinstance(source, (str, os.PathLike)):
            return os.path.getsize(source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return memoryview(source).nbytes
        fileno = getattr(source, "fileno", None)
        if fileno is not None:
            st = os.fstat(fileno())
            if stat.S_ISREG(st.st_mode):
                return max(0, st.st_size - source.tell())
    except (OSError, ValueError, AttributeError):
        pass
    return None


@expose
class UploadSource:
    """The uploading side of an upload (made by :func:`upload`): the receiver calls
    :meth:`chunks` (a remote iterator of ``bytes``) or :meth:`read` in a loop. Each chunk is
    read from the source when the receiver asks for it, never before."""

    def __init__(self, source: Any, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._size = _known_size(source)
        self._name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
        if not isinstance(self._name, str):
            self._name = None
        self._chunk_size = chunk_size
        self._iter: Iterator[Any]
        if isinstance(source, AsyncIterable) and not hasattr(source, "__iter__") and not hasattr(source, "read"):
            if loop is None:
                raise PyroError("an async iterable can only be uploaded from inside a running event loop "
                                "(call ember.upload() from async code)")
            self._iter = _from_async(source, loop, chunk_size)
        else:
            self._iter = iter_chunks(source, chunk_size)
        self._mode: str | None = None  # "chunks" or "read", whichever the receiver used first
        self._lock = threading.Lock()
        self._pending = memoryview(b"")

    def size(self) -> int | None:
        """The number of bytes the upload will deliver, when known in advance (a path, a
        regular file, a bytes-like object); None for an iterator."""
        return self._size

    def name(self) -> str | None:
        """The file name of the source, if it is a path or a named file; else None."""
        return self._name

    def chunk_size(self) -> int:
        """The largest chunk the upload delivers."""
        return self._chunk_size

    def chunks(self) -> Iterator[bytes]:
        """The upload's bytes, as a generator the caller receives as a remote iterator.
        An upload can be read once."""
        self._claim()
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        try:
            for chunk in self._iter:
                yield chunk if type(chunk) is bytes else bytes(chunk)
        finally:
            self.close()

    def read(self, size: int = -1) -> bytes:
        """The next at most ``min(size, chunk_size)`` bytes (``-1``: the next chunk); ``b""``
        at the end. For peers that prefer plain calls to a remote iterator."""
        with self._lock:
            if self._mode is None:
                self._mode = "read"
            elif self._mode != "read":
                raise PyroError("this upload is being read with chunks(); read() cannot be mixed with it")
            if self._iter is None:
                return b""
            if not self._pending:
                try:
                    self._pending = memoryview(as_buffer(next(self._iter))).cast("B")
                except StopIteration:
                    self.close()
                    return b""
            n = len(self._pending) if size is None or size < 0 else min(size, len(self._pending))
            data = bytes(self._pending[:n])
            self._pending = self._pending[n:]
            return data

    def _claim(self) -> None:
        with self._lock:
            if self._mode is not None or self._iter is None:
                raise PyroError("this upload was already read or closed (an upload can be read once)")
            self._mode = "chunks"

    def close(self) -> None:
        """Stop the upload and release its source (a file opened from a path is closed)."""
        it, self._iter = self._iter, None  # type: ignore[assignment]
        self._pending = memoryview(b"")
        close = getattr(it, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:  # being read right now in another thread: it ends when that read returns
                pass
        daemon = getattr(self, "_pyroDaemon", None)
        if daemon is not None:
            daemon.unregister(self)

    def __enter__(self) -> UploadSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _from_async(source: AsyncIterable[Any], loop: asyncio.AbstractEventLoop, chunk_size: int) -> Iterator[Any]:
    """Chunks of an async iterable, each fetched on ``loop`` when asked for (from the upload
    daemon's thread, while the uploading coroutine awaits its call)."""
    ait = source.__aiter__()

    async def step() -> Any:
        return await ait.__anext__()

    def chunks() -> Iterator[Any]:
        try:
            while True:
                try:
                    chunk = asyncio.run_coroutine_threadsafe(step(), loop).result()
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            aclose = getattr(ait, "aclose", None)
            if aclose is not None and not loop.is_closed():
                try:
                    asyncio.run_coroutine_threadsafe(aclose(), loop)
                except RuntimeError:
                    pass

    return iter_chunks(chunks(), chunk_size)


def upload(source: Any, chunk_size: int = DEFAULT_CHUNK_SIZE, *, daemon: Daemon | None = None,
           host: str | None = None) -> UploadSource:
    """An upload to pass as an argument of a remote call: the receiving method gets a proxy
    and pulls the bytes with ``for chunk in source.chunks()`` (``async for chunk in await
    source.chunks()`` in an ``async def`` method).

    ``source`` is a path, a binary file object, a bytes-like object, an iterable of bytes
    chunks, or (from async code) an async iterable of them. The upload is registered in
    ``daemon``, or in this process's upload daemon on ``host`` (default: config ``HOST``,
    i.e. loopback; the receiving server connects to it, so give an address it can reach when
    it runs on another machine). The registration is weak: it ends with the call's
    arguments, or with :meth:`UploadSource.close`::

        with ember.Proxy(uri) as files:
            files.store("data.bin", ember.upload("/path/to/data.bin"))
    """
    cfg = daemon.config if daemon is not None else global_config
    check_chunk_size(chunk_size, cfg.MAX_MESSAGE_SIZE)
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    src = UploadSource(source, chunk_size, loop)
    (daemon or upload_daemon(host)).register(src, weak=True)
    return src
