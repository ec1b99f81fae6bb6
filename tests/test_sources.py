"""Following a log file: every line once, in order, across rotations, truncations and restarts.

The tests drive `poll()` directly, so they are deterministic; only the watch test involves a thread,
and it waits on an Event with a deadline.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from adaptive.sources import Chunk, FileSource, JournalSource, Position, Watch, fingerprint
from adaptive.sources import file as file_module
from adaptive.state import State
from watchdog.events import FileModifiedEvent, FileSystemEvent


class MemoryStore:
    """A PositionStore in a dict."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}

    def load_position(self, source: str) -> Position | None:
        return self.positions.get(source)

    def save_position(self, source: str, position: Position) -> None:
        self.positions[source] = position


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def drain(source: FileSource, commit: bool = True) -> bytes:
    """Poll until caught up; the lines read, committing each chunk as the daemon would."""
    data = b""
    for _ in range(10000):
        chunks = source.poll()
        if not chunks:
            return data
        for chunk in chunks:
            assert chunk.source == source.name
            assert chunk.data == b"" or chunk.data.endswith(b"\n")
            data += chunk.data
            if commit:
                source.commit(chunk)
    raise AssertionError("poll() never caught up")


def inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "mail.log"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


# --- where to start ---

def test_start_end_skips_existing_lines_and_commits_that_point(log, store):
    log.write_bytes(b"old 1\nold 2\n")
    source = FileSource("mail", log, store, start="end")
    chunks = source.poll()
    assert [c.data for c in chunks] == [b""]          # nothing to read, but a position to save
    source.commit(chunks[0])
    assert store.positions["mail"].offset == 12
    append(log, b"new\n")
    assert drain(source) == b"new\n"


def test_start_end_keeps_the_line_being_written(log, store):
    log.write_bytes(b"old\nhalf")
    source = FileSource("mail", log, store, start="end")
    assert drain(source) == b""
    append(log, b" done\n")
    assert drain(source) == b"half done\n"


def test_start_beginning_reads_existing_lines(log, store):
    log.write_bytes(b"old 1\nold 2\n")
    source = FileSource("mail", log, store, start="beginning")
    assert drain(source) == b"old 1\nold 2\n"


def test_missing_file_is_reported_and_read_from_its_beginning_once_created(log, store):
    source = FileSource("mail", log, store, start="end")
    assert source.poll() == []
    assert source.error == f"{log}: does not exist (waiting for it)"
    assert source.position is None
    log.write_bytes(b"first\nsecond\n")                 # created after start: all of it is new
    assert drain(source) == b"first\nsecond\n"
    assert source.error is None


def test_missing_directory_is_reported_and_waited_for(tmp_path, store):
    path = tmp_path / "not-yet" / "mail.log"
    source = FileSource("mail", path, store)
    assert source.poll() == []
    assert source.error == f"{path}: does not exist (waiting for it)"
    path.parent.mkdir()
    path.write_bytes(b"1\n")
    assert drain(source) == b"1\n" and source.error is None


# --- resuming ---

def test_resume_at_saved_position(log, store):
    log.write_bytes(b"a\nb\n")
    first = FileSource("mail", log, store, start="beginning")
    assert drain(first) == b"a\nb\n"
    first.close()
    append(log, b"c\n")
    second = FileSource("mail", log, store, start="end")   # start only matters with nothing saved
    assert drain(second) == b"c\n"


def test_uncommitted_lines_are_read_again_after_restart(log, store):
    log.write_bytes(b"a\nb\n")
    first = FileSource("mail", log, store, start="beginning")
    assert drain(first, commit=False) == b"a\nb\n"          # read, then the daemon died
    first.close()
    second = FileSource("mail", log, store, start="beginning")
    assert drain(second) == b"a\nb\n"


def test_reused_inode_with_another_first_line_starts_at_zero(log, store):
    log.write_bytes(b"new file's first line\nsecond\n")
    device, ino = inode(log)
    # What a deleted file whose inode this one reused would have saved:
    store.positions["mail"] = Position(device, ino, 10, "fingerprint of another first line")
    source = FileSource("mail", log, store)
    assert drain(source) == b"new file's first line\nsecond\n"


def test_saved_offset_beyond_the_end_starts_at_zero(log, store):
    log.write_bytes(b"first\n")
    with open(log, "rb") as f:
        print_ = fingerprint(f.fileno())
    store.positions["mail"] = Position(*inode(log), 500, print_)
    assert drain(FileSource("mail", log, store)) == b"first\n"


