"""Filter files: declarative TOML, one per service family, compiled here into rules.

A filter file holds, in this order of reading:
- `[filter]`: `family` ("postfix" or "dovecot"), `services` (programs it reads, e.g. "smtpd"),
  `keywords` (the prefilter: a line that holds none of them is never looked at). A keyword begins a
  part of a message, right after a ": " (`SASL ` in `warning: unknown[192.0.2.1]: SASL LOGIN
  authentication failed`, `Login: ` in `imap-login: Login: user=<...>`), which is what lets one pattern
  find them all in a chunk at C speed;
- `[[ignore]]`: `id`, `pattern` — lines that must never count, tried before the rules;
- `[[rule]]`: `id`, `kind` (one kind, a list of kinds, or omitted for a rule that only `remember`s),
  `weight` (optional: the kind's weight from the configuration otherwise), `pattern`, optional
  `services`, and `remember`/`recall` to join two lines of one message by its queue id.
  Rules and ignores may name their own `keywords` (added to the filter's): such a rule is tried only on
  lines where one of them was found, which keeps the number of patterns tried per line small.
  `holds` (texts) narrows a rule's own keywords further: a line is tried only if it holds one of them
  after the keyword, which the keyword search checks at C speed (`disconnect from ` is in the last
  line of every connection, ` auth=0/` in few). A prefilter only: the pattern must still match.
  `tally` marks a rule whose lines log an authentication attempt that another line may log too, so
  that scoring counts each attempt once: "auth" (the authentication service's line for one attempt),
  "summary" (a connection's summary of its `count` attempts), "sasl" (a SASL client's line for one
  attempt, which the authentication service may log as well), "pam" (PAM's own line for one attempt,
  which the authentication service may log as well), "sasl-summary" (a SASL client's summary of a
  connection's `count` failed attempts); see `adaptive.scoring.score`.
- `[[sample]]`: `line` with the `rule`, `ip` and `user` it must give, or `match = false` (and optionally
  the `ignore` id that must catch it); `before` lists lines fed first (for a `recall` rule).

Patterns are `regex` patterns matched against the whole message (the text after the prefix), with named
groups: `ip` (required unless `recall`), `user`, `count` (a number; recipients for message_accepted) and
`queue` (for `remember`/`recall`). The first rule that matches wins.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex

from adaptive.events import Kind, Tally


class FilterError(Exception):
    """Filter files that cannot be used; each problem names the file, the rule and the value at fault."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kinds: tuple[Kind, ...]
    weight: float | None
    pattern: regex.Pattern
    services: frozenset[str]
    remember: bool = False
    recall: bool = False
    keywords: tuple[str, ...] = ()    # empty: tried whatever keyword found the line
    tally: str | None = None          # one of `adaptive.events.Tally`
    holds: tuple[str, ...] = ()       # texts, one of which a line must hold after the keyword


@dataclass(frozen=True, slots=True)
class Ignore:
    id: str
    pattern: regex.Pattern
    services: frozenset[str]
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sample:
    line: str
    rule: str | None           # None: the line must give no event
    ip: str | None
    user: str | None
    ignore: str | None         # for non-matching samples: the ignore that must catch it, if named
    before: tuple[str, ...]


@dataclass(frozen=True)
class Filter:
    name: str
    path: Path
    family: str
    services: frozenset[str]
    keywords: tuple[str, ...]
    ignores: tuple[Ignore, ...]
    rules: tuple[Rule, ...]
    samples: tuple[Sample, ...]
    description: str = ""


_FILTER_KEYS = {"family", "services", "keywords", "description"}
_RULE_KEYS = {"id", "kind", "weight", "pattern", "services", "remember", "recall", "keywords", "tally", "holds"}
_IGNORE_KEYS = {"id", "pattern", "services", "keywords"}
_SAMPLE_KEYS = {"line", "rule", "ip", "user", "match", "ignore", "before"}
_TOP_KEYS = {"filter", "rule", "ignore", "sample"}


