"""The state database: positions kept across restarts, migrations applied once, corruption survived."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest

from adaptive.sources import Position, PositionStore
from adaptive.state import MIGRATIONS, State, StateError, migrate


def clock() -> float:
    return 1_800_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def test_round_trip(path):
    with State(path, clock=clock) as state:
        assert state.load_position("mail") is None
        state.save_position("mail", Position(1, 2, 3, "abc"))
        assert state.load_position("mail") == Position(1, 2, 3, "abc")
        assert state.load_position("dovecot") is None


def test_save_replaces_the_sources_position(path):
    with State(path) as state:
        state.save_position("mail", Position(1, 2, 3, "abc"))
        state.save_position("mail", Position(1, 9, 0, ""))
        assert state.load_position("mail") == Position(1, 9, 0, "")


def test_reopen_keeps_positions(path):
    with State(path, clock=clock) as state:
        state.save_position("mail", Position(64769, 1234567, 2**40, "f" * 32))
    with State(path) as state:
        assert state.load_position("mail") == Position(64769, 1234567, 2**40, "f" * 32)
    updated = sqlite3.connect(path).execute("SELECT updated FROM positions").fetchone()[0]
    assert updated == clock()


def test_is_a_position_store(path):
    with State(path) as state:
        assert isinstance(state, PositionStore)


def test_wal_mode(path):
    with State(path):
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_migrations_are_applied_once(path):
    with State(path) as state:
        assert state.schema_version == len(MIGRATIONS)
        state.save_position("mail", Position(1, 2, 3, "abc"))
    with State(path) as state:                          # reopening migrates nothing again
        assert state.schema_version == len(MIGRATIONS)
        assert state.load_position("mail") == Position(1, 2, 3, "abc")
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, MIGRATIONS, str(path)) == len(MIGRATIONS)
    assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_a_later_migration_is_applied_to_an_existing_database(path):
    with State(path) as state:
        state.save_position("mail", Position(1, 2, 3, "abc"))
    later = MIGRATIONS + (("CREATE TABLE bans (address TEXT PRIMARY KEY)",
                           "INSERT INTO bans VALUES ('192.0.2.1')"),)
    with State(path, migrations=later) as state:
        assert state.schema_version == len(MIGRATIONS) + 1
        assert state.load_position("mail") == Position(1, 2, 3, "abc")
    assert sqlite3.connect(path).execute("SELECT * FROM bans").fetchall() == [("192.0.2.1",)]


def test_a_failing_migration_leaves_nothing_half_done(path):
    State(path).close()
    broken = MIGRATIONS + (("CREATE TABLE bans (address TEXT)", "NOT SQL AT ALL"),)
    with pytest.raises(sqlite3.OperationalError):
        State(path, migrations=broken)
    with State(path) as state:
        assert state.schema_version == len(MIGRATIONS)
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert ("bans",) not in tables


def test_a_newer_database_is_refused_not_moved_aside(path):
    later = MIGRATIONS + (("CREATE TABLE bans (address TEXT)",),)
    State(path, migrations=later).close()
    with pytest.raises(StateError, match="newer"):
        State(path)
    assert path.exists() and not list(path.parent.glob("*.corrupt-*"))


def test_not_a_database_is_moved_aside(path, caplog):
    path.write_bytes(b"this is not an SQLite database, just some bytes " * 100)
    with caplog.at_level(logging.WARNING):
        with State(path, clock=clock) as state:
            state.save_position("mail", Position(1, 2, 3, "abc"))
            assert state.load_position("mail") == Position(1, 2, 3, "abc")
            moved = state.moved_aside
    assert moved is not None and moved.name.startswith("state.db.corrupt-")
    assert moved.read_bytes().startswith(b"this is not an SQLite database")
    assert str(path) in caplog.text and str(moved) in caplog.text


@pytest.mark.parametrize("page, offset, length", [
    (3, 0, 2 * 4096),     # the positions' b-tree roots: reading them fails outright
    (20, 8, 64),          # a leaf's cell pointers: quick_check lists the damage
], ids=["unreadable", "check-fails"])
def test_failed_integrity_check_is_moved_aside(path, caplog, page, offset, length):
    with State(path) as state:
        for n in range(2000):
            state.save_position(f"source {n:04d}", Position(n, n, n, "x" * 100))
    with open(path, "r+b") as f:
        f.seek((page - 1) * 4096 + offset)
        f.write(b"\x7f" * length)
    with caplog.at_level(logging.WARNING):
        with State(path) as state:
            assert state.moved_aside is not None
            assert state.load_position("source 0001") is None
    assert "corrupt" in caplog.text and str(path) in caplog.text


def test_two_corruptions_in_one_second_keep_both_files(path):
    for _ in range(2):
        path.write_bytes(b"garbage" * 1000)
        State(path, clock=clock).close()
    assert len(list(path.parent.glob("state.db.corrupt-*"))) == 2


def test_missing_directory_is_created_private(tmp_path):
    path = tmp_path / "var" / "lib" / "adaptive" / "state.db"
    with State(path) as state:
        state.save_position("mail", Position(1, 2, 3, "abc"))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_memory_database(tmp_path):
    with State(":memory:") as state:
        state.save_position("mail", Position(1, 2, 3, "abc"))
        assert state.load_position("mail") == Position(1, 2, 3, "abc")
    with State(":memory:") as state:
        assert state.load_position("mail") is None
    assert not list(tmp_path.iterdir())


def test_close_closes(path):
    state = State(path)
    state.close()
    with pytest.raises(sqlite3.ProgrammingError):
        state.load_position("mail")