# --- rotation ---

def test_rename_rotation_finishes_old_file_then_follows_new(log, store):
    log.write_bytes(b"1\n")
    source = FileSource("mail", log, store, start="beginning")
    assert drain(source) == b"1\n"
    append(log, b"2\n")
    log.rename(log.with_name("mail.log.1"))
    append(log.with_name("mail.log.1"), b"3\n")        # the logger still writes the old file
    log.write_bytes(b"4\n")
    assert drain(source) == b"2\n3\n4\n"
    assert source.rotations == 1
    assert store.positions["mail"] == Position(*inode(log), 2, source.position.fingerprint)


def test_rotation_waits_for_the_new_file_to_begin(log, store):
    log.write_bytes(b"1\n")
    source = FileSource("mail", log, store, start="beginning")
    drain(source)
    log.rename(log.with_name("mail.log.1"))
    log.write_bytes(b"")                               # logrotate `create`, logger not yet reopened
    assert drain(source) == b""
    append(log.with_name("mail.log.1"), b"2\n")         # written before the logger's reopen: kept
    assert drain(source) == b"2\n"
    append(log, b"3\n")
    assert drain(source) == b"3\n"
    assert source.rotations == 1


def test_rotation_while_down_finishes_the_rotated_file(log, store):
    log.write_bytes(b"1\n")
    drain(FileSource("mail", log, store, start="beginning"))
    append(log, b"2\n")                                # unread when the daemon stopped
    log.rename(log.with_name("mail.log.1"))
    log.write_bytes(b"3\n")
    assert drain(FileSource("mail", log, store)) == b"2\n3\n"


def test_rotation_while_down_finds_a_dated_sibling_and_skips_compressed_ones(log, store):
    log.write_bytes(b"1\n")
    drain(FileSource("mail", log, store, start="beginning"))
    append(log, b"2\n")
    dated = log.with_name("mail.log-20261124")
    log.rename(dated)
    log.write_bytes(b"3\n")
    assert drain(FileSource("mail", log, store)) == b"2\n3\n"

    append(log, b"4\n")                                # unread, then compressed while we were down
    os.link(log, log.with_name("mail.log.1.gz"))        # same inode, but a name we must not read
    log.unlink()
    log.write_bytes(b"5\n")
    assert drain(FileSource("mail", log, store)) == b"5\n"


def test_rotation_while_down_and_saved_file_gone_reads_current_from_zero(log, store):
    log.write_bytes(b"1\n")
    drain(FileSource("mail", log, store, start="beginning"))
    log.unlink()
    log.write_bytes(b"2\n")
    assert drain(FileSource("mail", log, store)) == b"2\n"


def test_copytruncate_starts_again_at_zero(log, store):
    log.write_bytes(b"1\n2\n")
    source = FileSource("mail", log, store, start="beginning")
    drain(source)
    log.with_name("mail.log.1").write_bytes(log.read_bytes())
    os.truncate(log, 0)
    append(log, b"3\n")
    assert drain(source) == b"3\n"
    assert source.truncations == 1


def test_truncated_and_refilled_past_offset_is_caught_by_fingerprint(log, store):
    log.write_bytes(b"1\n")
    source = FileSource("mail", log, store, start="beginning")
    drain(source)
    os.truncate(log, 0)
    append(log, b"a longer first line\n")             # now larger than our offset
    assert drain(source) == b"a longer first line\n"
    assert source.truncations == 1


def test_copytruncate_while_down(log, store):
    log.write_bytes(b"1\n2\n3\n")
    drain(FileSource("mail", log, store, start="beginning"))
    os.truncate(log, 0)
    append(log, b"4\n")
    assert drain(FileSource("mail", log, store)) == b"4\n"


def test_delete_and_recreate(log, store):
    log.write_bytes(b"1\n")
    source = FileSource("mail", log, store, start="beginning")
    drain(source)
    with open(log, "ab") as writer:                    # a logger holding the old file open
        log.unlink()
        assert drain(source) == b""
        assert source.error is None                    # deleted, not recreated: keep waiting
        writer.write(b"2\n")
        writer.flush()
        assert drain(source) == b"2\n"
        log.write_bytes(b"3\n")
        writer.write(b"4\n")                           # before the switch: still read
    assert drain(source) == b"4\n3\n"
    assert source.rotations == 1


