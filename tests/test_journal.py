"""The journal source against real journal files, written by systemd's own code (systemd-journal-remote,
`tests/journals.py`): the lines the filters see, exactly once across restarts and `kill -9`, rotation
and vacuuming, a corrupted file, binary and hostile MESSAGEs, and the daemon woken by the journal."""

from __future__ import annotations

import calendar
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from adaptive import config
from adaptive.config import SHIPPED_FILTERS
from adaptive.daemon import Daemon
from adaptive.filters.engine import Engine
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import load_directory
from adaptive.sources import JOURNAL, JournalSource, open_source

import journals
from journals import Entry, failures, write
from netns import PYTHON, wait_for
from test_sources import MemoryStore

pytestmark = pytest.mark.skipif(journals.missing() is not None, reason=str(journals.missing()))

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "adaptive.toml"
T0 = calendar.timegm((2026, 12, 4, 10, 0, 1)) * 1_000_000 + 123456     # 2026-12-04T10:00:01.123456Z


def drain(source: JournalSource, commit: bool = True) -> bytes:
    data = b""
    for _ in range(10_000):
        chunks = source.poll()
        if not chunks:
            return data
        for chunk in chunks:
            assert chunk.source == source.name and chunk.position.device == JOURNAL
            data += chunk.data
            if commit:
                source.commit(chunk)
    raise AssertionError("the source never caught up")


def lines(data: bytes) -> list[bytes]:
    return data.splitlines()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


# --- what the engine sees ---

def test_an_entry_is_the_syslog_line_a_file_would_hold_and_every_filter_reads_it(tmp_path, store):
    write(tmp_path, [Entry("postfix/smtpd", 812, "warning: unknown[203.0.113.7]: SASL LOGIN authentication "
                           "failed: UGFzc3dvcmQ6", realtime=T0),
                     Entry("dovecot", 77, "auth: pam(info,198.51.100.4,<x>): pam_authenticate() failed: "
                           "Authentication failure (password mismatch?)", realtime=T0 + 1),
                     Entry("postfix/smtpd", 812, "connect from unknown[203.0.113.7]", realtime=T0 + 2,
                           unit="postfix@-.service", host="mx2")])
    source = JournalSource("journal", store, directory=tmp_path, start="beginning")
    data = drain(source)
    assert lines(data)[0] == (b"2026-12-04T10:00:01.123456+00:00 mx1 postfix/smtpd[812]: warning: "
                              b"unknown[203.0.113.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")
    assert lines(data)[2].startswith(b"2026-12-04T10:00:01.123458+00:00 mx2 postfix/smtpd[812]: connect")
    events = [e for _, e in Engine(load_directory(SHIPPED_FILTERS), YearGuess()).scan(data)]
    assert [(e.family, e.ip, e.time) for e in events][:2] == [
        ("postfix", "203.0.113.7", T0 / 1e6), ("dovecot", "198.51.100.4", (T0 + 1) / 1e6)]
    assert store.positions["journal"].offset == T0 + 2
    source.close()


def test_only_the_matching_entries_are_read_and_matches_are_ored(tmp_path, store):
    write(tmp_path, [Entry("postfix/smtpd", 1, "one", unit="postfix@-.service"),
                     Entry("sshd", 2, "two", unit="ssh.service", facility=4),
                     Entry("dovecot", 3, "three", unit="dovecot.service")])
    source = JournalSource("j", store, directory=tmp_path, start="beginning",
                           matches=["_SYSTEMD_UNIT=ssh.service", "_PID=3"])
    assert [line.split(b": ", 1)[1] for line in lines(drain(source))] == [b"two", b"three"]
    source.close()


def test_a_newline_in_a_message_forges_no_line_and_binary_stays_bytes(tmp_path, store):
    forged = ("hello\nDec  4 10:00:01 mx postfix/smtpd[1]: warning: unknown[9.9.9.9]: SASL LOGIN authentication "
              "failed: UGFzc3dvcmQ6\r\n")
    write(tmp_path, [Entry("postfix/smtpd", 1, forged, realtime=T0), Entry("postfix/smtpd", 2, b"\xff\xfe\x00bin",
                                                                          realtime=T0 + 1),
                     Entry("postfix/smtpd", 3, "rip=1.2.3.4 [9.9.9.9] connect from", realtime=T0 + 2)])
    source = JournalSource("j", store, directory=tmp_path, start="beginning")
    data = drain(source)
    assert len(lines(data)) == 3 and data.count(b"\n") == 3
    assert lines(data)[1].endswith(b"postfix/smtpd[2]: \xff\xfe\x00bin")
    assert Engine(load_directory(SHIPPED_FILTERS), YearGuess()).scan(data) == []
    source.close()


