"""Where a source stands in its log, and what it hands on: the records at the sources boundary.

A position names a file by device and inode (its path changes at every rotation) plus a fingerprint of
its first line (an inode is reused once the file is deleted, so the number alone could name a stranger),
and says how many bytes of complete lines of it have been consumed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

FINGERPRINT_BYTES = 4096   # a first line longer than this is fingerprinted by its first 4096 bytes
# `Position.device` of a place in the systemd journal: `fingerprint` is the cursor of the last entry
# consumed and `offset` its realtime in microseconds (no file has a negative device number).
JOURNAL = -1


@dataclass(frozen=True, slots=True)
class Position:
    """How far a source has consumed one file.

    `offset` counts the bytes of complete lines consumed, so resuming there never starts mid-line.
    `fingerprint` is `fingerprint()` of the file, "" while it has no complete first line yet.
    In the journal (`device` JOURNAL) it is the cursor of the last entry consumed instead, and
    `offset` that entry's time (microseconds since the epoch).
    """

    device: int
    inode: int
    offset: int
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """Complete lines of one source, in order, and where the source stands after them.

    `data` is raw bytes, every line ending with b"\\n" (never decoded here). It is empty when the position
    moved without a line to show for it (the first placement at the end of a file, a switch to a new
    file): committing it still matters, so that a restart resumes there.
    """

    source: str
    data: bytes
    position: Position


@runtime_checkable
class PositionStore(Protocol):
    """Keeps one position per source across restarts (`adaptive.state.State` in the daemon)."""

    def load_position(self, source: str) -> Position | None: ...

    def save_position(self, source: str, position: Position) -> None: ...


def fingerprint(fd: int) -> str:
    """A hash of the open file's first line, or "" if it has none yet.

    The first line, newline included, or its first FINGERPRINT_BYTES if it is longer. A line still
    being written has no fingerprint: it is "" until it is complete, then never changes while the file
    only grows. So "" can only be saved with offset 0.
    """
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    end = head.find(b"\n")
    if end >= 0:
        head = head[: end + 1]
    elif len(head) < FINGERPRINT_BYTES:
        return ""
    return hashlib.blake2b(head, digest_size=16).hexdigest()
