"""The state database: positions and bans kept across restarts, migrations applied once, corruption
survived."""

from __future__ import annotations

import logging
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from adaptive.sources import Position, PositionStore
from adaptive.state import MIGRATIONS, BanRecord, State, StateError, migrate

from disk import missing as disk_missing
from disk import small_disk


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
    later = MIGRATIONS + (("CREATE TABLE later (address TEXT PRIMARY KEY)",
                           "INSERT INTO later VALUES ('192.0.2.1')"),)
    with State(path, migrations=later) as state:
        assert state.schema_version == len(MIGRATIONS) + 1
        assert state.load_position("mail") == Position(1, 2, 3, "abc")
    assert sqlite3.connect(path).execute("SELECT * FROM later").fetchall() == [("192.0.2.1",)]


def test_a_failing_migration_leaves_nothing_half_done(path):
    State(path).close()
    broken = MIGRATIONS + (("CREATE TABLE later (address TEXT)", "NOT SQL AT ALL"),)
    with pytest.raises(sqlite3.OperationalError):
        State(path, migrations=broken)
    with State(path) as state:
        assert state.schema_version == len(MIGRATIONS)
    tables = sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall()
    assert ("later",) not in tables


def test_a_newer_database_is_refused_not_moved_aside(path):
    later = MIGRATIONS + (("CREATE TABLE later (address TEXT)",),)
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


# --- bans ---

T0 = 1_800_000_000.0


def record(target: str = "203.0.113.7", start: float = T0, end: float | None = T0 + 3600, count: int = 1,
           outcome: str = "ban", reason: str = "score") -> BanRecord:
    return BanRecord(target, start, end, reason, 12.5, {"postfix/sasl-auth-failed": 5}, "alice", count,
                     "automatic", outcome)


def test_a_fresh_database_has_the_ban_and_score_tables(path):
    with State(path) as state:
        assert state.schema_version == 3 == len(MIGRATIONS)
    names = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"positions", "bans", "ban_history", "ban_history_target_time", "bans_end", "scores"} <= names


def test_upgrade_from_schema_1_keeps_positions(path):
    with State(path, migrations=MIGRATIONS[:1]) as state:
        assert state.schema_version == 1
        state.save_position("mail", Position(1, 2, 3, "abc"))
    with State(path) as state:
        assert state.schema_version == len(MIGRATIONS)
        assert state.load_position("mail") == Position(1, 2, 3, "abc")
        assert state.bans() == []
        state.record_ban(record())
        assert state.ban("203.0.113.7") == record()


def test_ban_round_trip_and_upsert(path):
    with State(path) as state:
        state.record_ban(record())
        state.record_ban(record("2001:db8:1:2::/64", end=None))
        later = record(start=T0 + 7200, end=T0 + 7200 + 14400, count=2, reason="slow")
        state.record_ban(later)                                   # one row per target: replaced
    with State(path) as state:
        assert state.ban("203.0.113.7") == later
        assert state.ban("192.0.2.1") is None
        assert [r.target for r in state.bans()] == ["2001:db8:1:2::/64", "203.0.113.7"]
        assert state.ban("2001:db8:1:2::/64").duration is None
        assert later.duration == 14400


def test_live_bans_at_a_time(path):
    with State(path) as state:
        state.record_bans([record("192.0.2.1", end=T0 + 10), record("192.0.2.2", end=T0 + 20),
                           record("192.0.2.3", end=None), record("192.0.2.4", outcome="dry_run")])
        assert [r.target for r in state.live_bans(T0 + 10)] == ["192.0.2.2", "192.0.2.3"]
        assert [r.target for r in state.live_bans(T0 + 10**9)] == ["192.0.2.3"]
        assert [r.target for r in state.live_bans(T0, outcome="dry_run")] == ["192.0.2.4"]
        assert len(state.live_bans(T0, outcome=None)) == 4
        assert record("192.0.2.1", end=T0 + 10).live(T0 + 9) and not record(end=T0 + 10).live(T0 + 10)


