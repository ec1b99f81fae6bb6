"""`adaptive check`: the summary, the JSON events, standard input, and files that cannot be read."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

FILTER = r"""
[filter]
family = "postfix"
services = ["smtpd"]
keywords = ["SASL "]

[[ignore]]
id = "auth-server-lost"
pattern = 'warning: [^\s\[\]]+\[[^\]]*\](?::\d+)?: SASL [\w-]+ authentication failed: Connection lost to authentication server'

[[rule]]
id = "sasl-failed"
kind = "auth_failure"
pattern = 'warning: [^\s\[\]]+\[(?P<ip>[0-9a-fA-F.:]+)\](?::\d+)?: SASL [\w-]+ authentication failed: .*?(?:, sasl_username=(?P<user>.*))?'

[[sample]]
line = "Nov 24 10:00:01 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
rule = "sasl-failed"
ip = "192.0.2.1"
"""

LOG = (
    b"Nov 24 10:00:01 mx postfix/smtpd[1]: connect from unknown[192.0.2.1]\n"
    b"Nov 24 10:00:02 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x\n"
    b"garbage \xff\xfe\x00 line\n"
    b"Nov 24 10:00:03 mx postfix/submission/smtpd[2]: warning: unknown[2001:db8::7]: SASL PLAIN authentication"
    b" failed: authentication failure, sasl_username=bob@example.org\n"
    b"Nov 24 10:00:04 mx postfix/smtpd[1]: warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: "
    b"Connection lost to authentication server\n"
    b"Nov 24 10:00:05 mx postfix/smtpd[1]: warning: unknown[::ffff:198.51.100.3]: SASL LOGIN authentication "
    b"failed: x"  # no newline at the end of the file: still a line
)


@pytest.fixture
def filters(tmp_path: Path) -> Path:
    d = tmp_path / "filters"
    d.mkdir()
    (d / "postfix.toml").write_text(FILTER)
    return d


def adaptive(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adaptive", *args], input=stdin, capture_output=True)


def test_json_one_object_per_event(tmp_path, filters):
    log = tmp_path / "mail.log"
    log.write_bytes(LOG)
    result = adaptive("check", "--json", "--filters", str(filters), str(log))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["line"], e["ip"], e["user"]) for e in events] == [
        (2, "192.0.2.1", None), (4, "2001:db8::7", "bob@example.org"), (6, "198.51.100.3", None)]
    first = events[0]
    assert set(first) == {"file", "line", "source", "filter", "rule", "kind", "ip", "user", "time"}
    assert (first["file"], first["source"], first["filter"], first["rule"], first["kind"]) == (
        str(log), "postfix", "postfix", "sasl-failed", "auth_failure")
    assert first["time"].startswith(f"{first['time'][:4]}-11-24T10:00:02")


def test_summary_counts_lines_matches_ignores_and_unparsable(tmp_path, filters):
    log = tmp_path / "mail.log"
    log.write_bytes(LOG)
    result = adaptive("check", "--filters", str(filters), str(log))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "6 lines read" in out
    assert "matched     3" in out and "postfix/sasl-failed" in out
    assert "ignored     1" in out and "postfix/auth-server-lost" in out
    assert "unparsable  1" in out


def test_standard_input(filters):
    result = adaptive("check", "--json", "--filters", str(filters), "-", stdin=LOG)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["file"] for line in result.stdout.splitlines()] == ["-"] * 3


def test_line_numbers_across_chunks(tmp_path, filters, monkeypatch):
    """Line numbers stay right when a file is read in many chunks."""
    from adaptive.control import check
    body = b"".join(b"Nov 24 10:00:01 mx postfix/smtpd[1]: connect from x[192.0.2.1]\n" for _ in range(999))
    hit = b"Nov 24 10:00:02 mx postfix/smtpd[1]: warning: x[192.0.2.5]: SASL LOGIN authentication failed: \n"
    log = tmp_path / "big.log"
    log.write_bytes((body + hit) * 5)
    monkeypatch.setattr(check, "CHUNK", 4096)
    out = tmp_path / "out.json"
    with open(out, "w") as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        from adaptive.control.cli import main
        assert main(["check", "--json", "--filters", str(filters), str(log)]) == 0
    lines = [json.loads(line)["line"] for line in out.read_text().splitlines()]
    assert lines == [1000, 2000, 3000, 4000, 5000]


def test_unreadable_file_is_named_and_others_still_read(tmp_path, filters):
    log = tmp_path / "mail.log"
    log.write_bytes(LOG)
    result = adaptive("check", "--filters", str(filters), str(tmp_path / "missing.log"), str(log))
    assert result.returncode == 1
    assert b"missing.log: cannot read" in result.stderr
    assert b"6 lines read" in result.stdout


def test_broken_filters_exit_2_naming_the_file(tmp_path):
    d = tmp_path / "filters"
    d.mkdir()
    (d / "bad.toml").write_text('[filter]\nfamily = "postfix"\nkeywords = ["x"]\n[[rule]]\nid = "r"\n'
                                'kind = "auth_failure"\npattern = "(?P<ip>[a-"\n')
    result = adaptive("check", "--filters", str(d), "-", stdin=b"")
    assert result.returncode == 2
    assert b"bad.toml" in result.stderr and b"rule[0] (r)" in result.stderr


# --- compressed logs ---

COMPRESSORS = {"gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress}


def _events(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [{k: v for k, v in json.loads(line).items() if k != "file"} for line in result.stdout.splitlines()]


def _summary(result: subprocess.CompletedProcess) -> list[str]:
    """The summary's counts, without the file's name and the time it took."""
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().splitlines()[1:]


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_log_gives_the_events_and_counts_of_the_plain_one(tmp_path, filters, suffix):
    plain = tmp_path / "mail.log"
    plain.write_bytes(LOG)
    packed = tmp_path / f"mail.log.2.{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](LOG))
    expected = _events(adaptive("check", "--json", "--filters", str(filters), str(plain)))
    assert len(expected) == 3
    assert _events(adaptive("check", "--json", "--filters", str(filters), str(packed))) == expected
    assert _summary(adaptive("check", "--filters", str(filters), str(packed))) == \
        _summary(adaptive("check", "--filters", str(filters), str(plain)))
    # Standard input too: `adaptive check - < mail.log.2.gz`.
    assert _events(adaptive("check", "--json", "--filters", str(filters), "-", stdin=packed.read_bytes())) \
        == expected


def test_compression_is_known_by_the_first_bytes_not_the_name(tmp_path, filters):
    rotated = tmp_path / "mail.log.1"                 # gzip, named as if plain (logrotate's compressext)
    rotated.write_bytes(gzip.compress(LOG))
    misnamed = tmp_path / "mail.log.gz"               # plain, named as if gzip
    misnamed.write_bytes(LOG)
    result = adaptive("check", "--json", "--filters", str(filters), str(rotated), str(misnamed))
    assert [e["file"] for e in map(json.loads, result.stdout.splitlines())] == [str(rotated)] * 3 + [str(misnamed)] * 3
    assert _events(result)[:3] == _events(result)[3:]


def test_rotated_logs_are_read_in_one_call_in_the_order_given(tmp_path, filters):
    lines = LOG.splitlines(keepends=True)
    parts = {"mail.log.2.gz": gzip.compress(b"".join(lines[:2])), "mail.log.1.xz": lzma.compress(b"".join(lines[2:4])),
             "mail.log": b"".join(lines[4:])}
    for name, data in parts.items():
        (tmp_path / name).write_bytes(data)
    whole = tmp_path / "whole.log"
    whole.write_bytes(LOG)
    result = adaptive("check", "--json", "--filters", str(filters), *(str(tmp_path / name) for name in parts))
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(e["file"]).name, e["ip"]) for e in found] == [
        ("mail.log.2.gz", "192.0.2.1"), ("mail.log.1.xz", "2001:db8::7"), ("mail.log", "198.51.100.3")]
    assert [e["ip"] for e in _events(adaptive("check", "--json", "--filters", str(filters), str(whole)))] == \
        [e["ip"] for e in found]


def test_a_compressed_log_cut_short_or_broken_is_named_and_the_others_still_read(tmp_path, filters):
    big = LOG * 2000
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(gzip.compress(big)[:1000])
    broken = tmp_path / "broken.log.xz"
    broken.write_bytes(b"\xfd7zXZ\x00" + bytes(64))
    zstd = tmp_path / "mail.log.3.zst"
    zstd.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(16))
    log = tmp_path / "mail.log"
    log.write_bytes(LOG)
    result = adaptive("check", "--filters", str(filters), str(cut), str(broken), str(zstd), str(log))
    assert result.returncode == 1
    errors = result.stderr.decode().splitlines()
    assert errors[0] == (f"adaptive: {cut}: cannot read: its compressed data ends early (a file cut short, or "
                         "still being written)")
    assert errors[1].startswith(f"adaptive: {broken}: cannot read: its xz data is broken (")   # liblzma's words
    assert errors[2:] == [f"adaptive: {zstd}: cannot read: zstd-compressed, which adaptive does not read: try "
                          f"`zstdcat {zstd} | adaptive ... -`"]
    assert b"6 lines read" in result.stdout
