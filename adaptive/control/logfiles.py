"""Log files as `check` and `replay` read them: plain or compressed, named or on standard input.

Rotated logs are often compressed (`mail.log.2.gz`). A log is read as gzip, xz or bzip2 when its first
bytes say so, whatever its name (logrotate's `compressext` may name it anything, and a `.gz` that is
not gzip is read as it is), and as it is otherwise; standard input (`-`) is looked at the same way.

    with open_log("/var/log/mail.log.2.gz") as log:
        for chunk in chunks(log.stream): ...

A file that cannot be read, or whose compressed data is broken or cut short, raises one of
`READ_ERRORS` (`unreadable` says why in words), from `open_log` or from a read.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

from adaptive.filters.batch import Readable

# First bytes of each compressed format read, and the reader that decompresses it.
_READERS: tuple[tuple[bytes, str, Callable[[BinaryIO], Readable]], ...] = (
    (b"\x1f\x8b", "gzip", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"\xfd7zXZ\x00", "xz", lambda raw: lzma.LZMAFile(raw, mode="rb")),
    (b"BZh", "bzip2", lambda raw: bz2.BZ2File(raw, mode="rb")),
)
# Formats known by their first bytes that the standard library does not read: said, not misread.
_UNREAD = ((b"\x28\xb5\x2f\xfd", "zstd", "zstdcat"), (b"\x04\x22\x4d\x18", "lz4", "lz4cat"))
MAGIC = max(len(magic) for magic, *_ in _READERS + _UNREAD)

# What reading a log may raise: the file's own errors, and a compressed stream's (broken, cut short).
READ_ERRORS = (OSError, EOFError, lzma.LZMAError)


class NotReadable(OSError):
    """A log in a format adaptive does not read (zstd, lz4), with what to do instead."""


def compression(head: bytes) -> str | None:
    """The compression a log's first bytes announce ("gzip", "xz", "bzip2", "zstd", "lz4"), or None."""
    for magic, name, *_ in _READERS + _UNREAD:
        if head.startswith(magic):
            return name
    return None


@dataclass
class Log:
    """One log opened for reading: `stream` gives its lines' bytes, decompressed."""
    name: str                   # as given: a path, or "-" for standard input
    stream: Readable
    compression: str | None     # "gzip", "xz", "bzip2", or None for a plain log
    mtime: float | None         # the file's last write, which dates classic syslog lines; None for stdin
    _raw: BinaryIO

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if self.stream is not self._raw and close is not None:
            close()
        self._raw.close()

    def __enter__(self) -> Log:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def open_log(name: str) -> Log:
    """`name` ("-": standard input) opened for reading, decompressed if its first bytes say so."""
    raw: BinaryIO = sys.stdin.buffer if name == "-" else open(name, "rb")    # the Log closes it
    try:
        mtime = None if name == "-" else os.fstat(raw.fileno()).st_mtime
        head = _peek(raw)
        for magic, kind, reader in _READERS:
            if head.startswith(magic):
                return Log(name, reader(raw), kind, mtime, raw)
        for magic, kind, tool in _UNREAD:
            if head.startswith(magic):
                shown = "FILE" if name == "-" else name
                raise NotReadable(f"{kind}-compressed, which adaptive does not read: try "
                                  f"`{tool} {shown} | adaptive ... -`")
        return Log(name, raw, None, mtime, raw)
    except BaseException:
        raw.close()
        raise


def _peek(raw: BinaryIO) -> bytes:
    """The first bytes of `raw`, left to be read again."""
    peek = getattr(raw, "peek", None)
    if peek is not None and not raw.seekable():
        return bytes(peek(MAGIC)[:MAGIC])       # a pipe: looked at in the buffer, not taken from it
    head = raw.read(MAGIC)
    raw.seek(0)
    return head


def unreadable(e: BaseException) -> str:
    """Why a log could not be read, in words, for `NAME: cannot read: ...`."""
    if isinstance(e, EOFError):
        return "its compressed data ends early (a file cut short, or still being written)"
    if isinstance(e, lzma.LZMAError):
        return f"its xz data is broken ({e})"
    if isinstance(e, NotReadable):
        return str(e)
    if isinstance(e, OSError) and e.errno is None:     # gzip's and bzip2's own (BadGzipFile...)
        return f"its compressed data is broken ({e})"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)
