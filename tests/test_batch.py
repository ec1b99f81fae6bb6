"""Counting a file on several cores gives exactly what one pass over it gives."""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path

import pytest
from adaptive.config import SHIPPED_FILTERS
from adaptive.filters import batch
from adaptive.filters.engine import Engine
from adaptive.filters.prefix import YearGuess
from adaptive.filters.rules import load_directory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import mail_log  # noqa: E402

FILTERS = load_directory(SHIPPED_FILTERS)


def one_pass(path: Path) -> Engine:
    engine = Engine(FILTERS, YearGuess(path.stat().st_mtime))
    for chunk in batch.read_range(path, 0, path.stat().st_size, 1 << 16):
        engine.scan(chunk)
    return engine


def same(a: Engine, b: Engine) -> None:
    ca, cb = a.counts, b.counts
    assert (ca.lines, ca.unparsable, ca.oversize, ca.bad_address, ca.unjoined) == (
        cb.lines, cb.unparsable, cb.oversize, cb.bad_address, cb.unjoined)
    assert ca.matched == cb.matched and ca.ignored == cb.ignored and ca.events == cb.events


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_parts_add_up_to_one_pass(tmp_path, monkeypatch, workers):
    path = tmp_path / "mail.log"
    mail_log.generate(path, lines=30_000, seed=3)
    with open(path, "ab") as f:
        f.write(b"garbage\nNov 24 23:59:59 mx postfix/smtpd[1]: lost connection after AUTH from x[192.0.2.1]")
    monkeypatch.setattr(batch, "MIN_PART", 1)
    same(batch.count_file(path, FILTERS, path.stat().st_mtime, workers=workers, chunk=1 << 16),
         one_pass(path))


def test_a_join_across_a_cut_is_made(tmp_path, monkeypatch):
    client = (b"Nov 24 10:00:00 mx postfix/smtpd[1]: 4F3A2B1C0D: client=unknown[192.0.2.7], "
              b"sasl_method=PLAIN, sasl_username=bob\n")
    filler = b"Nov 24 10:00:00 mx postfix/smtpd[1]: connect from unknown[192.0.2.8]\n" * 2000
    queued = b"Nov 24 10:00:01 mx postfix/qmgr[2]: 4F3A2B1C0D: from=<bob@example.org>, size=1, nrcpt=3 (queue active)\n"
    path = tmp_path / "mail.log"
    path.write_bytes(client + filler + queued + queued)   # the retry must not count twice
    monkeypatch.setattr(batch, "MIN_PART", 1)
    assert len(batch.cuts(path, 2)) == 2
    engine = batch.count_file(path, FILTERS, path.stat().st_mtime, workers=2)
    counts = engine.counts
    assert counts.events["message_accepted"] == 1 and counts.events["auth_success"] == 1
    assert counts.unjoined == 1
    same(engine, one_pass(path))


def test_cuts_fall_on_line_ends(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    ranges = batch.cuts(path, 4)
    data = path.read_bytes()
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    for (_, b), (c, _) in pairwise(ranges):
        assert b == c and data[b - 1:b] == b"\n"
