"""Byte streams in chunks: turn a file, a path or an iterable into chunks, and chunks back
into a file or a file-like reader. No I/O of its own beyond the files it is handed.

Used on both sides of a bulk transfer: a server method returns ``stream_file(path)`` (a
generator, so the daemon streams it item by item and the client pulls one chunk per call:
back-pressure for free); a client writes the remote iterator it gets with
:func:`write_stream`; the receiver of an upload reads it with :class:`ChunkReader`.
At most one chunk is held at a time.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import Any, BinaryIO

from ..errors import PyroError
from ..serializers import tobytes

__all__ = ["DEFAULT_CHUNK_SIZE", "ChunkReader", "awrite_stream", "iter_chunks", "stream_file", "write_stream"]

DEFAULT_CHUNK_SIZE = 1 << 20
"""1 MiB: large enough that the per-chunk round trip is a small part of the time, small
enough that a few chunks in flight stay far below any memory budget."""

_BUFFERS = (bytes, bytearray, memoryview)


def as_buffer(chunk: Any) -> bytes | bytearray | memoryview:
    """A received chunk as a bytes-like object: serpent and json carry bytes as a base64
    dict, which is decoded here; anything else is a :class:`~ember.errors.PyroError`."""
    if isinstance(chunk, _BUFFERS):
        return chunk
    if isinstance(chunk, dict):
        return tobytes(chunk)
    raise PyroError(f"a byte stream delivered a {type(chunk).__name__}; expected bytes chunks")


def check_chunk_size(chunk_size: int, max_message_size: int | None = None) -> int:
    """``chunk_size`` as an int, or a :class:`~ember.errors.PyroError` saying what is wrong."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise PyroError(f"chunk_size must be a positive number of bytes, not {chunk_size!r}")
    if max_message_size is not None and chunk_size > max_message_size - 4096:
        raise PyroError(f"chunk_size {chunk_size} does not fit in one message (MAX_MESSAGE_SIZE is "
                        f"{max_message_size}); use a smaller chunk_size")
    return chunk_size


