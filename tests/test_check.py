"""`adaptive check`: the summary, the JSON events, standard input, and files that cannot be read."""

from __future__ import annotations

import json
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
