"""State: what the daemon remembers across restarts, in one SQLite database.

The position of each source in its log, the bans (one row per address or prefix, live or lapsed) and
the history of every ban, which is what a repeat offender's longer ban is counted from. The daemon is
the one writer; readers (the CLI) may open it alongside, which is what WAL mode is for. A database
that is not one, or fails its check, is moved aside and replaced by a fresh one: forgetting positions
and bans is better than not starting, and the old file is kept for a post-mortem.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

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
    (
        # One row per address or prefix: its latest ban. "end" NULL: until unbanned. Lapsed rows stay
        # until `remove_lapsed`; an unban deletes the row. `outcome` is "ban" or "dry_run" (recorded,
        # never enforced): only "ban" rows are restored into the kernel.
        """CREATE TABLE bans (
               target TEXT PRIMARY KEY,
               start REAL NOT NULL,
               "end" REAL,
               reason TEXT NOT NULL,
               score REAL NOT NULL,
               rules TEXT NOT NULL,
               user TEXT,
               count INTEGER NOT NULL,
               origin TEXT NOT NULL,
               outcome TEXT NOT NULL
           )""",
        'CREATE INDEX bans_end ON bans ("end")',
        # Every ban ever decided, kept after its unban: a target's bans since a time are counted here.
        """CREATE TABLE ban_history (
               target TEXT NOT NULL,
               time REAL NOT NULL,
               duration REAL,
               reason TEXT NOT NULL,
               origin TEXT NOT NULL,
               outcome TEXT NOT NULL
           )""",
        "CREATE INDEX ban_history_target_time ON ban_history (target, time)",
        "CREATE INDEX ban_history_time ON ban_history (time)",
    ),
    (
        # The scorer as it stood when every source was at `positions` (JSON: source -> [device, inode,
        # offset, fingerprint]), written by adaptive `version`: one row, replaced at each save.
        """CREATE TABLE scores (
               id INTEGER PRIMARY KEY CHECK (id = 1),
               version TEXT NOT NULL,
               saved REAL NOT NULL,
               positions TEXT NOT NULL,
               snapshot BLOB NOT NULL
           )""",
    ),
)

_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@dataclass(frozen=True, slots=True)
class BanRecord:
    """A ban as the state keeps it: `target` an address or prefix, `end` None for until unbanned.

    `count` is the target's number of bans within the look-back period, this one included; `rules`
    maps "filter/rule" to the events of that rule that led to it; `outcome` is "ban" or "dry_run".
    """

    target: str
    start: float
    end: float | None
    reason: str
    score: float
    rules: dict[str, int]
    user: str | None
    count: int
    origin: str
    outcome: str = "ban"

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start

    def live(self, at: float) -> bool:
        return self.end is None or self.end > at


_BAN_COLUMNS = 'target, start, "end", reason, score, rules, user, count, origin, outcome'


def _ban_record(row: tuple[Any, ...]) -> BanRecord:
    target, start, end, reason, score, rules, user, count, origin, outcome = row
    return BanRecord(target, start, end, reason, score, json.loads(rules), user, count, origin, outcome)


class StateError(Exception):
    """The state database cannot be used, and moving it aside would not help (or was not allowed)."""


class _Corrupt(Exception):
    """The file is not an SQLite database, or fails its integrity check."""


class State:
    """The daemon's SQLite state: positions (it implements `PositionStore` for the sources) and bans.

    >>> with State("/var/lib/adaptive/state.db") as state:
    ...     with state.transaction():
    ...         state.save_position("mail", chunk.position)
    ...         state.record_bans(records)

    One writer per file: the daemon. `":memory:"` gives a throwaway database for tests. `clock` stamps
    the rows and names a corrupt file moved aside.
    """

    def __init__(self, path: str | os.PathLike[str], clock: Callable[[], float] = time.time,
                 migrations: tuple[tuple[str, ...], ...] = MIGRATIONS):
        self.path = path if path == MEMORY else Path(path)
        self.clock = clock
        self.moved_aside: Path | None = None   # where a corrupt database went, if it did
        self.created = False                   # whether this open made the database (new, or moved aside)
        self.write_error: str | None = None     # why the disk refuses the writes that wait, if it does
        self._db = self._open(migrations)
        self._depth = 0                         # transactions open inside one another
        # this transaction's writes: (key, sql, params, many)
        self._current: list[tuple[object, str, Sequence[Any], bool]] = []
        # writes a refused commit left: key -> (sql, params, many)
        self._unwritten: dict[object, tuple[str, Sequence[Any], bool]] = {}
        self._serial = 0                        # a key for the writes that have none
        self._broken: sqlite3.OperationalError | None = None   # a write of this transaction that failed

    # --- PositionStore ---

    def load_position(self, source: str) -> Position | None:
        row = self._db.execute(
            'SELECT device, inode, "offset", fingerprint FROM positions WHERE source = ?',
            (source,)).fetchone()
        return None if row is None else Position(*row)

    def save_position(self, source: str, position: Position) -> None:
        # Keyed by source: of the positions that wait for a full disk, only the latest is kept.
        self._write(
            'INSERT INTO positions (source, device, inode, "offset", fingerprint, updated) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET device = excluded.device, "
            'inode = excluded.inode, "offset" = excluded."offset", '
            "fingerprint = excluded.fingerprint, updated = excluded.updated",
            (source, position.device, position.inode, position.offset, position.fingerprint,
             self.clock()), key=("position", source))

    # --- scores ---

    def save_scores(self, version: str, positions: dict[str, Position | None], snapshot: bytes) -> None:
        """The scorer's snapshot, and where each source stood when it was taken (None: no file yet),
        in one row, replaced."""
        placed = json.dumps({name: None if p is None else [p.device, p.inode, p.offset, p.fingerprint]
                             for name, p in positions.items()})
        self._write("INSERT OR REPLACE INTO scores (id, version, saved, positions, snapshot) VALUES (1, ?, ?, ?, ?)",
                    (version, self.clock(), placed, snapshot), key=("scores",))

    def load_scores(self) -> tuple[str, float, dict[str, Position | None], bytes] | None:
        """(version, saved, positions, snapshot) of the last save, or None."""
        row = self._db.execute("SELECT version, saved, positions, snapshot FROM scores WHERE id = 1").fetchone()
        if row is None:
            return None
        version, saved, placed, snapshot = row
        return version, saved, {name: p and Position(*p) for name, p in json.loads(placed).items()}, snapshot

    # --- bans ---

    def record_bans(self, records: Iterable[BanRecord]) -> int:
        """Record bans, in one transaction: each replaces its target's row and joins the history.

        Return how many. Cheap per call (two statements, `executemany`), so a decision can be
        recorded as it is made, and 100,000 at once (adopting the kernel's bans) take well under a second.
        """
        # A manual ban has no rules: "{}" without json.dumps is a third of a 100,000-ban import.
        rows = [(r.target, r.start, r.end, r.reason, r.score,
                 json.dumps(r.rules, separators=(",", ":")) if r.rules else "{}",
                 r.user, r.count, r.origin, r.outcome) for r in records]
        if not rows:
            return 0
        with self.transaction():
            self._write(
                f"INSERT OR REPLACE INTO bans ({_BAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
                many=True)
            self._write(
                "INSERT INTO ban_history (target, time, duration, reason, origin, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r[0], r[1], None if r[2] is None else r[2] - r[1], r[3], r[8], r[9]) for r in rows], many=True)
        return len(rows)

    def record_bans_alike(self, targets: list[str], start: float, end: float | None, reason: str,
                          origin: str, outcome: str = "ban", counted_since: float | None = None,
                          earlier: Sequence[tuple[float, float | None]] = ()) -> int:
        """Record bans that differ only in their target (an imported blocklist), in one transaction.

        Each row's `count` is the target's bans at or after `counted_since`, this one included (1 when
        None). Two statements that build their rows in SQLite from one JSON array: 100,000 bans in a
        quarter of a second, half what `record_bans` takes for them (its tuples, and a history count per
        target asked from Python, are most of its time). `targets` must not repeat.

        `earlier` (time, duration or None) are bans each target had before this one, elsewhere (another
        blocker's, imported): they join the history first, so they count as its earlier bans do.
        """
        if not targets:
            return 0
        listed = json.dumps(targets, separators=(",", ":"))
        duration = None if end is None else end - start
        count = ("(SELECT count(*) FROM ban_history h WHERE h.target = j.value AND h.time >= ?)"
                 if counted_since is not None else "?")
        with self.transaction():
            if earlier:
                self._write("INSERT INTO ban_history (target, time, duration, reason, origin, outcome) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [(target, when, length, reason, origin, outcome)
                             for target in targets for when, length in earlier], many=True)
            self._write("INSERT INTO ban_history (target, time, duration, reason, origin, outcome) "
                             "SELECT value, ?, ?, ?, ?, ? FROM json_each(?)",
                             (start, duration, reason, origin, outcome, listed))
            self._write(f"INSERT OR REPLACE INTO bans ({_BAN_COLUMNS}) "
                             f"SELECT j.value, ?, ?, ?, 0.0, '{{}}', NULL, {count}, ?, ? FROM json_each(?) j",
                             (start, end, reason, 1 if counted_since is None else counted_since, origin,
                              outcome, listed))
        return len(targets)

    def record_ban(self, record: BanRecord) -> None:
        self.record_bans((record,))

    def ban(self, target: str) -> BanRecord | None:
        """The target's latest ban, live or lapsed; None if it has none (or was unbanned)."""
        row = self._db.execute(f"SELECT {_BAN_COLUMNS} FROM bans WHERE target = ?", (target,)).fetchone()
        return None if row is None else _ban_record(row)

    def live_bans(self, at: float, outcome: str | None = "ban") -> list[BanRecord]:
        """The bans not yet ended at `at`, by start: those to restore into the kernel by default,
        the dry-run ones with `outcome="dry_run"`, all with `outcome=None`."""
        sql = f'SELECT {_BAN_COLUMNS} FROM bans WHERE ("end" IS NULL OR "end" > ?)'
        args: tuple[float | str, ...] = (at,)
        if outcome is not None:
            sql += " AND outcome = ?"
            args += (outcome,)
        return [_ban_record(row) for row in self._db.execute(sql + " ORDER BY start, target", args)]

    def live_ends(self, at: float, outcome: str | None = "ban") -> dict[str, float | None]:
        """`live_bans`, only each target's end (None: until unbanned): what a restore and the decider's
        index need, without making 100,000 records (and reading their rules) at every start."""
        sql = 'SELECT target, "end" FROM bans WHERE ("end" IS NULL OR "end" > ?)'
        args: tuple[float | str, ...] = (at,)
        if outcome is not None:
            sql += " AND outcome = ?"
            args += (outcome,)
        return dict(self._db.execute(sql, args))

    def live_count(self, at: float) -> int:
        """How many bans to enforce are live at `at` (`live_bans`' length, counted by SQLite)."""
        return cast(int, self._db.execute('SELECT count(*) FROM bans WHERE ("end" IS NULL OR "end" > ?) '
                                          'AND outcome = \'ban\'', (at,)).fetchone()[0])

    def bans(self) -> list[BanRecord]:
        """Every ban row, live or lapsed, by start."""
        return [_ban_record(row) for row in
                self._db.execute(f"SELECT {_BAN_COLUMNS} FROM bans ORDER BY start, target")]

    def ban_count(self, target: str, since: float) -> int:
        """How many bans the target got at or after `since` (unbanned ones too), dry-run included."""
        return cast(int, self._db.execute("SELECT count(*) FROM ban_history WHERE target = ? AND time >= ?",
                                          (target, since)).fetchone()[0])

    def history(self, target: str, limit: int = 20) -> list[dict[str, Any]]:
        """The target's latest bans, newest first (for `adaptive explain`)."""
        rows = self._db.execute("SELECT time, duration, reason, origin, outcome FROM ban_history "
                                "WHERE target = ? ORDER BY time DESC LIMIT ?", (target, limit))
        return [{"start": t, "duration": d, "reason": r, "origin": o, "outcome": x} for t, d, r, o, x in rows]

    def remove_ban(self, target: str) -> bool:
        """Unban: forget the target's ban (its history stays). False if it had none."""
        return self._write("DELETE FROM bans WHERE target = ?", (target,)) > 0

    def remove_lapsed(self, at: float, history_before: float | None = None) -> int:
        """Drop the ban rows that ended by `at`, and the history older than `history_before` (kept
        whole if None: it must reach back as far as the longest look-back). Return the rows dropped."""
        with self.transaction():
            n = self._write('DELETE FROM bans WHERE "end" IS NOT NULL AND "end" <= ?', (at,))
            if history_before is not None:
                n += self._write("DELETE FROM ban_history WHERE time < ?", (history_before,))
        return n

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all (positions and bans, say).

        Nested use joins the outer transaction: only the outermost commits. A commit the disk refuses
        (full, an I/O error, a file system gone read-only) raises nothing: the transaction's writes
        wait in memory, in an open transaction that this connection's reads see, and each later
        transaction (or `retry`) commits them with its own once the disk takes them. `unwritten`
        says how many wait, `write_error` why. An exception inside the body rolls back its writes
        only, and is raised.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        if not self._db.in_transaction:
            self._hold()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._current = []
            self._end("ROLLBACK")
            if self._unwritten:
                self._hold()
            raise
        self._depth = 0
        if self._broken is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as e:
                self._broken = e
        if self._broken is None:
            self._current = []
            if self._unwritten:
                log.warning("%s: the state database takes writes again: %d change(s) that waited are written",
                            self.path, len(self._unwritten))
                self._unwritten = {}
                self.write_error = None
            return
        self._keep_unwritten()

    def retry(self) -> bool:
        """Try again to commit the writes a refused commit left waiting; True once none wait."""
        if self._unwritten and not self._depth:
            with self.transaction():
                pass
        return not self._unwritten

    @property
    def unwritten(self) -> int:
        """How many changes wait for the disk to take them (0: the database has everything)."""
        return len(self._unwritten)

    def _write(self, sql: str, params: Sequence[Any] = (), many: bool = False, key: object = None) -> int:
        """Run one write inside a transaction, remembered until it is committed; the rows it changed.
        `key`: a later write with the same key replaces this one among those waiting for the disk."""
        with self.transaction():
            self._current.append((key, sql, params, many))
            if self._broken is not None:
                return 0
            try:
                return (self._db.executemany if many else self._db.execute)(sql, params).rowcount
            except sqlite3.OperationalError as e:
                self._broken = e      # the rest of the transaction is kept, not run
                return 0

    def _begin(self) -> None:
        self._broken = None
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            self._broken = e

    def _end(self, statement: str) -> None:
        if self._db.in_transaction:
            try:
                self._db.execute(statement)
            except sqlite3.OperationalError:
                pass

    def _keep_unwritten(self) -> None:
        """The commit failed: what it carried joins the writes that wait, and they are held again."""
        error, first = self._broken, not self._unwritten
        for key, sql, params, many in self._current:
            self._serial += 1
            key = (self._serial,) if key is None else key
            self._unwritten.pop(key, None)
            self._unwritten[key] = (sql, params, many)
        self._current = []
        self._end("ROLLBACK")
        self._hold()
        if first or str(error) != self.write_error:
            log.error("%s: cannot write the state database (%s): %d change(s) wait in memory and are "
                      "written once the disk takes them; a stop before then loses them", self.path,
                      error, len(self._unwritten))
        self.write_error = str(error)

    def _hold(self) -> None:
        """Begin a transaction, with the writes that wait (so that this connection's reads see them)."""
        self._begin()
        for sql, params, many in self._unwritten.values():
            if self._broken is not None:
                break
            try:
                (self._db.executemany if many else self._db.execute)(sql, params)
            except sqlite3.OperationalError as e:
                self._broken = e
        if self._broken is not None:
            self._end("ROLLBACK")  # the next transaction begins again with them

    # --- lifecycle ---

    @property
    def schema_version(self) -> int:
        return cast(int, self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    def close(self) -> None:
        if not self.retry():
            log.error("%s: %d change(s) could not be written to the state database (%s) and are lost: "
                      "the next start reads again the lines after the last saved position",
                      self.path, len(self._unwritten), self.write_error)
        self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _open(self, migrations: tuple[tuple[str, ...], ...]) -> sqlite3.Connection:
        path = self.path
        if isinstance(path, Path):      # not MEMORY
            _make_directory(path.parent)
        try:
            db = _connect(path)
        except _Corrupt as e:
            if not isinstance(path, Path):
                raise StateError(f"{path}: {e}") from None
            self.moved_aside = self._move_aside(path, str(e))
            db = _connect(path)
        try:
            self.created = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'schema_version'"
                                      ).fetchone()[0] == 0
            migrate(db, migrations, str(self.path))
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, path: Path, reason: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.clock()))
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
        # The journal files belong to the corrupt database: a fresh one must not replay them.
        for suffix in ("", "-wal", "-shm", "-journal"):
            old = Path(f"{path}{suffix}")
            if old.exists():
                old.rename(f"{target}{suffix}")
        log.warning("%s: the state database is corrupt (%s); moved it aside to %s and started a "
                    "fresh one: saved positions and bans are forgotten", path, reason, target)
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
