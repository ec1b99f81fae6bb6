"""fail2ban's mail jails as an adaptive drop-in: for each option the nearest adaptive key, every key's
line commented with the fail2ban file and key it came from, and what has no counterpart said in comments.

>>> made = translate(read(Path("/etc/fail2ban")), current=load([...]))
>>> print(made.text)          # TOML, for /etc/adaptive/adaptive.d/fail2ban.toml

What maps to what (README.md, "Migrating from fail2ban", has it as a table):

- the enabled jails whose filter reads Postfix or Dovecot (`postfix*`, `dovecot`, `sieve`, `sasl`) are
  migrated; every other enabled jail is named in a comment;
- their `logpath` (globs expanded, one source per file): `[sources.NAME]`, `type = "file"`, `path`;
  `backend = systemd`: a commented hint (adaptive reads files only, for now);
- `ignoreip` (hostnames resolved): `[allowlist] addresses`, after those adaptive's configuration had;
- `maxretry` N and `findtime` T: `[scoring] threshold` (N − ½) and `half_life`, so that N failures
  within T always ban and N − 1 never do; a one-kind jail's own `maxretry` (`postfix-rbl`: 1) is that
  kind's `[scoring] weights`;
- `bantime`: `[decisions] ban_base`; `bantime.increment`, `.factor`, `.formula`, `.multipliers`,
  `.maxtime`: `ban_multiplier` (the geometric series nearest fail2ban's) and `ban_max`; fail2ban.conf's
  `dbpurgeage` (how long fail2ban remembers a ban): `lookback`.

Nothing is looked up but the hostnames of `ignoreip` (`resolver`, injected) and the log paths (globs,
symbolic links and owners, for the comments).
"""

from __future__ import annotations

import glob
import math
import os
import pwd
import re
import socket
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from adaptive.addresses import Network, is_loopback, parse_network, read, text
from adaptive.config import Config, SourceConfig
from adaptive.config.schema import journal_match
from adaptive.durations import LONGEST, format_duration
from adaptive.migrate.jails import (
    FUNCTIONS,
    MATH,
    Fail2ban,
    Jail,
    Setting,
    as_bool,
    evaluate,
    seconds,
    split_words,
)

# fail2ban's filters that read what adaptive's filters read (Postfix, Dovecot), with the one kind of
# event each counts when it counts one kind only (for its own `maxretry`: a weight); None: several.
MAIL_FILTERS: dict[str, str | None] = {
    "postfix": None, "postfix-sasl": "auth_failure", "postfix-rbl": "rbl_listed", "sasl": "auth_failure",
    "dovecot": "auth_failure", "sieve": "auth_failure",
}
# What one event of those kinds is called in the drop-in's comments: (one, several).
KIND_WORDS: dict[str, tuple[str, str]] = {"auth_failure": ("failed login", "failed logins"),
                                          "rbl_listed": ("DNSBL listing", "DNSBL listings")}
