"""The daemon: logs followed, events scored, bans in the real kernel, operated over its socket.

Unit tests run the pipeline without the kernel (`enforce=False`). The rest run `adaptive run` as a
process inside a throwaway network namespace (`srv`), with clients connecting from another (`cli`):
failure lines appended to the log it follows get their source banned in the kernel; `adaptive ban`
and `unban` change the kernel; `kill -9` loses and repeats nothing; a broken config on SIGHUP is
refused and the old one keeps running; the socket refuses strangers and answers garbage.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from adaptive import config
from adaptive.addresses import read
from adaptive.daemon import Daemon, ops

from configs import write_local
from disk import missing as disk_missing
from disk import small_disk
from netns import PYTHON, Namespaces, connect, missing, serve, wait_for

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "adaptive.toml"
FAIL = "{when} mx postfix/smtpd[1]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n"


def fail(ip: str, when: str = "Nov 24 10:00:01") -> str:
    return FAIL.format(when=when, ip=ip)


def now_fail(ip: str) -> str:
    return fail(ip, time.strftime("%b %d %H:%M:%S"))


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


# --- the pipeline without the kernel ---

def offline(tmp_path: Path, seen: list[str], start: str = "beginning", state: Path | None = None) -> Daemon:
    cfg = config.load([SHIPPED, write_local(tmp_path, start=start, state=state)], dropins=None)
    daemon = Daemon(cfg, enforce=False, control=False, on_event=lambda e: seen.append(e.ip))
    daemon.start()
    return daemon


def test_events_once_across_restarts(tmp_path):
    log = tmp_path / "mail.log"
    append(log, fail("192.0.2.1") + "Nov 24 10:00:02 mx postfix/smtpd[1]: connect from x[192.0.2.9]\n")
    seen: list[str] = []
    daemon = offline(tmp_path, seen)
    assert daemon.poll_once() == 1
    append(log, fail("192.0.2.2") + fail("192.0.2.3")[:40])      # the second line is half written
    assert daemon.poll_once() == 1
    daemon.close()
    append(log, fail("192.0.2.3")[40:])                           # finished while we were down
    restarted = offline(tmp_path, seen)
    assert restarted.poll_once() == 1
    assert restarted.poll_once() == 0
    restarted.close()
    assert seen == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_a_log_that_does_not_exist_yet_is_waited_for(tmp_path):
    seen: list[str] = []
    daemon = offline(tmp_path, seen, start="end")
    assert daemon.poll_once() == 0
    append(tmp_path / "mail.log", fail("192.0.2.5"))              # created after start: read whole
    assert daemon.poll_once() == 1 and seen == ["192.0.2.5"]
    daemon.close()


def test_a_log_that_stays_missing_is_said_again_every_few_minutes(tmp_path, monkeypatch, caplog):
    import adaptive.daemon.loop as daemon_module
    seen: list[str] = []
    daemon = offline(tmp_path, seen, start="end")
    with caplog.at_level("WARNING"):
        daemon.poll_once()
        daemon._nag_sources()                       # the first look only notes the time
        assert "still" not in caplog.text
        monkeypatch.setattr(daemon_module, "SOURCE_NAG", 0.0)
        daemon._nag_sources()
    assert f"source mail: {tmp_path / 'mail.log'}: does not exist (waiting for it)" in caplog.text
    assert f"source mail: still {tmp_path / 'mail.log'}: does not exist" in caplog.text
    append(tmp_path / "mail.log", fail("192.0.2.5"))
    assert daemon.poll_once() == 1
    daemon._nag_sources()
    assert daemon._nagged == {}
    daemon.close()


def test_the_loop_is_woken_through_a_pipe_a_signal_handler_may_write_to():
    from adaptive.daemon.loop import _Waker
    waker = _Waker()
    assert waker.wait(0.01) is False
    for _ in range(100_000):           # far more than the pipe holds: a full pipe is a pending wake-up
        waker.poke()
    started = time.monotonic()
    assert waker.wait(5) is True and time.monotonic() - started < 1
    assert waker.wait(0.01) is False   # every poke taken by the one wait
    # A handler that interrupts the loop (here: raised on this thread, run at once) neither blocks nor
    # raises, and the wait that follows returns at once.
    previous = signal.signal(signal.SIGUSR1, lambda *_: waker.poke())
    try:
        signal.raise_signal(signal.SIGUSR1)
        assert waker.wait(5) is True
    finally:
        signal.signal(signal.SIGUSR1, previous)
    waker.close()
    waker.close()
    waker.poke()                       # after close: nothing, and no write to a reused descriptor


def test_a_backlog_is_read_a_bounded_slice_at_a_time_with_the_loop_woken_for_the_rest(tmp_path):
    # 200 GB to read (a hole, a runaway log) held the loop for minutes: no status, no signal obeyed.
    log = tmp_path / "mail.log"
    append(log, fail("192.0.2.1") * 100_000)           # 10 MB: ten slices of 1 MB
    daemon = offline(tmp_path, [])
    assert not daemon._waker.wait(0)
    first = daemon.poll_once(budget=0)
    assert 0 < first < 100_000 and daemon._waker.wait(0)   # one slice, and the loop asked to come back
    assert first + daemon.poll_once() == 100_000
    daemon.close()


def test_scores_survive_a_restart_and_a_changed_scoring_starts_afresh(tmp_path, caplog):
    # A graceful restart between failures forgot them: a local user restarting the daemon reset attackers.
    caplog.set_level("INFO")
    log = tmp_path / "mail.log"
    append(log, "".join(fail("203.0.113.7", f"Nov 24 10:00:0{i}") for i in range(3)))
    daemon = offline(tmp_path, [])
    assert daemon.poll_once() == 3 and daemon.state.live_bans(0) == []
    daemon.close()
    append(log, "".join(fail("203.0.113.7", f"Nov 24 10:00:1{i}") for i in range(2)))
    again = offline(tmp_path, [])
    assert "scores of the last run taken up: 1 source(s), 0 event(s) since caught up" in caplog.text
    assert again.poll_once() == 2
    assert [b.target for b in again.state.live_bans(0)] == ["203.0.113.7"]
    again.close()
    # Another threshold: the old scores would mean something else.
    (tmp_path / "local.toml").write_text((tmp_path / "local.toml").read_text() + "\n[scoring]\nthreshold = 9\n")
    cfg = config.load([SHIPPED, tmp_path / "local.toml"], dropins=None)
    changed = Daemon(cfg, enforce=False, control=False)
    changed.start()
    assert "another scoring configuration): scoring starts afresh" in caplog.text and len(changed.scorer) == 0
    changed.close()


def test_five_failures_make_a_recorded_ban(tmp_path):
    seen: list[str] = []
    daemon = offline(tmp_path, seen)
    append(tmp_path / "mail.log", "".join(fail("203.0.113.7", f"Nov 24 10:00:0{i}") for i in range(5)))
    daemon.poll_once()
    bans = daemon.state.live_bans(0)
    assert [(b.target, b.reason, b.origin) for b in bans] == [("203.0.113.7", "score", "automatic")]
    daemon.close()


def test_the_list_says_when_each_ban_began_and_ends(tmp_path):
    daemon = offline(tmp_path, [])
    append(tmp_path / "mail.log", "".join(now_fail("203.0.113.7") for i in range(5)))
    daemon.poll_once()
    daemon.decider.record_manual([read("198.51.100.0/24")], None, "honeypot")
    scored, manual = ops.bans(daemon)
    record = daemon.state.ban("203.0.113.7")
    assert (scored["target"], scored["start"], scored["end"]) == ("203.0.113.7", record.start, record.end)
    assert scored["end"] - scored["start"] == 3600
    assert (manual["target"], manual["end"], manual["left"], manual["origin"]) == ("198.51.100.0/24", None, None,
                                                                                     "manual")
    daemon.close()


def test_a_full_state_disk_stops_nothing_and_loses_or_repeats_no_line_or_ban(tmp_path, caplog):
    if why := disk_missing():
        pytest.skip(why)
    log = tmp_path / "mail.log"
    seen: list[str] = []
    with small_disk(tmp_path / "disk") as disk:
        daemon = offline(tmp_path, seen, state=disk.path / "state.db")
        disk.fill()
        append(log, "".join(fail("203.0.113.7", f"Nov 24 10:00:0{i}") for i in range(5)))
        assert daemon.poll_once() == 5                 # no exception: the commit's refusal is kept
        daemon._persist()
        assert daemon.state.unwritten and "full" in daemon.state.write_error
        status = ops.status(daemon)
        assert status["state_unwritten"] == daemon.state.unwritten and "full" in status["state_error"]
        assert [b.target for b in daemon.state.live_bans(0)] == ["203.0.113.7"]
        append(log, "".join(fail("203.0.113.8", f"Nov 24 10:01:0{i}") for i in range(5)))
        assert daemon.poll_once() == 5
        assert daemon.poll_once() == 0                 # nothing read twice while the disk is full
        disk.free()
        daemon._persist()
        assert daemon.state.unwritten == 0 and "state_error" not in ops.status(daemon)
        daemon.close()
        restarted = offline(tmp_path, seen, state=disk.path / "state.db")
        assert restarted.poll_once() == 0              # the positions reached the disk
        assert sorted(b.target for b in restarted.state.live_bans(0)) == ["203.0.113.7", "203.0.113.8"]
        assert restarted.state.ban_count("203.0.113.7", 0) == 1
        restarted.close()
    assert seen == ["203.0.113.7"] * 5 + ["203.0.113.8"] * 5
    assert "takes writes again" in caplog.text


# --- the daemon in a real kernel ---

_missing = missing()
kernel = pytest.mark.skipif(bool(_missing), reason=_missing)

SRV = ["192.0.2.1/24", "fd00::1/64"]
CLI = ["192.0.2.2/24", "192.0.2.3/24", "192.0.2.4/24", "192.0.2.5/24", "192.0.2.6/24", "fd00::2/64",
       "fd00::3/64"]


class Scene:
    """`srv` runs the daemon and listens on 25; `cli` connects from its addresses."""

    def __init__(self, nets: Namespaces, tmp_path: Path):
        self.srv, self.cli = nets.add("srv"), nets.add("cli")
        devices = nets.veth(self.srv, self.cli, SRV, CLI)
        nets.pin_neighbours(self.srv, devices[0], self.cli, devices[1])
        self.srv.call(serve, [25, 2525])
        self.tmp = tmp_path
        self.log = tmp_path / "mail.log"
        self.log.touch()
        self.local = write_local(tmp_path)
        self.socket = tmp_path / "control.sock"
        self.proc: subprocess.Popen | None = None
        self.stderr = tmp_path / "daemon.err"

    def start(self, files: int | None = None) -> None:
        """Run the daemon; `files`: its descriptor limit (RLIMIT_NOFILE), else the test's own."""
        limit = None if files is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (files, files)))
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.srv.name, str(PYTHON), "-m", "adaptive", "run", "-c", str(SHIPPED),
             "-c", str(self.local), "--dropins", ""],
            stderr=open(self.stderr, "ab"), stdin=subprocess.DEVNULL, preexec_fn=limit)
        assert wait_for(lambda: self.adaptive("status").returncode == 0 or self.proc.poll() is not None,
                        timeout=30), self.err()
        assert self.proc.poll() is None, self.err()

    def err(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""

    def adaptive(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
        command = [str(PYTHON), "-m", "adaptive", *args, "--socket", str(self.socket)]
        if user:
            command = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def status(self) -> dict:
        result = self.adaptive("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def connects(self, source: str, port: int = 25) -> bool:
        server = "fd00::1" if ":" in source else "192.0.2.1"
        return self.cli.call(connect, source, server, port, 0.5) == "connected"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


@pytest.fixture
def scene(tmp_path):
    with Namespaces() as nets:
        s = Scene(nets, tmp_path)
        try:
            yield s
        finally:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()


@kernel
def test_failures_in_the_log_get_the_source_banned_in_the_kernel(scene):
    scene.start()
    assert scene.connects("192.0.2.3")
    started = time.monotonic()
    append(scene.log, "".join(now_fail("192.0.2.3") for _ in range(5)))
    assert wait_for(lambda: not scene.connects("192.0.2.3"), timeout=10), scene.err()
    assert time.monotonic() - started < 5
    assert scene.connects("192.0.2.2")                       # others still connect
    listed = [json.loads(line) for line in scene.adaptive("list", "--json").stdout.splitlines()]
    assert [(b["target"], b["origin"]) for b in listed] == [("192.0.2.3", "automatic")]
    assert scene.stop() == 0
    assert not scene.connects("192.0.2.3")                   # the ban outlives the daemon


@kernel
def test_failures_logged_to_journald_get_the_source_banned_and_a_kill_9_repeats_none(scene):
    import journals
    if journals.missing() or journals.JOURNALD is None:
        pytest.skip(journals.missing() or "systemd-journald is not installed")
    with journals.Journald(scene.tmp / "journald") as journald:
        # The shipped source, made a journal one by the local file's `type` alone.
        scene.local.write_text(scene.local.read_text().replace(
            f'path = "{scene.log}"', f'type = "journal"\ndirectory = "{journald.directory}"').replace(
            'fallback = ""\n', ""))
        scene.start()
        source, = scene.status()["sources"]
        assert source["path"].startswith(f"journal {journald.directory}") and source["lag_unit"] == "seconds"
        assert scene.connects("192.0.2.3")
        for _ in range(5):
            journald.syslog("postfix/smtpd", 4100, "warning: unknown[192.0.2.3]: SASL LOGIN authentication "
                            "failed: UGFzc3dvcmQ6")
        assert wait_for(lambda: not scene.connects("192.0.2.3"), timeout=10), scene.err()
        journald.syslog("postfix/smtpd", 4100, "warning: unknown[192.0.2.6]: SASL LOGIN authentication failed: x")
        assert wait_for(lambda: scene.status()["events"] == 6, timeout=10), scene.err()
        scene.stop(signal.SIGKILL)
        for _ in range(5):                 # while it is down
            journald.syslog("postfix/smtpd", 4100, "warning: unknown[192.0.2.5]: SASL LOGIN authentication "
                            "failed: x")
        scene.start()
        assert wait_for(lambda: not scene.connects("192.0.2.5"), timeout=10), scene.err()
        assert scene.status()["events"] == 5 and scene.connects("192.0.2.6")
        status = scene.adaptive("status")
        assert "mail  journal" in status.stdout and "ok, 5 lines read, caught up" in status.stdout, status.stdout


@kernel
def test_ban_and_unban_change_the_kernel(scene):
    scene.start()
    result = scene.adaptive("ban", "192.0.2.4", "fd00::3", "--for", "10m", "--reason", "test")
    assert result.returncode == 0, result.stderr + scene.err()
    assert not scene.connects("192.0.2.4") and not scene.connects("fd00::3")
    assert scene.connects("192.0.2.2")
    refused = scene.adaptive("ban", "127.0.0.1")
    assert refused.returncode == 1
    assert scene.adaptive("unban", "192.0.2.4").returncode == 0
    assert scene.connects("192.0.2.4") and not scene.connects("fd00::3")
    assert scene.adaptive("unban", "--all").returncode == 0
    assert scene.connects("fd00::3")


@kernel
def test_kill_9_loses_and_repeats_nothing(scene):
    scene.start()
    append(scene.log, "".join(now_fail("192.0.2.3") for _ in range(5)) + now_fail("192.0.2.6"))
    assert wait_for(lambda: scene.status()["events"] == 6, timeout=10), scene.err()
    assert not scene.connects("192.0.2.3")
    scene.stop(signal.SIGKILL)
    # While it is down: more lines, and the kernel loses its table (a reboot, an admin's flush).
    append(scene.log, "".join(now_fail("192.0.2.5") for _ in range(5)))
    scene.srv.exec("nft", "delete", "table", "inet", "adaptive")
    assert scene.connects("192.0.2.3")
    scene.start()
    # The ban is back from the state, the lines written while down were read, and none twice:
    # this run has seen exactly the five new lines.
    assert wait_for(lambda: not scene.connects("192.0.2.5"), timeout=10), scene.err()
    assert not scene.connects("192.0.2.3")
    assert scene.status()["events"] == 5
    assert scene.connects("192.0.2.6")


@kernel
def test_kill_9_between_failures_forgets_no_score(scene):
    # 20 kill -9 during a 60 s attack: 42 bans where a clean replay of the same log makes 600.
    scene.start()
    for n in (3, 6):               # two kills, each after a few more failures of a different address
        append(scene.log, "".join(now_fail(f"192.0.2.{n}") for _ in range(3)))
        assert wait_for(lambda: scene.status()["events"] >= 3, timeout=10)
        assert scene.stop(signal.SIGKILL) == -signal.SIGKILL
        scene.start()
        assert "event(s) since caught up" in scene.err()
    append(scene.log, "".join(now_fail(ip) for ip in ("192.0.2.3", "192.0.2.3", "192.0.2.6", "192.0.2.6")))
    assert wait_for(lambda: not scene.connects("192.0.2.3") and not scene.connects("192.0.2.6"), timeout=10), \
        scene.err()[-3000:]
    listed = {json.loads(line)["target"] for line in scene.adaptive("list", "--json").stdout.splitlines()}
    assert listed == {"192.0.2.3", "192.0.2.6"}, (listed, scene.err()[-3000:])


@kernel
def test_ten_kill_9_during_an_attack_ban_what_a_clean_replay_bans(scene):
    # 20 kill -9 during a 60 s attack made 42 bans where a clean replay of the same log made 600.
    sources = [f"198.18.{i}.1" for i in range(40)]           # each in a /24 of its own
    parts = [[now_fail(ip) for ip in sources] for _ in range(5)]   # every source fails once a part
    parts = [part[:20] for part in parts] + [part[20:] for part in parts]   # ten parts, kills between
    scene.start()
    read = 0
    for n, part in enumerate(parts):
        append(scene.log, "".join(part))
        read += len(part)
        assert wait_for(lambda read=read: _lines_committed(scene) >= read, timeout=10), scene.err()[-2000:]
        if n < len(parts) - 1:
            assert scene.stop(signal.SIGKILL) == -signal.SIGKILL
            scene.start()
    replayed = subprocess.run([str(PYTHON), "-m", "adaptive", "replay", "-c", str(SHIPPED), "-c", str(scene.local),
                               "--dropins", "", "--no-host-addresses", "--json", str(scene.log)],
                              capture_output=True, text=True, check=True).stdout
    clean = {d["target"] for d in map(json.loads, replayed.splitlines()) if d["outcome"] == "ban"}
    assert wait_for(lambda: {json.loads(line)["target"] for line in
                             scene.adaptive("list", "--json").stdout.splitlines()} == clean, timeout=10), \
        scene.err()[-3000:]
    assert len(clean) == 40


def _lines_committed(scene) -> int:
    """The lines of the log the state's saved position stands after (the daemon's counts restart)."""
    import sqlite3
    with sqlite3.connect(scene.tmp / "state.db") as db:
        row = db.execute('SELECT "offset" FROM positions WHERE source = \'mail\'').fetchone()
    return 0 if row is None else scene.log.read_bytes()[:row[0]].count(b"\n")


def kernel_bans(scene) -> set[str]:
    listing = json.loads(scene.srv.exec("nft", "-j", "list", "set", "inet", "adaptive", "ban4").stdout)
    return {e["elem"]["val"] if isinstance(e, dict) else e
            for obj in listing["nftables"] if "set" in obj for e in obj["set"].get("elem", ())}


@kernel
@pytest.mark.parametrize("after", [0.15, 0.4, 0.8])
def test_kill_9_during_a_blocklist_import_leaves_state_and_kernel_agreeing(scene, after):
    # The kernel takes an import on a helper thread while the loop records it: whichever was done when
    # the daemon died, the next start makes the two agree (bans the state has are put back, bans only
    # the kernel has are adopted), and nothing it reports banned is lost.
    scene.start()
    blocklist = scene.tmp / "blocklist.txt"
    blocklist.write_text("".join(f"10.9.{i >> 8}.{i & 255}\n" for i in range(30_000)))
    importing = subprocess.Popen([str(PYTHON), "-m", "adaptive", "ban", "--from-file", str(blocklist), "--for", "1h",
                                  "--socket", str(scene.socket)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
    time.sleep(after)
    scene.stop(signal.SIGKILL)
    out, _ = importing.communicate(timeout=60)
    scene.start()
    result = scene.adaptive("list", "--json")
    assert result.returncode == 0, (result.stderr, scene.err()[-3000:])
    recorded = {json.loads(line)["target"] for line in result.stdout.splitlines()}    # a JSON object a line
    assert recorded == kernel_bans(scene)
    print(f"killed after {after} s: {len(recorded)} recorded; the command said {out.strip()!r}")
    assert len(recorded) in (0, 30_000)                 # one request: all of it or none
    if out.startswith("30000 banned"):
        assert len(recorded) == 30_000


@kernel
def test_a_lost_state_adopts_the_bans_the_table_kept(scene):
    scene.start()
    assert scene.adaptive("ban", "192.0.2.4", "--for", "1h").returncode == 0
    scene.stop(signal.SIGKILL)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{scene.tmp / 'state.db'}{suffix}").unlink(missing_ok=True)
    scene.start()
    listed = [json.loads(line) for line in scene.adaptive("list", "--json").stdout.splitlines()]
    assert [(b["target"], b["reason"]) for b in listed] == [("192.0.2.4", "adopted")]
    assert 3500 < listed[0]["left"] <= 3600
    assert "were not in the state" in scene.err()
    assert not scene.connects("192.0.2.4")
    # A state that is there is the record: the next start lists nothing and adopts nothing.
    scene.stop()
    scene.start()
    assert scene.err().count("were not in the state") == 1
    assert not scene.connects("192.0.2.4")


@kernel
def test_sighup_with_a_broken_config_keeps_the_old_one(scene):
    scene.start()
    good = scene.local.read_text()
    scene.local.write_text(good + '\n[nftables]\naction = "nonsense"\n')
    scene.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload refused" in scene.err(), timeout=10), scene.err()
    assert scene.proc.poll() is None
    result = scene.adaptive("reload")
    assert result.returncode == 1 and "nftables.action" in result.stderr
    append(scene.log, "".join(now_fail("192.0.2.3") for _ in range(5)))
    assert wait_for(lambda: not scene.connects("192.0.2.3"), timeout=10), scene.err()
    scene.local.write_text(good)
    assert scene.adaptive("reload").returncode == 0


@kernel
def test_a_storm_of_signals_never_hangs_the_daemon(scene):
    # A handler runs on the loop's thread between any two bytecodes: one that took a lock the loop was
    # holding (setting the threading.Event it sleeps on) hung the daemon on a SIGTERM for good.
    scene.start()
    for _ in range(400):
        scene.proc.send_signal(signal.SIGHUP)
        time.sleep(0.001)
    assert scene.proc.poll() is None, scene.err()
    assert scene.adaptive("status").returncode == 0, scene.err()
    # SIGTERMs back to back until it is gone, so that some land inside the handling of another.
    deadline = time.monotonic() + 3
    while scene.proc.poll() is None and time.monotonic() < deadline:
        scene.proc.send_signal(signal.SIGTERM)
    # Stopped cleanly (state closed, bans left); a SIGTERM that lands after the interpreter has put
    # back the default handlers, on its way out, may still end it by the signal.
    assert scene.proc.wait(timeout=30) in (0, -signal.SIGTERM), scene.err()
    assert "stopped after" in scene.err() and "Error" not in scene.err(), scene.err()


# A local user's idle connections: each holds a descriptor of the daemon's until it gives up on them.
HOARD = """
import socket, sys, time
held, failed = [], 0
while len(held) < int(sys.argv[2]) and failed < 20:
    try:
        held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2))
    except OSError:
        failed += 1       # the listener's queue is full: nobody takes them any more
print("holding", len(held), flush=True)
time.sleep(600)
"""


@kernel
def test_idle_metrics_connections_of_a_local_user_never_exhaust_the_daemons_descriptors(scene):
    # Each idle GET /metrics connection kept a thread and a descriptor: at 1,024 the daemon could open
    # no rotated log, status hung, and libnftables ended the process. Here with a limit of 256.
    port = 9469
    scene.local = write_local(scene.tmp, listen=f"127.0.0.1:{port}")
    scene.start(files=256)
    pid = scene.proc.pid                    # `ip netns exec` becomes the daemon
    hoard = subprocess.Popen(["ip", "netns", "exec", scene.srv.name, "setpriv", "--reuid", "65534", "--regid",
                              "65534", "--clear-groups", str(PYTHON), "-c", HOARD, str(port), "900"],
                             stdout=subprocess.PIPE, text=True)
    try:
        held = hoard.stdout.readline()
        assert held.startswith("holding ")
        assert scene.proc.poll() is None and len(os.listdir(f"/proc/{pid}/fd")) < 128, scene.err()[-2000:]
        started = time.monotonic()
        assert scene.adaptive("status").returncode == 0, scene.err()[-2000:]
        assert time.monotonic() - started < 5
        append(scene.log, "".join(now_fail("192.0.2.3") for _ in range(5)))
        assert wait_for(lambda: not scene.connects("192.0.2.3"), timeout=10), scene.err()[-2000:]
        assert len(os.listdir(f"/proc/{pid}/fd")) < 128
    finally:
        hoard.kill()
        hoard.wait()
    scrape = scene.srv.exec(str(PYTHON), "-c", "import urllib.request; print(urllib.request.urlopen("
                            f"'http://127.0.0.1:{port}/metrics', timeout=10).read().decode())")
    assert "adaptive_bans_state 1.0" in scrape.stdout
    assert scene.proc.poll() is None and "Too many open files" not in scene.err()


@kernel
def test_sigterm_is_obeyed_within_seconds_in_a_ban_storm(scene):
    # 100,000 sources x 5 failures: the loop read the whole backlog before it looked at a signal (8 s).
    lines = []
    for i in range(20_000):
        ip = f"{10 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.1"      # each in a /24 of its own
        lines += [now_fail(ip)] * 5
    append(scene.log, "".join(lines))
    scene.start()
    assert wait_for(lambda: scene.status()["events"] > 0, timeout=10)
    assert scene.status()["events"] < 100_000, "the storm is over before the signal: make it longer"
    started = time.monotonic()
    scene.proc.send_signal(signal.SIGTERM)
    assert scene.proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 3, scene.err()[-2000:]


@kernel
def test_the_socket_refuses_strangers_and_answers_garbage(scene):
    scene.start()
    stranger = scene.adaptive("status", user="65534")
    assert stranger.returncode == 1 and str(scene.socket) in stranger.stderr
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(scene.socket))
        s.sendall(b"\x00\xffnot json\n")
        reply = json.loads(s.makefile("rb").readline())
    assert reply["ok"] is False and reply["code"] == "usage"
    assert scene.status()["version"]


def _kernel_holds(scene, address: str) -> bool:
    family = "ban6" if ":" in address else "ban4"
    done = scene.srv.exec("nft", "-j", "list", "set", "inet", "adaptive", family, check=False)
    if done.returncode != 0:
        return False
    return any((e["elem"]["val"] if isinstance(e, dict) else e) == address
               for obj in json.loads(done.stdout)["nftables"] if "set" in obj for e in obj["set"].get("elem", ()))


# What other tools do to adaptive's table: Debian's nftables.conf (`flush ruleset`), an admin's delete,
# one ban set deleted (its rules must go first), its rules flushed or one added before them, and another
# tool's apply that replaces the table.
DISRUPTIONS = {
    "flush ruleset": "flush ruleset\n",
    "delete table": "delete table inet adaptive\n",
    "delete one ban set": "flush chain inet adaptive input\ndelete set inet adaptive ban6\n",
    "flush the chain": "flush chain inet adaptive input\n",
    "a rule put first that accepts all": "insert rule inet adaptive input accept\n",
    "another tool's table": "delete table inet adaptive\n"
                            "table inet adaptive {\n chain input {\n  type filter hook input priority 0; "
                            "policy accept;\n }\n}\n",
}


@kernel
def test_a_flushed_or_replaced_table_is_repaired_within_2_s_with_every_ban(scene):
    scene.start()
    assert scene.adaptive("ban", "192.0.2.4", "fd00::3", "--for", "1h").returncode == 0
    assert not scene.connects("192.0.2.4") and not scene.connects("fd00::3")
    script = scene.tmp / "other.nft"
    for n, (what, commands) in enumerate(DISRUPTIONS.items(), 1):
        script.write_text(commands)
        scene.srv.exec("nft", "-f", str(script))
        broken = time.monotonic()
        # Repaired (the flushed chain's sets still hold the bans) and the bans in their sets.
        assert wait_for(lambda n=n: scene.err().count("repaired: 2 ban(s) back") >= n and _kernel_holds(
            scene, "192.0.2.4") and _kernel_holds(scene, "fd00::3"), timeout=5, interval=0.02), \
            (what, scene.err()[-2000:])
        took = time.monotonic() - broken
        print(f"{what}: bans back in {took:.2f} s")
        assert took < 2, what
        assert not scene.connects("192.0.2.4") and not scene.connects("fd00::3"), what
        assert scene.connects("192.0.2.2"), what
        assert scene.err().count("repaired: 2 ban(s) back") == n, what    # once for each, never twice
        assert scene.adaptive("reload").returncode == 0
        assert not scene.connects("192.0.2.4") and not scene.connects("fd00::3"), what
    status = scene.status()
    assert (status["bans"], status["bans_state"], status["repairs"]) == (2, 2, len(DISRUPTIONS))
    assert "disagree" not in status


@kernel
def test_a_reload_after_a_flush_restores_every_ban_and_a_refused_ban_repairs(scene):
    scene.start()
    assert scene.adaptive("ban", "192.0.2.4", "--for", "1h").returncode == 0
    # A reload that comes before the watch has looked finds the table gone and puts the bans back.
    scene.srv.exec("nft", "flush ruleset")
    result = scene.adaptive("reload")
    assert result.returncode == 0 and "1 ban(s) restored" in result.stdout, result.stdout + scene.err()
    assert not scene.connects("192.0.2.4")
    # A ban into a set that vanished is not an error: the table is repaired with it.
    scene.srv.exec("nft", "flush ruleset")
    assert scene.adaptive("ban", "192.0.2.5", "--for", "1h").returncode == 0
    assert wait_for(lambda: not scene.connects("192.0.2.5"), timeout=5)
    assert not scene.connects("192.0.2.4")
    assert "the kernel refused" not in scene.err()


@kernel
def test_a_missing_log_is_said_at_start_and_shown_by_status(scene):
    scene.log.unlink()
    scene.start()
    assert wait_for(lambda: "does not exist (waiting for it)" in scene.err(), timeout=5), scene.err()
    human = " ".join(scene.adaptive("status").stdout.split())
    assert f"Source mail ({scene.log}) cannot be read: does not exist (waiting for it)." in human, human
    assert f"{scene.log}: not read: does not exist (waiting for it)" in human and "None" not in human, human
    append(scene.log, "".join(now_fail("192.0.2.3") for _ in range(5)))
    assert wait_for(lambda: not scene.connects("192.0.2.3"), timeout=10), scene.err()
    human = " ".join(scene.adaptive("status").stdout.split())
    assert "problem" not in human and "not read" not in human and f"{scene.log}: ok" in human, human


@kernel
def test_100000_live_bans_are_repaired_in_one_transaction(scene):
    scene.start()
    blocklist = scene.tmp / "blocklist.txt"
    blocklist.write_text("".join(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}\n" for i in range(100_000)))
    result = scene.adaptive("ban", "--from-file", str(blocklist), "--for", "1h")
    assert result.returncode == 0, result.stderr
    # Twice, and the quicker counts: on a 2-core VM that runs the rest of the suite, one repair in
    # twenty takes a few tenths of a second longer than the others (0.9 to 1.5 s seen in a full run).
    took = []
    for n in (1, 2):
        scene.srv.exec("nft", "flush ruleset")
        assert wait_for(lambda n=n: scene.err().count("repaired: 100000 ban(s) back") == n, timeout=10), \
            scene.err()[-2000:]
        took.append(float(scene.err().split("repaired: 100000 ban(s) back in ")[n].split(" s")[0]))
        assert len(kernel_bans(scene)) == 100_000
    print(f"100,000 bans repaired in {took[0]:.2f} s and {took[1]:.2f} s")
    assert min(took) <= 1.5


@kernel
def test_status_answers_within_a_second_whatever_the_number_of_bans(scene):
    # With 1,000,000 bans, status took 57 s and the first scrape 52 s: each listed the kernel's sets.
    scene.start()
    blocklist = scene.tmp / "blocklist.txt"
    blocklist.write_text("".join(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}\n" for i in range(300_000)))
    assert scene.adaptive("ban", "--from-file", str(blocklist), "--for", "1h").returncode == 0
    started = time.monotonic()
    status = scene.status()
    took = time.monotonic() - started
    print(f"status with 300,000 bans: {took:.2f} s, bans {status['bans']}")
    assert took < 1 and status["bans_state"] == 300_000
    assert status["bans"] == 300_000 or (status.get("kernel_counting") and "disagree" not in status)
    # Counted on a thread of its own meanwhile: a later status has the kernel's count.
    assert wait_for(lambda: scene.status()["bans"] == 300_000, timeout=60)


def _left(scene, address: str) -> int | None:
    listing = json.loads(scene.srv.exec("nft", "-j", "list", "set", "inet", "adaptive", "ban4").stdout)
    for obj in listing["nftables"]:
        for e in obj.get("set", {}).get("elem", ()):
            if isinstance(e, dict) and e["elem"]["val"] == address:
                return e["elem"].get("expires")
    return None


def _record_bad_bans(scene, now: float) -> None:
    """A start and a stop, then three rows written into the state behind the daemon's back (one of 1e11
    s, one that is no address, one sound), then a start again."""
    import sqlite3
    scene.start()
    assert scene.stop() == 0
    with sqlite3.connect(scene.tmp / "state.db") as db:
        rows = [("192.0.2.5", now + 1e11), ("not an address", now + 600), ("192.0.2.6", now + 600)]
        db.executemany("INSERT INTO bans VALUES (?, ?, ?, 'manual', 0, '{}', NULL, 1, 'manual', 'ban')",
                       [(t, now, end) for t, end in rows])
    scene.start()


@kernel
def test_one_bad_ban_in_the_state_never_stops_a_start_and_permanent_is_its_own_case(scene):
    # A ban of 1e11 s (recorded before durations were capped) was refused by the kernel ("Numerical
    # result out of range") at every start; a row that is no address at all must not stop one either.
    now = time.time()
    _record_bad_bans(scene, now)
    assert not scene.connects("192.0.2.5") and not scene.connects("192.0.2.6"), scene.err()
    assert 9 * 365 * 86400 < _left(scene, "192.0.2.5") <= 10 * 365 * 86400
    assert "'not an address' cannot be restored, left out" in scene.err()
    result = scene.adaptive("ban", "192.0.2.4", "--for", "permanent")
    assert result.returncode == 0 and result.stdout == "banned 192.0.2.4 until unbanned\n", result.stderr
    listing = json.loads(scene.srv.exec("nft", "-j", "list", "set", "inet", "adaptive", "ban4").stdout)
    elements = {e["elem"]["val"] if isinstance(e, dict) else e: e for obj in listing["nftables"]
                for e in obj.get("set", {}).get("elem", ())}
    assert elements["192.0.2.4"] == "192.0.2.4"          # no timeout: until unbanned
    assert not scene.connects("192.0.2.4")
    assert scene.adaptive("unban", "192.0.2.4").returncode == 0 and scene.connects("192.0.2.4")


@kernel
def test_a_reconcile_puts_right_around_a_bad_ban_in_the_state(scene):
    # The reconcile made its own bans from the state's rows, without the start's cap: one of 1e11 s
    # (or a row that is no address) raised on the loop and ended the daemon.
    now = time.time()
    scene.local.write_text(scene.local.read_text() + "\n[nftables]\nreconcile_every = 1\n")
    _record_bad_bans(scene, now)
    scene.srv.exec("nft", "delete element inet adaptive ban4 { 192.0.2.5 }; delete element inet adaptive "
                          "ban4 { 192.0.2.6 }")
    assert wait_for(lambda: not scene.connects("192.0.2.5") and not scene.connects("192.0.2.6"), timeout=5), \
        scene.err()[-2000:]
    assert scene.proc.poll() is None and "disagreed on 2 ban(s) (2 missing" in scene.err()


def _element(scene, address: str) -> object:
    """`address`'s element in ban4 as the kernel lists it: the bare address when it has no timeout."""
    listing = json.loads(scene.srv.exec("nft", "-j", "list", "set", "inet", "adaptive", "ban4").stdout)
    for obj in listing["nftables"]:
        for e in obj.get("set", {}).get("elem", ()):
            if (e["elem"]["val"] if isinstance(e, dict) else e) == address:
                return e
    return None


@kernel
def test_a_permanent_ban_is_reconciled_without_a_timeout_and_shown_as_permanent(scene):
    # A permanent ban deleted by hand, and one that another tool gave a timeout: both put back as the
    # state has them, elements without a timeout.
    scene.local.write_text(scene.local.read_text() + "\n[nftables]\nreconcile_every = 1\n")
    scene.start()
    banned = scene.adaptive("ban", "192.0.2.4", "192.0.2.5", "--for", "permanent", "--reason", "honeypot")
    assert banned.returncode == 0, banned.stderr
    assert _element(scene, "192.0.2.4") == "192.0.2.4" and _element(scene, "192.0.2.5") == "192.0.2.5"
    scene.srv.exec("nft", "delete element inet adaptive ban4 { 192.0.2.4 }; delete element inet adaptive "
                          "ban4 { 192.0.2.5 }; add element inet adaptive ban4 { 192.0.2.5 timeout 30s }")
    assert scene.connects("192.0.2.4")
    assert wait_for(lambda: _element(scene, "192.0.2.4") == "192.0.2.4"
                    and _element(scene, "192.0.2.5") == "192.0.2.5", timeout=5), scene.err()[-2000:]
    assert not scene.connects("192.0.2.4") and not scene.connects("192.0.2.5")
    assert "disagreed on 2 ban(s) (1 missing, 1 with another time left)" in scene.err()
    listed = scene.adaptive("list").stdout.splitlines()
    assert [line.split()[0] for line in listed[1:]] == ["192.0.2.4", "192.0.2.5"]
    assert all("permanent" in line and "honeypot" in line for line in listed[1:]), listed
    explained = scene.adaptive("explain", "192.0.2.4").stdout
    assert explained.startswith("192.0.2.4 is banned: honeypot, permanent: until unbanned (manual)\n")
    # A restart puts them back as they were, and they stay past any timeout a ban could have had.
    assert scene.stop() == 0
    scene.srv.exec("nft", "flush set inet adaptive ban4")
    scene.start()
    assert _element(scene, "192.0.2.4") == "192.0.2.4" and not scene.connects("192.0.2.4")


@kernel
def test_status_of_a_running_daemon_reads_as_sentences(scene):
    scene.local.write_text(scene.local.read_text() + "\n[nftables]\nreconcile_every = 1\n")
    scene.start()
    append(scene.log, "".join(now_fail("192.0.2.3") for _ in range(5)))
    assert wait_for(lambda: not scene.connects("192.0.2.3"), timeout=10), scene.err()
    assert scene.adaptive("ban", "198.51.100.0/24", "--for", "permanent").returncode == 0
    assert wait_for(lambda: scene.status().get("compared") is not None
                    and scene.status()["sources"][0]["lag"] == 0, timeout=10), scene.err()[-2000:]
    result = scene.adaptive("status")
    assert result.returncode == 0 and result.stderr == ""
    print(result.stdout)
    text = " ".join(result.stdout.split())
    assert re.match(rf"adaptive \S+ is running \(pid {scene.proc.pid}, up \d+s\) and enforcing its bans\. ", text)
    assert "problem" not in text
    assert f"Following 1 source: mail {scene.log}: ok, 5 lines read, caught up" in text
    assert "Since the start: 5 events, 1 decision (1 banned)" in text
    assert re.search(r"Bans: table inet adaptive holds 2 bans, as the state does; compared with the state \d+s ago\.",
                     text), text
    # A second log that is not there yet: said first, with what to do.
    assert scene.stop() == 0
    missing = scene.tmp / "dovecot.log"
    scene.local.write_text(scene.local.read_text() + f'\n[sources.dovecot]\npath = "{missing}"\n')
    scene.start()
    result = scene.adaptive("status")
    print(result.stdout)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0 and re.search(
        rf"and enforcing its bans\. 1 problem: - Source dovecot \({missing}\) cannot be read: does not exist "
        r"\(waiting for it\)\. .+ correct \[sources\.dovecot\] path and run `adaptive reload`\. Following 2 "
        rf"sources: mail {scene.log}: ok, 0 lines read, caught up dovecot {missing}: not read: does not exist",
        text), text


@kernel
def test_the_kernels_bans_are_reconciled_with_the_state(scene):
    # What the look at names cannot see: one element deleted by hand, another whose timeout was cut.
    scene.local.write_text(scene.local.read_text() + "\n[nftables]\nreconcile_every = 1\n")
    scene.start()
    assert scene.adaptive("ban", "192.0.2.4", "192.0.2.5", "--for", "1h").returncode == 0
    scene.srv.exec("nft", "delete element inet adaptive ban4 { 192.0.2.4 }; delete element inet adaptive "
                          "ban4 { 192.0.2.5 }; add element inet adaptive ban4 { 192.0.2.5 timeout 30s }")
    assert scene.connects("192.0.2.4")
    assert wait_for(lambda: not scene.connects("192.0.2.4"), timeout=5), scene.err()[-2000:]
    assert wait_for(lambda: (_left(scene, "192.0.2.5") or 0) > 3000, timeout=5), scene.err()[-2000:]
    assert "disagreed on 2 ban(s) (1 missing, 1 with another time left)" in scene.err()
    status = scene.status()
    assert (status["bans"], status["bans_state"]) == (2, 2)