def test_deleted_file_keeps_waiting_until_recreated(log, store):
    log.write_bytes(b"1\n")
    source = FileSource("mail", log, store, start="beginning")
    drain(source)
    log.unlink()
    for _ in range(3):
        assert source.poll() == []
    assert source.error is None
    log.write_bytes(b"2\n")
    assert drain(source) == b"2\n"


# --- lines ---

def test_half_written_line_is_kept_until_its_newline(log, store):
    log.write_bytes(b"")
    source = FileSource("mail", log, store, start="beginning")
    drain(source)
    append(log, b"one\ntw")
    assert drain(source) == b"one\n"
    assert store.positions["mail"].offset == 4           # the partial line is not counted
    append(log, b"o")
    assert drain(source) == b""
    append(log, b"\nthree\n")
    assert drain(source) == b"two\nthree\n"
    assert store.positions["mail"].offset == len(b"one\ntwo\nthree\n")


def test_half_written_first_line_has_no_fingerprint_yet(log, store):
    log.write_bytes(b"par")
    source = FileSource("mail", log, store, start="beginning")
    drain(source)
    assert store.positions["mail"].fingerprint == ""
    append(log, b"tial\n")
    drain(source)
    with open(log, "rb") as f:
        assert store.positions["mail"].fingerprint == fingerprint(f.fileno()) != ""


def test_huge_line_is_discarded_and_counted(log, store):
    log.write_bytes(b"")
    source = FileSource("mail", log, store, start="beginning", max_chunk=1000, max_line=100)
    drain(source)
    append(log, b"before\n" + b"x" * 5000)
    assert drain(source) == b"before\n"
    assert source.discarded_lines == 0                 # not over yet
    append(log, b"y" * 3000)
    assert drain(source) == b""
    append(log, b"z\nafter\n")
    assert drain(source) == b"after\n"
    assert source.discarded_lines == 1
    assert store.positions["mail"].offset == log.stat().st_size


def test_long_complete_lines_within_a_read_pass_through(log, store):
    line = b"y" * 300 + b"\n"
    log.write_bytes(line * 3)
    source = FileSource("mail", log, store, start="beginning", max_chunk=4096, max_line=100)
    assert drain(source) == line * 3                     # only a kept partial line is capped


def test_backlog_comes_in_slices_of_max_chunk(log, store):
    lines = b"".join(b"line %04d\n" % i for i in range(1000))
    log.write_bytes(lines)
    source = FileSource("mail", log, store, start="beginning", max_chunk=1000)
    chunks = source.poll()
    assert len(chunks) == 1 and len(chunks[0].data) <= 1000
    assert chunks[0].data + drain(source) == lines


def test_binary_and_nul_bytes_pass_through(log, store):
    garbage = bytes(range(256)).replace(b"\n", b"") + b"\x00\x00\xff\xfe\n" + b"\x00" * 10 + b"\n"
    log.write_bytes(garbage)
    source = FileSource("mail", log, store, start="beginning")
    assert drain(source) == garbage


def test_restarts_interleaved_with_rotations_lose_and_repeat_nothing(tmp_path, log):
    """The daemon's loop, killed and restarted between rotations: each line processed exactly once."""
    database = tmp_path / "state" / "state.db"
    counter = itertools.count()
    expected: list[bytes] = []
    processed: list[bytes] = []

    def write(path: Path, n: int, lost: bool = False) -> None:
        lines = [b"line %d" % next(counter) for _ in range(n)]
        append(path, b"".join(line + b"\n" for line in lines))
        if not lost:
            expected.extend(lines)

    def run(source: FileSource, crash_after: int | None = None) -> None:
        """Process and commit chunks until caught up, or die after `crash_after` chunks."""
        done = 0
        while chunks := source.poll():
            for chunk in chunks:
                if done == crash_after:
                    return                             # read, never processed nor committed
                processed.extend(chunk.data.splitlines())
                source.commit(chunk)
                done += 1

    def restart(crash_after: int | None = None) -> None:
        with State(database) as state:
            source = FileSource("mail", log, state, start="beginning", max_chunk=40)
            run(source, crash_after)
            source.close()

    def rotate() -> None:
        for n in (3, 2, 1):
            older = log.with_name(f"mail.log.{n}")
            if older.exists():
                older.rename(log.with_name(f"mail.log.{n + 1}"))
        log.rename(log.with_name("mail.log.1"))
        log.write_bytes(b"")

    write(log, 5)
    restart()
    write(log, 7)
    restart(crash_after=1)                             # dies mid-backlog
    restart()
    write(log, 3)
    rotate()                                           # rotated while down
    write(log, 4)
    restart()
    write(log, 3)
    restart(crash_after=0)

    with State(database) as state:                     # rotations while running
        source = FileSource("mail", log, state, start="beginning", max_chunk=40)
        run(source)
        write(log, 2)
        rotate()
        write(log.with_name("mail.log.1"), 2)           # before the logger reopened
        run(source)
        write(log, 3)
        run(source)
        write(log, 4)
        run(source)
        log.with_name("mail.log.1").write_bytes(log.read_bytes())   # copytruncate, caught up
        os.truncate(log, 0)
        write(log, 2)
        run(source, crash_after=0)
        source.close()

    restart()
    write(log, 2, lost=True)                           # deleted unread while down: gone with it
    log.unlink()
    restart()
    write(log, 3)
    restart()

    assert processed == expected
    assert len(expected) == 38