def stream_file(source: str | os.PathLike | BinaryIO, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """The contents of a file as a generator of ``bytes`` chunks of at most ``chunk_size``.

    ``source`` is a path (opened here and now, so a missing file fails the call itself;
    closed when the chunks end or the iterator is closed) or a binary file object opened for
    reading (left open: the caller owns it). Return it from an exposed method and the client
    receives a remote iterator that pulls one chunk per call::

        @ember.expose
        class Files:
            def download(self, name):
                return ember.stream_file(os.path.join(ROOT, name))
    """
    check_chunk_size(chunk_size)
    if isinstance(source, (str, os.PathLike)):
        return _FileChunks(open(source, "rb"), chunk_size)
    if not callable(getattr(source, "read", None)):
        raise PyroError(f"stream_file needs a path or a binary file object opened for reading, "
                        f"not {type(source).__name__}")
    if isinstance(source, io.TextIOBase):
        raise PyroError("stream_file needs a file opened in binary mode ('rb'), not a text file")
    return _read_file(source, chunk_size)


class _FileChunks:
    """The chunks of a file this module opened: closes it at the end, on close(), or when
    dropped (a generator that never started would not run its ``finally``)."""

    __slots__ = ("file", "chunk_size")

    def __init__(self, file: BinaryIO, chunk_size: int) -> None:
        self.file = file
        self.chunk_size = chunk_size

    def __iter__(self) -> _FileChunks:
        return self

    def __next__(self) -> bytes:
        if self.file.closed:
            raise StopIteration
        chunk = self.file.read(self.chunk_size)
        if not chunk:
            self.file.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        self.file.close()

    def __del__(self) -> None:
        self.file.close()


def _read_file(f: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    read = f.read
    while chunk := read(chunk_size):
        yield chunk


def iter_chunks(source: Any, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes | bytearray | memoryview]:
    """Chunks of any byte source: a path or a binary file (read ``chunk_size`` at a time),
    a bytes-like object (sliced without copying), or an iterable of bytes-like chunks
    (passed through; chunks larger than ``chunk_size`` are split)."""
    check_chunk_size(chunk_size)
    if isinstance(source, (str, os.PathLike)) or callable(getattr(source, "read", None)):
        return stream_file(source, chunk_size)
    if isinstance(source, _BUFFERS):
        return _split(memoryview(source).cast("B"), chunk_size)
    if isinstance(source, Iterable):
        return _rechunk(iter(source), chunk_size)
    raise PyroError(f"cannot stream a {type(source).__name__}: pass a path, a binary file, a bytes-like "
                    "object or an iterable of bytes chunks")


def _split(view: memoryview, chunk_size: int) -> Iterator[memoryview]:
    for start in range(0, len(view), chunk_size):
        yield view[start:start + chunk_size]


def _rechunk(chunks: Iterator[Any], chunk_size: int) -> Iterator[bytes | bytearray | memoryview]:
    try:
        for chunk in chunks:
            if not isinstance(chunk, _BUFFERS):
                raise PyroError(f"a byte stream yielded a {type(chunk).__name__}; chunks must be bytes, "
                                "bytearray or memoryview")
            if len(chunk) > chunk_size:
                yield from _split(memoryview(chunk).cast("B"), chunk_size)
            elif chunk:
                yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _as_writer(dest: Any) -> tuple[Any, bool]:
    """(a binary file object, whether we opened it) for a path or a writable file."""
    if isinstance(dest, (str, os.PathLike)):
        return open(dest, "wb"), True
    if callable(getattr(dest, "write", None)) and not isinstance(dest, io.TextIOBase):
        return dest, False
    raise PyroError(f"cannot write a byte stream to a {type(dest).__name__}: pass a path or a binary file "
                    "object opened for writing")


def write_stream(chunks: Iterable[Any], dest: str | os.PathLike | BinaryIO) -> int:
    """Write every chunk of ``chunks`` (e.g. a remote iterator) to ``dest``, a path or a
    binary file object; returns the number of bytes written. One chunk is held at a time."""
    f, owned = _as_writer(dest)
    total = 0
    try:
        for chunk in chunks:
            total += _write(f, chunk)
    finally:
        if owned:
            f.close()
    return total


def _write(f: BinaryIO, chunk: Any) -> int:
    """Write one received chunk (bytes, a view, or serpent's/json's base64 form); its length."""
    data = as_buffer(chunk)
    f.write(data)
    return len(data)


async def awrite_stream(chunks: AsyncIterable[Any], dest: str | os.PathLike | BinaryIO) -> int:
    """:func:`write_stream` for an ``async for`` source (an :class:`~ember.aio.AsyncRemoteIterator`)."""
    f, owned = _as_writer(dest)
    total = 0
    try:
        async for chunk in chunks:
            total += _write(f, chunk)
    finally:
        if owned:
            f.close()
    return total


class ChunkReader(io.RawIOBase):
    """A read-only binary file over an iterable of bytes chunks (for example a remote
    iterator, or the ``chunks()`` of an upload), so it can go wherever a file goes
    (``shutil.copyfileobj``, ``tarfile.open(fileobj=..., mode="r|")``, ``hashlib.file_digest``).
    Holds at most one chunk; reading pulls the next chunk only when the last is used up::

        reader = ember.ChunkReader(iter([b"abc", b"def"]))
        assert reader.read(4) == b"abcd" and reader.read() == b"ef"
    """

    def __init__(self, chunks: Iterable[Any]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Make the current chunk non-empty; False at the end of the stream."""
        while not self._view:
            if self._eof:
                return False
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                return False
            self._view = memoryview(as_buffer(chunk)).cast("B")
        return True

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed ChunkReader")
        if not self._fill():
            return 0
        out = memoryview(buffer).cast("B")
        n = min(len(out), len(self._view))
        out[:n] = self._view[:n]
        self._view = self._view[n:]
        return n

    def read1(self, size: int = -1) -> bytes:
        """At most ``size`` bytes from the current chunk (a whole chunk for -1), without
        waiting for another one; ``b""`` at the end."""
        if self.closed:
            raise ValueError("read from a closed ChunkReader")
        if not self._fill():
            return b""
        n = len(self._view) if size is None or size < 0 else min(size, len(self._view))
        data = bytes(self._view[:n])
        self._view = self._view[n:]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        parts = []
        while size > 0 and (part := self.read1(size)):
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def readall(self) -> bytes:
        parts = []
        while part := self.read1():
            parts.append(part)
        return b"".join(parts)

    def __iter__(self) -> Iterator[bytes]:
        """The remaining chunks as they arrive (not lines: this is a byte stream)."""
        while part := self.read1():
            yield part

    def close(self) -> None:
        if not self.closed:
            self._view = memoryview(b"")
            close = getattr(self._chunks, "close", None)
            if close is not None and not self._eof:
                try:
                    close()
                except Exception:  # closing a finished remote stream must not hide the read's result
                    pass
        super().close()
