"""The engine: runs chunks of log lines through the filters and returns events.

This is the hot path of the daemon and of `adaptive check`. A mail log is mostly lines no rule is
about, and the lines rules are about are mostly alike (logins, accepted messages), so the engine works
on whole chunks of bytes (complete lines) and leaves as much as it can to compiled patterns, which run
in C:

- lines are counted, and lines that do not begin with a timestamp are counted as unparsable, by one
  pass each over the chunk;
- the filters' keywords are found by one pass. A keyword begins a part of a message: Postfix and
  Dovecot separate the parts with ": " (`warning: unknown[192.0.2.1]: SASL LOGIN authentication
  failed: ...`, `imap-login: Login: user=<...>`), so the search starts with that literal, which lets
  it skip ahead fast, then tries the keywords, as a trie (one try per next byte, not per keyword).
  A keyword whose rules all name what their lines hold (`holds`) carries a lookahead for it, so that
  a line as common as `disconnect from ...` costs the search a scan and not a plan;
- a line that holds a keyword is matched, as raw bytes and whole, by the *plan* of that keyword: one
  pattern made of the timestamp, then for each program the rules apply to (family and service, as
  `adaptive.filters.prefix` splits them) its line head followed by its ignores and rules as branches
  in file order, so the first that matches wins as it would trying them one by one. One call reads
  the prefix and the message; the branch that matched is found by its empty marker group.

Rules are `regex` patterns: `adaptive.filters.rules` compiles and checks each with `regex`. A plan is
run with the standard library's `re` when every pattern in it is plain `re` syntax, which is the usual
case and twice as fast on these patterns; a plan that uses what only `regex` has (`\\p{L}`, variable
lookbehind) runs with `regex`. Each branch's group names get the branch number as a suffix, since one
pattern cannot hold two groups of one name.

When a line's plan does not match, the next keyword in the same line is tried (a keyword inside a user
name must not hide the real one after it); a line no plan matches is checked for a readable prefix, to
count it as unparsable if it has none.

A line may have been cut: by the logger (RFC 3164 allows 1,024 bytes, rsyslog 8 KB, journald 48 KB) or
here, where a line of more than `max_line` bytes is read to that length only. The tail of a cut line is
gone, and with it, maybe, the real address: a user name holding `>, rip=9.9.9.9, lip=...`, padded so
that the cut falls after it, reads as a complete line about 9.9.9.9. So on a line of CUT_RISK bytes or
more (no real Postfix or Dovecot line is half that long), an address that the line holds after its user
name is evidence about nobody (counted as `cut`); one before it (Postfix's `unknown[192.0.2.7]: SASL
... failed: <16 KB>`) still counts.

Rule patterns run on bytes here, so `\\w`, `\\d` and `\\s` mean their ASCII classes, and invalid UTF-8 in
a user name costs nothing: only the captured user is decoded.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TypedDict

import regex

from adaptive.addresses import read_address
from adaptive.events import Event, Kind
from adaptive.filters.prefix import CLASSIC_TIME, ISO_TIME, LEVELS, LINE_START, TAI64N, Heads, YearGuess
from adaptive.filters.rules import Filter, Ignore, Rule

MAX_LINE = 16384
CUT_RISK = 1000    # bytes from which a line may have been cut short by its logger
_MEMORY = 65536        # queue ids remembered per filter, for joining the lines of one message
_NEWLINE = re.compile(b"\n")   # findall on a one-byte literal beats bytes.count by half
_BAD_START = re.compile(rb"\n(?!" + LINE_START.pattern + rb")")

# The parts of a line before the message, per family, as bytes patterns. They accept what
# `adaptive.filters.prefix.HEAD` accepts: that pattern stays the reference for what a prefix is.
_TIME = rb"(?:" + TAI64N + rb" +)?(?P<_ts>" + CLASSIC_TIME + rb"|" + ISO_TIME + rb"|" + TAI64N + rb") +"
_WORD = rb"[^\s\[\]:]"
_LEVEL = rb"(?:" + LEVELS + rb")"
_GROUP = re.compile(rb"(?<!\\)\(\?(P?<|P=)([A-Za-z_]\w*)([>)])")
# A filter's queue-id memory: queue id -> (address, user) of the line that remembered it.
_Memory = OrderedDict[bytes, tuple[str, str | None]]
# What the hot loop needs of one branch (see `_Plan`): index, rule, memory, family, filter name, and
# where the ip, user, count and queue groups are.
_Action = tuple[int, Rule | None, _Memory, str, str, int | None, int | None, int | None, int | None]


def _head(family: str, services: frozenset[str]) -> bytes:
    names = b"(?:" + b"|".join(re.escape(s.encode()) for s in sorted(services)) + b")"
    if family == "dovecot":
        # The process's prefix is left to the rule when the rule reads it (2.4's `auth(user,ip,...)`).
        return (rb"(?:" + _WORD + rb"+ (?:dovecot(?:\[\d+\])?: (?:dovecot: )?)?)?" + names
                + rb"(?:(?:\([^()\n]*\))?(?:<[^<>\n]*>)*(?:: request \[\d+\])?: (?:" + _LEVEL + rb": )?)?")
    tag = rb"postfix[^\s\[\]:/]*" if family == "postfix" else re.escape(family.encode())
    return _WORD + rb"+ " + tag + rb"/(?:[^\s\[\]:/]+/)*" + names + rb"(?:\[\d+\])?: "


def _trie(words: dict[bytes, bytes]) -> bytes:
    """One pattern for all keywords (each followed by its own lookahead, if any), as a trie: at each
    point the search tries one branch per next byte, not one per keyword, and the longest keyword wins
    where one begins another. A flat alternation costs every ": " in a log one try per keyword."""
    if len(words) == 1:
        (word, after), = words.items()
        return re.escape(word) + after
    ends = words.pop(b"", None)
    firsts: dict[int, dict[bytes, bytes]] = {}
    for word, after in words.items():
        firsts.setdefault(word[0], {})[word[1:]] = after
    branches = [re.escape(bytes([c])) + _trie(rest) for c, rest in sorted(firsts.items())]
    if ends is not None:
        branches.append(ends)
    return branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"


def _own_groups(pattern: bytes, branch: int) -> bytes:
    """The pattern with its group names (and references to them) suffixed with the branch number."""
    return _GROUP.sub(lambda m: b"(?%s%s_%d%s" % (m[1], m[2], branch, m[3]), pattern)


@dataclass
class Counts:
    """What the engine has seen, for `adaptive check` and the metrics."""

    lines: int = 0
    unparsable: int = 0
    oversize: int = 0         # longer than max_line: read to max_line only
    cut: int = 0              # a long line whose address came after its user name: not believed
    bad_address: int = 0      # a rule matched but its ip group held no valid address
    unjoined: int = 0         # a recall rule found no remembered queue id
    matched: Counter[tuple[str, str]] = field(default_factory=Counter)          # (filter, rule) -> lines
    ignored: Counter[tuple[str, str]] = field(default_factory=Counter)          # (filter, ignore) -> lines
    events: Counter[Kind] = field(default_factory=Counter)                      # kind -> events
    by_rule: Counter[tuple[str, str, Kind]] = field(default_factory=Counter)    # (filter, rule, kind) -> events


class Part(TypedDict):
    """What `Engine.export` leaves of a run over one part of a file, for `absorb` (sent between processes)."""
    scalars: tuple[int, int, int, int, int]     # lines, unparsable, oversize, bad_address, unjoined
    hits: list[int]                             # per branch, as Engine keeps them
    emitted: list[int]
    memory: dict[str, _Memory]
    unjoined: list[tuple[int, bytes]]           # (branch, queue id) of the recalls it could not make


@dataclass(frozen=True, slots=True)
class _Branch:
    index: int                 # in Engine._branches, for the per-branch counters
    filter: str
    family: str
    services: frozenset[str]
    ignore: Ignore | None
    rule: Rule | None

    @property
    def entry(self) -> Ignore | Rule:
        """The ignore or the rule this branch tries: it has one of the two."""
        entry = self.ignore or self.rule
        assert entry is not None
        return entry

    @property
    def keywords(self) -> tuple[str, ...]:
        return self.entry.keywords


class _Plan:
    """The branches to try on a line found by one keyword, compiled into one whole-line pattern.

    `actions[i]` is what the hot loop needs of branch i, unpacked in one go: its index, its rule (None
    for an ignore), its filter's queue-id memory, family and name, and where its ip, user, count and
    queue groups are.
    """

    def __init__(self, branches: tuple[_Branch, ...], memories: dict[str, _Memory]):
        self.branches = branches
        groups: list[bytes] = []
        head: tuple[str, frozenset[str]] | None = None
        for i, b in enumerate(branches):
            written = b.entry.pattern.pattern.encode()
            body = b"(?:" + _own_groups(written, i) + b")(?P<_b%d>)" % i
            if (b.family, b.services) != head:
                head = (b.family, b.services)
                groups.append(_head(*head) + b"(?:" + body)
            else:
                groups[-1] += b"|" + body
        pattern = _TIME + b"(?:" + b")|".join(groups) + b"))\r?"
        try:
            self.pattern = re.compile(pattern)
        except re.error:
            self.pattern = regex.compile(pattern, regex.V0)
        index = self.pattern.groupindex
        markers = [index[f"_b{i}"] - 1 for i in range(len(branches))]

        def one(g: tuple[Any, ...], i: int = markers[0]) -> tuple[Any, ...]:
            return (g[i],)

        self.markers: Callable[[tuple[Any, ...]], tuple[Any, ...]] = itemgetter(*markers) if len(markers) > 1 else one

        def at(name: str, i: int) -> int | None:
            group = f"{name}_{i}"
            return index[group] - 1 if group in index else None

        self.actions: tuple[_Action, ...] = tuple(
            (b.index, b.rule, memories[b.filter], b.family, b.filter, at("ip", i), at("user", i), at("count", i),
             at("queue", i))
            for i, b in enumerate(branches))


class Engine:
    """Turns chunks of complete log lines into events.

    >>> engine = Engine(load_directory(Path("filters")), YearGuess())
    >>> for offset, event in engine.scan(chunk): ...

    `scan` keeps state between calls (counts, the queue-id memory that joins a message's lines), so
    give one engine the lines of one log in order. Not for lines without their newline: a source
    keeps a half-written last line until it is complete.
    """

    def __init__(self, filters: list[Filter], years: YearGuess, max_line: int = MAX_LINE):
        self.years = years
        self.max_line = max_line
        self._counts = Counts()
        self._branches: list[_Branch] = []
        for f in filters:
            for g in f.ignores:
                self._branches.append(_Branch(len(self._branches), f.name, f.family, g.services, g, None))
            for r in f.rules:
                self._branches.append(_Branch(len(self._branches), f.name, f.family, r.services, None, r))
        keywords = {k.encode(): self._holds(k) for f in filters for k in f.keywords}
        self._keywords = re.compile(b": " + _trie(keywords))
        self._hits = [0] * len(self._branches)      # lines matched per branch
        self._emitted = [0] * len(self._branches)   # lines that gave events per branch
        # keyword, as found with its ": " -> plan; made on first use, shared when branches coincide
        self._plans: dict[bytes, _Plan | None] = {}
        self._heads = Heads()
        self._shared: dict[tuple[_Branch, ...], _Plan] = {}
        self._memory: dict[str, _Memory] = {f.name: OrderedDict() for f in filters}
        self._addresses: dict[bytes, str | None] = {}
        self._stamps: dict[bytes, float | None] = {}
        self._minutes: dict[bytes, float | None] = {}
        # When a list, recalls that found nothing are noted in it, as (branch, queue id): a run over
        # parts of a file in parallel (`adaptive.filters.batch`) makes them against the part before.
        self.unjoined_log: list[tuple[int, bytes]] | None = None

    def _holds(self, word: str) -> bytes:
        """What the search must see after a keyword: a lookahead for the texts its rules' `holds` name,
        when every branch it leads to has one; else nothing."""
        holds: list[str] = []
        for b in self._branches:
            if not b.keywords or word in b.keywords:
                if b.rule is None or not b.rule.holds:
                    return b""
                holds += b.rule.holds
        return b"(?=[^\n]*(?:" + b"|".join(re.escape(h.encode()) for h in holds) + b"))"

    @property
    def counts(self) -> Counts:
        """The counts so far; per-rule figures are kept in lists on the hot path and gathered here."""
        c = self._counts
        c.matched, c.ignored, c.events, c.by_rule = Counter(), Counter(), Counter(), Counter()
        for b in self._branches:
            if b.ignore is not None:
                if self._hits[b.index]:
                    c.ignored[b.filter, b.ignore.id] = self._hits[b.index]
            elif b.rule is not None:
                if self._hits[b.index]:
                    c.matched[b.filter, b.rule.id] = self._hits[b.index]
                for kind in b.rule.kinds:
                    if self._emitted[b.index]:
                        c.events[kind] += self._emitted[b.index]
                        c.by_rule[b.filter, b.rule.id, kind] += self._emitted[b.index]
        return c

    def export(self) -> Part:
        """What a run over one part of a file leaves for the next: counts and the queue-id memory."""
        c = self._counts
        return {"scalars": (c.lines, c.unparsable, c.oversize, c.bad_address, c.unjoined),
                "hits": self._hits, "emitted": self._emitted, "memory": self._memory,
                "unjoined": self.unjoined_log or []}

    def absorb(self, part: Part) -> None:
        """Add a later part's run to this one, as if this engine had read that part itself.

        The part's unmade recalls are made first, against the memory the parts before it left, in
        the order the part met them; then its counts are added and its memory joins ours.
        """
        c = self._counts
        lines, unparsable, oversize, bad_address, unjoined = part["scalars"]
        for index, queue in part["unjoined"]:
            branch = self._branches[index]
            assert branch.rule is not None      # only a rule recalls
            if self._memory[branch.filter].pop(queue, None) is not None:
                unjoined -= 1
                if branch.rule.kinds:
                    self._emitted[index] += 1
        c.lines += lines
        c.unparsable += unparsable
        c.oversize += oversize
        c.bad_address += bad_address
        c.unjoined += unjoined
        for i, (h, e) in enumerate(zip(part["hits"], part["emitted"], strict=True)):
            self._hits[i] += h
            self._emitted[i] += e
        for name, memory in part["memory"].items():
            mine = self._memory[name]
            mine.update(memory)
            while len(mine) > _MEMORY:
                mine.popitem(last=False)

    def scan(self, chunk: bytes) -> list[tuple[int, Event]]:
        """Events of a chunk of complete lines, each with the byte offset of its line in the chunk."""
        if not chunk:
            return []
        counts = self._counts
        counts.lines += len(_NEWLINE.findall(chunk))
        counts.unparsable += len(_BAD_START.findall(chunk)) - 1 + (LINE_START.match(chunk) is None)
        out: list[tuple[int, Event]] = []
        # One loop, locals only: this runs for every line that holds a keyword.
        search = self._keywords.search
        find, rfind = chunk.find, chunk.rfind
        pos, size, max_line = 0, len(chunk), self.max_line
        plans, plan_for, hits, emitted = self._plans, self._plan, self._hits, self._emitted
        stamps, addresses = self._stamps, self._addresses
        append = out.append
        while True:
            hit = search(chunk, pos)
            if hit is None:
                break
            start = rfind(b"\n", 0, hit.start()) + 1
            end = find(b"\n", hit.end())
            if end < 0:
                end = size
            pos = end + 1
            if end - start > max_line:
                if LINE_START.match(chunk, start):
                    counts.oversize += 1
                end = start + max_line         # the line as a logger with this limit would have cut it
                if hit.end() > end:
                    continue
            # The plan of each keyword the line holds, in order: a keyword inside text an attacker
            # chose (a user name) comes first sometimes, and must not hide the real one after it.
            while hit is not None:
                found = hit.group()
                plan = plans[found] if found in plans else plan_for(found)
                m = plan.pattern.fullmatch(chunk, start, end) if plan is not None else None
                if m is not None:
                    break
                hit = search(chunk, hit.end(), end)
            else:
                # No rule is about this line. Count it if its prefix is unreadable, unless the bulk
                # count (no timestamp at its start) has it already.
                if LINE_START.match(chunk, start) and self._heads.read(chunk, start, end) is None:
                    counts.unparsable += 1
                continue
            assert plan is not None     # m is its match
            g = m.groups()
            index, rule, memory, family, name, ip_at, user_at, count_at, queue_at = plan.actions[
                plan.markers(g).index(b"")]
            hits[index] += 1
            if rule is None:
                continue
            ts = g[0]
            when = stamps[ts] if ts in stamps else self._stamp(ts)
            if when is None:
                counts.unparsable += 1
                continue
            user = g[user_at] if user_at is not None else None
            if user:
                user = user.decode("utf-8", "replace")
            else:
                user = None
            # A rule has the groups it reads (`adaptive.filters.rules` checks): ip unless it recalls,
            # queue when it remembers or recalls.
            ip: str | None
            if rule.recall:
                assert queue_at is not None
                # Taken, not read: qmgr logs "queue active" again at each retry of a deferred
                # message, and a message is accepted once.
                known = memory.pop(g[queue_at], None)
                if known is None:
                    counts.unjoined += 1
                    if self.unjoined_log is not None:
                        self.unjoined_log.append((index, g[queue_at]))
                    continue
                ip, user = known[0], user or known[1]
            else:
                assert ip_at is not None
                text = g[ip_at]
                ip = addresses[text] if text in addresses else self._address(text)
                if ip is None:
                    counts.bad_address += 1
                    continue
                if end - start >= CUT_RISK and user_at is not None and 0 <= m.start(user_at + 1) < m.start(ip_at + 1):
                    counts.cut += 1
                    continue
            if rule.remember:
                assert queue_at is not None
                memory[g[queue_at]] = (ip, user)
                if len(memory) > _MEMORY:
                    memory.popitem(last=False)
            n = 1
            if count_at is not None:
                number = g[count_at]
                n = int(number) if number and number.isdigit() else 1
            if rule.kinds:
                emitted[index] += 1
                for kind in rule.kinds:
                    append((start, Event(when, family, name, rule.id, kind, ip, user,
                                         rule.weight, n)))
        return out

    def _plan(self, found: bytes) -> _Plan | None:
        """The plan for lines found by a keyword (as matched, with its ": ")."""
        word = found[2:].decode()
        branches = tuple(b for b in self._branches if not b.keywords or word in b.keywords)
        plan = None
        if branches:
            plan = self._shared.get(branches)
            if plan is None:
                plan = self._shared[branches] = _Plan(branches, self._memory)
        self._plans[found] = plan
        return plan

    def _stamp(self, text: bytes) -> float | None:
        """Epoch seconds of a raw timestamp; a classic one is its minute's start plus its seconds,
        since each second of a log is new but its minute is not."""
        if len(text) == 15 and text[12:13] == b":":
            minute = text[:12]
            base = self._minutes.get(minute)
            if base is None:
                base = self._minutes[minute] = self.years.stamp(minute.decode("ascii") + ":00")
                if len(self._minutes) > 4096:
                    self._minutes.clear()
            stamp = None if base is None else base + min(int(text[13:15]), 59)
        else:
            stamp = self.years.stamp(text.decode("ascii"))
        if len(self._stamps) > 4096:
            self._stamps.clear()
        self._stamps[text] = stamp
        return stamp

    def _address(self, text: bytes | None) -> str | None:
        """The normalised address, or None; cached, since attackers repeat themselves."""
        if text is None:
            return None
        result: str | None
        try:
            result = read_address(text.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            result = None
        if len(self._addresses) > 65536:
            self._addresses.clear()
        self._addresses[text] = result
        return result
