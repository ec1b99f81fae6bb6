"""Decisions: what an offence leads to. A ban of its target, as long as the target's record says, or a
ban that is recorded but not enforced (dry run), or none at all because the target is protected.

A `Decision` carries everything that led to it: the reason, the score, the rules and their event
counts, and `n`, the target's ban count within the look-back period, which sets the length
(`base × multiplier^(n−1)`, capped; see `BanProfile`). Counts come from the state's ban history, so a
restart forgets no repeat offender.

Never banned, whatever the score: the allowlist, loopback and the host's own addresses, and no prefix
that holds any of them. When enough addresses in one prefix are banned within a window, the prefix itself
is banned (reason "subnet"). Time is the offence's own, the log's, so a replay decides as the live run
did; the clock is read only for a manual ban.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from bisect import bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from adaptive.addresses import LOOPBACK, NOT_CLIENTS, Address, Network, Target, parse_network, read, text
from adaptive.config import BanProfile, Config
from adaptive.durations import format_duration
from adaptive.state import BanRecord, State
from adaptive.vocabulary import MANUAL, SUBNET, Outcome

if TYPE_CHECKING:
    from adaptive.scoring.offence import Offence

log = logging.getLogger(__name__)


_BY_PROFILE = -1     # a decision's length from its reason's profile and the target's record


class Origin(StrEnum):
    AUTOMATIC = "automatic"      # from an offence
    MANUAL = "manual"            # `adaptive ban`


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision about one target: ban it from `time` for `duration` seconds (None: until unbanned).

    `target` is an address ("203.0.113.7") or a prefix ("2001:db8:1:2::/64", "198.51.100.0/24"). `n`
    counts the target's bans within the look-back, this one included. `protected` says, for a suppressed
    decision, what protects the target ("loopback", "allowlist 192.0.2.0/24", "own address 192.0.2.25").
    """

    time: float
    target: str
    duration: int | None
    reason: str
    score: float
    rules: dict[str, int]
    user: str | None
    outcome: Outcome
    n: int
    origin: Origin = Origin.AUTOMATIC
    protected: str | None = None

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.time + self.duration

    def __str__(self) -> str:
        what = {Outcome.BAN: "ban", Outcome.DRY_RUN: "ban (dry run)",
                Outcome.SUPPRESSED: "suppressed ban of"}[self.outcome]
        text = (f"{what} {self.target} for {format_duration(self.duration)}: {self.reason}, "
                f"score {self.score:.3g}, ban {self.n}")
        if self.rules:
            text += ", " + " ".join(f"{rule}={n}" for rule, n in
                                    sorted(self.rules.items(), key=lambda kv: (-kv[1], kv[0])))
        if self.user:
            text += f", user {self.user!r}"
        if self.origin is Origin.MANUAL:
            text += ", manual"
        if self.protected:
            text += f" ({self.protected})"
        return text


@dataclass(frozen=True, slots=True)
class Screened:
    """What `Decider.screen` made of a batch of manual bans: the targets that may be banned (read, as
    the kernel side takes them) and the (target, why) of those refused."""

    passed: list[Target]
    refused: list[tuple[str, str]]


class Refused(Exception):
    """A manual ban that is not allowed; the message says why."""


@dataclass
class _Member:
    time: float
    target: str
    score: float
    rules: dict[str, int]


@dataclass
class _Covering:
    """The recorded bans, indexed to answer "is this address or prefix inside a live ban?" quickly:
    per (IP version, prefix length), the prefixes' first addresses as integers, with their end."""

    by_length: dict[tuple[int, int], dict[int, float | None]] = field(default_factory=dict)
    lengths: dict[int, list[int]] = field(default_factory=lambda: {4: [], 6: []})

    def add(self, network: Network, end: float | None) -> None:
        key = (network.version, network.prefixlen)
        if key not in self.by_length:
            self.by_length[key] = {}
            self.lengths[network.version] = sorted({*self.lengths[network.version], network.prefixlen})
        self.by_length[key][int(network.network_address)] = end

    def add_int(self, version: int, prefixlen: int, address: int, end: float | None) -> None:
        """`add` for a network already taken apart (the batch path, which skips `ipaddress`)."""
        key = (version, prefixlen)
        if key not in self.by_length:
            self.by_length[key] = {}
            self.lengths[version] = sorted({*self.lengths[version], prefixlen})
        self.by_length[key][address] = end

    def remove(self, network: Network) -> None:
        self.by_length.get((network.version, network.prefixlen), {}).pop(int(network.network_address), None)

    def covers(self, network: Network, at: float) -> bool:
        address, bits = int(network.network_address), network.max_prefixlen
        for length in self.lengths[network.version]:
            if length > network.prefixlen:
                break
            masked = address >> (bits - length) << (bits - length)
            ends = self.by_length[(network.version, length)]
            if masked in ends:
                end = ends[masked]
                if end is None or end > at:
                    return True
        return False