# The modes of fail2ban's `postfix` filter that count one kind of event.
POSTFIX_MODES: dict[str, str] = {"auth": "auth_failure", "rbl": "rbl_listed"}
# Jails of mail software adaptive does not read.
OTHER_MAIL = frozenset({
    "assp", "courier-auth", "courier-smtp", "cyrus-imap", "domino-smtp", "exim", "exim-spam", "horde", "kerio",
    "openwebmail", "oracleims", "perdition", "qmail", "roundcube-auth", "sendmail-auth", "sendmail-reject",
    "sogo-auth", "solid-pop3d", "squirrelmail", "uwimap-auth",
})
# fail2ban's own values where no file sets one (server/filter.py, failmanager.py, banmanager.py).
BUILT_IN = {"maxretry": "3", "findtime": "600", "bantime": "600"}
# The default `bantime.formula` (server/jail.py), and how far fail2ban's series is compared.
DEFAULT_FORMULA = "ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor"
SERIES = 8
WIDTH = 104        # of a comment line

Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order (getaddrinfo); OSError if none."""
    found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@dataclass(frozen=True, slots=True)
class Translation:
    """The drop-in's text, the jails it migrated, the enabled ones it left out (and why), and what
    the admin should hear of besides (a host that does not resolve, a journal, a log not there)."""

    text: str
    migrated: tuple[str, ...]
    left_out: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]
    sources: dict[str, str] = field(default_factory=dict)         # name -> path
    allowlist: tuple[Network, ...] = ()                          # what the drop-in allowlists, all of it


def translate(f2b: Fail2ban, current: Config | None = None, *, resolver: Resolver = resolve,
              made_by: str = "adaptive import fail2ban") -> Translation:
    """The drop-in for fail2ban's configuration `f2b`. `current` is adaptive's configuration, when it has
    one: its allowlist is kept (a list in a later file replaces the earlier one whole), and a log it
    already follows keeps its source's name."""
    out = _Writer()
    migrated, left_out = _choose(f2b)
    warnings: list[str] = []
    out.comment(f"adaptive: fail2ban's mail jails as an adaptive drop-in, made by `{made_by}` from "
                f"{f2b.directory} ({', '.join(f2b.files)}). Each key says which fail2ban file and key it came "
                "from. Install it as /etc/adaptive/adaptive.d/fail2ban.toml: read after adaptive.toml, it "
                "overrides it key by key (`adaptive check-config` checks both).")
    out.blank()
    if migrated:
        out.comment("Migrated (enabled, and their filters read Postfix or Dovecot): "
                    + ", ".join(j.name for j in migrated) + ".")
    else:
        out.comment("No enabled jail reads Postfix or Dovecot: nothing to migrate but what is said below.")
    if left_out:
        out.comment("Not migrated:")
        for name, why in left_out:
            out.comment(f"{name}: {why}", indent=2)
    disabled = sum(1 for j in f2b.jails if not j.enabled)
    out.comment(f"{disabled} jail(s) not enabled are left out. fail2ban's filters do not come across: adaptive's "
                "own (filters/*.toml) read the lines those jails read, and more; `adaptive check LOG` shows "
                "what they find.")
    for skipped in f2b.skipped:
        warnings.append(skipped)
        out.comment(f"warning: {skipped}")
    sources = _sources(out, migrated, current, warnings)
    allowlist = _allowlist(out, migrated, current, resolver, warnings)
    _scoring(out, migrated)
    _decisions(out, migrated, f2b)
    return Translation(out.text(), tuple(j.name for j in migrated), tuple(left_out), tuple(warnings), sources,
                       allowlist)


# --- which jails ---

def _choose(f2b: Fail2ban) -> tuple[list[Jail], list[tuple[str, str]]]:
    migrated, left_out = [], []
    for jail in f2b.jails:
        if not jail.enabled:
            continue
        name, _ = jail.filter
        enabled = jail.get("enabled")
        said = f" ({enabled.origin})" if enabled is not None else ""
        if jail.problems:
            left_out.append((jail.name + said, "its configuration cannot be read: " + "; ".join(jail.problems)))
        elif name in MAIL_FILTERS:
            migrated.append(jail)
        elif name == "recidive":
            left_out.append((jail.name + said, "bans again those banned often, by any jail; adaptive's "
                             "counterpart is its escalation ([decisions] below)"))
        elif name in OTHER_MAIL or jail.name in OTHER_MAIL:
            left_out.append((jail.name + said, f"filter {name}: mail software adaptive does not read (it reads "
                             "Postfix and Dovecot)"))
        else:
            left_out.append((jail.name + said, f"filter {name}: not mail; adaptive reads Postfix and Dovecot "
                             "logs only"))
    return migrated, left_out


