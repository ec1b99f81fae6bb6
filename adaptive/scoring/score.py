"""The scorer: events in, offences out. One score per address, a slow score, and burst windows.

Per address (an IPv4 address, or an IPv6 prefix, see `keys`):

- the **score**: each event adds its weight (the rule's own, else its kind's from the configuration)
  times its count, and the score halves every `half_life` seconds of log time. Reaching `threshold`
  is an offence, reason "score". With the defaults (4.5, an hour) five failures within ten minutes
  always reach it (at least 1 + 4 × 2^(−600/3600) = 4.56), and four never do, however close: the
  5-in-10-minutes of fail2ban, without its cliff at the eleventh minute;
- the **slow score**: the same weights, for the kinds in `slow_kinds` only (failed logins), halving
  every `slow_half_life` (two days): ten failures within a day, however spread, reach
  `slow_threshold` (7; at least 1 + 9 × 2^(−1/2) = 7.36), which is what botnets that pace their
  guesses to stay under fail2ban do. Reason "slow";
- **forgiveness**: an `auth_success` from the address takes `forgive` off both scores, from the part
  the kinds in `forgive_kinds` made only: a login proves a real user behind the address (a NAT'd
  office, a user who mistyped), but not that the probes and rejects from it were theirs.

Once an address has offended for a reason it does not again for that reason until the score has decayed
back below the line (or `forgive()` reset it): decisions has banned it, and coming back after the ban
to do it again must offend again.

**Each attempt is counted once.** Filter rules carry a `tally` mark for the lines that log one
authentication attempt twice:

- "auth": the authentication service's line for one attempt (Dovecot with `auth_verbose = yes`:
  `passwd-file(user,ip): Password mismatch`);
- "summary": a login process's summary of a connection, `count` attempts (Dovecot's
  `Disconnected (auth failed, N attempts ...)`), logged in both Dovecot configurations;
- "sasl": a SASL client's line for one attempt (Postfix's `SASL LOGIN authentication failed`), which
  the authentication service logs too when it is Dovecot with `auth_verbose = yes`;
- "pam": PAM's own line for one attempt (`pam_unix(dovecot:auth): authentication failure; ...`), which
  Dovecot's auth line may duplicate (`pam(user,ip): pam_authenticate() failed`);
- "sasl-summary": a SASL client's summary of a connection, `count` failed attempts (Postfix's
  `disconnect from ... auth=0/N`), of which its "sasl" lines may have counted some already.

Per address the scorer keeps two small tallies. `pending` counts "auth" lines no summary has claimed: a
summary of N attempts adds only the attempts beyond them, then takes them, so with `auth_verbose = yes`
the per-attempt lines carry the weight and the summary adds nothing, and with `auth_verbose = no` (only
summaries) the summary carries it all. A "sasl" line within `pair_window` seconds of a pending "auth"
line takes it instead and adds nothing (Dovecot logged that SMTP attempt already); otherwise it counts
and waits in `unpaired`, for an "auth" line that comes within the window to take it and add nothing
(two log files read in turns may bring the Postfix line first). Whichever line a pairing takes, the
number of attempts counted comes out right: an "auth" line taken by a "sasl" one leaves its
connection's summary to count it. A "pam" line is an "auth" line unless Dovecot's own line for the
attempt came within the window (`echo` counts Dovecot's lines less PAM's), and then adds nothing;
likewise a Dovecot line after a PAM one. `sasl_seen` counts "sasl" lines no "sasl-summary" has claimed,
which adds only the attempts beyond them. A rule without the mark counts every line.

**Bursts** (see `bursts`), each with its own window and limit: messages accepted per client address
without login (reason "spam_burst"), recipients rejected per address (unknown users and relay
attempts: "harvest"), different user names tried per address ("dictionary"), and messages and
recipients per SASL account ("account", reported on every address the account sent from in the
window, with its name).
"""

from __future__ import annotations

import math
import pickle
import zlib
from collections.abc import Iterable, Mapping
from socket import AF_INET6, inet_aton, inet_pton
from typing import Any

from adaptive.addresses import Network
from adaptive.config import ScoringConfig
from adaptive.events import Event, Kind, Tally
from adaptive.scoring.bursts import Accounts, Burst, Distinct
from adaptive.scoring.keys import EXACT, Keys
from adaptive.scoring.offence import Offence
from adaptive.scoring.table import NO_RULE, Table