# --- errors ---

def test_permission_denied_is_reported_not_raised(log, store, monkeypatch):
    log.write_bytes(b"1\n")
    real_open = os.open

    def denied(path, *args, **kwargs):
        if Path(path) == log:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    # Tests run as root, which chmod cannot stop: refuse the open itself.
    monkeypatch.setattr(file_module.os, "open", denied)
    source = FileSource("mail", log, store, start="beginning")
    assert source.poll() == []
    assert source.error == f"{log}: Permission denied"
    monkeypatch.setattr(file_module.os, "open", real_open)
    assert drain(source) == b"1\n"                      # start="beginning" still applies
    assert source.error is None


def test_directory_at_path_is_reported_not_raised(log, store):
    log.mkdir()
    source = FileSource("mail", log, store, start="beginning")
    assert source.poll() == []
    assert source.error is not None and str(log) in source.error and "directory" in source.error
    log.rmdir()
    log.write_bytes(b"1\n")
    assert drain(source) == b"1\n"
    assert source.error is None


def test_commit_refuses_another_sources_chunk(log, store):
    source = FileSource("mail", log, store)
    with pytest.raises(ValueError):
        source.commit(Chunk("dovecot", b"", Position(1, 2, 0, "")))


def test_bad_start_is_refused(log, store):
    with pytest.raises(ValueError, match="start"):
        FileSource("mail", log, store, start="middle")


# --- fingerprint ---

def test_fingerprint_is_stable_as_the_file_grows(log):
    log.write_bytes(b"first line")
    with open(log, "rb") as f:
        assert fingerprint(f.fileno()) == ""
        append(log, b"\n")
        whole = fingerprint(f.fileno())
        append(log, b"second line\n")
        assert fingerprint(f.fileno()) == whole != ""


def test_fingerprint_of_a_very_long_first_line_is_its_head(log):
    log.write_bytes(b"x" * 10000)
    with open(log, "rb") as f:
        head = fingerprint(f.fileno())
        append(log, b"\n")
        assert fingerprint(f.fileno()) == head != ""


# --- watch ---

def test_watch_wakes_on_a_change_to_a_followed_file(log):
    log.write_bytes(b"")
    woken = []
    watch = Watch([log], on_change=lambda: woken.append(True))
    watch.start()
    try:
        assert watch.unwatched == set()
        append(log, b"1\n")
        assert watch.wait(timeout=10)                  # a deadline, not a sleep
        assert woken
    finally:
        watch.stop()


class _Opened(FileSystemEvent):
    """watchdog's FileOpenedEvent, which Debian 12's watchdog 2.2 does not have (nor sends)."""
    event_type = "opened"


def test_watch_concerns_the_file_and_its_rotated_siblings_only(tmp_path, log):
    watch = Watch([log])
    assert watch.concerns(str(log))
    assert watch.concerns(str(log.with_name("mail.log.1")))
    assert not watch.concerns(str(log.with_name("syslog")))
    assert not watch.concerns(str(tmp_path / "other" / "mail.log"))
    watch.on_any_event(_Opened(str(log)))      # our own poll opening the file
    assert not watch.changed.is_set()
    watch.on_any_event(FileModifiedEvent(str(log.with_name("syslog"))))
    assert not watch.changed.is_set()
    watch.on_any_event(FileModifiedEvent(str(log)))
    assert watch.changed.is_set()