def _kind(jail: Jail) -> str | None:
    """The one kind of event the jail counts, or None when it counts several."""
    name, options = jail.filter
    if name == "postfix":
        return POSTFIX_MODES.get(options.get("mode", "more"))
    return MAIL_FILTERS.get(name)


# --- sources ---

def _sources(out: _Writer, jails: list[Jail], current: Config | None, warnings: list[str]) -> dict[str, str]:
    """`[sources.NAME]` for each file the jails read, and one for the journal if jails read it."""
    files: dict[str, tuple[str, list[tuple[Jail, Setting]]]] = {}     # real path -> (path, readers)
    journal: list[Jail] = []
    for jail in jails:
        backend = jail.get("backend")
        if backend is not None and backend.value.strip().startswith("systemd"):
            journal.append(jail)
            continue
        logpath = jail.get("logpath")
        if logpath is None:
            warnings.append(f"jail {jail.name} has no logpath: nothing to follow")
            continue
        for line in logpath.value.split("\n"):
            # jailreader: an entry is `PATH [head|tail]`, split at its last space.
            path = line.strip().rsplit(" ", 1)[0] if " " in line.strip() else line.strip()
            if not path:
                continue
            matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
            if not matches:
                warnings.append(f"jail {jail.name}: logpath {path} matches no file now ({logpath.origin}): "
                                "add a [sources.NAME] for it once it does")
                continue
            for match in matches:
                entry = files.setdefault(os.path.realpath(match), (match, []))
                entry[1].append((jail, logpath))
    out.blank()
    out.comment("--- sources: the logs the jails read " + "-" * 60)
    out.comment("fail2ban read them from their start (its database kept its place in each); adaptive begins at "
                "their end (start = \"end\", the default): what fail2ban banned comes across with --bans.")
    if not files and not journal:
        out.comment("(none: no migrated jail names a log file)")
    followed = {os.path.realpath(s.path): name for name, s in (current.sources.items() if current else [])
                if s.type == "file" and s.path is not None}
    taken = set(current.sources) if current else set()
    made: dict[str, str] = {}
    for real, (path, readers) in files.items():
        name = followed.get(real) or _name(path, taken)
        taken.add(name)
        made[name] = path
        jail, logpath = readers[0]
        names = sorted({j.name for j, _ in readers}, key=[j.name for j in jails].index)
        out.blank()
        out.section(f"sources.{name}")
        out.comment(f"{path}, read by jail{'s' if len(names) > 1 else ''} {', '.join(names)}: {logpath.describe()}")
        if name in followed.values():
            out.comment("adaptive's configuration follows it already, as this source: the keys below restate it.")
        backend = jail.get("backend")
        out.key("type", _string("file"), f"{backend.origin} = {backend.value.strip()}: a file" if backend
                else "fail2ban's default backend (auto): a file")
        out.key("path", _string(path), ", ".join(dict.fromkeys(s.origin for _, s in readers)))
        _file_notes(out, path, warnings)
    if journal:
        _journal_source(out, journal, taken, made)
    return made


def _journal_source(out: _Writer, jails: list[Jail], taken: set[str], made: dict[str, str]) -> None:
    """One `[sources.NAME]` of type "journal" for every jail that reads it: their `journalmatch` terms,
    ORed (two sources on the same entries would count each twice). fail2ban ANDs the terms of one
    group (`A B + C` is (A and B) or C); here each term stands alone, which reads more entries, never
    fewer: the filters still pick the lines."""
    name = _name("journal", taken)
    taken.add(name)
    made[name] = "journal"
    terms: dict[str, str] = {}
    for jail in jails:
        match = jail.get("journalmatch")
        for term in (match.value.split() if match is not None else []):
            if term != "+":
                terms.setdefault(term, match.origin if match is not None else "")
    names = ", ".join(j.name for j in jails)
    out.blank()
    out.section(f"sources.{name}")
    backends = "; ".join(f"{b.origin} = {b.value.strip()}" for j in jails if (b := j.get("backend")) is not None)
    out.comment(f"The systemd journal, read by jail{'s' if len(jails) > 1 else ''} {names}: {backends}.")
    out.comment("If a file source reads the same lines too (rsyslog writing /var/log/mail.log), keep one of the "
                "two: each would count every failure.")
    out.key("type", _string("journal"), "backend = systemd")
    kept = [t for t in terms if _is_match(t)]
    if len(kept) < len(terms):
        out.comment("Left out, not journal matches adaptive takes (FIELD=value, FIELD in upper case): "
                    + ", ".join(t for t in terms if t not in kept))
    if kept:
        out.key("match", "[" + ", ".join(_string(t) for t in kept) + "]",
                ", ".join(dict.fromkeys(terms[t] for t in kept)) + " journalmatch, each term ORed")
    else:
        out.comment("match = [] (the default): Postfix's and Dovecot's units and the mail facility; the "
                    "jails' filters name their journalmatch in filter.d, which adaptive's filters need not.")