_AUTH, _SASL, _SUMMARY, _PAM, _SASL_SUMMARY = 1, 2, 3, 4, 5
# Each tally mark's role in the table; a snapshot keeps the numbers, so one never changes its meaning.
_ROLES: dict[str, int] = {Tally.AUTH: _AUTH, Tally.SASL: _SASL, Tally.SUMMARY: _SUMMARY, Tally.PAM: _PAM,
          Tally.SASL_SUMMARY: _SASL_SUMMARY}

# The `tally` marks of the shipped filter files, for a scorer given no filters (tests check they agree).
SHIPPED_TALLIES: dict[str, str] = {
    "dovecot/auth-password-mismatch": "auth",
    "dovecot/auth-unknown-user": "auth",
    "dovecot/auth-pam-failure": "auth",
    "dovecot/auth-username-disallowed": "auth",
    "dovecot/auth-invalid-credentials": "auth",
    "dovecot/auth-checkpassword-failed": "auth",
    "dovecot/auth24-password-mismatch": "auth",
    "dovecot/auth24-unknown-user": "auth",
    "dovecot/auth24-pam-failure": "auth",
    "dovecot/auth24-username-disallowed": "auth",
    "dovecot/pam-unix-failure": "pam",
    "dovecot/login-auth-failed": "summary",
    "postfix/sasl-auth-failed": "sasl",
    "postfix/disconnect-auth-failed": "sasl-summary",
}

_SUCCESS = Kind.AUTH_SUCCESS
_ACCEPTED = Kind.MESSAGE_ACCEPTED
_FAILURE = Kind.AUTH_FAILURE
_HARVEST = frozenset((Kind.UNKNOWN_USER, Kind.RELAY_DENIED))
_SCORE, _SLOW = 1, 2            # offended flags
_NEGLIGIBLE = 64                # a score under threshold/64 is worth nothing (see `table`)
_LN2 = math.log(2)
_MAX_TALLY = 255
# What a snapshot's scorer must carry to be restored: bumped when the scorer or its table gain state
# (2: the `echo` and `sasl_seen` tallies, split IPv6 prefixes).
SNAPSHOT_VERSION = 2
_MAX_ECHO = 127
_from_bytes = int.from_bytes


def tallies(filters: Iterable[Any]) -> dict[str, str]:
    """The `tally` marks of loaded filters, as "filter/rule" -> mark, for `Scorer(..., tallies=)`."""
    return {f"{f.name}/{r.id}": r.tally for f in filters for r in f.rules if getattr(r, "tally", None)}