def load_directory(directory: Path) -> list[Filter]:
    """Every `*.toml` in a directory, sorted by name; all problems of all files reported at once."""
    if not directory.is_dir():
        raise FilterError([f"{directory}: not a directory of filter files"])
    filters, problems = [], []
    for path in sorted(directory.glob("*.toml")):
        try:
            filters.append(load_file(path))
        except FilterError as e:
            problems += e.problems
    if problems:
        raise FilterError(problems)
    if not filters:
        raise FilterError([f"{directory}: no filter files (*.toml)"])
    return filters


def load_file(path: Path) -> Filter:
    try:
        with open(path, "rb") as f:
            tree = tomllib.load(f)
    except OSError as e:
        raise FilterError([f"{path}: cannot read: {e.strerror}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise FilterError([f"{path}: not valid TOML: {e}"]) from None
    return _build(path, tree)


class _Problems:
    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{self.path}: {where}: {message}")


def _build(path: Path, tree: dict[str, Any]) -> Filter:
    p = _Problems(path)
    for key in tree.keys() - _TOP_KEYS:
        p.add(key, "unknown key (expected [filter], [[ignore]], [[rule]], [[sample]])")
    head = tree.get("filter", {})
    if not isinstance(head, dict):
        head = {}
        p.add("filter", "must be a table")
    for key in head.keys() - _FILTER_KEYS:
        p.add(f"filter.{key}", "unknown key")
    family = _string(head.get("family"), p, "filter.family")
    services = _strings(head.get("services", []), p, "filter.services")
    keywords = list(_strings(head.get("keywords", []), p, "filter.keywords"))

    ignores: list[Ignore] = []
    for i, raw in enumerate(_tables(tree.get("ignore", []), p, "ignore")):
        where = f"ignore[{i}] ({raw.get('id', '?')})"
        for key in raw.keys() - _IGNORE_KEYS:
            p.add(where, f"unknown key {key!r}")
        ident = _string(raw.get("id"), p, f"{where}.id")
        pattern = _pattern(raw.get("pattern"), p, where)
        svc = frozenset(_strings(raw.get("services", []), p, f"{where}.services")) or frozenset(services)
        own = tuple(_strings(raw.get("keywords", []), p, f"{where}.keywords"))
        keywords += [k for k in own if k not in keywords]
        if ident and pattern:
            ignores.append(Ignore(ident, pattern, svc, own))

    rules: list[Rule] = []
    for i, raw in enumerate(_tables(tree.get("rule", []), p, "rule")):
        where = f"rule[{i}] ({raw.get('id', '?')})"
        for key in raw.keys() - _RULE_KEYS:
            p.add(where, f"unknown key {key!r}")
        ident = _string(raw.get("id"), p, f"{where}.id")
        kinds = _kinds(raw.get("kind"), p, where)
        weight = raw.get("weight")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))
                                   or weight < 0):
            p.add(f"{where}.weight", f"{weight!r} is not a number ≥ 0")
            weight = None
        remember, recall = bool(raw.get("remember", False)), bool(raw.get("recall", False))
        tally = raw.get("tally")
        if tally is not None and tally not in tuple(Tally):
            p.add(f"{where}.tally", f"{tally!r} is not one of {', '.join(Tally)}")
            tally = None
        if tally is not None and kinds is not None and kinds != (Kind.AUTH_FAILURE,):
            p.add(f"{where}.tally", "only an auth_failure rule counts attempts")
        pattern = _pattern(raw.get("pattern"), p, where)
        svc = frozenset(_strings(raw.get("services", []), p, f"{where}.services")) or frozenset(services)
        own = tuple(_strings(raw.get("keywords", []), p, f"{where}.keywords"))
        keywords += [k for k in own if k not in keywords]
        holds = tuple(_strings(raw.get("holds", []), p, f"{where}.holds"))
        if holds and not own:
            p.add(f"{where}.holds", "narrows the rule's own keywords: give it some")
        if pattern is not None:
            groups = set(pattern.groupindex)
            if pattern.groups != len(pattern.groupindex):
                p.add(f"{where}.pattern", "use named groups (?P<name>...) or (?:...): rules are joined "
                                          "into one pattern, where numbered groups would shift")
            if "ip" not in groups and not recall:
                p.add(f"{where}.pattern", "needs a named group (?P<ip>...) for the client address")
            if (remember or recall) and "queue" not in groups:
                p.add(f"{where}.pattern", "remember/recall need a named group (?P<queue>...)")
            if not kinds and not remember:
                p.add(f"{where}.kind", "missing (only a rule that remembers may have no kind)")
            if tally in (Tally.SUMMARY, Tally.SASL_SUMMARY) and "count" not in groups:
                p.add(f"{where}.pattern", f"a summary (tally = \"{tally}\") needs a named group (?P<count>...)")
        if ident and kinds is not None and pattern is not None:
            rules.append(Rule(ident, kinds, None if weight is None else float(weight), pattern,
                              svc, remember, recall, own, tally, holds))

    if not keywords:
        p.add("filter.keywords", "at least one keyword is needed: they are the prefilter")
    ids = [r.id for r in rules] + [g.id for g in ignores]
    for dup in {x for x in ids if ids.count(x) > 1}:
        p.add(dup, "id used more than once")

    samples: list[Sample] = []
    rule_ids, ignore_ids = {r.id for r in rules}, {g.id for g in ignores}
    for i, raw in enumerate(_tables(tree.get("sample", []), p, "sample")):
        where = f"sample[{i}]"
        for key in raw.keys() - _SAMPLE_KEYS:
            p.add(where, f"unknown key {key!r}")
        line = _string(raw.get("line"), p, f"{where}.line")
        matches = raw.get("match", True)
        rule = raw.get("rule")
        if matches is True and rule not in rule_ids:
            p.add(f"{where}.rule", f"{rule!r} is not a rule of this filter")
        if matches is False and rule is not None:
            p.add(where, "a sample with match = false names no rule")
        ignore = raw.get("ignore")
        if ignore is not None and ignore not in ignore_ids:
            p.add(f"{where}.ignore", f"{ignore!r} is not an ignore of this filter")
        if matches is True and "ip" not in raw:
            p.add(where, "a matching sample names the ip it must give")
        before = tuple(_strings(raw.get("before", []), p, f"{where}.before"))
        if line is not None:
            samples.append(Sample(line, rule if matches is True else None, raw.get("ip"),
                                  raw.get("user"), ignore, before))

    if p.items:
        raise FilterError(p.items)
    return Filter(path.stem, path, family or "", frozenset(services), tuple(keywords), tuple(ignores),
                  tuple(rules), tuple(samples), head.get("description", ""))


def _tables(value: Any, p: _Problems, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        p.add(where, f"must be an array of tables ([[{where}]])")
        return []
    return value


def _string(value: Any, p: _Problems, where: str) -> str | None:
    if not isinstance(value, str) or not value:
        p.add(where, f"expected a non-empty string, got {value!r}")
        return None
    return value


def _strings(value: Any, p: _Problems, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        p.add(where, f"expected a list of non-empty strings, got {value!r}")
        return []
    return value


def _kinds(value: Any, p: _Problems, where: str) -> tuple[Kind, ...] | None:
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    try:
        return tuple(Kind(n) for n in names)
    except (ValueError, TypeError):
        p.add(f"{where}.kind", f"{value!r}: kinds are {', '.join(k.value for k in Kind)}")
        return None


def _pattern(value: Any, p: _Problems, where: str) -> regex.Pattern | None:
    if not isinstance(value, str) or not value:
        p.add(f"{where}.pattern", f"expected a regular expression, got {value!r}")
        return None
    try:
        return regex.compile(value, regex.V0)
    except regex.error as e:
        p.add(f"{where}.pattern", f"{e} in {value!r}")
        return None