def _is_match(term: str) -> bool:
    try:
        journal_match(term)
    except ValueError:
        return False
    return True


def _name(path: str, taken: set[str]) -> str:
    """A source name from a file's name: /var/log/mail.log is "mail", as in the shipped configuration."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", os.path.basename(path).split(".")[0]).strip("-") or "log"
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    return name


def _file_notes(out: _Writer, path: str, warnings: list[str]) -> None:
    """What adaptive refuses that fail2ban did not: a symbolic link, a file another user owns."""
    if os.path.islink(path):
        note = (f"{path} is a symbolic link (to {os.path.realpath(path)}): adaptive refuses one unless "
                "follow_symlinks = true (whoever may write its directory could point it elsewhere)")
        out.comment(note)
        warnings.append(note)
    try:
        owner = os.stat(path).st_uid
    except OSError:
        out.comment(f"{path} does not exist now: adaptive waits for it (fail2ban would not start the jail).")
        return
    if owner not in SourceConfig().owners:
        try:
            user = pwd.getpwuid(owner).pw_name
        except KeyError:
            user = str(owner)
        note = (f"{path} is owned by {user}: adaptive refuses a log another user owns unless `owners` lists "
                f"it (owners = [\"root\", \"{user}\"])")
        out.comment(note)
        warnings.append(note)


# --- allowlist ---

def _allowlist(out: _Writer, jails: list[Jail], current: Config | None, resolver: Resolver,
               warnings: list[str]) -> tuple[Network, ...]:
    entries: dict[Network, str] = {}       # network -> the comment of its line
    notes: list[str] = []
    kept = tuple(current.allowlist.addresses) if current else ()
    for net in kept:
        entries.setdefault(net, "kept: adaptive's configuration allowlists it already")
    seen: set[tuple[str, str]] = set()
    for jail in jails:
        ignoreip = jail.get("ignoreip")
        if ignoreip is None:
            continue
        only = "" if ignoreip.section == "DEFAULT" else \
            f" (fail2ban: for jail {jail.name} only; adaptive's allowlist is for every log)"
        for word in split_words(ignoreip.value):
            if (word, ignoreip.origin) in seen:
                continue
            seen.add((word, ignoreip.origin))
            for found, comment, note in _entries(word, ignoreip, resolver):
                if note is not None:
                    notes.append(note)
                    if "skipped" in note:
                        warnings.append(note)
                elif found is not None:
                    entries.setdefault(found, comment + only)
    ignoreself = [j.get("ignoreself") for j in jails]
    out.blank()
    out.comment("--- allowlist: fail2ban's ignoreip " + "-" * 62)
    out.comment("Never banned, whatever they do, as fail2ban never banned ignoreip. adaptive never bans loopback "
                "nor this host's own addresses either (read from its interfaces), as ignoreself = true did"
                + ("; it cannot be made to ban them, as ignoreself = false would"
                   if any(s is not None and not as_bool(s.value) for s in ignoreself) else "")
                + ". A list replaces an earlier file's whole: the entries adaptive's configuration had come first.")
    for jail in jails:
        command = jail.get("ignorecommand")
        if command is not None and command.value.strip():
            out.comment(f"{command.origin} = {command.value.strip()}: not migrated (adaptive runs no command to "
                        "decide); allowlist what it allowed.")
            warnings.append(f"jail {jail.name}: ignorecommand is not migrated")
    fresh = [net for net in entries if net not in kept]
    if fresh:
        out.section("allowlist")
        out.line("addresses = [")
        width = max(len(_string(text(net))) for net in entries) + 1
        for net, comment in entries.items():
            out.line(f"    {(_string(text(net)) + ','):<{width}}  # {comment}")
        out.line("]")
    for note in dict.fromkeys(notes):
        out.comment(note)
    return tuple(entries) if fresh else kept


def _entries(word: str, ignoreip: Setting, resolver: Resolver
             ) -> Iterable[tuple[Network | None, str, str | None]]:
    """(network, comment of its line, None) for each address `word` stands for, or (None, "", note)."""
    try:
        nets = [parse_network(word)]
        how = ""
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", word) or not re.search(r"[A-Za-z]", word):
            yield None, "", f"{ignoreip.origin}: {word!r} is not an address, prefix or hostname: skipped"
            return
        try:
            found = resolver(word)
        except OSError as e:
            yield None, "", f"{ignoreip.origin}: {word} does not resolve ({e}): skipped"
            return
        nets = [parse_network(a) for a in found]
        how = f"{word} resolved to {', '.join(found)}"
    for net in nets:
        target = read(text(net))
        named = how or word
        if net.prefixlen < (8 if net.version == 4 else 7):
            yield None, "", (f"{ignoreip.origin}: {named}: wider than adaptive allows (/8 for IPv4, /7 for IPv6): "
                             "skipped")
        elif is_loopback(target) and (target.version == 4 or target.host):
            yield None, "", f"{ignoreip.origin}: {named}: loopback, which adaptive always allows"
        else:
            written = "" if text(net) == word or how else f" (written {word})"
            yield net, f"{ignoreip.origin}{': ' + how if how else ''}{written}", None


# --- scoring ---

@dataclass(frozen=True, slots=True)
class _Chosen:
    """The value the migrated jails mostly share for one option, and the jails that differ."""
    value: float
    setting: Setting | None        # where it came from (None: fail2ban's built-in value)
    text: str
    others: list[tuple[Jail, float, Setting | None]]


def _chosen(jails: Sequence[Jail], key: str, read: Callable[[str], float],
            prefer: Callable[[Jail], bool] = lambda _: True, larger: bool = False) -> _Chosen:
    """The value most of the jails (those `prefer` picks, if any) have; between as many, the one
    `[DEFAULT]` gives, then (`larger`) the larger, then the first jail's."""
    values: list[tuple[Jail, float, Setting | None]] = []
    for jail in jails:
        setting = jail.get(key)
        raw = setting.value if setting is not None else BUILT_IN.get(key, "")
        try:
            values.append((jail, read(raw), setting))
        except ValueError:
            continue
    pool = [v for v in values if prefer(v[0])] or values
    if not pool:
        return _Chosen(read(BUILT_IN[key]), None, BUILT_IN[key], [])
    counts = Counter(v for _, v, _ in pool)
    defaults = {v for _, v, s in pool if s is None or s.section == "DEFAULT"}
    order = {v: -i for i, (_, v, _) in reversed(list(enumerate(pool)))}
    value = max(counts, key=lambda v: (counts[v], v in defaults, v if larger else 0, order[v]))
    first = next(v for v in pool if v[1] == value)
    setting = first[2]
    return _Chosen(value, setting, setting.value.strip() if setting else BUILT_IN[key],
                   [v for v in values if v[1] != value])


