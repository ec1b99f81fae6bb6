"""bench/latency.py runs and prints its figures: a quick run, few trials and small restores.

One run of the script (about half a minute) serves every test here. It needs root, iproute2,
python3-nftables and fail2ban; it makes its own network namespaces and deletes them. fail2ban's half
must always run; adaptive's is skipped, with the script's reason, only if `adaptive run` banned nothing
in the warm-up trial (a daemon that does not enforce bans).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netns import missing

BENCH = Path(__file__).resolve().parent.parent / "bench"
TRIALS, RESTORE, F2B_RESTORE, REPAIR = 3, 1_000, 30, 30

_missing = missing("fail2ban-server")
pytestmark = pytest.mark.skipif(bool(_missing), reason=_missing)


@pytest.fixture(scope="module")
def run() -> tuple[str, dict]:
    done = subprocess.run([sys.executable, str(BENCH / "latency.py"), "--trials", str(TRIALS), "--warmup", "1",
                           "--gap", "0.5", "--restore", str(RESTORE), "--restore-runs", "1",
                           "--f2b-restore", str(F2B_RESTORE), "--f2b-deadline", "120", "--repair", str(REPAIR),
                           "--repair-wait", "3", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    report = json.loads(done.stdout.splitlines()[-1])
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    left = {line.split()[0] for line in listing.splitlines() if line.strip()} & set(report["namespaces"])
    assert len(report["namespaces"]) == 2 and not left, f"the benchmark left namespaces behind: {left}"
    return done.stdout, report


def test_machine_and_setup_lines(run):
    out, report = run
    assert re.search(r"^machine +\S", out, re.M), out
    assert re.search(r"^setup +5 SASL failures ban a source .*maxretry 5, findtime 10m, bantime 1h", out, re.M), out
    assert report["setup"]["failures"] == 5 and report["setup"]["trials"] == TRIALS


def test_fail2ban_half(run):
    out, report = run
    f2b = report["fail2ban"]
    assert "error" not in f2b and "skipped" not in f2b, f2b
    assert f2b["set"] == "inet f2b-table addr-set-postfix-sasl"
    assert f2b["backend"].startswith("auto (") and f2b["banaction"] == "nftables"
    lat = f2b["latency"]
    assert lat["trials"] == TRIALS and lat["timeouts"] == 0 and len(lat["latencies"]) == TRIALS
    assert 0 < lat["min"] <= lat["median"] <= lat["p99"] <= lat["max"] < 10
    assert re.search(r"^fail2ban +fail2ban [\d.]+, jail postfix-sasl .*backend auto \(\w+\)", out, re.M), out
    assert re.search(r"^ +median [\d.]+ ms, p99 [\d.]+ ms, min .*3 trials, 0 timed out", out, re.M), out
    restore = f2b["restore"]
    assert "error" not in restore, restore
    assert restore["bans"] == F2B_RESTORE and restore["reached"] == [F2B_RESTORE] and restore["seconds"] > 0
    assert re.search(rf"^restore +fail2ban: {F2B_RESTORE} bans back in the set [\d.]+ s after the start",
                     out, re.M), out
    repair = f2b["repair"]
    assert "error" not in repair and repair["bans"] == REPAIR + 1 and 0 <= repair["reached"] <= REPAIR + 1, repair
    assert re.search(r"^repair +fail2ban: ", out, re.M), out


def test_adaptive_half_and_the_goals(run):
    out, report = run
    a = report["adaptive"]
    if "skipped" in a:
        pytest.skip(f"adaptive's half: {a['skipped']}")
    assert "error" not in a, a
    assert a["set"] == "inet adaptive ban4"
    lat = a["latency"]
    assert lat["trials"] == TRIALS and lat["timeouts"] == 0
    assert 0 < lat["min"] <= lat["median"] <= lat["p99"] <= lat["max"] < 10
    restore = a["restore"]
    assert "error" not in restore, restore
    assert restore["bans"] == RESTORE and restore["reached"] == [RESTORE] and restore["seconds"] > 0
    assert re.search(rf"^restore +adaptive: {RESTORE:,} bans back in the set [\d.]+ s after the start", out, re.M), out
    repair = a["repair"]
    assert "error" not in repair and repair["reached"] == REPAIR + 1 and 0 < repair["seconds"] < 3, repair
    assert re.search(rf"^repair +adaptive: all {REPAIR + 1} bans back in the set [\d.]+ s after", out, re.M), out
    assert report["ratio"] == pytest.approx(report["fail2ban"]["latency"]["median"] / lat["median"])
    assert re.search(r"^ratio +fail2ban's median is [\d,]+x adaptive's", out, re.M), out
    for goal in ("median", "p99", "ratio"):
        assert goal in report["goals"], report["goals"]
    assert re.search(r"^(PASS|FAIL) +adaptive's median [\d.]+ ms \(goal: under 10 ms\)", out, re.M), out
    assert re.search(r"^(PASS|FAIL) +adaptive's 99th percentile", out, re.M), out
    assert re.search(r"^(PASS|FAIL) +fail2ban's median is [\d,]+x adaptive's \(goal: at least 20x\)", out, re.M), out


def test_the_journal_latency_runs_both_tools_on_journald():
    import journals
    if journals.missing() or journals.JOURNALD is None:
        pytest.skip(journals.missing() or "systemd-journald is not installed")
    done = subprocess.run([sys.executable, str(BENCH / "latency.py"), "--journal", "--trials", "3", "--warmup", "1",
                           "--gap", "0.3", "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["setup"]["journal"] is True
    for tool in ("adaptive", "fail2ban"):
        latency = report[tool]["latency"]
        assert latency["trials"] == 3 and latency["timeouts"] == 0 and latency["median"] > 0, report[tool]
    assert "(a journal source)" in report["adaptive"]["command"] and "(systemd)" in report["fail2ban"]["backend"]
    assert "restore" not in report["adaptive"] and "repair" not in report["adaptive"]
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not {line.split()[0] for line in listing.splitlines() if line.strip()} & set(report["namespaces"])