def test_ban_count_since_a_time_outlives_unbans(path):
    with State(path) as state:
        for i in range(4):
            state.record_ban(record(start=T0 + 1000 * i, end=T0 + 1000 * i + 60, count=i + 1))
        state.record_ban(record("192.0.2.1"))
        assert state.ban_count("203.0.113.7", T0) == 4
        assert state.ban_count("203.0.113.7", T0 + 1000) == 3
        assert state.ban_count("203.0.113.7", T0 + 3001) == 0
        assert state.remove_ban("203.0.113.7") and not state.remove_ban("203.0.113.7")
        assert state.ban("203.0.113.7") is None
        assert state.ban_count("203.0.113.7", T0) == 4            # the history is kept
        assert state.ban_count("198.51.100.1", 0) == 0


def test_remove_lapsed(path):
    with State(path) as state:
        state.record_bans([record("192.0.2.1", start=T0, end=T0 + 10),
                           record("192.0.2.2", start=T0 + 5, end=None)])
        assert state.remove_lapsed(T0 + 10) == 1
        assert [r.target for r in state.bans()] == ["192.0.2.2"]
        assert state.ban_count("192.0.2.1", 0) == 1
        assert state.remove_lapsed(T0 + 10, history_before=T0 + 1) == 1   # .1's history entry
        assert state.ban_count("192.0.2.1", 0) == 0 and state.ban_count("192.0.2.2", 0) == 1


def test_transaction_commits_positions_and_bans_together(path):
    with State(path) as state:
        with pytest.raises(RuntimeError):
            with state.transaction():
                state.save_position("mail", Position(1, 2, 3, "abc"))
                state.record_ban(record())                        # nested: joins the outer one
                raise RuntimeError("crash between the two")
        assert state.load_position("mail") is None and state.bans() == []
        assert state.ban_count("203.0.113.7", 0) == 0
        with state.transaction():
            state.save_position("mail", Position(1, 2, 3, "abc"))
            state.record_ban(record())
    with State(path) as state:
        assert state.load_position("mail") == Position(1, 2, 3, "abc")
        assert state.ban("203.0.113.7") == record()


def test_memory_database_holds_bans():
    with State(":memory:") as state:
        state.record_ban(record())
        assert state.live_bans(T0) == [record()]