def _where(chosen: _Chosen, key: str) -> str:
    return f"{chosen.setting.origin} = {chosen.text}" if chosen.setting else f"fail2ban's default {key} = {chosen.text}"


def _count(raw: str) -> float:
    value = int(raw.strip())
    if value < 1:
        raise ValueError(raw)
    return value


def _positive_seconds(raw: str) -> float:
    value = seconds(raw)
    if not value > 0:
        raise ValueError(raw)
    return value


def _scoring(out: _Writer, jails: list[Jail]) -> None:
    if not jails:
        return
    retries = _chosen(jails, "maxretry", _count, prefer=lambda j: _kind(j) is None, larger=True)
    window = _chosen(jails, "findtime", _positive_seconds)
    n, findtime = int(retries.value), window.value
    threshold = 1.0 if n == 1 else n - 0.5
    if n >= 2:
        needed = findtime / math.log2((n - 1) / (n - 1.5))
        half_life = math.ceil(max(6 * findtime, needed))
    else:
        half_life = math.ceil(6 * findtime)
    least = 1 + (n - 1) * 2 ** (-findtime / half_life)
    out.blank()
    out.comment("--- scoring: maxretry and findtime " + "-" * 62)
    out.comment(f"fail2ban bans an address once maxretry = {n} of its lines match within findtime = "
                f"{format_duration(findtime)}. adaptive scores instead: each event adds its weight (a failed login "
                "1, see [scoring] weights) and the score halves every half_life seconds. With the two keys below, "
                + (f"{n} failures within {format_duration(findtime)} always reach the threshold (at least 1 + {n - 1} "
                   f"× 2^(−{findtime:g}/{half_life}) = {least:.2f} ≥ {threshold:g}) and {n - 1} never do"
                   if n >= 2 else "one failure reaches the threshold")
                + "; unlike fail2ban, an older failure still counts, for less, and adaptive's slow score (failures "
                  "spread over a day, reason \"slow\") has no fail2ban counterpart.")
    out.section("scoring")
    out.key("threshold", _number(threshold), f"{_where(retries, 'maxretry')}: {n} failures")
    out.key("half_life", str(half_life), f"{_where(window, 'findtime')}: at least 6 × findtime")
    # A jail that counts one kind of event and has a maxretry of its own: that kind's weight, so that
    # its maxretry events reach the threshold (and one fewer does not). Two such jails of one kind:
    # the stricter.
    counted: dict[str, list[tuple[int, Jail, Setting | None]]] = {}
    for jail in jails:
        kind = _kind(jail)
        setting = jail.get("maxretry")
        try:
            m = int(_count(setting.value if setting else BUILT_IN["maxretry"]))
        except ValueError:
            continue
        if kind is not None:
            counted.setdefault(kind, []).append((m, jail, setting))
        elif m != n:
            out.comment(f"{setting.origin if setting else jail.name} = {m}: not migrated: jail {jail.name} "
                        "counts several kinds of events, and adaptive has one threshold.")
    for kind, readers in counted.items():
        m, jail, setting = min(readers, key=lambda r: r[0])
        if m == n:
            continue
        weight = threshold if m == 1 else threshold / (m - 0.5)
        origin = setting.origin if setting else f"fail2ban's default maxretry ({jail.name})"
        one, several = KIND_WORDS.get(kind, (kind, kind))
        out.key(f"weights.{kind}", _number(round(weight, 3)),
                f"{origin} = {m}: " + (f"one {one} reaches the threshold" if m == 1
                                       else f"{m} {several} reach the threshold"))
        others = [f"{j.name} ({r})" for r, j, _ in readers if r != m]
        if others:
            out.comment(f"Also counting {several}, with another maxretry: {', '.join(others)}. adaptive has one "
                        "weight per kind: the stricter is kept.")
    if any(min(r[0] for r in readers) != n for readers in counted.values()):
        out.comment("The slow score and a login's forgiveness count with these weights too.")
    for jail, value, setting in window.others:
        out.comment(f"{setting.origin if setting else jail.name} = {setting.value.strip() if setting else value}: "
                    f"not migrated: adaptive has one half-life for every kind of event.")


