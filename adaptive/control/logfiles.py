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

import argparse
import bz2
import gzip
import lzma
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from adaptive.durations import parse_duration
from adaptive.filters.batch import Readable

if TYPE_CHECKING:
    from adaptive.sources import JournalSource, Position

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
    _raw: BinaryIO | None       # the file under a decompressing stream; None: the stream is all there is

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if self.stream is not self._raw and close is not None:
            close()
        if self._raw is not None:
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


# --- the journal, read once as a log (`--journal`) ---

def add_journal_options(p: argparse.ArgumentParser) -> None:
    """`--journal` and the options that say which entries: for `check` and `replay`."""
    p.add_argument("--journal", action="store_true",
                   help="read the systemd journal too, after the files: its matching entries as syslog lines")
    p.add_argument("--directory", metavar="DIR", default="",
                   help="with --journal: the journal files of DIR (another host's, a container's) instead of "
                        "this host's journal")
    p.add_argument("--match", action="append", default=[], metavar="FIELD=value", type=_match,
                   help="with --journal: entries matching this (journalctl's FIELD=value); several are ORed. "
                        "Default: Postfix's and Dovecot's units and the mail facility")
    p.add_argument("--since", metavar="WHEN", type=_since,
                   help="with --journal: from this time on: a date and time (2026-12-04 10:00, local time "
                        "unless it says otherwise) or a duration ago (1h, 7d). Default: the oldest entry")


class Journal:
    """Stands for the journal among the logs a command reads (`logs_asked`): not a name a file could have."""


JOURNAL = Journal()


def logs_asked(args: argparse.Namespace) -> list[str | Journal]:
    """The files, then the journal if --journal: what a command reads, in order. A usage error (exit 2)
    for neither, or for journal options without --journal."""
    parser: argparse.ArgumentParser = args.parser
    if not args.journal and (args.directory or args.match or args.since is not None):
        parser.error("--directory, --match and --since go with --journal")
    if not args.files and not args.journal:
        parser.error("give log files, or --journal")
    return [*args.files, *([JOURNAL] if args.journal else [])]


def journal_name(args: argparse.Namespace) -> str:
    """How a journal read with `args` is named in the output."""
    return f"journal {args.directory}" if args.directory else "journal"


def open_journal(args: argparse.Namespace) -> Log:
    """The journal `--directory`, `--match` and `--since` say, read to its newest entry as one log.
    OSError if it cannot be read (no such directory, python3-systemd missing)."""
    from adaptive.sources import JournalSource
    from adaptive.sources.journal import DEFAULT_MATCHES
    if args.directory and not os.path.isdir(args.directory):
        raise FileNotFoundError(2, "no such directory", args.directory)
    source = JournalSource("journal", _Forget(), directory=args.directory, matches=args.match or DEFAULT_MATCHES,
                           start="beginning", since=args.since)
    stream = _JournalStream(source)
    stream.read(0)           # the first slice: an error shows now, before anything is printed
    if source.error is not None:
        source.close()
        raise OSError(source.error)
    return Log(journal_name(args), stream, None, time.time(), None)


class _Forget:
    """A position store that keeps nothing: a read of the journal from the command line."""

    def load_position(self, source: str) -> Position | None:
        return None

    def save_position(self, source: str, position: Position) -> None:
        pass


class _JournalStream:
    """The lines of a journal source, as a stream read to the newest entry (then b"")."""

    def __init__(self, source: JournalSource) -> None:
        self.source = source
        self.rest = b""
        self.done = False

    def read(self, size: int = -1, /) -> bytes:
        while not self.done and (size < 0 or len(self.rest) < max(size, 1)):
            chunks = self.source.poll()
            self.rest += b"".join(c.data for c in chunks)
            self.done = not chunks
        if size < 0:
            size = len(self.rest)
        out, self.rest = self.rest[:size], self.rest[size:]
        return out

    def close(self) -> None:
        self.source.close()


def _match(value: str) -> str:
    from adaptive.config.schema import journal_match
    try:
        return journal_match(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _since(value: str) -> float:
    try:
        return time.time() - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a date and time (2026-12-04 10:00) nor a "
                                         "duration (1h, 7d)") from None
    return when.timestamp()       # a naive one is local time, as journalctl takes it


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