def test_a_hundred_thousand_bans_are_recorded_and_read_back_quickly(path):
    records = [record(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", end=T0 + 3600 + i) for i in range(100_000)]
    with State(path) as state:
        started = time.perf_counter()
        assert state.record_bans(records) == 100_000
        recorded = time.perf_counter() - started
    with State(path) as state:
        started = time.perf_counter()
        live = state.live_bans(T0)
        read = time.perf_counter() - started
    assert len(live) == 100_000 and {r.target: r for r in live}[records[12345].target] == records[12345]
    assert recorded < 3 and read < 3, (recorded, read)          # about a second each, on a slow box


def test_bans_alike_are_recorded_with_their_history_and_counts(path):
    with State(path) as state:
        state.record_ban(record("192.0.2.1", start=T0 - 100))
        state.record_ban(record("192.0.2.1", start=T0 - 10_000))     # before the look-back
        assert state.record_bans_alike(["192.0.2.1", "2001:db8::/64"], T0, T0 + 600, "blocklist", "manual",
                                       counted_since=T0 - 1000) == 2
        assert state.record_bans_alike(["192.0.2.2"], T0, None, "blocklist", "manual") == 1
        assert state.record_bans_alike([], T0, None, "blocklist", "manual") == 0
        assert state.bans() == [
            BanRecord("192.0.2.1", T0, T0 + 600, "blocklist", 0.0, {}, None, 2, "manual", "ban"),
            BanRecord("192.0.2.2", T0, None, "blocklist", 0.0, {}, None, 1, "manual", "ban"),
            BanRecord("2001:db8::/64", T0, T0 + 600, "blocklist", 0.0, {}, None, 1, "manual", "ban")]
        assert state.history("2001:db8::/64") == [
            {"start": T0, "duration": 600.0, "reason": "blocklist", "origin": "manual", "outcome": "ban"}]
        assert state.ban_count("192.0.2.1", 0) == 3


def test_earlier_bans_join_the_history_before_the_ban_and_count(path):
    with State(path) as state:
        state.record_bans_alike(["192.0.2.1", "192.0.2.2"], T0, T0 + 600, "imported", "manual",
                                counted_since=T0 - 1000, earlier=[(T0 - 500, 300.0), (T0 - 5000, None)])
        assert [r.count for r in state.bans()] == [2, 2]     # the one before the look-back does not count
        assert state.history("192.0.2.2") == [
            {"start": T0, "duration": 600.0, "reason": "imported", "origin": "manual", "outcome": "ban"},
            {"start": T0 - 500, "duration": 300.0, "reason": "imported", "origin": "manual", "outcome": "ban"},
            {"start": T0 - 5000, "duration": None, "reason": "imported", "origin": "manual", "outcome": "ban"}]
        assert state.ban_count("192.0.2.1", 0) == 3


def test_live_ends_are_the_live_bans_targets_and_ends(path):
    with State(path) as state:
        state.record_bans([record("192.0.2.1", end=T0 + 10), record("192.0.2.2", end=None),
                           record("192.0.2.3", end=T0 - 1), record("192.0.2.4", outcome="dry_run")])
        assert state.live_ends(T0) == {"192.0.2.1": T0 + 10, "192.0.2.2": None}
        assert state.live_ends(T0, outcome=None) == {"192.0.2.1": T0 + 10, "192.0.2.2": None,
                                                     "192.0.2.4": T0 + 3600}
        assert state.live_ends(T0) == {r.target: r.end for r in state.live_bans(T0)}


def test_created_says_whether_this_open_made_the_database(path):
    with State(path) as state:
        assert state.created
    with State(path) as state:
        assert not state.created
    path.write_bytes(b"not a database" * 100)
    with State(path) as state:
        assert state.created and state.moved_aside is not None


# --- a disk that fills up ---

@pytest.fixture
def disk(tmp_path):
    if why := disk_missing():
        pytest.skip(why)
    with small_disk(tmp_path / "disk") as d:
        yield d


def _ban(target: str) -> BanRecord:
    return BanRecord(target, clock(), clock() + 3600, "auth", 5.0, {"postfix/sasl": 5}, None, 1, "auto")


def test_writes_a_full_disk_refuses_wait_in_memory_and_are_written_once_it_has_room(disk, caplog):
    path = disk.path / "state.db"
    state = State(path, clock=clock)
    state.save_position("mail", Position(1, 2, 100, "abc"))
    disk.fill()
    for n in range(1, 4):                   # each chunk: its bans and the position after it
        with state.transaction():
            state.record_bans([_ban(f"192.0.2.{n}")])
            state.save_position("mail", Position(1, 2, 100 + n, "abc"))
    assert state.unwritten == 7             # three bans of two rows each, and the latest position
    assert "full" in state.write_error
    assert sum("cannot write the state database" in r.message for r in caplog.records) == 1
    # This connection still reads what waits: decisions see the bans, a repair restores them.
    assert set(state.live_ends(clock())) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
    assert state.load_position("mail") == Position(1, 2, 103, "abc")
    assert state.ban_count("192.0.2.2", 0) == 1
    assert not state.retry()
    disk.free()
    assert state.retry() and state.unwritten == 0 and state.write_error is None
    state.close()
    with State(path, clock=clock) as again:
        assert set(again.live_ends(clock())) == {"192.0.2.1", "192.0.2.2", "192.0.2.3"}
        assert again.load_position("mail") == Position(1, 2, 103, "abc")
        assert again.ban_count("192.0.2.2", 0) == 1      # written once, not once per retry


def test_a_failed_body_drops_only_its_own_writes_while_others_wait(disk):
    state = State(disk.path / "state.db", clock=clock)
    disk.fill()
    state.record_bans([_ban("192.0.2.1")])
    with pytest.raises(KeyError), state.transaction():
        state.record_bans([_ban("192.0.2.2")])
        raise KeyError("a bug")
    assert set(state.live_ends(clock())) == {"192.0.2.1"}
    disk.free()
    assert state.retry()
    assert set(state.live_ends(clock())) == {"192.0.2.1"}
    state.close()


def test_a_stop_while_the_disk_is_full_says_what_is_lost_and_leaves_a_sound_database(disk, caplog):
    path = disk.path / "state.db"
    state = State(path, clock=clock)
    state.record_bans([_ban("192.0.2.1")])
    disk.fill()
    state.record_bans([_ban("192.0.2.2")])
    state.close()
    assert "2 change(s) could not be written" in caplog.text
    disk.free()
    with State(path, clock=clock) as again:
        assert again.moved_aside is None
        assert set(again.live_ends(clock())) == {"192.0.2.1"}
