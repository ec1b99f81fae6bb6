"""The daemon as far as it goes: logs followed, events out, positions kept across restarts."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from adaptive import config
from adaptive.daemon import Daemon

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "adaptive.toml"
FAIL = "Nov 24 10:00:{:02d} mx postfix/smtpd[1]: warning: unknown[192.0.2.{}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n"


def make_config(tmp_path: Path, start: str = "beginning") -> Path:
    local = tmp_path / "local.toml"
    local.write_text(f"""
[sources.mail]
path = "{tmp_path / 'mail.log'}"
start = "{start}"
[state]
path = "{tmp_path / 'state.db'}"
""")
    return local


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_events_once_across_restarts(tmp_path):
    cfg = config.load([SHIPPED, make_config(tmp_path)], dropins=None)
    log = tmp_path / "mail.log"
    append(log, FAIL.format(1, 1) + "Nov 24 10:00:02 mx postfix/smtpd[1]: connect from x[192.0.2.9]\n")
    seen: list[str] = []
    daemon = Daemon(cfg, lambda e: seen.append(e.ip))
    assert daemon.poll_once() == 1
    append(log, FAIL.format(3, 2) + FAIL.format(4, 3)[:40])      # the second line is half written
    assert daemon.poll_once() == 1
    daemon.state.close()
    append(log, FAIL.format(4, 3)[40:])                          # finished while we were down
    restarted = Daemon(cfg, lambda e: seen.append(e.ip))
    assert restarted.poll_once() == 1
    assert restarted.poll_once() == 0
    assert seen == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_a_log_that_does_not_exist_yet_is_waited_for(tmp_path):
    cfg = config.load([SHIPPED, make_config(tmp_path, start="end")], dropins=None)
    seen: list[str] = []
    daemon = Daemon(cfg, lambda e: seen.append(e.ip))
    assert daemon.poll_once() == 0
    append(tmp_path / "mail.log", FAIL.format(5, 5))             # created after start: read whole
    assert daemon.poll_once() == 1 and seen == ["192.0.2.5"]


def test_run_command_logs_events_and_stops_on_sigterm(tmp_path):
    local = make_config(tmp_path)
    log = tmp_path / "mail.log"
    append(log, "")
    proc = subprocess.Popen([sys.executable, "-m", "adaptive", "run", "-c", str(SHIPPED), "-c", str(local),
                             "--dropins", ""], stderr=subprocess.PIPE, text=True)
    try:
        append(log, FAIL.format(6, 6))
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            if not select.select([proc.stderr], [], [], deadline - time.monotonic())[0]:
                continue
            line = proc.stderr.readline()
            lines.append(line)
            if "auth_failure 192.0.2.6" in line:
                break
        else:
            raise AssertionError("no event logged: " + "".join(lines))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "stopped after 1 events" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
