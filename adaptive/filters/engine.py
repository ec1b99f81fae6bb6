"""The engine: runs chunks of log lines through the filters and returns events.

This is the hot path of the daemon and of `adaptive check`, so it works on whole chunks of bytes
(complete lines) rather than line by line: the filters' literal keywords are searched in the chunk by one
compiled pattern, which runs in C, and only the lines that contain one are decoded, split into prefix and
message, dispatched on their program and matched against the rules. Unparsable lines are counted in
bulk the same way. A line of more than `max_line` bytes is skipped and counted: no Postfix or Dovecot
line is that long, and no rule should have to read one.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from adaptive.events import Event
from adaptive.filters.prefix import LINE_START, YearGuess, parse
from adaptive.filters.rules import Filter, Ignore, Rule

MAX_LINE = 16384
_MEMORY = 65536        # queue ids remembered per filter, for joining the lines of one message
_BAD_START = re.compile(rb"\n(?!" + LINE_START.pattern + rb")")


@dataclass
class Counts:
    """What the engine has seen, for `adaptive check` and the metrics."""

    lines: int = 0
    unparsable: int = 0
    oversize: int = 0
    bad_address: int = 0      # a rule matched but its ip group held no valid address
    unjoined: int = 0         # a recall rule found no remembered queue id
    matched: Counter = field(default_factory=Counter)   # (filter, rule) -> lines
    ignored: Counter = field(default_factory=Counter)   # (filter, ignore) -> lines
    events: Counter = field(default_factory=Counter)    # kind -> events


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one filter does with lines of one (family, service)."""

    filter: str
    source: str
    ignores: tuple[Ignore, ...]
    rules: tuple[Rule, ...]


class Engine:
    """Turns chunks of complete log lines into events.

    >>> engine = Engine(load_directory(Path("filters")), YearGuess())
    >>> for index, event in engine.scan(chunk): ...

    `scan` keeps state between calls (counts, the queue-id memory that joins a message's lines), so
    give one engine the lines of one log in order. Not for lines without their newline: a source
    keeps a half-written last line until it is complete.
    """

    def __init__(self, filters: list[Filter], years: YearGuess, max_line: int = MAX_LINE):
        self.years = years
        self.max_line = max_line
        self.counts = Counts()
        keywords = sorted({k.encode() for f in filters for k in f.keywords}, key=len, reverse=True)
        self._keywords = re.compile(b"|".join(re.escape(k) for k in keywords))
        self._dispatch: dict[tuple[str, str], list[_Plan]] = {}
        for f in filters:
            services = set(f.services).union(*(r.services for r in f.rules), *(g.services for g in f.ignores))
            for service in services:
                plan = _Plan(
                    f.name, f.family,
                    tuple(g for g in f.ignores if service in g.services),
                    tuple(r for r in f.rules if service in r.services),
                )
                self._dispatch.setdefault((f.family, service), []).append(plan)
        self._memory: dict[str, dict[str, tuple[str, str | None]]] = {f.name: {} for f in filters}
        self._addresses: dict[str, str | None] = {}

    def scan(self, chunk: bytes) -> list[tuple[int, Event]]:
        """Events of a chunk of complete lines, each with its line's 0-based index in the chunk."""
        if not chunk:
            return []
        counts = self.counts
        counts.lines += chunk.count(b"\n")
        counts.unparsable += len(_BAD_START.findall(chunk)) - 1 + (LINE_START.match(chunk) is None)
        out: list[tuple[int, Event]] = []
        search = self._keywords.search
        find, rfind, count = chunk.find, chunk.rfind, chunk.count
        index, counted_to, pos, end_of_chunk = 0, 0, 0, len(chunk)
        while True:
            m = search(chunk, pos)
            if m is None:
                break
            start = rfind(b"\n", 0, m.start()) + 1
            end = find(b"\n", m.end())
            if end < 0:
                end = end_of_chunk
            index += count(b"\n", counted_to, start)
            counted_to = start
            pos = end + 1
            raw = chunk[start:end]
            if len(raw) > self.max_line:
                if LINE_START.match(raw):
                    counts.oversize += 1
                continue
            self._line(raw, index, out)
        return out

    def _line(self, raw: bytes, index: int, out: list[tuple[int, Event]]) -> None:
        text = raw.decode("utf-8", "replace")
        if text.endswith("\r"):
            text = text[:-1]
        line = parse(text, self.years)
        if line is None:
            if LINE_START.match(raw):  # otherwise the bulk count has it already
                self.counts.unparsable += 1
            return
        plans = self._dispatch.get((line.family, line.service))
        if plans is None:
            return
        message = line.message
        for plan in plans:
            for ignore in plan.ignores:
                if ignore.pattern.fullmatch(message):
                    self.counts.ignored[plan.filter, ignore.id] += 1
                    break
            else:
                for rule in plan.rules:
                    m = rule.pattern.fullmatch(message)
                    if m is not None:
                        self.counts.matched[plan.filter, rule.id] += 1
                        self._events(plan, rule, m, line.time, index, out)
                        break

    def _events(self, plan: _Plan, rule: Rule, m, when: float, index: int,
                out: list[tuple[int, Event]]) -> None:
        groups = m.groupdict()
        user = groups.get("user") or None
        if rule.recall:
            known = self._memory[plan.filter].get(groups["queue"])
            if known is None:
                self.counts.unjoined += 1
                return
            ip, user = known[0], user or known[1]
        else:
            ip = self._address(groups["ip"])
            if ip is None:
                self.counts.bad_address += 1
                return
        if rule.remember:
            memory = self._memory[plan.filter]
            if len(memory) >= _MEMORY:
                del memory[next(iter(memory))]
            memory[groups["queue"]] = (ip, user)
        number = groups.get("count")
        n = int(number) if number and number.isdigit() else 1
        for kind in rule.kinds:
            self.counts.events[kind] += 1
            out.append((index, Event(when, plan.source, plan.filter, rule.id, kind, ip, user,
                                     rule.weight, n)))

    def _address(self, text: str | None) -> str | None:
        """The normalised address, or None; cached, since attackers repeat themselves."""
        if text is None:
            return None
        cache = self._addresses
        if text in cache:
            return cache[text]
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            result = None
        else:
            mapped = getattr(addr, "ipv4_mapped", None)
            result = str(mapped or addr)
        if len(cache) > 65536:
            cache.clear()
        cache[text] = result
        return result
