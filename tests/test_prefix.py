"""The line prefix: every format a mail host writes, the year of classic syslog, and garbage."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from adaptive.filters.prefix import YearGuess, parse


def local(*fields: int) -> float:
    return time.mktime((*fields, 0, 0, -1))


REF = local(2026, 11, 24, 12, 0, 0)


@pytest.mark.parametrize("text, family, service, host, level, message", [
    # classic syslog (rsyslog's default), day space-padded
    ("Nov  4 10:00:01 mx postfix/smtpd[123]: connect from a[192.0.2.1]",
     "postfix", "smtpd", "mx", None, "connect from a[192.0.2.1]"),
    # Postfix's own maillog_file: strftime %d, zero-padded
    ("Nov 04 10:00:01 mx postfix/smtpd[123]: connect from a[192.0.2.1]",
     "postfix", "smtpd", "mx", None, "connect from a[192.0.2.1]"),
    ("Nov 24 10:00:01 mx postfix/submission/smtpd[123]: x", "postfix", "smtpd", "mx", None, "x"),
    ("Nov 24 10:00:01 mx postfix-incoming/smtpd[123]: x", "postfix", "smtpd", "mx", None, "x"),
    ("Nov 24 10:00:01 mx postfix/smtps/smtpd[123]: x", "postfix", "smtpd", "mx", None, "x"),
    ("Nov 24 10:00:01 mx postfix/postscreen[9]: PASS NEW [192.0.2.1]:4567",
     "postfix", "postscreen", "mx", None, "PASS NEW [192.0.2.1]:4567"),
    # RFC 3339 (rsyslog's high-precision format) and journald's short-iso
    ("2026-11-24T10:00:01.123456+01:00 mx postfix/smtpd[123]: x", "postfix", "smtpd", "mx", None, "x"),
    ("2026-11-24T10:00:01+0100 mx postfix/smtpd[123]: x", "postfix", "smtpd", "mx", None, "x"),
    # journald short-precise
    ("Nov 24 10:00:01.123456 mx postfix/smtpd[123]: x", "postfix", "smtpd", "mx", None, "x"),
    # Dovecot through syslog: process and level move out of the message
    ("Nov 24 10:00:01 mx dovecot: imap-login: Login: user=<a>", "dovecot", "imap-login", "mx", "Info",
     "Login: user=<a>"),
    ("Nov 24 10:00:01 mx dovecot: auth-worker(42): Error: sql(a,192.0.2.1): boom", "dovecot",
     "auth-worker", "mx", "Error", "sql(a,192.0.2.1): boom"),
    ("Nov 24 10:00:01 mx dovecot[77]: imap(bob)<1234><AbCd>: Logged out in=1 out=2", "dovecot", "imap",
     "mx", "Info", "Logged out in=1 out=2"),
    # Dovecot's own log_path: no host, a level word
    ("Nov 24 10:00:01 imap-login: Info: Login: user=<a>, rip=192.0.2.1", "dovecot", "imap-login", None,
     "Info", "Login: user=<a>, rip=192.0.2.1"),
    ("Nov 24 10:00:01 auth-worker(1234): Info: conn unix:auth-worker (pid=1,uid=2): auth-worker<1>: "
     "pam(a,192.0.2.1): unknown user", "dovecot", "auth-worker", None, "Info",
     "conn unix:auth-worker (pid=1,uid=2): auth-worker<1>: pam(a,192.0.2.1): unknown user"),
    ("Nov 24 10:00:01 pop3-login: Warning: x", "dovecot", "pop3-login", None, "Warning", "x"),
    # an unpadded day
    ("Sep 8 07:46:30 mx postfix/smtpd[1]: x", "postfix", "smtpd", "mx", None, "x"),
    # daemontools' multilog: a TAI64N label, then the program's own line (no host)
    ("@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed, 1 attempts): rip=192.0.2.1",
     "dovecot", "imap-login", None, "Info", "Aborted login (auth failed, 1 attempts): rip=192.0.2.1"),
    ("@400000004c91b044077a9e94 dovecot-auth: pam_unix(dovecot:auth): authentication failure;",
     "dovecot-auth", "dovecot-auth", None, None, "pam_unix(dovecot:auth): authentication failure;"),
    # multilog before a line with its own time (Dovecot's log_path to stderr, Postfix's maillog_file)
    ("@400000006779f6af075bcd15 Jan 05 03:04:05 imap-login: Info: x", "dovecot", "imap-login", None, "Info", "x"),
    ("@400000006779f6af075bcd15 Jan 05 03:04:05 mx1 postfix/smtpd[123]: x", "postfix", "smtpd", "mx1", None, "x"),
    # Dovecot 2.4: the request's prefix, a worker's request number
    ("Dec 03 17:01:44 auth-worker(bob,203.0.113.67)<23456><4m/Yj2b8Zq7AqKgB>: request [3]: Info: pam: x",
     "dovecot", "auth-worker", None, "Info", "pam: x"),
    # PAM inside Dovecot's auth process, through syslog: its program name as the tag
    ("Apr 19 05:22:20 vm5 auth: pam_unix(dovecot:auth): authentication failure;",
     "auth", "auth", "vm5", None, "pam_unix(dovecot:auth): authentication failure;"),
])
def test_formats(text, family, service, host, level, message):
    line = parse(text, YearGuess(REF))
    assert line is not None
    assert (line.family, line.service, line.host, line.level, line.message) == (
        family, service, host, level, message)


def test_rfc3339_time_is_exact():
    line = parse("2026-11-24T10:00:01.250000+01:00 mx postfix/smtpd[1]: x", YearGuess(REF))
    assert line.time == datetime.fromisoformat("2026-11-24T09:00:01.250000+00:00").timestamp()


def test_tai64n_time_is_exact():
    # daemontools' tai64nlocal: seconds since 1970 plus 2^62 + 10, then nanoseconds (0x0c3b1f94)
    line = parse("@4000000052a4b0440c3b1f94 imap-login: Info: x", YearGuess(REF))
    assert line.time == pytest.approx(datetime.fromisoformat("2013-12-08T17:45:30.2052013+00:00").timestamp())


def test_without_a_tai64n_label_a_host_is_needed():
    assert parse("Nov 24 10:00:01 x: reject: ", YearGuess(REF)) is None


def test_classic_fraction_kept():
    line = parse("Nov 24 10:00:01.250000 mx postfix/smtpd[1]: x", YearGuess(REF))
    assert line.time == local(2026, 11, 24, 10, 0, 1) + 0.25


def test_year_is_inferred_from_the_reference():
    years = YearGuess(REF)
    assert parse("Nov 24 10:00:01 mx p/s[1]: x", years).time == local(2026, 11, 24, 10, 0, 1)
    # a date more than a day after the reference is last year's
    assert parse("Dec 25 10:00:01 mx p/s[1]: x", years).time == local(2025, 12, 25, 10, 0, 1)
    # up to a day ahead is tolerated (clock skew between hosts)
    assert parse("Nov 25 10:00:01 mx p/s[1]: x", years).time == local(2026, 11, 25, 10, 0, 1)


def test_a_log_that_crosses_new_year():
    years = YearGuess(local(2027, 1, 1, 0, 30, 0))   # read just after midnight
    first = parse("Dec 31 23:59:59 mx postfix/smtpd[1]: x", years)
    second = parse("Jan  1 00:00:01 mx postfix/smtpd[1]: x", years)
    assert first.time == local(2026, 12, 31, 23, 59, 59)
    assert second.time == local(2027, 1, 1, 0, 0, 1)
    assert second.time - first.time == 2


def test_february_29_goes_to_a_leap_year():
    line = parse("Feb 29 10:00:00 mx postfix/smtpd[1]: x", YearGuess(REF))
    assert time.localtime(line.time)[:3] == (2024, 2, 29)


@pytest.mark.parametrize("text", [
    "",
    "garbage",
    "Nov 24 10:00:01",
    "Nov 24 10:00:01 mx",
    "Nov 24 10:00:01 mx postfix/smtpd[123]",        # no ": "
    "Foo 24 10:00:01 mx postfix/smtpd[1]: x",
    "Nov 32 10:00:01 mx postfix/smtpd[1]: x",
    "Feb 30 10:00:01 mx postfix/smtpd[1]: x",
    "2026-13-45T99:00:01Z mx postfix/smtpd[1]: x",
    "<13>Nov 24 10:00:01 mx postfix/smtpd[1]: x",    # raw syslog with its PRI
    "\x00\x00\x00Nov 24 10:00:01 mx postfix/smtpd[1]: x",
    "Nov 24 10:00:01 mx postfix/smtpd[1]: " + "A" * 1_000_000 + "\ufffd",
])
def test_garbage_gives_none_or_a_line_never_an_exception(text):
    line = parse(text, YearGuess(REF))
    if text.startswith("Nov 24 10:00:01 mx postfix/smtpd[1]: A"):
        assert line is not None and len(line.message) > 1_000_000
    else:
        assert line is None
