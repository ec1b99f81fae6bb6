"""The benchmark's log generator makes the mix it advertises, the same for a seed, and the benchmark runs.

Small logs only (20,000 lines): the whole module takes a few seconds.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import mail_log  # noqa: E402

LINES = 20_000
CLASSIC = re.compile(r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3]\d \d\d:\d\d:\d\d mx "
                     r"(?:postfix/[a-z/]+\[\d+\]|dovecot): \S")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 mx (?:postfix/[a-z/]+\[\d+\]|dovecot): \S")


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("mail") / "mail.log"
    truth = mail_log.generate(path, LINES, seed=1)
    return path, truth


def test_same_seed_same_log_other_seed_other_log(log, tmp_path):
    path, truth = log
    again = mail_log.generate(tmp_path / "again.log", LINES, seed=1)
    assert (tmp_path / "again.log").read_bytes() == path.read_bytes()
    assert json.loads(json.dumps(again)) == json.loads(mail_log.truth_path(path).read_text())
    mail_log.generate(tmp_path / "other.log", LINES, seed=2)
    assert (tmp_path / "other.log").read_bytes() != path.read_bytes()


def test_lines_are_syslog_in_time_order_over_about_a_day(log):
    path, truth = log
    text = path.read_text(encoding="ascii")
    lines = text.splitlines()
    assert len(lines) == LINES == sum(sum(c.values()) for c in truth["composition"].values())
    bad = [line for line in lines if not CLASSIC.match(line)]
    assert not bad, bad[:3]
    stamps = [line[:15] for line in lines]
    times = [datetime.strptime("2025 " + s, "%Y %b %d %H:%M:%S") for s in stamps]
    assert times == sorted(times)
    assert 20 * 3600 < (times[-1] - times[0]).total_seconds() < 26 * 3600
    assert "dovecot: imap-login: Login: user=<" in text and "postfix/postscreen[" in text
    assert "unknown[2001:db8:" in text and "rip=2001:db8:" in text


def test_the_advertised_mix(log):
    _, truth = log
    normal, attack = truth["composition"]["normal"], truth["composition"]["attack"]
    assert 0.025 < sum(attack.values()) / LINES < 0.035
    for kind in ("postscreen CONNECT", "postscreen PASS OLD", "postscreen PASS NEW", "smtpd connect",
                 "smtpd TLS established", "smtpd client=", "cleanup message-id", "qmgr from=",
                 "lmtp status=sent", "qmgr removed", "smtpd disconnect", "smtpd client= (sasl)",
                 "smtp status=sent", "dovecot imap-login Login", "dovecot imap Logged out",
                 "dovecot auth mismatch (legit slip)"):
        assert normal.get(kind, 0) > 0, kind
    for kind in ("smtpd SASL LOGIN failed", "dovecot auth unknown user", "dovecot imap-login auth failed",
                 "smtpd reject Relay access denied", "postscreen PREGREET", "smtpd lost connection after AUTH"):
        assert attack.get(kind, 0) > 0, kind
    attackers, legit = truth["attackers"], truth["legitimate"]
    populations = collections.Counter(e["population"] for e in attackers.values())
    assert populations["fast"] >= 1 and populations["slow"] >= 1 and populations["scanner"] >= 20
    assert any(":" in ip for ip in attackers) and any(":" in ip for ip in legit)
    assert not set(attackers) & set(legit)
    for ip, e in attackers.items():
        assert e["failures"] == len(e["times"]) >= 1, ip
        if e["population"] == "fast":
            assert ip in truth["must_ban"]
        if e["population"] == "slow":
            assert e["failures"] >= 10
    assert all(e["failures"] <= 2 for e in legit.values())
    assert set(truth["slow"]) <= {ip for ip, e in attackers.items() if e["population"] == "slow"}


def test_rfc3339_format(tmp_path):
    path = tmp_path / "rfc.log"
    mail_log.generate(path, 2000, seed=3, fmt="rfc3339")
    lines = path.read_text(encoding="ascii").splitlines()
    bad = [line for line in lines if not RFC3339.match(line)]
    assert not bad, bad[:3]
    assert lines == sorted(lines, key=lambda line: line[:26])


def test_cache_reuses_the_file(tmp_path):
    first = mail_log.cached(2000, 5, "classic", tmp_path)
    before = (first.stat().st_mtime_ns, mail_log.truth_path(first).stat().st_mtime_ns)
    assert mail_log.cached(2000, 5, "classic", tmp_path) == first
    assert (first.stat().st_mtime_ns, mail_log.truth_path(first).stat().st_mtime_ns) == before
    assert mail_log.cached(2000, 6, "classic", tmp_path) != first


@pytest.mark.skipif(shutil.which("fail2ban-regex") is None, reason="fail2ban is not installed")
def test_fail2ban_finds_the_attackers_and_only_them(log):
    path, truth = log
    hits: collections.Counter[str] = collections.Counter()
    for flt in ("postfix[mode=aggressive]", "dovecot"):
        done = subprocess.run(["fail2ban-regex", "--usedns=no", "--no-check-all", "-o", "ip", str(path), flt],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        hits.update(line.strip() for line in done.stdout.splitlines() if line.strip())
    for ip, e in truth["attackers"].items():
        if e["kind"] != "non-smtp":  # fail2ban's postfix filter has no rule for non-SMTP commands
            assert hits[ip] >= e["failures"], (ip, e["kind"], hits[ip], e["failures"])
    for ip in hits:
        assert ip in truth["attackers"] or truth["legitimate"].get(ip, {}).get("failures", 0) > 0, ip


def test_benchmark_runs_and_prints_its_figures(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "parse.py"), "--lines", str(LINES), "--no-fail2ban",
                           "--json", "--cache", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^adaptive +[\d,]+ lines/s", out, re.M), out
    assert re.search(r"^bare loop +[\d,]+ lines/s", out, re.M), out
    assert re.search(r"^(PASS|FAIL) +the bare loop is", out, re.M), out
    report = json.loads(out.splitlines()[-1])
    assert report["adaptive"]["lines"] == report["bare"]["lines"] == LINES
    assert report["adaptive"]["unparsable"] == 0
    assert report["adaptive"]["events"] > 0
