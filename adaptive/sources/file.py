"""Following one log file across rotations and restarts, without losing or repeating a line.

A source holds one open file descriptor and reads it with `pread` from where it stands. It never saves
its position itself: each chunk carries the position after it, and the daemon commits that once the
chunk's lines are dealt with, so a crash in between reads them again rather than dropping them.

How each kind of rotation looks from here, and what is done about it:

- rename (logrotate `create`, the default): the path now names a new inode. The old file is still
  open, so it is read to its end (with whatever the logger appended after the rename), then the new
  file is followed from 0. The switch waits until the new file has a byte: a logger writes one file at
  a time, so once the new one grows it has let go of the old one, and until then nothing is lost by
  staying.
- delete and recreate: the same, with the old file read through its descriptor.
- copytruncate: the same inode shrinks below what was read, or its first line changes (it was
  truncated and refilled past our offset between two polls). Reading starts again at 0. Lines written
  between our last read and the truncation were in the copy only: they are lost, and no reader of the
  original can avoid that.
- rotated while the daemon was down: the saved inode is no longer at the path. It is looked for
  among the rotated siblings in the same directory (`mail.log.1`, `mail.log-20261124`; compressed ones
  are skipped, their inode is not the one we read), finished from the saved offset, then the current
  file is read from 0. If it is nowhere (deleted, or compressed already), its unread lines are gone
  and the current file is read from 0.

- a storm of rotations (to unique names, or numbered ones): a generation may be written and renamed
  away before a poll looks at the path. Once the old file is read to its end, the path's siblings
  that look like rotated generations (`.1`, `-20261124`), were written since it was, and were not read
  before are read first, oldest first, then the file now at the path.

Not covered: two rotations while the daemon was down (the file rotated in between is skipped: which
sibling came after which is not something a name reliably says), and a logger that goes on writing
the old file after the new one has grown (two writers; what it writes after our switch is lost).
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import re
import stat
import time
from collections import deque
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

from adaptive.sources.position import JOURNAL, Chunk, Position, PositionStore, fingerprint

MAX_CHUNK = 4 * 1024 * 1024   # bytes read per chunk at most, so a backlog is handed on in slices
MAX_LINE = 1024 * 1024        # a half-written line kept longer than this is discarded
COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".lzma", ".Z")
_MAX_SWITCHES = 8             # files followed in one poll: a bound, should rotations come in a storm
HOLE = 1024 * 1024            # unread bytes past which a read first asks where the file's data resumes
_FINISHED = 1024              # files read to their end and left, remembered so as never to read them again
# What a rotated generation's name adds to the log's: `.1`, `-20261124`, `.2026-11-24_10-00-00`; a
# compressed one (`.2.gz`) is not read, nor another log of a like name (`mail.log-debug`).
_GENERATION = re.compile(r"[._-][0-9][0-9._:T+-]*")

log = logging.getLogger(__name__)


class _NotAFile(Exception):
    """The path names something that is not a regular file (a directory, a FIFO)."""


class _OpenFile:
    """One open log file: its descriptor, its identity and how far its lines have been consumed."""

    def __init__(self, fd: int, st: os.stat_result, fingerprint: str, name: str):
        self.fd = fd
        self.device, self.inode = st.st_dev, st.st_ino
        self.name = name               # the name it was opened by, for messages
        self.offset = 0                # bytes of complete lines consumed
        self.read_to = 0               # bytes read: offset + the partial line (kept or being discarded)
        self.pending = b""             # a partial last line, waiting for its newline
        self.discarding = False        # inside a line longer than max_line: skip to its newline
        self.fingerprint = fingerprint

    def position(self) -> Position:
        return Position(self.device, self.inode, self.offset, self.fingerprint)

    def is_(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) == (self.device, self.inode)

    def resume(self, saved: Position) -> bool:
        """Move to `saved` if it is a position in this very file; say whether it was."""
        if ((saved.device, saved.inode, saved.fingerprint) != (self.device, self.inode, self.fingerprint)
                or os.fstat(self.fd).st_size < saved.offset):
            return False
        self.offset = self.read_to = saved.offset
        return True

    def restart(self) -> None:
        self.offset = self.read_to = 0
        self.pending, self.discarding, self.fingerprint = b"", False, ""

    def close(self) -> None:
        os.close(self.fd)


class FileSource:
    """Reads the complete lines appended to one log file, across rotations and restarts.

    >>> source = FileSource("mail", "/var/log/mail.log", state)
    >>> for chunk in source.poll():          # [] once caught up; call again while it returns chunks
    ...     engine.scan(chunk.data)
    ...     source.commit(chunk)              # or save chunk.position with the results, in one transaction

    `start` places the first file opened when no position was saved: "end" skips what it holds,
    "beginning" reads it. A file that appears after the first poll is new, so it is read from 0.

    `poll()` is correct whenever it is called, whatever file events were missed, so a `Watch` only
    makes it prompt. It reads at most `max_chunk` bytes per call, so a long backlog comes in slices.
    A half-written last line is kept, not returned, until its newline arrives; one longer than
    `max_line` is dropped up to its newline and counted in `discarded_lines`, so that a runaway
    line cannot hold memory without bound. Errors (no file at the path, permission denied, a directory
    at the path) never raise: `error` names the path and the problem until a poll succeeds again, and
    the source keeps waiting for the file. Bytes in, bytes out:
    lines are not decoded here.
    """

    def __init__(self, name: str, path: str | os.PathLike[str], store: PositionStore,
                 start: Literal["end", "beginning"] = "end", max_chunk: int = MAX_CHUNK,
                 max_line: int = MAX_LINE, follow_symlinks: bool = False,
                 owners: Collection[int] = ()):
        if start not in ("end", "beginning"):
            raise ValueError(f"source {name}: start must be 'end' or 'beginning', got {start!r}")
        if max_chunk < 1 or max_line < 1:
            raise ValueError(f"source {name}: max_chunk and max_line must be positive")
        self.name = name
        self.path = Path(path)
        self.store = store
        self.start = start
        self.max_chunk = max_chunk
        self.max_line = max_line
        self.lag_unit = "bytes"
        self.follow_symlinks = follow_symlinks   # else a symbolic link at the path is refused
        self.owners = frozenset(owners)    # uids a log file may be owned by; empty: anyone
        self.error: str | None = None      # the problem of the last poll, naming the path; None if fine
        self.discarded_lines = 0           # too long, or left without a newline by a rotation
        self.rotations = 0                 # switches to a new file at the path
        self.truncations = 0               # copytruncate or a rewrite in place: read again from 0
        self._file: _OpenFile | None = None
        self._finished: deque[tuple[int, int]] = deque(maxlen=_FINISHED)   # (device, inode) read and left
        # time.time_ns() since which the path was awaited: from the source's creation (generations
        # written and renamed away before its first poll are its own), then from a poll that finds no
        # file. mtimes come from a coarse clock, a few ms behind this one.
        self._waiting_since: int | None = time.time_ns() - 10_000_000
        self._resumed = False
        self._initial = start              # where the first file opened is begun, if none was saved
        self._reported: Position | None = None   # the position of the last chunk returned (or loaded)

    @property
    def position(self) -> Position | None:
        """Where the source stands now, including lines not yet committed; None while no file is open."""
        return self._file.position() if self._file else None

    def poll(self) -> list[Chunk]:
        """The complete lines appended since the last poll, as chunks in order; [] when caught up.

        A backlog comes one max_chunk slice per call (call again while it returns chunks); an empty
        chunk says the position moved without a line to show (see `Chunk`).
        """
        out: list[Chunk] = []
        try:
            if not self._resumed:
                self._resume()
            self._follow(out)
        except OSError as e:
            self._report(f"{e.filename or self.path}: {e.strerror or e}")
        except _NotAFile as e:
            self._report(str(e))
        else:
            # Nothing at the path yet: waited for, and said (a typo in a path must not go unseen).
            self._report(None if self._file is not None else f"{self.path}: does not exist (waiting for it)")
        position = self.position
        if position is not None and position != (out[-1].position if out else self._reported):
            out.append(Chunk(self.name, b"", position))
        if out:
            self._reported = out[-1].position
        return out

    def place(self) -> Position | None:
        """Where the source stands before it reads a line: where it was saved, or where `start` puts
        the file; None while there is no file (one that appears is read from its start)."""
        if not self._resumed:
            try:
                self._resume()
            except (OSError, _NotAFile):
                return None
        return self.position

    def commit(self, chunk: Chunk) -> None:
        """Save the position after `chunk` in the store: call it once the chunk's lines are dealt with."""
        if chunk.source != self.name:
            raise ValueError(f"source {self.name}: cannot commit a chunk of source {chunk.source}")
        self.store.save_position(self.name, chunk.position)

    def close(self) -> None:
        """Close the open file; the source is done (a new one resumes from the store)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- the rest of the Source protocol ---

    @classmethod
    def from_config(cls, name: str, section: Any, store: PositionStore, *, max_chunk: int = MAX_CHUNK) -> FileSource:
        """The source of a `[sources.NAME]` section of type "file" (`path`, `start`, `follow_symlinks`,
        `owners`)."""
        return cls(name, section.path, store, start=section.start, max_chunk=max_chunk,
                   follow_symlinks=section.follow_symlinks, owners=section.owners)

    @property
    def where(self) -> str:
        return str(self.path)

    def watched(self) -> tuple[Path, ...]:
        return (self.path,)

    def descriptors(self) -> tuple[int, ...]:
        return ()      # a file's changes come through `watched()`

    def hurry(self) -> float | None:
        return None    # inotify tells of a write at once

    def reconfigure(self, section: Any) -> bool:
        """Take a reloaded section's `follow_symlinks` and `owners`; False if it names another path."""
        if Path(section.path) != self.path:
            return False
        self.follow_symlinks, self.owners = section.follow_symlinks, frozenset(section.owners)
        return True

    def lag(self) -> int | None:
        """Bytes at the path not read yet; None while no file is open or the path is gone. While a
        rotated file is finished, the new file counts whole (the old one's rest is not known)."""
        position = self.position
        if position is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != (position.device, position.inode):
            return st.st_size
        return max(0, st.st_size - position.offset)

    def reread(self, since: Position | None, until: Position) -> Iterator[bytes]:
        """The complete lines from `since` (None: offset 0 of `until`'s file) to `until`, in slices of
        at most `max_chunk` bytes, read again from the file at the path. Nothing when that file is not
        `until`'s, or `since` is in another file (a rotation in between: said)."""
        if since is None:
            since = Position(until.device, until.inode, 0, until.fingerprint)
        if until.inode == since.inode and until.offset <= since.offset:
            return
        # A file that had no complete line when `since` was taken has no fingerprint in it yet.
        if (until.device, until.inode) != (since.device, since.inode) \
                or since.fingerprint not in ("", until.fingerprint):
            log.info("source %s: rotated since the scores were saved; the lines in between are not scored again",
                     self.name)
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        offset = since.offset
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (until.device, until.inode):
                return
            while offset < until.offset:
                data = os.pread(fd, min(self.max_chunk, until.offset - offset), offset)
                cut = data.rfind(b"\n") + 1 if offset + len(data) < until.offset else len(data)
                if not data or not cut:
                    break
                yield data[:cut]
                offset += cut
        finally:
            os.close(fd)

    # --- placing ourselves at start ---

    def _resume(self) -> None:
        saved = self.store.load_position(self.name)
        if saved is not None and saved.device == JOURNAL:
            saved = None     # the source read the journal before (see `sources.open_source`): not a file's
        if saved is not None:
            self._file = self._reopen(saved)
        else:
            first = self._open_at_start()
            # Read from the beginning: so are generations rotated away since the source was made.
            self._file = self._oldest_unread(first) if first and self._initial == "beginning" else first
        self._reported = saved
        self._resumed = True
        self._initial = "beginning"    # a file that appears from now on is new: all of it is unread

    def _open_at_start(self) -> _OpenFile | None:
        """The file at the path, placed as `start` says (with nothing saved), or None if absent."""
        f = self._open(self.path)
        if f is not None and self._initial == "end":
            try:
                self._place_at_end(f)
            except BaseException:
                f.close()
                raise
        return f

    def _oldest_unread(self, first: _OpenFile) -> _OpenFile:
        """The oldest generation written since the path was awaited (see `_waiting_since`) and
        rotated away before `first` was at the path, else `first`; the one not chosen is closed."""
        assert self._waiting_since is not None
        chosen = self._unread_generation(first, self._waiting_since) or first
        if chosen is not first:
            first.close()
        self._waiting_since = None
        return chosen

    def _place_at_end(self, f: _OpenFile) -> None:
        """Skip history, but not the line being written now: start after the last newline."""
        size = os.fstat(f.fd).st_size
        window = min(size, self.max_line)
        tail = os.pread(f.fd, window, size - window)
        newline = tail.rfind(b"\n")
        if newline >= 0:
            f.offset = f.read_to = size - window + newline + 1
        elif window < size:   # the line being written is already too long to keep
            f.offset = f.read_to = size
            f.discarding = True

    def _reopen(self, saved: Position) -> _OpenFile | None:
        """The saved file at the saved offset, wherever it went; else the file at the path from 0."""
        current = self._open(self.path)
        if current is not None and current.resume(saved):
            return current
        try:
            rotated = self._find_rotated(saved)
        except BaseException:
            if current is not None:
                current.close()
            raise
        if rotated is not None:
            if current is not None:
                current.close()
            log.info("%s: resuming in %s, rotated while we were down", self.path, rotated.name)
            return rotated
        if current is not None:
            log.info("%s: the file of the saved position is gone; reading this one from its start",
                     self.path)
        return current

    def _find_rotated(self, saved: Position) -> _OpenFile | None:
        """The saved file among the rotated siblings of the path, at the saved offset, if it is there."""
        base = self.path.name
        try:
            entries = list(os.scandir(self.path.parent))
        except FileNotFoundError:
            return None
        for entry in entries:
            if (entry.name == base or not entry.name.startswith(base)
                    or entry.name.endswith(COMPRESSED)):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (saved.device, saved.inode):
                continue
            try:
                f = self._open(Path(entry.path))
            except (OSError, _NotAFile):
                continue
            if f is not None:
                if f.resume(saved):
                    return f
                f.close()
        return None

    # --- following ---

    def _follow(self, out: list[Chunk]) -> None:
        if self._file is None:
            if self._waiting_since is None:
                self._waiting_since = time.time_ns() - 10_000_000
            first = self._open_at_start()
            if first is None:
                return
            # Generations that came and went while we waited for the path are as new as the file.
            self._file = self._oldest_unread(first)
        for _ in range(_MAX_SWITCHES):
            if self._read_slice(out):
                return                 # handed on a full slice: the rest at the next poll
            successor = self._successor()
            if successor is None:
                return
            if self._read_slice(out):  # what the logger appended to the old file since
                successor.close()
                return
            between = self._unread_generation(successor)
            if between is not None:
                successor.close()      # found again once the generations before it are read
                successor = between
            self._switch(successor)

    def _read_slice(self, out: list[Chunk]) -> bool:
        """Read up to one max_chunk of lines into `out`; True if there may be more, False at the end.

        Reads that complete no line (the middle of a line being discarded) hold no memory, so they
        go on: a poll returns [] only at the end of the file.
        """
        while True:
            before = len(out)
            if not self._read(out):
                return False
            if len(out) > before:
                return True

    def _read(self, out: list[Chunk]) -> bool:
        """Read once from the open file into `out`; True if it read a full max_chunk (maybe more)."""
        f = self._file
        assert f is not None
        size = os.fstat(f.fd).st_size
        if size < f.read_to or (f.fingerprint and fingerprint(f.fd) != f.fingerprint):
            log.info("%s: truncated (copytruncate?): reading it again from its start", f.name)
            self.truncations += 1
            self._drop_partial(f)
            f.restart()
        length = self._extent(f, size) if size - f.read_to >= HOLE else self.max_chunk
        data = os.pread(f.fd, length, f.read_to)
        base = f.read_to
        f.read_to += len(data)
        lines = self._take(f, data, base)
        if not f.fingerprint:
            f.fingerprint = fingerprint(f.fd)
        if lines:
            out.append(Chunk(self.name, lines, f.position()))
        return len(data) == length

    def _extent(self, f: _OpenFile, size: int) -> int:
        """How much to read at `f.read_to`: max_chunk, or up to where a hole begins. A hole of HOLE bytes
        or more at `f.read_to` is jumped over first (`truncate -s +200G mail.log`: 200 GB of nothing,
        with no line in it, took minutes to read through)."""
        try:
            data_at = os.lseek(f.fd, f.read_to, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                return self.max_chunk       # a file system that cannot say: read on
            data_at = size                  # nothing but hole to the end
        if data_at - f.read_to >= HOLE:
            # The data resumes at a block's start: the NULs before the first line written after the
            # hole belong to it.
            block = os.pread(f.fd, 65536, data_at)
            data_at += len(block) - len(block.lstrip(b"\0"))
            log.warning("%s: skipped a hole of %d bytes at offset %d (extended with truncate?): it holds no line",
                        f.name, data_at - f.read_to, f.read_to)
            self._drop_partial(f)
            f.pending, f.discarding = b"", False
            f.offset = f.read_to = data_at
        try:
            before_hole = os.lseek(f.fd, f.read_to, os.SEEK_HOLE) - f.read_to
        except OSError:
            return self.max_chunk
        return before_hole if 0 < before_hole < self.max_chunk else self.max_chunk

    def _take(self, f: _OpenFile, data: bytes, base: int) -> bytes:
        """The complete lines that `data` (read at `base`) completes; keeps the partial rest."""
        start = 0
        if f.discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return b""
            f.discarding = False
            self.discarded_lines += 1
            f.offset = base + newline + 1
            start = newline + 1
        last = data.rfind(b"\n")
        if last < start:
            f.pending += data[start:]
            lines = b""
        else:
            lines = f.pending + data[start:last + 1]
            f.pending = data[last + 1:]
            f.offset = base + last + 1
        if len(f.pending) > self.max_line:
            log.warning("%s: a line longer than %d bytes at offset %d: discarded", f.name,
                        self.max_line, f.offset)
            f.pending = b""
            f.discarding = True
        return lines

    def _successor(self) -> _OpenFile | None:
        """The new file at the path, if it is another file than ours and has begun (see the module)."""
        assert self._file is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None                # deleted or renamed, not yet recreated: keep reading the old one
        if self._file.is_(st) or st.st_size == 0:
            return None
        f = self._open(self.path)      # it may have changed again since the stat: check what we got
        if f is not None and (self._file.is_(os.fstat(f.fd)) or os.fstat(f.fd).st_size == 0):
            f.close()
            return None
        return f

    def _unread_generation(self, successor: _OpenFile, since: int | None = None) -> _OpenFile | None:
        """The oldest file rotated away after ours (or, with none open, written after `since`, in ns)
        and before `successor` was at the path, if any: in a storm of rotations to unique names, a
        generation may be written and renamed before a poll looks at the path. Found among the path's
        siblings as one written since ours was (mtime), not read before, and not `successor`."""
        old = self._file
        skip = {(successor.device, successor.inode), *self._finished}
        if old is not None:
            since = os.fstat(old.fd).st_mtime_ns
            skip.add((old.device, old.inode))
        assert since is not None
        base = self.path.name
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return None
        found = []
        for entry in entries:
            if not entry.name.startswith(base) or not _GENERATION.fullmatch(entry.name[len(base):]):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in skip and st.st_mtime_ns >= since:
                found.append((st.st_mtime_ns, entry.name))
        for _, name in sorted(found):
            try:
                f = self._open(self.path.parent / name)
            except (OSError, _NotAFile):
                continue
            if f is not None:
                log.info("%s: reading %s, rotated away before it was looked at", self.path, name)
                return f
        return None

    def _switch(self, successor: _OpenFile) -> None:
        old = self._file
        assert old is not None
        self._drop_partial(old)
        self._finished.append((old.device, old.inode))
        old.close()
        self._file = successor
        self.rotations += 1
        log.info("%s: rotated: finished the old file at offset %d, following the new one",
                 self.path, old.offset)

    def _drop_partial(self, f: _OpenFile) -> None:
        """A partial line that can never be completed (its file rotated or truncated) is dropped."""
        if f.pending or f.discarding:
            self.discarded_lines += 1

    def _open(self, path: Path) -> _OpenFile | None:
        """The regular file at `path`, open at offset 0, or None if there is none."""
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if self.follow_symlinks else os.O_NOFOLLOW)
        try:
            # O_NONBLOCK: a FIFO at the path must not hang the open; it is refused just below.
            # O_NOFOLLOW: a link swapped in at the path is refused by the kernel, with no race.
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _NotAFile(f"{path}: is a symbolic link, refused: whoever may write its directory could "
                                f"point it at any file (follow_symlinks = true in [sources.{self.name}] "
                                "follows it)") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise _NotAFile(f"{path}: is {kind}, not a log file")
            if self.owners and st.st_uid not in self.owners:
                raise _NotAFile(f"{path}: is owned by {_user(st.st_uid)}, who does not write logs here: refused "
                                f"(owners in [sources.{self.name}] names who may)")
            return _OpenFile(fd, st, fingerprint(fd), str(path))
        except BaseException:
            os.close(fd)
            raise

    def _report(self, error: str | None) -> None:
        if error != self.error:
            if error is not None:
                log.warning("source %s: %s", self.name, error)
            elif self.error is not None:
                log.info("source %s: %s is readable again", self.name, self.path)
        self.error = error


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
