"""The line prefix: when, which program, and where the message starts, for every format a mail host writes.

Formats recognised, in one pattern so a file may mix them:
- classic syslog: `Nov 24 10:00:01 mx postfix/smtpd[123]: msg` (day space- or zero-padded, optional
  fraction as journald's short-precise writes it); Postfix's own `maillog_file` is this format;
- RFC 3339 syslog: `2026-11-24T10:00:01.123456+01:00 mx postfix/smtpd[123]: msg`;
- Dovecot's own `log_path`: `Nov 24 10:00:01 imap-login: Info: msg` (no host, a level word);
- daemontools' multilog: `@4000000052a4b0440c3b1f94 imap-login: Info: msg`, a TAI64N label before
  the program's own line (no host; `dovecot-auth: msg` for what PAM wrote inside Dovecot 1.x's auth),
  or before a line that has its own time (Dovecot's log_timestamp, Postfix's maillog_file), which wins.

Dovecot lines that came through syslog (`mx dovecot: auth-worker(42): Error: msg`) are split to the
same shape as its own log's, so filters see `service="auth-worker"` and the message `msg` either way.

The pattern works on bytes and stops where the message starts: the engine runs it on candidate lines
inside a chunk without decoding them, and matches rules from that point on. Classic timestamps carry
no year: `YearGuess` picks the year that puts the line at most a day after a reference time (now for a
live log, the file's modification time for an old one), which also handles a log that crosses New Year.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime
from typing import NamedTuple

MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}

# The timestamps, as pattern pieces without groups: the engine builds its own line heads from them.
CLASSIC_TIME = (rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-3]?\d [0-2]\d:[0-5]\d:[0-6]\d"
                rb"(?:\.\d{1,9})?")
ISO_TIME = rb"\d{4}-[01]\d-[0-3]\d[T ][0-2]\d:[0-5]\d:[0-6]\d(?:\.\d{1,9})?(?:Z|[+-][0-2]\d:?[0-5]\d)?"
TAI64N = rb"@4[0-9a-f]{23}"
LEVELS = rb"Info|Warning|Error|Fatal|Panic|Debug"

_TIME = rb"(?:" + TAI64N + rb" +)?(?P<ts>" + CLASSIC_TIME + rb"|" + ISO_TIME + rb"|(?P<tai>" + TAI64N + rb"))"
_DOVECOT_PROC = rb"[a-z][a-z0-9-]*(?:\([^()\n]*\))?(?:<[^<>\n]*>)*(?:: request \[\d+\])?"
_LEVEL = LEVELS

HEAD = re.compile(
    _TIME + rb" +(?:"
    # Dovecot's log_path: process, level; no host.
    rb"(?P<dproc>" + _DOVECOT_PROC + rb"): (?P<dlevel>" + _LEVEL + rb"): "
    # a host, except after daemontools' TAI64N label, which multilog writes before the program's own line
    rb"|(?:(?P<host>[^\s\[\]:]+) )?(?(host)|(?(tai)|(?!)))(?:"
    # Dovecot through syslog: its process and level lead the message.
    rb"dovecot(?:\[\d+\])?: (?P<sproc>" + _DOVECOT_PROC + rb"): (?:(?P<slevel>" + _LEVEL + rb"): )?"
    # anything else through syslog, Postfix's maillog_file too: tag[pid]:
    rb"|(?P<tag>[^\s\[\]:]+)(?:\[\d+\])?: ))"
)
# What a line must start with to have any chance of a prefix; used to count unparsable lines in bulk.
LINE_START = re.compile(
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-3]?\d [0-2]\d:|\d{4}-[01]\d-[0-3]\d[T ]|@4[0-9a-f]{23} "
)
_CLASSIC = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ 0-3]?\d) ([0-2]\d:[0-5]\d:[0-6]\d)(\.\d{1,9})?")
_PROC_BASE = re.compile(rb"[(<:]")


class LogLine(NamedTuple):
    """A log line split into its prefix and message; `family` and `service` are what filters dispatch on.

    family: "postfix" (any `postfix-NAME` instance too), "dovecot", or the tag's first word.
    service: the program within the family: "smtpd", "postscreen", "imap-login", "auth-worker", ...
    """

    time: float
    host: str | None
    family: str
    service: str
    tag: str
    level: str | None
    message: str


class YearGuess:
    """Converts timestamps to epoch seconds, guessing the year of classic syslog ones.

    The guess puts a line at most `slack` seconds after `reference`; set `reference` to now for a live
    log, or to the file's modification time when reading an old one. Results are cached by the
    timestamp's text, since consecutive lines share their second, and by hour for the year guess.
    """

    def __init__(self, reference: float | None = None, slack: float = 86400.0):
        self.reference = time.time() if reference is None else reference
        self.slack = slack
        self._cache: dict[str, float | None] = {}
        self._hours: dict[tuple[str, str, int], float | None] = {}

    def stamp(self, text: str) -> float | None:
        """Epoch seconds of a timestamp in either format, as the prefix pattern found it."""
        if text in self._cache:
            return self._cache[text]
        result: float | None
        if text[0] == "@":
            result = _tai64n(text)
        else:
            m = _CLASSIC.fullmatch(text)
            result = self._classic(*m.groups()) if m is not None else self._iso(text)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[text] = result
        return result

    def _classic(self, mon: str, day: str, hms: str, frac: str | None) -> float | None:
        hour = self._hour(mon, day.lstrip(" 0") or "0", int(hms[:2]))
        if hour is None:
            return None
        return hour + int(hms[3:5]) * 60 + min(int(hms[6:8]), 59) + (float(frac) if frac else 0.0)

    def _hour(self, mon: str, day: str, h: int) -> float | None:
        """The start of an hour, its year guessed; cached, since a log spends an hour in each."""
        key = (mon, day, h)
        if key in self._hours:
            return self._hours[key]
        ref_year = time.localtime(self.reference).tm_year
        result = None
        for year in (ref_year + 1, ref_year, ref_year - 1, ref_year - 2, ref_year - 3, ref_year - 4):
            try:
                stamp = time.mktime((year, MONTHS[mon], int(day), h, 0, 0, 0, 0, -1))
            except (OverflowError, ValueError):
                continue
            # mktime normalises impossible dates (Feb 30) instead of failing: reject those.
            if time.localtime(stamp).tm_mday != int(day):
                continue
            if stamp <= self.reference + self.slack:
                result = stamp
                break
        if len(self._hours) > 1024:
            self._hours.clear()
        self._hours[key] = result
        return result

    @staticmethod
    def _iso(text: str) -> float | None:
        try:
            return datetime.fromisoformat(text).timestamp()  # a naive time is local, as syslog meant it
        except ValueError:
            return None


def _tai64n(text: str) -> float:
    """Epoch seconds of a TAI64N label (`@` and 24 hex digits: seconds since 1970 offset by 2^62 + 10,
    as daemontools and libtai count them, then nanoseconds)."""
    return int(text[1:17], 16) - _TAI_EPOCH + int(text[17:25], 16) / 1e9


_TAI_EPOCH = (1 << 62) + 10


class Head(NamedTuple):
    """What the engine needs of a prefix: raw timestamp, dispatch keys, where the message starts."""

    ts: bytes
    family: str
    service: str
    message_start: int


class Heads:
    """Reads prefixes at positions in a chunk, caching what repeats (program tags, process names).

    One per engine: the caches are bounded, and a tag is seen thousands of times for each new one.
    """

    def __init__(self) -> None:
        self._tags: dict[bytes, tuple[str, str]] = {}
        self._procs: dict[bytes, str] = {}

    def read(self, chunk: bytes, start: int, end: int) -> Head | None:
        m = HEAD.match(chunk, start, end)
        if m is None:
            return None
        ts, _, dproc, _, _, sproc, _, tag = m.groups()
        proc = dproc or sproc
        if proc is not None:
            service = self._procs.get(proc)
            if service is None:
                service = _PROC_BASE.split(proc, 1)[0].decode("ascii")
                if len(self._procs) < 4096:
                    self._procs[proc] = service
            return Head(ts, "dovecot", service, m.end())
        known = self._tags.get(tag)
        if known is None:
            name = tag.decode("utf-8", "replace")
            first = name.partition("/")[0]
            known = ("postfix" if first.startswith("postfix") else first, name.rpartition("/")[2])
            if len(self._tags) < 4096:
                self._tags[tag] = known
        return Head(ts, known[0], known[1], m.end())


def parse(text: str, years: YearGuess) -> LogLine | None:
    """Split a line; None when its prefix is not one of the recognised formats."""
    raw = text.encode("utf-8", "surrogateescape")
    m = HEAD.match(raw)
    if m is None:
        return None
    stamp = years.stamp(m["ts"].decode("ascii"))
    if stamp is None:
        return None
    head = Heads().read(raw, 0, len(raw))
    assert head is not None     # HEAD matched above, and it is all `Heads.read` matches
    host = m["host"].decode("utf-8", "replace") if m["host"] is not None else None
    proc = m["dproc"] or m["sproc"]
    level = (m["dlevel"] or m["slevel"] or b"Info") if proc is not None else None
    tag = (proc or m["tag"]).decode("utf-8", "replace")
    message = raw[head.message_start:].decode("utf-8", "surrogateescape")
    return LogLine(stamp, host, head.family, head.service, tag, level.decode("ascii") if level is not None else None,
                   message)