def test_a_field_given_twice_is_read_by_its_first_value_and_an_empty_message_kept(tmp_path, store):
    write(tmp_path, [Entry("postfix/smtpd", 5, "second", fields={"MESSAGE": "first", "SYSLOG_IDENTIFIER": "other"}),
                     Entry("postfix/smtpd", 6, "", fields={"CODE_FILE": "x.c"})])
    source = JournalSource("j", store, directory=tmp_path, start="beginning")
    assert [line.split(b" ", 2)[2] for line in lines(drain(source))] == [b"postfix/smtpd[5]: first",
                                                                        b"postfix/smtpd[6]: "]
    source.close()


def test_a_message_longer_than_max_line_is_discarded_and_counted(tmp_path, store):
    write(tmp_path, [Entry("postfix/smtpd", 1, "x" * 5000), Entry("postfix/smtpd", 1, "short")])
    source = JournalSource("j", store, directory=tmp_path, start="beginning", max_line=4096)
    assert lines(drain(source))[0].endswith(b"short") and source.discarded_lines == 1
    source.close()


# --- where to start, and exactly once ---

def test_start_end_skips_history_and_a_restart_resumes_after_the_last_commit(tmp_path, store):
    write(tmp_path, failures("203.0.113.1", 3))
    source = JournalSource("j", store, directory=tmp_path, start="end")
    assert drain(source) == b"" and store.positions["j"].device == JOURNAL
    write(tmp_path, failures("203.0.113.2", 2))
    assert len(lines(drain(source))) == 2
    source.close()
    write(tmp_path, failures("203.0.113.3", 4))          # while it is down
    again = JournalSource("j", store, directory=tmp_path, start="end")
    assert [line.count(b"203.0.113.3") for line in lines(drain(again))] == [1, 1, 1, 1]
    assert drain(again) == b""
    again.close()


def test_an_uncommitted_chunk_is_read_again_and_none_twice(tmp_path, store):
    write(tmp_path, [Entry("postfix/smtpd", 1, f"line {n}", realtime=T0 + n) for n in range(50)])
    source = JournalSource("j", store, directory=tmp_path, start="beginning", max_entries=7)
    got = b""
    for _ in range(3):
        chunk, = source.poll()
        got += chunk.data
        source.commit(chunk)
    source.poll()                                        # read, never committed: a crash here
    source.close()
    again = JournalSource("j", store, directory=tmp_path, start="beginning", max_entries=7)
    got += drain(again)
    assert [int(line.rsplit(b" ", 1)[1]) for line in lines(got)] == list(range(50))
    again.close()


KILLED_READER = textwrap.dedent("""
    import select, sqlite3, sys
    from adaptive.sources import JournalSource, Position

    class Store:
        # Positions and the lines read, in one SQLite transaction per chunk: as the daemon's state.
        def __init__(self, path):
            self.db = sqlite3.connect(path, isolation_level=None)
            # A process killed loses nothing of a committed transaction, synced or not (the OS has it).
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = OFF")
            self.db.execute("CREATE TABLE IF NOT EXISTS pos (name PRIMARY KEY, d, i, o, f)")
            self.db.execute("CREATE TABLE IF NOT EXISTS seen (line)")
        def load_position(self, name):
            row = self.db.execute("SELECT d, i, o, f FROM pos WHERE name = ?", (name,)).fetchone()
            return row and Position(*row)
        def save_position(self, name, p):
            self.db.execute("INSERT OR REPLACE INTO pos VALUES (?, ?, ?, ?, ?)", (name, p.device, p.inode, p.offset,
                            p.fingerprint))

    store = Store(sys.argv[2])
    source = JournalSource("j", store, directory=sys.argv[1], start="beginning", max_entries=10)
    while True:
        chunks = source.poll()
        if not chunks:
            select.select(source.descriptors(), [], [], 0.01)
        for chunk in chunks:
            store.db.execute("BEGIN")
            store.db.executemany("INSERT INTO seen VALUES (?)", [(l,) for l in chunk.data.splitlines()])
            source.commit(chunk)
            store.db.execute("COMMIT")
""")