class Decider:
    """Turns offences into decisions and records the bans in the state.

    >>> decider = Decider(config, state, own_addresses=host_addresses())
    >>> for decision in decider.decide(offence):
    ...     if decision.outcome == "ban": backend.ban(...)

    The caller enforces the "ban" outcomes; the decider never touches the kernel. An offence whose
    target is inside a live ban (the kernel drops its packets, so only lines already in flight or a
    dry run bring one) decides nothing. Not thread-safe: one decider per state, in the daemon's loop.
    """

    def __init__(self, config: Config, state: State, own_addresses: Iterable[Address | Network | str] = (),
                 clock: Callable[[], float] = time.time):
        self.settings = config.decisions
        self.state = state
        self.clock = clock
        self.allowlist: tuple[Network, ...] = tuple(config.allowlist.addresses)
        self.own: tuple[Network, ...] = tuple(dict.fromkeys(
            [*(parse_network(a) for a in own_addresses), *self.settings.own_addresses]))
        # What no ban may cover, for the scorer to score the neighbours of each on their own.
        self.protected: tuple[Network, ...] = (*LOOPBACK, *self.own, *self.allowlist)
        # Decisions made, by outcome, plus "covered": offences inside a live ban, not decided again.
        self.counts: Counter[str] = Counter()
        self._profiles: dict[str, BanProfile] = {}
        # Bans per prefix, for subnet escalation, the prefix banned in last at the end: forgetting the
        # stale ones takes them off the front (a scan of every prefix at each ban made a storm of
        # 20,000 addresses, each in a /24 of its own, take 43 s instead of 2).
        self._recent: OrderedDict[Network, deque[_Member]] = OrderedDict()
        self._covering = _Covering()
        # Dry-run bans cover only in a dry run: once enforcing, their targets must get real bans.
        live = state.live_ends(clock(), outcome=None if self.settings.dry_run else Outcome.BAN.value)
        for written, end in live.items():
            try:
                target = read(written)
            except ValueError:
                continue        # not an address: the daemon's restore says so, and leaves it out
            self._covering.add_int(target.version, target.length, target.first, end)

    def decide(self, offence: Offence) -> list[Decision]:
        """The decisions an offence leads to: a ban (or a suppressed or dry-run one), and maybe a
        ban of the prefix around it; none if its target is already banned. Records them in the state."""
        network = parse_network(offence.target)
        first = self._decide(offence.time, network, offence.reason, offence.score, dict(offence.rules),
                             offence.user, Origin.AUTOMATIC)
        if first is None:
            return []
        decisions = [first]
        if first.outcome is not Outcome.SUPPRESSED:
            escalation = self._escalate(first, network)
            if escalation is not None:
                decisions.append(escalation)
        self._record(decisions)
        return decisions

    def manual(self, target: str, duration: int | None, reason: str = MANUAL, force: bool = False) -> Decision:
        """Ban `target` now for `duration` seconds (None: until unbanned), dry run or not.

        Refused for loopback and the host's own addresses, always, and for the allowlist unless
        `force`; ValueError for a target that is no address or prefix.
        """
        network = parse_network(target)
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)
                                     or duration < 1):
            raise ValueError(f"{duration!r} is not a number of seconds of at least 1")
        protected = self._protection(network)
        if protected is not None:
            what, why = protected
            if what != "allowlist":
                raise Refused(f"{text(network)} is never banned: {why}")
            if not force:
                raise Refused(f"{text(network)} is allowlisted ({why}); force to ban it anyway")
        decision = self._decide(self.clock(), network, reason, 0.0, {}, None, Origin.MANUAL, duration)
        assert decision is not None
        self._record([decision])
        return decision

    def screen(self, targets: Iterable[Target | str], force: bool = False) -> Screened:
        """The manual bans a batch (an imported blocklist of 100,000 lines) may make, changing nothing:
        each target checked against the protected ranges by bisection, a target given twice kept once.
        Targets come read (by `adaptive.addresses.read`, as the control socket reads them); text is read
        here. `record_manual` then records what passed: apart, so the daemon can have the kernel take
        the bans while the state records them."""
        guard = self._guard()
        passed: dict[str, Target] = {}
        refused: list[tuple[str, str]] = []
        for given in targets:
            if isinstance(given, str):
                try:
                    target = read(given)
                except ValueError as e:
                    refused.append((given, str(e)))
                    continue
            else:
                target = given
            starts, ends = guard[target.version]
            i = bisect_right(starts, target.last) - 1
            if i >= 0 and ends[i] >= target.first:
                why = self._protection(parse_network(target.text))
                assert why is not None
                if why[0] != "allowlist" or not force:
                    refused.append((target.text, f"{'allowlisted' if why[0] == 'allowlist' else 'never banned'}: "
                                                 f"{why[1]}"))
                    continue
            passed.setdefault(target.text, target)
        return Screened(list(passed.values()), refused)

    def record_manual(self, targets: list[Target], duration: int | None, reason: str = MANUAL,
                      earlier: Sequence[tuple[float, float | None]] = ()) -> None:
        """Record the manual bans of targets `screen` passed, alike, in two SQL statements, with one log
        line. No `Decision` is made: a manual ban has no score, rules or user to carry, and making
        100,000 of them was a fifth of an import's time.

        `earlier`: (time, duration or None) of bans the targets had before, under another blocker (an
        import from fail2ban); recorded in their history, no later than now, they count toward the next
        ban's length as adaptive's own do."""
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)
                                     or duration < 1):
            raise ValueError(f"{duration!r} is not a number of seconds of at least 1")
        at = self.clock()
        profile = self.profile(reason)
        end = None if duration is None else at + duration
        self.state.record_bans_alike([t.text for t in targets], at, end, reason, Origin.MANUAL.value,
                                     Outcome.BAN.value, at - profile.lookback if profile.lookback else None,
                                     [(min(when, at), length) for when, length in earlier])
        add = self._covering.add_int
        for version, first, length, _ in targets:
            add(version, length, first, end)
        self.counts[Outcome.BAN.value] += len(targets)
        if targets:
            log.info("manual ban of %d target(s) for %s: %s%s", len(targets), format_duration(duration),
                     ", ".join(t.text for t in targets[:5]), ", ..." if len(targets) > 5 else "")

    def _guard(self) -> dict[int, tuple[list[int], list[int]]]:
        """Per IP version, the protected ranges (loopback, own addresses, allowlist) merged into
        disjoint sorted (starts, ends): a target overlaps one iff the last range starting at or below
        its last address ends at or above its first."""
        ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for net in (*LOOPBACK, *NOT_CLIENTS, *self.own, *self.allowlist):
            ranges[net.version].append((int(net.network_address), int(net.broadcast_address)))
        guard = {}
        for version, spans in ranges.items():
            starts: list[int] = []
            ends: list[int] = []
            for lo, hi in sorted(spans):
                if ends and lo <= ends[-1] + 1:
                    ends[-1] = max(ends[-1], hi)
                else:
                    starts.append(lo)
                    ends.append(hi)
            guard[version] = (starts, ends)
        return guard

    def unban(self, target: str) -> bool:
        """Forget the target's ban (its history stays, to count later bans); False if it had none."""
        network = parse_network(target)
        self._covering.remove(network)
        return self.state.remove_ban(text(network))

    def profile(self, reason: str) -> BanProfile:
        profile = self._profiles.get(reason)
        if profile is None:
            profile = self._profiles[reason] = self.settings.profile(reason)
        return profile

    # --- the steps ---

    def _decide(self, at: float, network: Network, reason: str, score: float, rules: dict[str, int],
                user: str | None, origin: Origin, duration: int | None = _BY_PROFILE) -> Decision | None:
        """A decision about `network`; None for an automatic one inside a live ban."""
        target = text(network)
        protected = self._protection(network) if origin is Origin.AUTOMATIC else None
        if protected is None and origin is Origin.AUTOMATIC and self._covering.covers(network, at):
            self.counts["covered"] += 1
            return None
        profile = self.profile(reason)
        n = 1 + (self.state.ban_count(target, at - profile.lookback) if profile.lookback else 0)
        if duration == _BY_PROFILE:
            duration = profile.duration(n)
        if protected is not None:
            outcome = Outcome.SUPPRESSED
        elif self.settings.dry_run and origin is Origin.AUTOMATIC:
            outcome = Outcome.DRY_RUN
        else:
            outcome = Outcome.BAN
        return Decision(at, target, duration, reason, score, rules, user, outcome, n, origin,
                        None if protected is None else protected[1])

    def _escalate(self, ban: Decision, network: Network) -> Decision | None:
        """The ban of the prefix around `network`, once enough addresses in it were banned lately."""
        s = self.settings
        length = s.subnet_ipv4_prefix if network.version == 4 else s.subnet_ipv6_prefix
        if not s.subnet_sources or ban.origin is not Origin.AUTOMATIC or network.prefixlen <= length:
            return None
        prefix = network.supernet(new_prefix=length)
        recent = self._recent.get(prefix)
        if recent is None:
            recent = self._recent[prefix] = deque()
        else:
            self._recent.move_to_end(prefix)
        recent.append(_Member(ban.time, ban.target, ban.score, ban.rules))
        while recent[0].time < ban.time - s.subnet_window:
            recent.popleft()
        if len({m.target for m in recent}) < s.subnet_sources:
            self._forget_old(ban.time - s.subnet_window)
            return None
        del self._recent[prefix]
        rules: Counter[str] = Counter()
        for m in recent:
            rules.update(m.rules)
        return self._decide(ban.time, prefix, SUBNET, sum(m.score for m in recent), dict(rules), None,
                            Origin.AUTOMATIC)

    def _forget_old(self, before: float) -> None:
        """Drop the prefixes whose last ban is older than `before`: from the front, where they are (in
        a replay of logs out of order, one may stay a while behind a newer one: it is harmless)."""
        recent = self._recent
        while recent:
            prefix, members = next(iter(recent.items()))
            if members[-1].time >= before:
                return
            del recent[prefix]

    def _record(self, decisions: list[Decision]) -> None:
        records = []
        for d in decisions:
            self.counts[d.outcome.value] += 1
            log.info("%s", d)
            if d.outcome is not Outcome.SUPPRESSED:
                records.append(BanRecord(d.target, d.time, d.end, d.reason, d.score, d.rules, d.user,
                                         d.n, d.origin.value, d.outcome.value))
                self._covering.add(parse_network(d.target), d.end)
        self.state.record_bans(records)

    def _protection(self, network: Network) -> tuple[str, str] | None:
        """What keeps `network` from being banned, if anything: ("loopback" | "not a client" | "own" |
        "allowlist", a description). A prefix is protected if it overlaps a protected address or prefix."""
        for kind, nets in (("loopback", LOOPBACK), ("not a client", NOT_CLIENTS), ("own", self.own),
                           ("allowlist", self.allowlist)):
            for net in nets:
                if net.version == network.version and net.overlaps(network):
                    if kind == "loopback":
                        return kind, "loopback"
                    if kind == "not a client":
                        return kind, f"{text(net)} is no client's address (unspecified, broadcast or multicast)"
                    label = "own address" if kind == "own" else "allowlist"
                    return kind, f"{label} {text(net)}"
        return None


def host_addresses(fib_trie: str = "/proc/net/fib_trie", if_inet6: str = "/proc/net/if_inet6") -> tuple[Address, ...]:
    """The addresses of this host's interfaces (in its network namespace), read from /proc.

    IPv4 from the kernel's routing trie (the "/32 host LOCAL" entries: every address, secondary ones
    too), IPv6 from the interface list. A file that cannot be read gives none, with a warning.
    """
    found: dict[Address, None] = {}
    try:
        with open(fib_trie, encoding="ascii") as f:
            last = None
            for line in f:
                entry = line.strip()
                if entry.startswith("|-- "):
                    last = entry[4:]
                elif last is not None and entry.startswith("/32 host LOCAL"):
                    found[ipaddress.IPv4Address(last)] = None
    except (OSError, ValueError) as e:
        log.warning("%s: cannot read the host's IPv4 addresses: %s", fib_trie, e)
    try:
        with open(if_inet6, encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if fields:
                    found[ipaddress.IPv6Address(int(fields[0], 16))] = None
    except FileNotFoundError:
        pass       # no IPv6 in this kernel
    except (OSError, ValueError) as e:
        log.warning("%s: cannot read the host's IPv6 addresses: %s", if_inet6, e)
    return tuple(found)