# --- decisions ---

def _ban_seconds(raw: str) -> float:
    value = seconds(raw)
    return value if value >= 0 else -1.0       # fail2ban: a negative bantime is permanent


def _decisions(out: _Writer, jails: list[Jail], f2b: Fail2ban) -> None:
    if not jails:
        return
    length = _chosen(jails, "bantime", _ban_seconds)
    jail = next((j for j in jails if length.setting is None or j.get("bantime") == length.setting), jails[0])
    out.blank()
    out.comment("--- decisions: bantime and bantime.increment " + "-" * 52)
    permanent = length.value < 0
    base = LONGEST if permanent else max(1, min(LONGEST, round(length.value)))
    increment = jail.get("bantime.increment")
    growing = increment is not None and as_bool(increment.value) and not permanent
    if permanent:
        out.comment("fail2ban bans for good (bantime = -1); adaptive's bans last at most ten years (a manual one "
                    "may be permanent: adaptive ban --for permanent).")
    out.section("decisions")
    out.key("ban_base", str(base), _where(length, "bantime"))
    if not growing:
        why = (f"{increment.origin} = {increment.value.strip()}" if increment is not None
               else "bantime.increment is not set (false)")
        out.key("ban_multiplier", "1", f"{why}: every ban lasts bantime")
        out.key("ban_max", str(base), f"{why}: every ban lasts bantime")
    else:
        assert increment is not None
        _escalation(out, jail, length, base, increment, f2b)
    for other, value, setting in length.others:
        out.comment(f"{setting.origin if setting else other.name} = {setting.value.strip() if setting else value}: "
                    "not migrated: adaptive's ban lengths are per reason, not per log.")
    out.comment("adaptive's slow score bans for [decisions] reasons.slow.ban_base (a day, by default).")


