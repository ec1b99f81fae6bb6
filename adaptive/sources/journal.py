"""Following the systemd journal, with the same exactly-once guarantee as a file.

A journal source reads the entries that match its `match` list (ORed) with the official binding
(Debian's python3-systemd) and hands each on as the syslog line a file would hold for it:

    2026-12-04T10:00:01.123456+00:00 mx1 postfix/smtpd[812]: warning: unknown[203.0.113.7]: SASL ...

(the entry's `__REALTIME_TIMESTAMP` in UTC, `_HOSTNAME`, `SYSLOG_IDENTIFIER`, `SYSLOG_PID` or else
`_PID`, and `MESSAGE`), so
every filter works unchanged. A MESSAGE holding a newline or a carriage return has it turned into a
space: one entry is one line, and a logged newline cannot forge a second one. Binary MESSAGEs are
handed on as they are, bytes, as a file's would be.

Its position is the journal cursor of the last entry consumed (`Position.fingerprint`, with `device`
JOURNAL and the entry's realtime in `offset`), committed with the chunk's decisions as a file's is.
Resuming seeks that cursor and goes on after it; a cursor that is gone (vacuumed away, or a journal
that was replaced) resumes at the first entry logged after its time, said in the log.

What the journal does, and what is done about it:

- new entries: the reader's inotify descriptor (`descriptors()`) wakes the daemon; `poll()` calls
  `process()` and reads on. journald wakes readers late (see BUSY_POLL): while entries keep coming,
  `hurry()` asks the daemon to look again within `busy_poll` seconds.
- rotation, vacuuming, a journald restart, a corrupted file set aside by journald: the reader says
  INVALIDATE. The source then opens a new reader and seeks its cursor again (fail2ban's journal backend
  stalled there), so files added or removed are seen at once.
- a reader is only ever used on the thread that polls (python-systemd's must not be torn down from
  another one).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from adaptive.sources.position import JOURNAL, Chunk, Position, PositionStore

MAX_CHUNK = 4 * 1024 * 1024   # bytes of lines per chunk at most
MAX_LINE = 1024 * 1024        # a MESSAGE longer than this is discarded (journald's own LineMax is 48K)
MAX_ENTRIES = 20_000          # entries per chunk at most, so a chunk's transaction stays short
# journald tells readers of new entries late: it writes each at once, but wakes them from a timer,
# 250 ms to half a second later (seen: 450 ms on Debian 12's systemd 252). So while entries keep coming
# the source is looked at every BUSY_POLL seconds as well, for BUSY_WINDOW seconds after the last one:
# an attack's fifth failure is read within milliseconds, and an idle journal costs nothing.
BUSY_POLL = 0.005
BUSY_WINDOW = 5.0
# Debian runs Postfix as postfix@-.service (one unit per instance), Dovecot as dovecot.service; both log
# to the mail facility (2) by default, which also finds another Postfix instance.
DEFAULT_MATCHES = ("_SYSTEMD_UNIT=postfix@-.service", "_SYSTEMD_UNIT=dovecot.service", "SYSLOG_FACILITY=2")
_SEP_TRANSLATE = bytes.maketrans(b"\n\r", b"  ")

log = logging.getLogger(__name__)


def _reader_module() -> Any:
    try:
        from systemd import journal  # type: ignore[import-untyped]
    except ImportError:
        raise OSError("cannot read the journal: python3-systemd is not installed (apt install python3-systemd)") \
            from None
    return journal


class _Prefixes:
    """`YYYY-MM-DDTHH:MM:SS` of a realtime second, the last one cached (entries come in order)."""

    def __init__(self) -> None:
        self.second = -1
        self.text = b""

    def __call__(self, usec: int) -> bytes:
        second, micro = divmod(usec, 1_000_000)
        if second != self.second:
            self.second = second
            self.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return b"%s.%06d+00:00" % (self.text, micro)


class JournalSource:
    """Reads the matching entries of a journal as syslog lines, across rotations and restarts.

    >>> source = JournalSource("journal", state)                 # this host's journal, Postfix and Dovecot
    >>> source = JournalSource("mx2", state, directory="/var/log/journal/remote")
    >>> for chunk in source.poll():
    ...     engine.scan(chunk.data)
    ...     source.commit(chunk)

    `directory` "" reads this host's journal (system and user files), else the journal files in that
    directory. `start` places a source with no saved position: "end" after the newest entry,
    "beginning" at the oldest; `since` (Unix time) at the first entry logged then. Errors (no journal,
    no permission, python3-systemd missing) never raise from `poll()`: `error` says what, and the source
    tries again at the next poll.
    """

    lag_unit = "seconds"

    def __init__(self, name: str, store: PositionStore, *, directory: str | Path = "",
                 matches: Sequence[str] = DEFAULT_MATCHES, start: Literal["end", "beginning"] = "end",
                 max_chunk: int = MAX_CHUNK, max_line: int = MAX_LINE, max_entries: int = MAX_ENTRIES,
                 since: float | None = None, busy_poll: float = BUSY_POLL):
        if start not in ("end", "beginning"):
            raise ValueError(f"source {name}: start must be 'end' or 'beginning', got {start!r}")
        if max_chunk < 1 or max_line < 1 or max_entries < 1:
            raise ValueError(f"source {name}: max_chunk, max_line and max_entries must be positive")
        self.name = name
        self.store = store
        self.directory = str(directory)
        self.matches = tuple(matches)
        self.start = start
        self.busy_poll = busy_poll        # seconds between looks while entries come; 0: when woken only
        self._last_entry = -BUSY_WINDOW   # time.monotonic() when the last entry was read
        self.since = since                # Unix time: with no saved position, begin there (`start` aside)
        self.max_chunk = max_chunk
        self.max_line = max_line
        self.max_entries = max_entries
        self.error: str | None = None
        self.discarded_lines = 0          # MESSAGEs longer than max_line
        self.rotations = 0                # invalidations: files added or removed (rotation, vacuum)
        self._reader: Any = None
        self._position: Position | None = None   # after the last entry read (uncommitted included)
        self._reported: Position | None = None   # the position of the last chunk returned (or loaded)
        self._resumed = False
        self._unread_current = False      # the reader stands on an entry not consumed yet
        self._prefix = _Prefixes()
        self.fallback_for: Path | None = None   # the missing file this source reads the journal in place of

    @classmethod
    def from_config(cls, name: str, section: Any, store: PositionStore, *, max_chunk: int = MAX_CHUNK) \
            -> JournalSource:
        """The source of a `[sources.NAME]` section of type "journal" (`directory`, `match`, `start`), or
        of a file section whose file is missing and whose `fallback` is "journal" (`sources.open_source`)."""
        source = cls(name, store, directory=section.directory, matches=section.match or DEFAULT_MATCHES,
                     start=section.start, max_chunk=max_chunk, busy_poll=section.busy_poll)
        if section.type == "file":
            source.fallback_for = Path(section.path)
        return source

    # --- the Source protocol ---

    @property
    def position(self) -> Position | None:
        return self._position

    @property
    def where(self) -> str:
        journal = f"journal {self.directory}" if self.directory else "journal"
        where = f"{journal} ({' or '.join(self.matches)})"
        if self.fallback_for is not None:
            where += f", as {self.fallback_for} does not exist"
        return where

    def poll(self) -> list[Chunk]:
        out: list[Chunk] = []
        try:
            if self._reader is None:
                self._open()
            elif self._reader.process() == _reader_module().INVALIDATE:
                self.rotations += 1
                self._reopen()
            data = self._read()
        except OSError as e:
            self._close_reader()
            self._report(f"{self._what()}: {e.strerror or e}")
            return out
        self._report(None)
        position = self._position
        if data or (position is not None and position != self._reported):
            assert position is not None
            out.append(Chunk(self.name, data, position))
            self._reported = position
        return out

    def place(self) -> Position | None:
        if self._reader is None:
            try:
                self._open()
            except OSError:
                return None
        return self._position

    def commit(self, chunk: Chunk) -> None:
        if chunk.source != self.name:
            raise ValueError(f"source {self.name}: cannot commit a chunk of source {chunk.source}")
        self.store.save_position(self.name, chunk.position)

    def lag(self) -> int | None:
        """Seconds between the newest matching entry and the last one read; None while unknown."""
        if self._reader is None or self._position is None:
            return None
        try:
            tail = self._new_reader()
            try:
                tail.seek_tail()
                if not tail._previous():
                    return 0
                newest = int(tail._get_realtime())
            finally:
                tail.close()
        except OSError:
            return None
        return max(0, (newest - self._position.offset) // 1_000_000)

    def reread(self, since: Position | None, until: Position) -> Iterator[bytes]:
        """The lines of the entries after `since` (None: the oldest) up to `until`, read again with a
        reader of their own; nothing if `until` is not a journal position, or is gone."""
        if until.device != JOURNAL or (since is not None and since.device != JOURNAL):
            return
        try:
            reader = self._new_reader()
        except OSError:
            return
        try:
            if since is None:
                reader.seek_head()
            else:
                reader.seek_cursor(since.fingerprint)
                if reader._next() and not reader.test_cursor(since.fingerprint):
                    reader.seek_realtime(since.offset + 1)   # gone: after its time
            lines: list[bytes] = []
            size = 0
            while reader._next():
                if reader._get_realtime() > until.offset:
                    break
                line = self._line(reader)
                if line is not None:
                    lines.append(line)
                    size += len(line)
                    if size >= self.max_chunk:
                        yield b"".join(lines)
                        lines, size = [], 0
                if reader.test_cursor(until.fingerprint):
                    break
            if lines:
                yield b"".join(lines)
        finally:
            reader.close()

    def watched(self) -> tuple[Path, ...]:
        return ()

    def descriptors(self) -> tuple[int, ...]:
        """The reader's inotify descriptor: readable when the journal changed."""
        if self._reader is None:
            return ()
        try:
            return (int(self._reader.fileno()),)
        except OSError:
            return ()

    def hurry(self) -> float | None:
        """`busy_poll` while entries keep coming (see BUSY_POLL), else None: then the journal's own
        wake-up (`descriptors()`) is enough."""
        if self.busy_poll and self._reader is not None and time.monotonic() - self._last_entry < BUSY_WINDOW:
            return self.busy_poll
        return None

    def reconfigure(self, section: Any) -> bool:
        """True if the reloaded section reads the same journal with the same matches (`start` only
        matters to a source with no saved position), or is still the file section this source stands in
        for, its file still missing."""
        if section.type == "file":
            same = (self.fallback_for is not None and section.fallback == "journal"
                    and Path(section.path) == self.fallback_for and not os.path.lexists(section.path))
        else:
            same = self.fallback_for is None
        same = same and str(section.directory) == self.directory \
            and tuple(section.match or DEFAULT_MATCHES) == self.matches
        if same:
            self.busy_poll = section.busy_poll
        return same

    def close(self) -> None:
        self._close_reader()

    # --- the reader ---

    def _what(self) -> str:
        return f"the journal in {self.directory}" if self.directory else "the journal"

    def _new_reader(self) -> Any:
        journal = _reader_module()
        if self.directory:
            if not Path(self.directory).is_dir():
                raise FileNotFoundError(2, "no such directory (waiting for it)", self.directory)
            reader = journal._Reader(0, path=self.directory)
        else:
            reader = journal._Reader(journal.LOCAL_ONLY | journal.SYSTEM)
        try:
            reader.data_threshold = self.max_line + 1
            for n, match in enumerate(self.matches):
                if n:
                    reader.add_disjunction()
                reader.add_match(match)
        except BaseException:
            reader.close()
            raise
        return reader

    def _open(self) -> None:
        """A reader placed after the saved position, or where `start` says."""
        self._reader = self._new_reader()
        self._reader.fileno()     # inotify from now on: files added while we read are seen
        if not self._resumed:
            saved = self.store.load_position(self.name)
            self._position = self._reported = saved if saved is not None and saved.device == JOURNAL else None
            self._resumed = True
            if self._position is None and self.since is not None:
                self._reader.seek_realtime(int(self.since * 1_000_000))
                return
            if self._position is None and self.start == "end":
                self._reader.seek_tail()
                if self._reader._previous():
                    self._position = self._here()
                    log.info("source %s: starting after the newest entry of %s", self.name, self._what())
                else:
                    self._reader.seek_head()
                return
        self._seek()

    def _reopen(self) -> None:
        """The journal's files changed (rotation, vacuum, journald restarted): a new reader, at our place."""
        self._close_reader()
        self._reader = self._new_reader()
        self._reader.fileno()
        self._seek()

    def _seek(self) -> None:
        """Place the reader after `_position` (or at the oldest entry if there is none)."""
        reader = self._reader
        self._unread_current = False
        if self._position is None:
            reader.seek_head()
            return
        cursor = self._position.fingerprint
        reader.seek_cursor(cursor)
        if reader._next() and reader.test_cursor(cursor):
            return                     # on the last entry consumed: the next one is new
        log.warning("source %s: the saved journal cursor is gone from %s (vacuumed?): resuming at the first "
                    "entry logged after %s", self.name, self._what(), _iso(self._position.offset))
        reader.seek_realtime(self._position.offset + 1)

    def _here(self) -> Position:
        return Position(JOURNAL, 0, int(self._reader._get_realtime()), str(self._reader._get_cursor()))

    def _read(self) -> bytes:
        """The lines of the entries after our place, up to max_chunk bytes or max_entries entries."""
        reader = self._reader
        lines: list[bytes] = []
        size = entries = 0
        line_of = self._line
        while entries < self.max_entries and size < self.max_chunk:
            if self._unread_current:
                self._unread_current = False
            elif not reader._next():
                break
            entries += 1
            line = line_of(reader)
            if line is not None:
                lines.append(line)
                size += len(line)
        if entries:
            self._position = self._here()
            self._last_entry = time.monotonic()
        return b"".join(lines)

    def _line(self, reader: Any) -> bytes | None:
        """The syslog line of the entry the reader stands on; None for one without a MESSAGE, or one too long.

        One `_get_all()` (every field in one dict, made in C) costs less than four `_get`s and their
        KeyErrors: 6.3 µs an entry against 9.0 on entries of journald's 22 fields (`bench/journal.py`).
        """
        fields = reader._get_all()
        message = fields.get("MESSAGE")
        if message is None:
            return None
        if not isinstance(message, bytes):      # the field given twice: a list of its values
            message = message[0]
        if len(message) > self.max_line:
            self.discarded_lines += 1
            return None
        ident = fields.get("SYSLOG_IDENTIFIER") or fields.get("_COMM") or b"-"
        pid = fields.get("SYSLOG_PID") or fields.get("_PID")     # the pid the logger wrote, as a file has it
        host = fields.get("_HOSTNAME") or b"localhost"
        if not isinstance(ident, bytes) or not isinstance(host, bytes) or not isinstance(pid, bytes | None):
            ident, host, pid = _first(ident), _first(host), _first(pid) if pid is not None else None
        if b"\n" in message or b"\r" in message:
            message = message.translate(_SEP_TRANSLATE)
        if pid is None:
            return b"%s %s %s: %s\n" % (self._prefix(reader._get_realtime()), host, ident, message)
        return b"%s %s %s[%s]: %s\n" % (self._prefix(reader._get_realtime()), host, ident, pid, message)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _report(self, error: str | None) -> None:
        if error != self.error:
            if error is not None:
                log.warning("source %s: %s", self.name, error)
            elif self.error is not None:
                log.info("source %s: %s is readable again", self.name, self._what())
        self.error = error


def _first(value: Any) -> bytes:
    """A field's value; the first, if the entry gives the field more than once."""
    return value if isinstance(value, bytes) else bytes(value[0])


def _iso(usec: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(usec // 1_000_000))
