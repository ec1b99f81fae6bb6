"""`adaptive replay`: logs through filters, scoring and decisions, with the logs' own times.

Small crafted logs pin decisions to the line and the second; a day of generated mail log (bench's
generator, with its ground truth) is the issue's acceptance check: every address fail2ban's default
rule would ban, at least half the slow attackers, no legitimate client.
"""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import json
import lzma
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "conf" / "adaptive.toml"
sys.path.insert(0, str(ROOT / "bench"))
import mail_log  # noqa: E402

SASL = "{} mx postfix/smtpd[1]: warning: unknown[{}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n"
CONNECT = "{} mx postfix/smtpd[1]: connect from unknown[{}]\n"


def adaptive(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adaptive", *args], capture_output=True, text=True,
                          input=stdin)


def replay(*args: str, config: tuple[Path, ...] = (), stdin: str | None = None) -> subprocess.CompletedProcess:
    options = ["-c", str(SHIPPED)]
    for path in config:
        options += ["-c", str(path)]
    return adaptive("replay", *options, "--dropins", "", "--no-host-addresses", *args, stdin=stdin)


def decisions(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def stamp(text: str) -> str:
    """An RFC 3339 timestamp of the log's own (UTC), as rsyslog writes it."""
    return datetime.fromisoformat(text).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def failures(day: int, ip: str, seconds: range) -> str:
    return "".join(SASL.format(stamp(f"2025-11-{day}T10:00:{s:02d}+00:00"), ip) for s in seconds)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- crafted logs ---

def test_five_failures_in_a_minute_ban_at_the_fifth_line_and_again_longer(tmp_path):
    log = write(tmp_path, "mail.log",
                CONNECT.format(stamp("2025-11-24T09:59:59+00:00"), "203.0.113.7")
                + failures(24, "203.0.113.7", range(0, 50, 10))      # 10:00:00 .. 10:00:40
                + failures(24, "203.0.113.7", range(50, 60))         # banned: the kernel drops these
                + failures(26, "203.0.113.7", range(0, 50, 10)))     # two days on: a repeat offender
    first, second = decisions(replay("--json", str(log)))
    assert first == {"time": first["time"], "target": "203.0.113.7", "duration": 3600, "reason": "score",
                     "score": first["score"], "rules": {"postfix/sasl-auth-failed": 5}, "user": None,
                     "outcome": "ban", "n": 1, "protected": None}
    assert epoch(first["time"]) == epoch("2025-11-24T10:00:40+00:00")
    assert first["score"] >= 4.5
    assert (second["target"], second["n"], second["duration"], second["reason"]) == \
        ("203.0.113.7", 2, 4 * 3600, "score")
    assert epoch(second["time"]) == epoch("2025-11-26T10:00:40+00:00")


def test_four_failures_ban_nobody(tmp_path):
    log = write(tmp_path, "mail.log", failures(24, "203.0.113.7", range(0, 40, 10)))
    assert decisions(replay("--json", str(log))) == []


def test_ipv6_sources_are_banned_as_their_64(tmp_path):
    log = write(tmp_path, "mail.log", failures(24, "2001:db8:1:2::7", range(5)))
    [ban] = decisions(replay("--json", str(log)))
    assert ban["target"] == "2001:db8:1:2::/64" and ban["outcome"] == "ban"


def test_allowlisted_and_own_sources_are_suppressed(tmp_path):
    local = write(tmp_path, "local.toml", '[allowlist]\naddresses = ["198.51.100.0/24"]\n'
                                          '[decisions]\nown_addresses = ["192.0.2.25"]\n')
    log = write(tmp_path, "mail.log",
                failures(24, "198.51.100.9", range(5)) + failures(24, "192.0.2.25", range(10, 15)))
    result = decisions(replay("--json", str(log), config=(local,)))
    assert [(d["target"], d["outcome"], d["protected"]) for d in result] == [
        ("198.51.100.9", "suppressed", "allowlist 198.51.100.0/24"),
        ("192.0.2.25", "suppressed", "own address 192.0.2.25")]


def test_an_attacker_in_the_hosts_own_64_is_banned_by_its_128(tmp_path):
    """At a hosting provider, the host's /64 holds its neighbours too: one of them guessing is banned
    alone, the host's own address is still never banned, and a second neighbour is scored apart."""
    local = write(tmp_path, "local.toml", '[decisions]\nown_addresses = ["2001:db8:1:2::25"]\n')
    log = write(tmp_path, "mail.log", failures(24, "2001:db8:1:2::99", range(5))
                + failures(24, "2001:db8:1:2::98", range(10, 14))         # four: no ban
                + failures(24, "2001:db8:1:2::25", range(20, 25)))
    result = decisions(replay("--json", str(log), config=(local,)))
    assert [(d["target"], d["outcome"], d["protected"]) for d in result] == [
        ("2001:db8:1:2::99", "ban", None),
        ("2001:db8:1:2::25", "suppressed", "own address 2001:db8:1:2::25")]


def test_dry_run_and_ban_lengths_come_from_the_config(tmp_path):
    local = write(tmp_path, "local.toml", "[decisions]\ndry_run = true\nban_base = 600\n")
    log = write(tmp_path, "mail.log", failures(24, "203.0.113.7", range(5)))
    [ban] = decisions(replay("--json", str(log), config=(local,)))
    assert (ban["outcome"], ban["duration"]) == ("dry_run", 600)


def test_files_are_read_in_order_and_stdin_too(tmp_path):
    first = write(tmp_path, "mail.log.1", failures(24, "203.0.113.7", range(3)))
    second = failures(24, "203.0.113.7", range(3, 5))
    [ban] = decisions(replay("--json", str(first), "-", stdin=second))
    assert epoch(ban["time"]) == epoch("2025-11-24T10:00:04+00:00")


def test_rotated_and_compressed_logs_decide_as_the_plain_log_they_were(tmp_path):
    """mail.log.2.gz, mail.log.1.xz, mail.log.bz2 in one call, in the order given: the decisions of the one
    plain log they were cut from, the repeat offender's second ban (made in the last part) included."""
    days = [failures(24, "203.0.113.7", range(0, 50, 10)) + failures(24, "2001:db8:1:2::7", range(5)),
            failures(25, "198.51.100.4", range(0, 30, 5)),
            failures(26, "203.0.113.7", range(0, 50, 10))]
    whole = write(tmp_path, "whole.log", "".join(days))
    parts = [(tmp_path / "mail.log.2.gz", gzip.compress), (tmp_path / "mail.log.1.xz", lzma.compress),
             (tmp_path / "mail.log", bz2.compress)]      # a compressed file named as a plain one
    for (path, compress), day in zip(parts, days, strict=True):
        path.write_bytes(compress(day.encode()))
    expected = decisions(replay("--json", str(whole)))
    assert [(d["target"], d["n"]) for d in expected] == [
        ("203.0.113.7", 1), ("2001:db8:1:2::/64", 1), ("198.51.100.4", 1), ("203.0.113.7", 2)]
    assert decisions(replay("--json", *(str(path) for path, _ in parts))) == expected
    summary = replay(*(str(path) for path, _ in parts)).stdout.split("\n\n", 1)[1]
    assert "replayed 3 files: 21 lines, 21 events, 5 offences" in summary
    # Standard input is looked at the same way: `adaptive replay - < mail.log.2.gz`.
    piped = subprocess.run([sys.executable, "-m", "adaptive", "replay", "--json", "-c", str(SHIPPED), "--dropins", "",
                            "--no-host-addresses", "-"], input=parts[0][0].read_bytes(), capture_output=True)
    assert piped.returncode == 0, piped.stderr
    assert [json.loads(line) for line in piped.stdout.splitlines()] == expected[:2]


def test_text_mode_prints_each_decision_and_a_summary(tmp_path):
    log = write(tmp_path, "mail.log", failures(24, "203.0.113.7", range(5)) + failures(24, "203.0.113.8", range(5)))
    result = replay(str(log))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "ban 203.0.113.7 for 1h: score" in lines[0] and "postfix/sasl-auth-failed=5" in lines[0]
    assert "ban 203.0.113.8 for 1h" in lines[1]
    summary = result.stdout.split("\n\n", 1)[1]
    assert "replayed 1 file: 10 lines, 10 events, 2 offences" in summary
    assert "bans        2\n" in summary and "suppressed  0" in summary
    assert "       10  postfix/sasl-auth-failed" in summary


def test_an_unreadable_file_is_named_and_the_rest_replayed(tmp_path):
    log = write(tmp_path, "mail.log", failures(24, "203.0.113.7", range(5)))
    result = replay("--json", str(tmp_path / "missing.log"), str(log))
    assert result.returncode == 1
    assert f"{tmp_path / 'missing.log'}: cannot read" in result.stderr
    assert len(result.stdout.splitlines()) == 1


# --- the acceptance check: a day of mixed mail log ---

@pytest.fixture(scope="module")
def day(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("day") / "mail.log"
    truth = mail_log.generate(path, 200_000, seed=1)
    return path, truth


def test_a_day_of_mail_log_bans_attackers_and_no_legitimate_client(day, tmp_path):
    path, truth = day
    assert len(truth["must_ban"]) >= 3 and len(truth["slow"]) >= 20, "the log is too small to tell"
    # The log is another host's: protect its addresses, not this one's.
    local = write(tmp_path, "local.toml", f"[decisions]\nown_addresses = {json.dumps(truth['server'])}\n")
    result = decisions(replay("--json", str(path), config=(local,)))
    banned = [ipaddress.ip_network(d["target"]) for d in result if d["outcome"] == "ban"]

    def is_banned(ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return any(address.version == net.version and address in net for net in banned)

    missed = [ip for ip in truth["must_ban"] if not is_banned(ip)]
    slow = [ip for ip in truth["slow"] if is_banned(ip)]
    legitimate = [ip for ip in truth["legitimate"] if is_banned(ip)]
    figures = (f"{len(banned)} bans; must_ban {len(truth['must_ban']) - len(missed)}/{len(truth['must_ban'])} "
               f"(missed {missed}); slow {len(slow)}/{len(truth['slow'])}; legitimate banned {legitimate}")
    assert not missed, figures
    assert 2 * len(slow) >= len(truth["slow"]), figures
    assert not legitimate, figures
