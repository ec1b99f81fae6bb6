"""The live bans of fail2ban's database, as adaptive takes them: each address once, with the time it has
left and the bans it had before (its history, which adaptive's escalation counts).

>>> found = read_bans(Path("/var/lib/fail2ban/fail2ban.sqlite3"), jails={"postfix-sasl", "dovecot"}, now=time.time())
>>> found.live[0]
LiveBan(target='192.0.2.50', jail='postfix-sasl', end=1796359187.0, count=2, earlier=((1796351979.0, 1.0),))

fail2ban 1.0 (server/database.py, schema version 4) keeps two tables of bans: `bips`, one row per
address and jail, its latest ban (`timeofban`, `bantime` in seconds, -1 for good, and `bancount`, the
bans it had in that jail, this one included, when bantime.increment is on); and `bans`, one row per
ban, until `dbpurgeage` has passed. A ban is live when `bantime` is negative or `timeofban + bantime`
is still to come. The file is opened read-only (`mode=ro`): fail2ban may be running on it.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from adaptive.addresses import parse_network, text

# Earlier bans one imported ban carries (the control socket takes at most 1000): the latest are kept.
MAX_EARLIER = 999


class DatabaseError(Exception):
    """fail2ban's database cannot be read; the message names the file."""


@dataclass(frozen=True, slots=True)
class LiveBan:
    """One address's live ban in fail2ban, as adaptive imports it.

    `target` is the address as adaptive writes it; `end` None for a ban for good; `count` its bans
    (this one included: fail2ban's bancount, over every migrated jail, or the bans its database still
    holds, whichever is more); `earlier` the (time, seconds or None) of the `count - 1` before this one,
    those the database no longer holds at the time of this one and with length 0 (not known)."""

    target: str
    jail: str
    end: float | None
    count: int
    earlier: tuple[tuple[float, float | None], ...] = ()
    start: float = 0.0


@dataclass(frozen=True, slots=True)
class BansRead:
    """What the database holds: the live bans of the migrated jails, and what was left out."""

    live: list[LiveBan]
    expired: Counter[str] = field(default_factory=Counter)       # jail -> bans over (not imported)
    other_jails: Counter[str] = field(default_factory=Counter)   # jail -> live bans of jails not migrated
    invalid: list[tuple[str, str, str]] = field(default_factory=list)   # (address, jail, why)
    version: int | None = None


def read_bans(path: Path, jails: Collection[str], now: float) -> BansRead:
    """The live bans of `jails` in the fail2ban database at `path`, read-only. DatabaseError if it is
    not one (or not one of fail2ban 0.10 or later, which have `bips`)."""
    if not path.is_file():
        raise DatabaseError(f"{path}: no such file (fail2ban's database: fail2ban.conf dbfile)")
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=10)
    except sqlite3.Error as e:
        raise DatabaseError(f"{path}: {e}") from None
    try:
        db.execute("BEGIN")          # both tables as of one moment, while fail2ban may write
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "bips" not in tables or "bans" not in tables:
            raise DatabaseError(f"{path}: not a database of fail2ban 0.10 or later (no tables bips and bans)")
        version = None
        if "fail2banDb" in tables:
            row = db.execute("SELECT version FROM fail2banDb").fetchone()
            version = row[0] if row else None
        latest = db.execute("SELECT ip, jail, timeofban, bantime, bancount FROM bips ORDER BY timeofban, ip").fetchall()
        every = db.execute("SELECT ip, jail, timeofban, bantime FROM bans ORDER BY timeofban").fetchall()
        db.execute("COMMIT")
    except sqlite3.Error as e:
        raise DatabaseError(f"{path}: {e}") from None
    finally:
        db.close()
    return _live(latest, every, set(jails), now, version)


def _live(latest: list[tuple[str, str, int, int, int]], every: list[tuple[str, str, int, int]], jails: set[str],
          now: float, version: int | None) -> BansRead:
    result = BansRead([], version=version)
    live: dict[str, tuple[str, float, float | None]] = {}    # target -> (jail, start, end) of its latest-ending ban
    counts: Counter[str] = Counter()
    for ip, jail, start, bantime, bancount in latest:
        end = None if bantime < 0 else float(start + bantime)
        is_live = end is None or end > now
        if jail not in jails:
            if is_live:
                result.other_jails[jail] += 1
            continue
        try:
            target = text(parse_network(str(ip)))
        except ValueError:
            result.invalid.append((str(ip), jail, "not an IP address or prefix"))
            continue
        counts[target] += max(1, int(bancount))
        if not is_live:
            result.expired[jail] += 1
            continue
        held = live.get(target)
        if held is None or (held[2] is not None and (end is None or end > held[2])):
            live[target] = (jail, float(start), end)
    known: dict[str, list[tuple[str, float, float | None]]] = {}
    for ip, jail, banned, bantime in every:
        if jail not in jails:
            continue
        try:
            target = text(parse_network(str(ip)))
        except ValueError:
            continue
        if target in live:
            known.setdefault(target, []).append((jail, float(banned), None if bantime < 0 else float(bantime)))
    for target, (jail, began, end) in live.items():
        # This ban is in `bans` too, unless purged (a ban for good outlives dbpurgeage): the rest came before.
        earlier = [(when, length) for of, when, length in known.get(target, []) if (of, when) != (jail, began)]
        count = max(counts[target], len(earlier) + 1)
        earlier += [(began, 0.0)] * (count - 1 - len(earlier))
        result.live.append(LiveBan(target, jail, end, count, tuple(earlier[-MAX_EARLIER:]), began))
    result.live.sort(key=lambda b: (b.start, b.target))
    return result
