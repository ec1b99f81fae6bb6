"""What every source is: the `Source` protocol, and the registry that opens one by its `type`.

A source is one followed log. The daemon knows sources only through this protocol, so a new kind
(the systemd journal) plugs in beside files by registering a factory under its type name.

Life cycle:

1. **open**: `open_source(name, section, store)` builds the source from its configuration section
   (`[sources.NAME]`) with the store that keeps its position (the state database). Opening reads
   nothing and never raises for a log that is missing or unreadable: the source waits for it and says
   why in `error`. It raises ValueError for a section it cannot follow at all.
2. **read chunks**: `poll()` returns the complete lines that came since the last poll, as `Chunk`s in
   order, each with the position after it; [] once caught up. It is correct whenever it is called
   (a wake-up from `watched()` only makes it prompt), reads a bounded slice per call (call again while
   it returns chunks), and never raises for an I/O error: `error` names the problem until a poll
   succeeds again.
3. **position**: `commit(chunk)` saves the position after a chunk in the store; the daemon calls it in
   the same state transaction as the chunk's decisions, which is what makes every line count exactly
   once across a crash. `position` is where the source stands now (uncommitted chunks included),
   `place()` where it stands before reading its first line (the saved position, or where `start`
   puts it). `reread(since, until)` gives the lines between two committed positions again (the
   scores of a restart catch up on them); `lag()` how much is there that was not read yet.
4. **close**: `close()` lets go of what the source holds; a new source of the same name resumes from
   the store.

Reload: `reconfigure(section)` takes a changed section in place when the source still follows the same
log, and returns False when the section names another one (the daemon then opens a new source).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from adaptive.sources.position import Chunk, Position, PositionStore


class Source(Protocol):
    """One followed log: see the module's life cycle."""

    name: str
    error: str | None

    @property
    def position(self) -> Position | None: ...

    @property
    def where(self) -> str:
        """What it follows, for the log and `status` (a path)."""
        ...

    def poll(self) -> list[Chunk]: ...

    def place(self) -> Position | None: ...

    def commit(self, chunk: Chunk) -> None: ...

    lag_unit: str
    """What `lag()` counts: "bytes" (a file), "seconds" (the journal)."""

    def lag(self) -> int | None:
        """How much is there that was not read yet, in `lag_unit`s; None when not known."""
        ...

    def reread(self, since: Position | None, until: Position) -> Iterator[bytes]:
        """Chunks of the complete lines from `since` (None: the start of the log `until` is in) to `until`,
        both committed positions of this source; nothing if the log moved on in between."""
        ...

    def watched(self) -> tuple[Path, ...]:
        """Paths whose changes should wake the daemon to poll."""
        ...

    def descriptors(self) -> tuple[int, ...]:
        """Descriptors that become readable when the source has something new (the journal's inotify
        one): the daemon's sleep wakes on them, and `poll()` takes what made them readable."""
        ...

    def hurry(self) -> float | None:
        """Seconds within which to poll again though nothing woke the daemon (a writer that tells its
        readers late: journald), or None."""
        ...

    def reconfigure(self, section: Any) -> bool: ...

    def close(self) -> None: ...


Factory = Callable[..., Source]

log = logging.getLogger(__name__)

# type name -> factory(name, section, store, *, max_chunk): filled by each source's module below
SOURCE_TYPES: dict[str, Factory] = {}


def register(type_name: str, factory: Factory) -> None:
    """Make sources of `type_name` openable (`[sources.NAME] type = ...`)."""
    if type_name in SOURCE_TYPES:
        raise ValueError(f"source type {type_name!r} is registered already")
    SOURCE_TYPES[type_name] = factory


def open_source(name: str, section: Any, store: PositionStore, *, max_chunk: int) -> Source:
    """The source `[sources.NAME]` describes (`config.SourceConfig`), by its `type`.

    A file source with `fallback = "journal"` whose file does not exist reads this host's journal
    instead (a Debian host without rsyslog has no /var/log/mail.log), and says so in the log and in its
    `where`. It stays on the journal until the daemon is restarted or reloaded with the file there.
    """
    type_name = section.type
    if type_name == "file" and getattr(section, "fallback", "") == "journal" and not os.path.lexists(section.path):
        log.warning("source %s: %s does not exist: reading this host's journal instead (fallback = \"journal\")",
                    name, section.path)
        type_name = "journal"
    factory = SOURCE_TYPES.get(type_name)
    if factory is None:
        raise ValueError(f"source {name}: unknown type {type_name!r} (known: {', '.join(sorted(SOURCE_TYPES))})")
    return factory(name, section, store, max_chunk=max_chunk)