def test_kill_9_during_a_burst_loses_and_repeats_no_entry(tmp_path):
    journal, db = tmp_path / "journal", tmp_path / "seen.db"
    script = tmp_path / "reader.py"
    script.write_text(KILLED_READER)
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE seen (line)")

    def seen() -> int:
        with sqlite3.connect(db) as c:
            return int(c.execute("SELECT count(*) FROM seen").fetchone()[0])

    readers: list[subprocess.Popen[bytes]] = []

    def reader_process() -> subprocess.Popen[bytes]:
        readers.append(subprocess.Popen([str(PYTHON), str(script), str(journal), str(db)], stderr=subprocess.PIPE))
        return readers[-1]

    try:
        kill_during_bursts(journal, seen, reader_process)
    finally:
        for reader in readers:          # whatever failed: none outlives the test
            reader.kill()
            reader.wait()
    got = [int(row[0].rsplit(b" ", 1)[1]) for row in sqlite3.connect(db).execute("SELECT line FROM seen")]
    assert sorted(got) == list(range(60_000))         # every entry once: none lost, none twice


def kill_during_bursts(journal: Path, seen: Callable[[], int],
                       reader_process: Callable[[], subprocess.Popen[bytes]]) -> None:
    """Three bursts of 20,000 entries, a reader killed in the middle of each, then one that finishes."""
    total, cut_short = 0, 0
    for _ in range(3):
        reader = reader_process()
        # The burst goes into the journal while the reader reads it; the kill comes in the middle.
        burst = [Entry("postfix/smtpd", 1, f"entry {total + n}", realtime=T0 + total + n) for n in range(20_000)]
        writer = threading.Thread(target=write, args=(journal, burst))
        writer.start()
        before = total
        total += len(burst)
        assert wait_for(lambda b=before, r=reader: seen() > b + 500 or r.poll() is not None,  # type: ignore[misc]
                        timeout=30, interval=0.005)
        reader.send_signal(signal.SIGKILL)
        assert reader.wait(10) == -signal.SIGKILL, reader.stderr.read().decode() if reader.stderr else ""
        cut_short += seen() < total
        writer.join()
    assert cut_short, "no kill landed before the reader had read its burst: nothing was tested"
    final = reader_process()
    assert wait_for(lambda: seen() >= total or final.poll() is not None, timeout=30)


# --- rotation, vacuum, corruption ---

def test_a_new_journal_file_is_read_at_once_and_wakes_the_reader(tmp_path, store):
    write(tmp_path, failures("203.0.113.1", 2), file="system@1.journal")
    source = JournalSource("j", store, directory=tmp_path, start="beginning")
    assert len(lines(drain(source))) == 2
    fds = source.descriptors()
    assert fds and select.select(fds, [], [], 0)[0] == []
    write(tmp_path, failures("203.0.113.2", 3), file="system@2.journal")    # rotation: a new file
    assert select.select(fds, [], [], 5)[0] == list(fds)                     # the journal woke us
    assert [b"203.0.113.2" in line for line in lines(drain(source))] == [True] * 3
    assert source.rotations >= 1
    write(tmp_path, failures("203.0.113.3", 1), file="system@2.journal")    # and it is followed on
    assert b"203.0.113.3" in drain(source)
    source.close()


def test_a_vacuumed_cursor_resumes_at_the_first_entry_after_it_said(tmp_path, store, caplog):
    old = write(tmp_path, [Entry("postfix/smtpd", 1, f"old {n}", realtime=T0 + n) for n in range(5)],
                file="system@1.journal")
    source = JournalSource("j", store, directory=tmp_path, start="beginning")
    drain(source)
    source.close()
    write(tmp_path, [Entry("postfix/smtpd", 1, f"new {n}", realtime=T0 + 100 + n) for n in range(3)],
          file="system@2.journal")
    old.unlink()                               # vacuumed while we were down (journalctl --vacuum-files)
    again = JournalSource("j", store, directory=tmp_path, start="end")
    with caplog.at_level("WARNING"):
        got = drain(again)
    assert [line.rsplit(b": ", 1)[1] for line in lines(got)] == [b"new 0", b"new 1", b"new 2"]
    assert "the saved journal cursor is gone" in caplog.text
    again.close()


def test_a_file_vacuumed_while_reading_is_survived(tmp_path, store):
    old = write(tmp_path, failures("203.0.113.1", 3), file="system@1.journal")
    source = JournalSource("j", store, directory=tmp_path, start="beginning")
    drain(source)
    write(tmp_path, failures("203.0.113.2", 2), file="system@2.journal")
    old.unlink()
    assert [b"203.0.113.2" in line for line in lines(drain(source))] == [True, True]
    source.close()


