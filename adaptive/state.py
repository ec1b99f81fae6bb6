"""State: what the daemon remembers across restarts, in one SQLite database.

For now the position of each source in its log; later issues append migrations for bans and ban
history. The daemon is the one writer; readers (the CLI) may open it alongside, which is what WAL mode
is for. A database that is not one, or fails its check, is moved aside and replaced by a fresh one:
forgetting positions and bans is better than not starting, and the old file is kept for a post-mortem.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from adaptive.sources.position import Position

log = logging.getLogger(__name__)

MEMORY = ":memory:"

# Each migration is a tuple of statements, applied in one transaction; its number is its index + 1.
# Append only: a released migration is never edited, since databases out there have applied it.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE positions (
               source TEXT PRIMARY KEY,
               device INTEGER NOT NULL,
               inode INTEGER NOT NULL,
               "offset" INTEGER NOT NULL,
               fingerprint TEXT NOT NULL,
               updated REAL NOT NULL
           )""",
    ),
)

_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class StateError(Exception):
    """The state database cannot be used, and moving it aside would not help (or was not allowed)."""


class _Corrupt(Exception):
    """The file is not an SQLite database, or fails its integrity check."""


class State:
    """The daemon's SQLite state; implements `PositionStore` for the sources.

    >>> with State("/var/lib/adaptive/state.db") as state:
    ...     state.save_position("mail", chunk.position)

    One writer per file: the daemon. `":memory:"` gives a throwaway database for tests. `clock` stamps
    the rows and names a corrupt file moved aside.
    """

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time,
                 migrations: tuple[tuple[str, ...], ...] = MIGRATIONS):
        self.path = path if path == MEMORY else Path(path)
        self.clock = clock
        self.moved_aside: Path | None = None   # where a corrupt database went, if it did
        self._db = self._open(migrations)

    # --- PositionStore ---

    def load_position(self, source: str) -> Position | None:
        row = self._db.execute(
            'SELECT device, inode, "offset", fingerprint FROM positions WHERE source = ?',
            (source,)).fetchone()
        return None if row is None else Position(*row)

    def save_position(self, source: str, position: Position) -> None:
        self._db.execute(
            'INSERT INTO positions (source, device, inode, "offset", fingerprint, updated) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET device = excluded.device, "
            'inode = excluded.inode, "offset" = excluded."offset", '
            "fingerprint = excluded.fingerprint, updated = excluded.updated",
            (source, position.device, position.inode, position.offset, position.fingerprint,
             self.clock()))

    # --- lifecycle ---

    @property
    def schema_version(self) -> int:
        return self._db.execute("SELECT version FROM schema_version").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _open(self, migrations: tuple[tuple[str, ...], ...]) -> sqlite3.Connection:
        if self.path != MEMORY:
            _make_directory(self.path.parent)
        try:
            db = _connect(self.path)
        except _Corrupt as e:
            if self.path == MEMORY:
                raise StateError(f"{self.path}: {e}") from None
            self.moved_aside = self._move_aside(str(e))
            db = _connect(self.path)
        try:
            migrate(db, migrations, str(self.path))
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, reason: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.clock()))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}.{n}")
        # The journal files belong to the corrupt database: a fresh one must not replay them.
        for suffix in ("", "-wal", "-shm", "-journal"):
            old = Path(f"{self.path}{suffix}")
            if old.exists():
                old.rename(f"{target}{suffix}")
        log.warning("%s: the state database is corrupt (%s); moved it aside to %s and started a "
                    "fresh one: saved positions and bans are forgotten", self.path, reason, target)
        return target


def migrate(db: sqlite3.Connection, migrations: tuple[tuple[str, ...], ...], name: str) -> int:
    """Apply the migrations `db` lacks, each in its own transaction; return the schema version.

    Idempotent: an up-to-date database is left alone. A database newer than `migrations` (written by a
    later adaptive) is refused rather than used half-understood.
    """
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    while True:
        db.execute("BEGIN IMMEDIATE")   # one migrating process at a time; the version is read inside
        try:
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = row[0]
            if version > len(migrations):
                raise StateError(f"{name}: schema version {version} is newer than this adaptive knows "
                                 f"({len(migrations)}); was it written by a later release?")
            if version == len(migrations):
                db.execute("COMMIT")
                return version
            for statement in migrations[version]:
                db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (version + 1,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("%s: migrated the state database to schema version %d", name, version + 1)


def _connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, checked for corruption."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as e:
        raise StateError(f"{path}: {e}") from None
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        # NORMAL: in WAL mode a crash of the process loses nothing; a power cut may lose the last
        # transactions, which for positions means re-reading some lines, not losing them.
        db.execute("PRAGMA synchronous = NORMAL")
        # quick_check rather than integrity_check: it skips matching indexes to their tables, which
        # keeps the start fast as ban history grows, and still catches a damaged file.
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _Corrupt("; ".join("\n".join(problems).splitlines()[:3]))
    except sqlite3.DatabaseError as e:
        db.close()
        if (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF in _CORRUPT:
            raise _Corrupt(str(e)) from None
        raise StateError(f"{path}: {e}") from None
    except _Corrupt:
        db.close()
        raise
    return db


def _make_directory(directory: Path) -> None:
    """Create the database's directory, private (0700): it will hold who was banned and when."""
    if directory.is_dir():
        return
    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)   # mkdir's mode is filtered by the umask
