"""Scoring on a day of generated mail log (`bench/mail_log.py`), checked against the log's ground truth.

Issue 4's acceptance, for scoring: through the shipped configuration, every address fail2ban's default
rule would ban (5 failures within 10 minutes) offends, so do at least half of the attackers with 10 or
more failures spread over the day, and no legitimate client does. 200,000 lines: a few seconds.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from adaptive import config
from adaptive.config import SHIPPED_FILTERS
from adaptive.control.check import chunks
from adaptive.filters.engine import Engine
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import load_directory
from adaptive.scoring import Offence, Scorer

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import mail_log  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "adaptive.toml"
LINES = 200_000


def target(ip: str, prefix: int) -> str:
    """An address as scoring names its source: IPv6 as its prefix."""
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return ip
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@pytest.fixture(scope="module")
def replay(tmp_path_factory) -> tuple[dict, list[Offence], Scorer]:
    path = tmp_path_factory.mktemp("day") / "mail.log"
    truth = mail_log.generate(path, LINES, seed=1)
    scorer = Scorer(config.load([SHIPPED], dropins=None).scoring)
    engine = Engine(load_directory(SHIPPED_FILTERS), YearGuess(os.stat(path).st_mtime))
    offences: list[Offence] = []
    with open(path, "rb") as f:
        for chunk in chunks(f, 1 << 20):
            for _, event in engine.scan(chunk):
                offences += scorer.feed(event)
    return truth, offences, scorer


def test_the_log_holds_both_kinds_of_attacker(replay):
    truth, _, _ = replay
    assert len(truth["must_ban"]) >= 3
    assert len(truth["slow"]) >= 20


def test_every_address_fail2ban_would_ban_offends(replay):
    truth, offences, scorer = replay
    offended = {o.target for o in offences}
    prefix = scorer.config.ipv6_prefix
    missed = [ip for ip in truth["must_ban"] if target(ip, prefix) not in offended]
    assert missed == []


def test_most_slow_attackers_offend(replay):
    truth, offences, scorer = replay
    offended = {o.target for o in offences}
    prefix = scorer.config.ipv6_prefix
    caught = [ip for ip in truth["slow"] if target(ip, prefix) in offended]
    assert len(caught) >= len(truth["slow"]) / 2
    # as tuned, all of them: the slow score sees 10 failures within a day whatever their spacing
    assert len(caught) == len(truth["slow"])


def test_no_legitimate_client_offends(replay):
    truth, offences, scorer = replay
    prefix = scorer.config.ipv6_prefix
    legitimate = {target(ip, prefix) for ip in [*truth["legitimate"], *truth["server"]]}
    wrong = [o for o in offences if o.target in legitimate]
    assert wrong == []


def test_offences_carry_their_rules_and_come_once_per_reason(replay):
    truth, offences, _ = replay
    assert offences
    for o in offences:
        assert o.rules and all(isinstance(n, int) and n > 0 for n in o.rules.values())
        assert "/" in next(iter(o.rules))
    # one offence per source and reason, unless the source came back after its score decayed
    repeats = Counter((o.target, o.reason) for o in offences)
    assert sum(repeats.values()) < 2 * len(repeats)


def test_the_benchmark_runs(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "scoring.py"), "--lines", "20000", "--sources", "20000",
                           "--cache", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for figure in ("memory", "scoring", "flood", "bytes per tracked source"):
        assert figure in done.stdout
    assert done.stdout.count("PASS") + done.stdout.count("FAIL") == 2