def test_a_corrupted_journal_file_does_not_stop_the_source(tmp_path, store):
    write(tmp_path, failures("203.0.113.1", 2), file="system@1.journal")
    source = JournalSource("j", store, directory=tmp_path, start="beginning")
    drain(source)
    bad = tmp_path / "system@2.journal"
    write(tmp_path, failures("203.0.113.2", 50), file=bad.name)
    with open(bad, "r+b") as f:                # garbage over the middle of its entries
        f.seek(os.path.getsize(bad) // 3)
        f.write(os.urandom(4096))
    (tmp_path / "system@3.journal").write_bytes(b"LPKSHHRH" + os.urandom(10_000))   # a header, then noise
    write(tmp_path, failures("203.0.113.3", 2), file="system@4.journal")
    data = drain(source)
    assert data.count(b"203.0.113.3") == 2 and source.error is None
    drain(source)
    source.close()


def test_a_missing_directory_is_an_error_until_it_appears(tmp_path, store):
    source = JournalSource("j", store, directory=tmp_path / "later", start="beginning")
    assert source.poll() == [] and "no such directory" in (source.error or "")
    write(tmp_path / "later", failures("203.0.113.1", 1))
    assert b"203.0.113.1" in drain(source) and source.error is None
    source.close()


def test_reread_gives_the_entries_between_two_committed_positions(tmp_path, store):
    write(tmp_path, [Entry("postfix/smtpd", 1, f"e {n}", realtime=T0 + n) for n in range(10)])
    source = JournalSource("j", store, directory=tmp_path, start="beginning", max_entries=4)
    chunk = source.poll()[0]
    source.commit(chunk)
    since = chunk.position
    drain(source)
    until = store.positions["j"]
    assert lines(b"".join(source.reread(since, until)))[0].endswith(b"e 4")
    assert len(lines(b"".join(source.reread(since, until)))) == 6
    assert len(lines(b"".join(source.reread(None, until)))) == 10
    assert list(source.reread(until, until)) == []
    source.close()


# --- in the daemon ---

def journal_daemon(tmp_path: Path, journal: Path, seen: list[str]) -> Daemon:
    local = tmp_path / "local.toml"
    local.write_text(f'[sources.mail]\nenabled = false\n[sources.journal]\ntype = "journal"\ndirectory = "{journal}"\n'
                     f'start = "beginning"\n[state]\npath = "{tmp_path / "state.db"}"\n[metrics]\nlisten = ""\n')
    cfg = config.load([SHIPPED, local], dropins=None)
    daemon = Daemon(cfg, enforce=False, control=False, on_event=lambda e: seen.append(e.ip))
    daemon.start()
    return daemon


def test_the_daemon_follows_the_journal_and_counts_each_entry_once_across_restarts(tmp_path):
    journal = tmp_path / "journal"
    write(journal, failures("203.0.113.1", 2))
    seen: list[str] = []
    daemon = journal_daemon(tmp_path, journal, seen)
    assert daemon.poll_once() == 2
    write(journal, failures("203.0.113.2", 1))
    assert daemon.poll_once() == 1
    from adaptive.daemon import ops
    status, = ops.status(daemon)["sources"]
    assert status["lag_unit"] == "seconds" and status["lag"] == 0 and status["path"].startswith("journal ")
    daemon.close()
    write(journal, failures("203.0.113.3", 3))
    again = journal_daemon(tmp_path, journal, seen)
    assert again.poll_once() == 3 and again.poll_once() == 0
    again.close()
    assert seen == ["203.0.113.1"] * 2 + ["203.0.113.2"] + ["203.0.113.3"] * 3


def test_the_daemons_sleep_is_woken_by_the_journal(tmp_path):
    from adaptive.daemon.loop import _Waker
    journal = tmp_path / "journal"
    write(journal, failures("203.0.113.1", 1))
    seen: list[str] = []
    daemon = journal_daemon(tmp_path, journal, seen)
    daemon.poll_once()
    fds = [fd for f in daemon.followers for fd in f.source.descriptors()]
    waker = _Waker()
    assert fds and waker.wait(0, fds) is False
    write(journal, failures("203.0.113.2", 1))
    started = time.monotonic()
    assert waker.wait(10, fds) is True and time.monotonic() - started < 5
    assert daemon.poll_once() == 1 and waker.wait(0, fds) is False      # what woke it was taken
    waker.close()
    daemon.close()


def test_a_file_source_falls_back_to_the_journal_when_its_file_does_not_exist(tmp_path, store, caplog):
    journal = tmp_path / "journal"
    write(journal, failures("203.0.113.1", 1))
    section = config.build({"sources": {"mail": {"path": str(tmp_path / "mail.log"), "fallback": "journal",
                                                 "directory": str(journal), "start": "beginning"}}}, {}).sources["mail"]
    with caplog.at_level("WARNING"):
        source = open_source("mail", section, store, max_chunk=1 << 20)
    assert isinstance(source, JournalSource)
    assert source.where.endswith(f"as {tmp_path / 'mail.log'} does not exist")
    assert "reading this host's journal instead" in caplog.text
    assert b"203.0.113.1" in drain(source)
    assert source.reconfigure(section)                       # a reload with the file still missing: stays
    (tmp_path / "mail.log").write_text("")
    assert not source.reconfigure(section)                   # the file is there now: a file source
    source.close()
    file_source = open_source("mail", section, store, max_chunk=1 << 20)
    assert file_source.where == str(tmp_path / "mail.log") and file_source.place() is not None
    file_source.close()


def test_check_ready_counts_a_journal_source_as_a_log_to_read(tmp_path):
    local = tmp_path / "j.toml"
    local.write_text(f'[sources.mail]\nenabled = false\n[sources.journal]\ntype = "journal"\n'
                     f'directory = "{tmp_path}"\n[state]\npath = "{tmp_path / "s.db"}"\n')
    result = subprocess.run([str(PYTHON), "-m", "adaptive", "check-config", "-c", str(SHIPPED), "-c", str(local),
                             "--dropins", "", "--ready"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr



# --- journald itself ---

@pytest.fixture
def journald(tmp_path):
    if journals.JOURNALD is None:
        pytest.skip("systemd-journald is not installed")
    with journals.Journald(tmp_path / "journald") as j:
        yield j


def until_read(source: JournalSource, n: int, timeout: float = 10) -> list[bytes]:
    """Poll until `n` lines came (journald may store an entry a moment after it was sent)."""
    got: list[bytes] = []
    assert wait_for(lambda: len(got.__iadd__(lines(drain(source)))) >= n, timeout=timeout, interval=0.01), got
    return got


def test_journalds_entries_read_as_the_file_rsyslog_would_write(journald, store):
    journald.syslog("postfix/smtpd", 812, "warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: x")
    journald.syslog("dovecot", 77, "imap-login: Disconnected (auth failed, 3 attempts in 9 secs): user=<info>, "
                    "method=PLAIN, rip=198.51.100.4, lip=192.0.2.1, TLS, session=<abc>")
    source = JournalSource("journal", store, directory=journald.directory, start="beginning")
    got = until_read(source, 2)
    assert got[0].split(b" ", 2)[2] == (b"postfix/smtpd[812]: warning: unknown[203.0.113.7]: SASL LOGIN "
                                        b"authentication failed: x")
    events = [e for _, e in Engine(load_directory(SHIPPED_FILTERS), YearGuess()).scan(b"\n".join(got) + b"\n")]
    assert [(e.family, e.ip) for e in events] == [("postfix", "203.0.113.7"), ("dovecot", "198.51.100.4")]
    assert abs(events[0].time - time.time()) < 60
    source.close()


def test_journald_rotating_during_a_burst_loses_and_repeats_nothing(journald, store):
    source = JournalSource("journal", store, directory=journald.directory, start="end")
    drain(source)
    got: list[bytes] = []
    for n in range(600):
        journald.syslog("postfix/smtpd", 1, f"entry {n}")
        if n % 200 == 100:
            journald.rotate()
        if n % 50 == 0:
            got += lines(drain(source))
    got += until_read(source, 600 - len(got))
    assert [int(line.rsplit(b" ", 1)[1]) for line in got] == list(range(600))
    assert source.rotations >= 3 and len(list(journald.directory.glob("system@*.journal"))) >= 3
    source.close()


def test_journald_killed_and_restarted_loses_and_repeats_nothing(journald, store):
    source = JournalSource("journal", store, directory=journald.directory, start="beginning")
    got: list[bytes] = []
    for n in range(300):
        journald.syslog("postfix/smtpd", 1, f"entry {n}")
    got += until_read(source, 100)
    # Once journald has stored them all (what it had not taken from its socket would die with it):
    assert wait_for(lambda: journald.entries() >= 300, timeout=10)
    journald.stop(signal.SIGKILL)          # its file is left open and dirty: the next journald sets it aside
    journald.start()
    for n in range(300, 400):
        journald.syslog("postfix/smtpd", 1, f"entry {n}")
    got += until_read(source, 400 - len(got))
    assert [int(line.rsplit(b" ", 1)[1]) for line in got] == list(range(400))
    assert drain(source) == b""
    source.close()


def test_a_restart_after_a_vacuum_of_journalds_files_resumes_after_the_cursor_said(journald, store, caplog):
    source = JournalSource("journal", store, directory=journald.directory, start="beginning")
    for n in range(5):
        journald.syslog("postfix/smtpd", 1, f"old {n}")
    until_read(source, 5)
    source.close()
    journald.rotate()
    for n in range(3):
        journald.syslog("postfix/smtpd", 1, f"new {n}")
    assert wait_for(lambda: journald.entries() >= 8, timeout=10)
    journald.rotate()                      # both earlier files archived: the vacuum may take them
    # The oldest file goes (the active one counts as one of the two kept): the saved cursor with it.
    vacuum = subprocess.run(["journalctl", "--directory", str(journald.directory), "--vacuum-files=2"],
                            capture_output=True, text=True)
    assert vacuum.returncode == 0 and vacuum.stderr.count("Deleted archived journal") == 1, vacuum
    again = JournalSource("journal", store, directory=journald.directory, start="end")
    with caplog.at_level("WARNING"):
        got = drain(again)
    assert [line.rsplit(b": ", 1)[1] for line in lines(got) if b"postfix" in line] == [b"new 0", b"new 1", b"new 2"]
    assert "the saved journal cursor is gone" in caplog.text
    again.close()


def test_busy_poll_is_asked_for_only_while_entries_come(journald, store, monkeypatch):
    import adaptive.sources.journal as journal_module
    source = JournalSource("journal", store, directory=journald.directory, start="beginning", busy_poll=0.01)
    drain(source)
    assert source.hurry() is None              # nothing read yet: journald's own wake-up will do
    journald.syslog("postfix/smtpd", 1, "one")
    until_read(source, 1)
    assert source.hurry() == 0.01
    monkeypatch.setattr(journal_module, "BUSY_WINDOW", 0.0)
    assert source.hurry() is None              # quiet again
    off = JournalSource("off", store, directory=journald.directory, start="beginning", busy_poll=0)
    drain(off)
    assert off.hurry() is None
    source.close()
    off.close()


# --- check and replay ---

def adaptive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PYTHON), "-m", "adaptive", *args], capture_output=True, text=True, timeout=120)