def test_watch_picks_up_a_directory_created_later(tmp_path):
    log = tmp_path / "later" / "mail.log"
    watch = Watch([log])
    watch.start()
    try:
        assert watch.unwatched == {str(log.parent)}
        log.parent.mkdir()
        watch.refresh()
        assert watch.unwatched == set()
        log.write_bytes(b"1\n")
        assert watch.wait(timeout=10)
    finally:
        watch.stop()


# --- a log directory another user may write ---

def _as_nobody(*command: str) -> None:
    subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *command], check=True)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A log directory that the unprivileged user `nobody` may write, as a careless set-up has it (in
    /tmp: pytest's own directory is root's alone)."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as another user")
    top = Path(tempfile.mkdtemp(prefix="adaptive-shared-"))
    try:
        top.chmod(0o755)
        directory = top / "log"
        directory.mkdir()
        directory.chmod(0o1777)
        yield directory
    finally:
        shutil.rmtree(top)


def test_a_log_replaced_by_a_link_to_a_secret_is_refused_unless_links_are_followed(shared, store):
    secret = shared.parent / "shadow"
    secret.write_bytes(b"root:$y$j9T$secret:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    log = shared / "mail.log"
    _as_nobody("ln", "-s", str(secret), str(log))
    source = FileSource("mail", log, store, start="beginning", owners=(0,))
    assert drain(source) == b""
    assert source.error.startswith(f"{log}: is a symbolic link, refused") and "follow_symlinks" in source.error
    trusting = FileSource("mail", log, MemoryStore(), start="beginning", follow_symlinks=True)
    assert drain(trusting).startswith(b"root:")


def test_a_log_owned_by_another_user_is_refused_unless_owners_allow_anyone(shared, store):
    log = shared / "mail.log"
    _as_nobody("sh", "-c", f"echo 'Nov 24 10:00:01 mx postfix/smtpd[1]: forged' > {log}")
    source = FileSource("mail", log, store, start="beginning", owners=(0,))
    assert drain(source) == b""
    assert source.error == (f"{log}: is owned by nobody (uid 65534), who does not write logs here: refused "
                            "(owners in [sources.mail] names who may)")
    assert drain(FileSource("mail", log, MemoryStore(), start="beginning")) != b""   # owners empty: anyone


def test_a_sparse_hole_is_skipped_not_read_through(log, store, caplog):
    # `truncate -s +200G mail.log` by its owner: 200 GB of nothing took the daemon minutes to read through.
    log.write_bytes(b"before\n")
    source = FileSource("mail", log, store, start="beginning")
    assert drain(source) == b"before\n"
    os.truncate(log, log.stat().st_size + 200 * 1024**3)
    append(log, b"after\n")
    started = time.monotonic()
    assert drain(source) == b"after\n"
    assert time.monotonic() - started < 2
    skipped = [int(r.message.split("skipped a hole of ")[1].split()[0]) for r in caplog.records if "hole" in r.message]
    assert len(skipped) == 1 and 200 * 1024**3 - 8192 < skipped[0] <= 200 * 1024**3
    assert source.position.offset == log.stat().st_size


@pytest.mark.parametrize("name", ["{path}.{gen}", "{path}-2026112{gen:04d}"])
def test_a_storm_of_rotations_to_unique_names_loses_and_repeats_no_line(tmp_path, store, name):
    # 200 renames in 20 s at 2,000 lines/s lost up to 3,000 of 40,000 lines: a generation renamed away
    # before the reader looked at the path was never read.
    log = tmp_path / "mail.log"
    generations, per = 200, 200
    done = threading.Event()

    def write() -> None:
        n = 0
        for gen in range(generations):
            with open(log, "ab", buffering=0) as f:
                for _ in range(per):
                    f.write(b"line %d\n" % n)
                    n += 1
            if gen < generations - 1:
                os.rename(log, name.format(path=log, gen=gen))
        done.set()

    source = FileSource("mail", log, store, start="beginning")
    writer = threading.Thread(target=write)
    writer.start()
    data = b""
    while not done.is_set():
        data += drain(source)
    writer.join()
    data += drain(source)
    numbers = [int(line.split()[1]) for line in data.splitlines()]
    assert len(numbers) == len(set(numbers)), "a line read twice"
    assert sorted(numbers) == list(range(generations * per)), f"{generations * per - len(numbers)} lines lost"


def test_generations_rotated_away_while_the_path_was_awaited_are_read(log, store):
    # The source waited for a log that did not exist; before its next poll two generations came and
    # one went: both are new, and read in order.
    source = FileSource("mail", log, store, start="end")
    assert drain(source) == b"" and "does not exist" in source.error
    log.write_bytes(b"first\n")
    os.rename(log, f"{log}.1")
    log.write_bytes(b"second\n")
    assert drain(source) == b"first\nsecond\n"


def test_generations_rotated_away_before_the_first_poll_are_read(log, store):
    # The source was made, then (before its first poll) a generation was written and renamed away: it
    # is the source's own, as is the file at the path. It failed one run in five of the storm above.
    source = FileSource("mail", log, store, start="beginning")
    log.write_bytes(b"first\n")
    os.rename(log, f"{log}-20261124")
    log.write_bytes(b"second\n")
    assert drain(source) == b"first\nsecond\n"


# --- the Source protocol and the registry ---

def test_every_type_the_configuration_accepts_opens_a_source_and_no_other(tmp_path, store):
    from adaptive import config
    from adaptive.sources import SOURCE_TYPES, open_source
    assert set(SOURCE_TYPES) == set(config.SOURCE_TYPES)
    built = config.build({"sources": {"mail": {"type": "file", "path": str(tmp_path / "mail.log")}}}, {})
    source = open_source("mail", built.sources["mail"], store, max_chunk=4096)
    assert isinstance(source, FileSource) and source.where == str(tmp_path / "mail.log")
    assert source.max_chunk == 4096 and source.watched() == (tmp_path / "mail.log",)
    with pytest.raises(config.ConfigError, match=r"sources\.mail\.type"):
        config.build({"sources": {"mail": {"type": "pipe", "path": str(tmp_path / "mail.log")}}}, {})
    with pytest.raises(config.ConfigError, match=r"sources\.mail\.path: not a key of a source of type 'journal'"):
        config.build({"sources": {"mail": {"type": "journal", "path": str(tmp_path / "mail.log")}}}, {})
    with pytest.raises(config.ConfigError, match=r"sources\.mail\.match = \['postfix'\]: 'postfix' is not a journal"):
        config.build({"sources": {"mail": {"type": "journal", "match": ["postfix"]}}}, {})
    with pytest.raises(config.ConfigError, match=r"sources\.mail\.path is required"):
        config.build({"sources": {"mail": {"type": "file"}}}, {})
    with pytest.raises(config.ConfigError, match=r"sources\.b reads the same journal entries as sources\.a"):
        config.build({"sources": {"a": {"type": "journal"}, "b": {"type": "journal", "start": "beginning"}}}, {})
    built = config.build({"sources": {"j": {"type": "journal", "directory": str(tmp_path)}}}, {})
    source = open_source("j", built.sources["j"], store, max_chunk=4096)
    assert isinstance(source, JournalSource) and source.where.startswith(f"journal {tmp_path} (")
    assert source.max_chunk == 4096 and source.watched() == () and source.lag_unit == "seconds"
    source.close()


def test_reread_gives_the_committed_lines_between_two_positions_and_nothing_across_a_rotation(log, store):
    append(log, b"one\ntwo\n")
    source = FileSource("mail", log, store, start="beginning", max_chunk=8)
    drain(source)
    since = store.positions["mail"]
    append(log, b"three\nfour\n")
    drain(source)
    until = store.positions["mail"]
    assert b"".join(source.reread(since, until)) == b"three\nfour\n"
    assert all(part.endswith(b"\n") for part in source.reread(None, until))      # slices of whole lines
    assert b"".join(source.reread(None, until)) == b"one\ntwo\nthree\nfour\n"
    assert list(source.reread(until, until)) == []
    log.rename(log.with_suffix(".log.1"))
    append(log, b"five\n")
    drain(source)
    assert list(source.reread(until, store.positions["mail"])) == []               # another file
    assert source.lag() == 0


def test_reconfigure_takes_a_section_of_the_same_path_and_refuses_another(log, store, tmp_path):
    from adaptive import config
    source = FileSource("mail", log, store)
    same = config.build({"sources": {"mail": {"path": str(log), "follow_symlinks": True, "owners": [0]}}}, {})
    assert source.reconfigure(same.sources["mail"]) and source.follow_symlinks and source.owners == {0}
    other = config.build({"sources": {"mail": {"path": str(tmp_path / "other.log")}}}, {})
    assert not source.reconfigure(other.sources["mail"]) and source.path == log
