"""bench/journal.py runs and prints its figures: a quick run over a small journal (20,000 entries).

Besides that every figure is there, what a small run can honestly show: adaptive reads every entry
of the journal and finds in it exactly the events one engine finds in the log file it was made of;
fail2ban's two filters, each on its service's entries, read every entry too, and match about as many
as adaptive finds events of abuse (its filters look for nothing else); a second run reuses the journal.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import journals

BENCH = Path(__file__).resolve().parent.parent / "bench"
ENTRIES = 20_000

pytestmark = pytest.mark.skipif(journals.missing() is not None or journals.JOURNALCTL is None,
                                reason=str(journals.missing() or "journalctl is not installed"))


def bench(cache: Path, *args: str) -> tuple[str, dict]:
    done = subprocess.run([sys.executable, str(BENCH / "journal.py"), "--entries", str(ENTRIES), "--json",
                           "--cache", str(cache), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout, json.loads(done.stdout.splitlines()[-1])


def test_the_journal_benchmark_runs_and_prints_its_figures(tmp_path):
    fail2ban = shutil.which("fail2ban-regex") is not None
    out, report = bench(tmp_path, *(() if fail2ban else ("--no-fail2ban",)))
    for line in (r"journal +\S+", r"adaptive +[\d,]+ entries/s", r"binding +[\d,]+ entries/s",
                 r"journalctl +[\d,]+ entries/s", r"ratios +entries/s", r"(PASS|FAIL) +journalctl"):
        assert re.search(f"^{line}", out, re.M), (line, out)
    assert not report["journal"]["cached"] and report["journal"]["build_seconds"] > 0

    a = report["adaptive"]
    assert a["entries"] == ENTRIES and a["unparsable"] == 0 and a["discarded"] == 0
    assert a["events"] == a["file"]["events"] > a["abuse_events"] > 0
    assert report["binding"]["entries"] == ENTRIES
    for which in ("all", "matched"):
        assert report["journalctl"][which]["entries"] == ENTRIES
    rates = [a["entries_per_s"], report["binding"]["entries_per_s"],
             *(report["journalctl"][w]["entries_per_s"] for w in ("all", "matched"))]
    assert all(rate > 0 for rate in rates), rates
    assert report["goals"]["vs_floor"]["ratio"] > 0

    if fail2ban:
        assert re.search(r"^(PASS|FAIL) +adaptive is [\d.]+x fail2ban", out, re.M), out
        f = report["fail2ban"]
        assert f["entries"] == ENTRIES and f["entries_per_s"] > 0
        assert [r["journalmatch"] for r in f["runs"]] == ["_SYSTEMD_UNIT=postfix@-.service",
                                                          "_SYSTEMD_UNIT=dovecot.service"]
        assert all(r["matched"] > 0 for r in f["runs"])
        assert abs(f["matched"] - a["abuse_events"]) <= 0.1 * a["abuse_events"], (f["matched"], a["abuse_events"])

    again, second = bench(tmp_path, "--no-fail2ban", "--runs", "1")
    assert second["journal"]["cached"] and second["journal"]["path"] == report["journal"]["path"]
    assert second["adaptive"]["events"] == a["events"]
    assert "fail2ban  skipped (--no-fail2ban)" in again