class Scorer:
    """Turns events into offences.

    >>> scorer = Scorer(config.scoring)
    >>> for event in events:
    ...     for offence in scorer.feed(event): decider.decide(offence)

    Feed it the events of every log, in the order they are read: its only clock is the events' own
    time, so a replayed log gives the offences the live one did. `tallies` names the rules that log one
    attempt twice (see above); by default those of the shipped filters, so give `tallies(filters)` when
    the filters are your own. Not thread-safe.
    """

    def __init__(self, config: ScoringConfig, tallies: Mapping[str, str] | None = None):
        c = self.config = config
        self.version = SNAPSHOT_VERSION
        self.keys = Keys(c.ipv6_prefix)
        self.table = Table(c.max_sources)
        self.spam = Burst(c.spam_window, c.spam_limit, c.burst_events)
        self.harvest = Burst(c.harvest_window, c.harvest_limit, c.burst_events)
        self.dictionary = Distinct(c.dictionary_window, c.dictionary_limit, c.burst_events)
        self.accounts = Accounts(c.account_window, c.account_messages, c.account_recipients, c.burst_events)
        self.now = -math.inf            # the latest event time seen
        self._shift = self.keys.shift
        self._split = self.keys.split
        self._index = self.table.index
        self._weight = {Kind(kind): weight for kind, weight in c.weights}
        self._forgivable = frozenset(Kind(k) for k in c.forgive_kinds)
        self._slow_kinds = frozenset(Kind(k) for k in c.slow_kinds)
        self._rate = _LN2 / c.half_life
        self._slow_rate = _LN2 / c.slow_half_life
        self._epsilon = c.threshold / _NEGLIGIBLE
        self._slow_epsilon = c.slow_threshold / _NEGLIGIBLE
        marks = SHIPPED_TALLIES if tallies is None else tallies
        for name, mark in marks.items():
            if mark not in _ROLES:
                raise ValueError(f"{name}: tally {mark!r} is not one of {', '.join(Tally)}")
        self._marks = {name: _ROLES[mark] for name, mark in marks.items()}
        self._rule_ids: dict[str, dict[str, int]] = {}   # filter -> rule -> id
        self._rule_names: list[str] = []                  # id -> "filter/rule"
        self._roles: list[int] = []                       # id -> tally role (0: none)
        t = self.table
        self._columns = (t.index, t.time, t.expiry, t.score, t.fixed, t.slow, t.slow_fixed, t.flags,
                         t.pending, t.unpaired, t.paired_at, t.rule, t.hits, t.rule2, t.hits2)

    def snapshot(self) -> bytes:
        """Everything the scorer holds (scores, tallies, burst windows), compressed: about 8 bytes a
        tracked address, 60 ms for 100,000. For the state, which only adaptive writes and root reads."""
        return zlib.compress(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL), 1)

    @classmethod
    def restore(cls, snapshot: bytes, config: ScoringConfig, tallies: Mapping[str, str] | None = None) -> Scorer | None:
        """The scorer a `snapshot` holds, if it was made with this configuration and these tallies;
        None otherwise (its scores would mean something else now) or if it cannot be read."""
        try:
            scorer = pickle.loads(zlib.decompress(snapshot))
        except Exception:
            return None
        if not isinstance(scorer, cls) or getattr(scorer, "version", 1) != SNAPSHOT_VERSION \
                or scorer.config != config or scorer._marks != cls(config, tallies)._marks:
            return None
        return scorer

    def split_around(self, networks: Iterable[Network]) -> None:
        """Score each address of a scored IPv6 prefix that holds one of `networks` (the addresses
        that are never banned) on its own (see `keys`)."""
        self.keys.split_around(networks)
        self._split = self.keys.split

    def __len__(self) -> int:
        """Addresses tracked (with a score); burst windows hold theirs apart, bounded by their own cap."""
        return len(self.table.index)

    @property
    def evictions(self) -> int:
        return self.table.evictions

    # --- the hot path ---

    def feed(self, event: Event) -> list[Offence]:
        """The offences this event makes (usually none)."""
        t = event.time
        if t > self.now:
            self.now = t
        ip = event.ip
        if ":" in ip:
            x = _from_bytes(inet_pton(AF_INET6, ip), "big")
            key = ~(x >> self._shift)
            if key in self._split:
                key = ~(x + EXACT)
        else:
            key = _from_bytes(inet_aton(ip), "big")
        kind = event.kind
        if kind is _SUCCESS:
            s = self._index.get(key)   # mostly a user nobody suspects: nothing to forgive
            return [] if s is None else self._forgive(s, t)
        if kind is _ACCEPTED:
            return self._accepted(event, t, key)
        rules = self._rule_ids.get(event.filter)
        r = None if rules is None else rules.get(event.rule)
        if r is None:
            r = self._new_rule(event.filter, event.rule)
        w = event.weight
        if w is None:
            w = self._weight[kind]
        n = event.count
        offences: list[Offence] = []
        if w > 0.0:
            (index, time, expiry, score, fixed, slow, slow_fixed, flags, pending, unpaired, paired_at,
             rule, hits, rule2, hits2) = self._columns
            s = index.get(key)
            if s is None:
                s = self.table.add(key, t)
            else:
                dt = t - time[s]
                if dt > 0.0:
                    time[s] = t
                    d = math.exp(-dt * self._rate)
                    score[s] *= d
                    fixed[s] *= d
                    d = math.exp(-dt * self._slow_rate)
                    slow[s] *= d
                    slow_fixed[s] *= d
            role = self._roles[r]
            if role:
                n = self._tally(role, s, t, n)
            if n > 0:
                a = w * n
                if kind in self._forgivable:
                    score[s] += a
                    if kind in self._slow_kinds:
                        slow[s] += a
                else:
                    fixed[s] += a
                    if kind in self._slow_kinds:
                        slow_fixed[s] += a
            # The address's rules: its most frequent, and the latest other one.
            if rule[s] == r:
                if hits[s] < 0xFFFF:
                    hits[s] += 1
            elif rule2[s] == r:
                h = hits2[s] + 1 if hits2[s] < 0xFFFF else 0xFFFF
                if h > hits[s]:
                    rule2[s], hits2[s] = rule[s], hits[s]
                    rule[s], hits[s] = r, h
                else:
                    hits2[s] = h
            elif rule[s] == NO_RULE:
                rule[s], hits[s] = r, 1
            else:
                rule2[s], hits2[s] = r, 1
            total = score[s] + fixed[s]
            slow_total = slow[s] + slow_fixed[s]
            f = flags[s]
            if total >= self.config.threshold:
                if not f & _SCORE:
                    f |= _SCORE
                    offences.append(Offence(t, self.keys.target(key), "score", total, self._rules(s)))
            elif f & _SCORE:
                f &= ~_SCORE
            if slow_total >= self.config.slow_threshold:
                if not f & _SLOW:
                    f |= _SLOW
                    offences.append(Offence(t, self.keys.target(key), "slow", slow_total, self._rules(s)))
            elif f & _SLOW:
                f &= ~_SLOW
            flags[s] = f
            expiry[s] = self._expiry(t, total, slow_total)
        if kind in _HARVEST:
            c = self.harvest.add(t, key, n)
            if c:
                offences.append(Offence(t, self.keys.target(key), "harvest", float(c),
                                        self._rules_of(key, r, c)))
        elif kind is _FAILURE and event.user is not None:
            c = self.dictionary.add(t, key, event.user)
            if c:
                offences.append(Offence(t, self.keys.target(key), "dictionary", float(c),
                                        self._rules_of(key, r, c)))
        return offences

    def _tally(self, role: int, s: int, t: float, n: int) -> int:
        """How many of a marked line's `n` attempts are not counted yet (see the module's doc)."""
        table = self.table
        pending, unpaired, paired_at = table.pending, table.unpaired, table.paired_at
        window = self.config.pair_window
        base = table.base
        assert base is not None     # the slot is there, so the table has its base
        since = t - base
        if role == _AUTH or role == _PAM:
            # The same attempt in Dovecot's auth line and in PAM's own: whichever comes second adds
            # nothing (`echo` is Dovecot's lines less PAM's, within the window); the first is an "auth".
            e = table.echo[s]
            if e and since - paired_at[s] <= window:
                if (e > 0) == (role == _PAM):
                    table.echo[s] = e - 1 if e > 0 else e + 1
                    return 0
            else:
                e = 0
            table.echo[s] = min(_MAX_ECHO, e + 1) if role == _AUTH else max(-_MAX_ECHO, e - 1)
            u = unpaired[s]
            if u and since - paired_at[s] <= window:
                unpaired[s] = u - 1
                return 0
            pending[s] = min(_MAX_TALLY, pending[s] + n)
            paired_at[s] = since
            return n
        if role == _SASL:
            seen = table.sasl_seen
            seen[s] = min(_MAX_TALLY, seen[s] + n)
            p = pending[s]
            if p and since - paired_at[s] <= window:
                pending[s] = p - 1
                return 0
            unpaired[s] = min(_MAX_TALLY, unpaired[s] + n)
            paired_at[s] = since
            return n
        claims = pending if role == _SUMMARY else table.sasl_seen   # a summary, of which lines
        p = claims[s]
        if p >= n:
            claims[s] = p - n
            return 0
        claims[s] = 0
        return n - p

    def _forgive(self, s: int, t: float) -> list[Offence]:
        """A login from a tracked address: take `forgive` off the forgivable parts of its scores."""
        (_, time, expiry, score, fixed, slow, slow_fixed, flags, *_) = self._columns
        dt = t - time[s]
        d = math.exp(-dt * self._rate) if dt > 0.0 else 1.0
        ds = math.exp(-dt * self._slow_rate) if dt > 0.0 else 1.0
        if dt > 0.0:
            time[s] = t
        forgive = self.config.forgive
        score[s] = max(0.0, score[s] * d - forgive)
        fixed[s] *= d
        slow[s] = max(0.0, slow[s] * ds - forgive)
        slow_fixed[s] *= ds
        total, slow_total = score[s] + fixed[s], slow[s] + slow_fixed[s]
        f = flags[s]
        if f & _SCORE and total < self.config.threshold:
            f &= ~_SCORE
        if f & _SLOW and slow_total < self.config.slow_threshold:
            f &= ~_SLOW
        flags[s] = f
        expiry[s] = self._expiry(t, total, slow_total)
        return []

    def _accepted(self, event: Event, t: float, key: int) -> list[Offence]:
        """A message accepted: spam bursts per address without login, accounts with one."""
        user = event.user
        if user is None:
            c = self.spam.add(t, key, 1)
            if c:
                return [Offence(t, self.keys.target(key), "spam_burst", float(c),
                                {f"{event.filter}/{event.rule}": c})]
            return []
        value, addresses = self.accounts.add(t, user, key, event.count)
        if not addresses:
            return []
        name = f"{event.filter}/{event.rule}"
        sent = self.accounts.accounts[user].addresses
        return [Offence(t, self.keys.target(k), "account", float(value), {name: sent[k]}, user)
                for k in addresses]

    def _expiry(self, t: float, total: float, slow_total: float) -> float:
        """When both scores will have decayed to nothing worth keeping, after the table's base."""
        base = self.table.base
        assert base is not None     # the slot is there, so the table has its base
        e = t - base
        if total > self._epsilon:
            e += math.log(total / self._epsilon) / self._rate
        if slow_total > self._slow_epsilon:
            e = max(e, t - base + math.log(slow_total / self._slow_epsilon) / self._slow_rate)
        return e

    # --- rules ---

    def _new_rule(self, filter: str, rule: str) -> int:
        name = f"{filter}/{rule}"
        r = len(self._rule_names)
        if r >= NO_RULE:
            raise ValueError(f"more than {NO_RULE} rules")
        self._rule_names.append(name)
        self._roles.append(self._marks.get(name, 0))
        self._rule_ids.setdefault(filter, {})[rule] = r
        return r

    def _rules(self, s: int) -> dict[str, int]:
        """A slot's rules with their events: its most frequent and the latest other."""
        t = self.table
        out = {}
        if t.rule[s] != NO_RULE:
            out[self._rule_names[t.rule[s]]] = t.hits[s]
        if t.rule2[s] != NO_RULE:
            out[self._rule_names[t.rule2[s]]] = t.hits2[s]
        return out

    def _rules_of(self, key: int, r: int, count: int) -> dict[str, int]:
        """For a burst: the address's rules if it has a score, else the event's rule with the count."""
        s = self.table.index.get(key)
        return self._rules(s) if s is not None else {self._rule_names[r]: count}

    # --- the side doors: unban and explain ---

    def forgive(self, target: str) -> None:
        """Forget what the address (or every address in the prefix) did: scores and windows reset.

        For an unban: the target starts afresh, but for the attempts already counted, whose late
        summaries must not count them again. ValueError for a target that is no address or prefix.
        """
        table = self.table
        for low, high in self.keys.ranges(target):
            if low == high:
                if low in table.index:
                    table.forgive(low)
            else:
                for key in [k for k in table.index if low <= k <= high]:
                    table.forgive(key)
            for window in (self.spam, self.harvest, self.dictionary, self.accounts):
                window.forget(low, high)

    def explain(self, address: str) -> dict[str, Any] | None:
        """What the scorer holds about an address (or its IPv6 prefix), decayed to the latest event
        time; None when nothing. ValueError for a prefix wider than one key, or no address.

        {"target", "time" (the latest event time), "score", "forgivable" (the part a login takes
        back), "threshold", "slow", "slow_threshold", "updated" (its last event, None if untracked),
        "rules" ("filter/rule" -> events), "offended" (reasons not to repeat), "pending_attempts",
        "windows" (counts per burst detector; "account": messages per account sent from it)}
        """
        low, high = self.keys.parse(address)
        if low != high:
            raise ValueError(f"{address!r} holds more than one scored address: give an address")
        key = low
        windows = {"spam_burst": self.spam.count(key), "harvest": self.harvest.count(key),
                   "dictionary": self.dictionary.count(key), "account": self.accounts.sent(key)}
        t = self.table
        s = t.index.get(key)
        if s is None and not any(windows.values()):
            return None
        c = self.config
        out: dict[str, Any] = {"target": self.keys.target(key), "time": self.now, "score": 0.0, "forgivable": 0.0,
               "threshold": c.threshold, "slow": 0.0, "slow_threshold": c.slow_threshold, "updated": None,
               "rules": {}, "offended": [], "pending_attempts": 0, "windows": windows}
        if s is not None:
            dt = max(0.0, self.now - t.time[s])
            d, ds = math.exp(-dt * self._rate), math.exp(-dt * self._slow_rate)
            out.update({
                "score": (t.score[s] + t.fixed[s]) * d,
                "forgivable": t.score[s] * d,
                "slow": (t.slow[s] + t.slow_fixed[s]) * ds,
                "updated": t.time[s],
                "rules": self._rules(s),
                "offended": [reason for bit, reason in ((_SCORE, "score"), (_SLOW, "slow")) if t.flags[s] & bit],
                "pending_attempts": t.pending[s],
            })
        for name, window in (("spam_burst", self.spam), ("harvest", self.harvest), ("dictionary", self.dictionary)):
            if key in window.flagged:
                out["offended"].append(name)
        if any(a.reported and key in a.reported for a in self.accounts.accounts.values()):
            out["offended"].append("account")
        return out