def _escalation(out: _Writer, jail: Jail, length: _Chosen, base: int, increment: Setting, f2b: Fail2ban) -> None:
    """ban_multiplier and ban_max nearest fail2ban's bantime.increment, and lookback nearest its memory."""
    factor_setting = jail.get("bantime.factor")
    formula_setting = jail.get("bantime.formula")
    multipliers_setting = jail.get("bantime.multipliers")
    maxtime_setting = jail.get("bantime.maxtime")
    factor, maxtime, multipliers = 1.0, None, []
    formula = formula_setting.value.strip() if formula_setting and formula_setting.value.strip() else DEFAULT_FORMULA
    for setting in (factor_setting, maxtime_setting, multipliers_setting):
        if setting is None or not setting.value.strip():
            continue
        try:
            if setting is factor_setting:
                factor = float(evaluate(setting.value, {}))
            elif setting is maxtime_setting:
                maxtime = seconds(setting.value)
            else:
                multipliers = [int(m) for m in setting.value.split()]
        except ValueError as e:
            out.comment(f"{setting.origin} = {setting.value.strip()} cannot be read ({e}): left out here, as "
                        "fail2ban would have failed on it.")

    def fail2ban_length(count: int) -> float:
        """The length of a ban after `count` earlier ones (server/jail.py, observer.py)."""
        if count == 0:
            value = float(base)
        elif multipliers:
            value = base * factor * multipliers[min(count, len(multipliers) - 1)]
        else:
            names = {"ban": {"Time": base, "Count": count}, "banFactor": factor, "math": MATH, **FUNCTIONS}
            try:
                value = max(base, float(evaluate(formula, names)))
            except (ValueError, OverflowError):
                value = float(LONGEST)
        if maxtime is not None:
            value = min(value, maxtime)
        return min(value, float(LONGEST))

    series = [fail2ban_length(c) for c in range(SERIES)]
    longest = max(fail2ban_length(c) for c in range(64))
    # The geometric series through the first ban and the last that grows, within SERIES bans.
    growing = [i for i in range(1, SERIES) if series[i] < longest] or [SERIES - 1]
    last = growing[-1] if series[growing[-1]] > series[0] else 1
    multiplier = (series[last] / series[0]) ** (1 / last) if series[last] > series[0] else 1.0
    multiplier = max(1.0, round(multiplier, 3))
    how = (f"{multipliers_setting.origin} = {multipliers_setting.value.strip()}" if multipliers and multipliers_setting
           else f"{formula_setting.origin} = {formula}" if formula_setting and formula_setting.value.strip()
           else f"bantime.formula, fail2ban's default ({DEFAULT_FORMULA})")
    if factor_setting is not None and factor != 1:
        how += f", {factor_setting.origin} = {factor_setting.value.strip()}"
    out.key("ban_multiplier", _number(multiplier), f"{increment.origin} = {increment.value.strip()}; {how}")
    ban_max = round(maxtime if maxtime is not None else longest)
    ban_max = max(1, min(LONGEST, ban_max))
    out.key("ban_max", str(ban_max),
            f"{maxtime_setting.origin} = {maxtime_setting.value.strip()}" if maxtime is not None and maxtime_setting
            else "bantime.maxtime is not set: the longest ban fail2ban's formula makes (at most ten years)")
    ours = [min(ban_max, math.ceil(base * multiplier ** i)) for i in range(SERIES)]
    out.comment("One address's bans, first to eighth: fail2ban's " + ", ".join(format_duration(s) for s in series)
                + "; adaptive's with these keys " + ", ".join(format_duration(s) for s in ours) + ".")
    overall = jail.get("bantime.overalljails")
    if overall is None or not as_bool(overall.value):
        out.comment("fail2ban counted an address's bans per jail (bantime.overalljails = false); adaptive counts "
                    "them all, whatever banned it (as overalljails = true).")
    rnd = jail.get("bantime.rndtime")
    if rnd is not None and rnd.value.strip():
        out.comment(f"{rnd.origin} = {rnd.value.strip()}: not migrated: adaptive's bans last exactly their length.")
    purge = f2b.purge_age
    try:
        purge_seconds = seconds(purge.value) if purge is not None else 86400.0
    except ValueError:
        purge_seconds = 86400.0
    lookback = round(purge_seconds + 3 * base)
    out.comment("fail2ban remembers an address's bans in its database until its last ban is dbpurgeage old and "
                "three times its length over; adaptive counts the bans that began within lookback seconds: the "
                "nearest is dbpurgeage + 3 × bantime (fail2ban forgets nothing while an address keeps coming back "
                "within that; adaptive forgets each ban once it is older).")
    out.key("lookback", str(lookback),
            (f"{purge.origin} = {purge.value.strip()}" if purge is not None else "fail2ban's default dbpurgeage = 1d")
            + f", + 3 × {format_duration(base)}")


# --- TOML, written out ---

class _Writer:
    """TOML lines: sections, keys with a trailing comment, comments wrapped."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def blank(self) -> None:
        self.lines.append("")

    def line(self, line: str) -> None:
        self.lines.append(line)

    def comment(self, words: str, indent: int = 0) -> None:
        self.lines += textwrap.wrap(words, WIDTH, initial_indent="# " + " " * indent,
                                    subsequent_indent="# " + " " * (indent + 2), break_long_words=False,
                                    break_on_hyphens=False)

    def section(self, name: str) -> None:
        self.lines.append(f"[{name}]")

    def key(self, key: str, value: str, origin: str) -> None:
        self.lines.append(f"{key} = {value}  # {origin}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _string(value: str) -> str:
    """A TOML basic string."""
    escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                      else f"\\U{ord(c):08x}" for c in value)
    return f'"{escaped}"'


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