def test_check_reads_the_journal_as_it_reads_files(tmp_path):
    now = time.time_ns() // 1000
    write(tmp_path, failures("203.0.113.1", 3, start=now - 7200 * 1_000_000)      # two hours ago
          + failures("203.0.113.2", 2, start=now)
          + [Entry("sshd", 9, "Accepted password", unit="ssh.service", facility=4)])
    result = adaptive("check", "--journal", "--directory", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"journal {tmp_path}: 5 lines read" in result.stdout and "events      5" in result.stdout
    recent = adaptive("check", "--journal", "--directory", str(tmp_path), "--since", "1h", "--json")
    assert [json.loads(line)["ip"] for line in recent.stdout.splitlines()] == ["203.0.113.2"] * 2
    assert json.loads(recent.stdout.splitlines()[0])["file"] == f"journal {tmp_path}"
    ssh = adaptive("check", "--journal", "--directory", str(tmp_path), "--match", "_SYSTEMD_UNIT=ssh.service")
    assert "1 lines read" in ssh.stdout and "events      0" in ssh.stdout
    missing = adaptive("check", "--journal", "--directory", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "cannot read: no such directory" in missing.stderr, missing
    assert adaptive("check").returncode == 2
    assert "go with --journal" in adaptive("check", "x.log", "--since", "1h").stderr
    assert "not a journal match" in adaptive("check", "--journal", "--match", "postfix").stderr


def test_replay_replays_the_journal_as_the_daemon_would_decide(tmp_path):
    write(tmp_path / "j", failures("203.0.113.9", 12))
    result = adaptive("replay", "-c", str(SHIPPED), "--dropins", "", "--journal", "--directory", str(tmp_path / "j"),
                      "--json")
    assert result.returncode == 0, result.stderr
    bans = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(b["target"], b["outcome"]) for b in bans][:1] == [("203.0.113.9", "ban")]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
