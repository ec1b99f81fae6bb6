"""The line prefix: when, which program, and the message, for every format a mail host writes.

Formats recognised, in one pattern so a file may mix them:
- classic syslog: `Nov 24 10:00:01 mx postfix/smtpd[123]: msg` (day space- or zero-padded, optional
  fraction as journald's short-precise writes it); Postfix's own `maillog_file` is this format;
- RFC 3339 syslog: `2026-11-24T10:00:01.123456+01:00 mx postfix/smtpd[123]: msg`;
- Dovecot's own `log_path`: `Nov 24 10:00:01 imap-login: Info: msg` (no host, a level word).

Dovecot lines that came through syslog (`mx dovecot: auth-worker(42): Error: msg`) are normalised
to the same shape as its own log's, so filters see `service="auth-worker"` either way.

Classic timestamps carry no year: `YearGuess` picks the year that puts the line at most a day after a
reference time (now for a live log, the file's modification time for an old one), which also handles a
log that crosses New Year.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime
from typing import NamedTuple

MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}

_TIME = (
    r"(?:(?P<classic>(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<day>[ 0-3]?\d)"
    r" (?P<hms>[0-2]\d:[0-5]\d:[0-6]\d)(?P<frac>\.\d{1,9})?)"
    r"|(?P<iso>\d{4}-[01]\d-[0-3]\d[T ][0-2]\d:[0-5]\d:[0-6]\d(?:\.\d{1,9})?(?:Z|[+-][0-2]\d:?[0-5]\d)?))"
)
_DOVECOT_PROC = r"[a-z][a-z0-9-]*(?:\([^()]*\))?(?:<[^<>]*>)*"
_LEVEL = r"Info|Warning|Error|Fatal|Panic|Debug"

PREFIX = re.compile(
    _TIME + r" +(?:"
    # Dovecot's log_path: process, level, message; no host.
    rf"(?P<dproc>{_DOVECOT_PROC}): (?P<dlevel>{_LEVEL}): "
    # syslog and maillog_file: host, tag[pid]:
    r"|(?P<host>[^\s\[\]:]+) (?P<tag>[^\s\[\]:]+)(?:\[(?P<pid>\d+)\])?: )"
    r"(?P<msg>.*)",
    re.DOTALL,
)
# A Dovecot message as it comes through syslog: `imap-login: Login: ...`, `auth: Error: ...`.
_DOVECOT_MSG = re.compile(rf"(?P<proc>{_DOVECOT_PROC}): (?:(?P<level>{_LEVEL}): )?(?P<msg>.*)", re.DOTALL)
_PROC_BASE = re.compile(r"[(<]")
# What a line must start with to have any chance of a prefix; used to count unparsable lines in bulk.
LINE_START = re.compile(
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-3]?\d [0-2]\d:|\d{4}-[01]\d-[0-3]\d[T ]"
)


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
    timestamp's text, since consecutive lines share their second.
    """

    def __init__(self, reference: float | None = None, slack: float = 86400.0):
        self.reference = time.time() if reference is None else reference
        self.slack = slack
        self._cache: dict[str, float] = {}

    def classic(self, text: str, mon: str, day: str, hms: str, frac: str | None) -> float | None:
        """Epoch seconds of a classic timestamp `text`, given its parts as the prefix pattern split it."""
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        key = text
        day = day.lstrip(" 0") or "0"
        h, m, s = (int(x) for x in hms.split(":"))
        ref_year = time.localtime(self.reference).tm_year
        result = None
        for year in (ref_year + 1, ref_year, ref_year - 1, ref_year - 2, ref_year - 3, ref_year - 4):
            try:
                stamp = time.mktime((year, MONTHS[mon], int(day), h, m, min(s, 59), 0, 0, -1))
            except (OverflowError, ValueError):
                continue
            # mktime normalises impossible dates (Feb 30) instead of failing: reject those.
            if time.localtime(stamp).tm_mday != int(day):
                continue
            if stamp <= self.reference + self.slack:
                result = stamp + (float(frac) if frac else 0.0)
                break
        if result is not None:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = result
        return result

    def iso(self, text: str) -> float | None:
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        stamp = dt.timestamp()  # a naive time is local time, as syslog meant it
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[text] = stamp
        return stamp


def parse(text: str, years: YearGuess) -> LogLine | None:
    """Split a line; None when its prefix is not one of the recognised formats."""
    parts = split(text, years)
    return None if parts is None else LogLine(*parts)


_TAGS: dict[str, tuple[str, str]] = {}


def split(text: str, years: YearGuess) -> tuple | None:
    """`parse` without building a LogLine: the engine's hot path calls this for every candidate line."""
    m = PREFIX.match(text)
    if m is None:
        return None
    # One call for all groups, and caches for the rest: this runs for every line the prefilter keeps.
    classic, mon, day, hms, frac, iso, proc, level, host, tag, pid, message = m.groups()
    if classic is not None:
        stamp = years.classic(classic, mon, day, hms, frac)
    else:
        stamp = years.iso(iso)
    if stamp is None:
        return None
    if proc is not None:
        return stamp, None, "dovecot", _PROC_BASE.split(proc, 1)[0], proc, level, message
    if tag == "dovecot":
        d = _DOVECOT_MSG.match(message)
        if d is None:
            return stamp, host, "dovecot", "dovecot", tag, None, message
        proc = d["proc"]
        return stamp, host, "dovecot", _PROC_BASE.split(proc, 1)[0], proc, d["level"] or "Info", d["msg"]
    known = _TAGS.get(tag)
    if known is None:
        first = tag.partition("/")[0]
        known = ("postfix" if first.startswith("postfix") else first, tag.rpartition("/")[2])
        if len(_TAGS) < 4096:
            _TAGS[tag] = known
    return stamp, host, known[0], known[1], tag, None, message
