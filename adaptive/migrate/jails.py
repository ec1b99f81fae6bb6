"""fail2ban's configuration read as fail2ban 1.0 reads it, each value with the file and key it came from.

>>> f2b = read(Path("/etc/fail2ban"))
>>> [jail.name for jail in f2b.jails if jail.enabled]
['sshd', 'postfix-sasl']
>>> f2b.jail("postfix-sasl").settings["logpath"].value
'/var/log/mail.log'

What fail2ban does (client/configreader.py, configparserinc.py, jailreader.py), done the same way:

- The files of `jail`: `jail.conf`, `jail.d/*.conf` by name, `jail.local`, `jail.d/*.local` by name.
  A file's `[INCLUDES] before = ...` files come before it and its `after = ...` files after it, each
  followed by the `.local` beside it (`jail.conf` includes `paths-debian.conf`, which includes
  `paths-common.conf`: the files that define `postfix_log`, `syslog_mail` and the like).
- Each file is parsed alone (configparser's syntax: `;` also starts a comment at the end of a line, keys
  are case-insensitive, a value may go on over indented lines), then merged in order: a later file's key
  replaces an earlier one's in the same section, and the `[DEFAULT]` keys, whichever file set them, fill
  every section that lacks them. A replaced value stays reachable as `%(known/KEY)s`.
- A value is read with configparser's basic interpolation, which fail2ban extends: `%(name)s` is the
  section's own key or a default, `%(__name__)s` the section's name, `%(known/name)s` the value before
  the last override, `%(default/name)s` and `%(section/name)s` another section's, `%%` a percent sign.
  `<tags>` belong to fail2ban's actions and filters and are left as they are.
- Durations (`10m`, `1h 30m`, `1w`, `-1`) and `bantime.formula` are arithmetic that fail2ban gives to
  `eval`; here `evaluate` reads them without it, allowing only arithmetic and the names given.
"""

from __future__ import annotations

import ast
import configparser
import glob
import math
import operator
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_DEPTH = configparser.MAX_INTERPOLATION_DEPTH     # what configparser allows fail2ban, 10
INCLUDES = "INCLUDES"
KNOWN = "KNOWN/"
# fail2ban's conditional sections, `[Definition?family=inet6]`: their keys get the condition as a suffix.
_CONDITIONAL = re.compile(r"^(\w+)(\?.+)$")
_REFERENCE = re.compile(r"%\(([^)]+)\)s")
# The options of a jail that a migration reads (jailreader.JailReader._configOpts, those adaptive has a
# counterpart or a word for).
JAIL_OPTIONS = ("enabled", "filter", "backend", "journalmatch", "logpath", "ignoreip", "ignoreself", "ignorecommand",
                "bantime", "findtime", "maxretry", "bantime.increment", "bantime.factor", "bantime.formula",
                "bantime.multipliers", "bantime.maxtime", "bantime.rndtime", "bantime.overalljails")


class Fail2banError(Exception):
    """fail2ban's configuration cannot be read; the message names the file, section and key at fault."""


@dataclass(frozen=True, slots=True)
class _Raw:
    value: str
    file: str        # as shown: relative to the fail2ban directory when inside it
    section: str     # the section that set it, "DEFAULT" for a default


@dataclass(frozen=True, slots=True)
class Setting:
    """One option of a section as fail2ban reads it: the value, interpolated, and where it was written.

    `file` and `section` name where the option itself was set (`jail.local`, `DEFAULT` when the jail
    inherits it); `via` the names its value was made of, each with where that was set.
    """

    key: str
    value: str
    raw: str
    file: str
    section: str
    via: tuple[tuple[str, str, str], ...] = ()     # (name, file, section)

    @property
    def origin(self) -> str:
        """`jail.local [DEFAULT] bantime`: the file, section and key it came from."""
        return f"{self.file} [{self.section}] {self.key}"

    def describe(self) -> str:
        """`origin`, and the references its value went through, when it has any:
        `jail.conf [postfix] logpath = %(postfix_log)s, via paths-common.conf postfix_log, ...`."""
        if not self.via:
            return self.origin
        steps = ", ".join(f"{file} {name}" for name, file, _ in self.via)
        return f"{self.origin} = {self.raw.strip()}, via {steps}"


class Configuration:
    """The files fail2ban reads for one name ("jail", "fail2ban"), merged as fail2ban merges them.

    `get` reads a key of a section (falling back on `[DEFAULT]`) with its interpolations; sections and
    keys keep fail2ban's cases (section names as written, keys in lower case).
    """

    def __init__(self, directory: Path, files: list[str], defaults: dict[str, _Raw],
                 sections: dict[str, dict[str, _Raw]], skipped: list[str]):
        self.directory = directory
        self.files = files             # read, in order, as shown
        self.defaults = defaults
        self._sections = sections
        self.skipped = skipped         # files fail2ban would skip too (not UTF-8), with why

    @classmethod
    def read(cls, directory: Path, name: str, extra_defaults: Mapping[str, str] | None = None) -> Configuration:
        if not directory.is_dir():
            raise Fail2banError(f"{directory}: no such directory (fail2ban's configuration, --jail-dir)")
        base = os.path.join(directory, name)
        wanted = [f"{base}.conf", *sorted(glob.glob(f"{base}.d/*.conf")), f"{base}.local",
                  *sorted(glob.glob(f"{base}.d/*.local"))]
        parsed: dict[str, _Parsed | None] = {}
        skipped: list[str] = []
        order = _with_includes([p for p in wanted if os.path.exists(p)], [], parsed, skipped)
        defaults: dict[str, _Raw] = {}
        sections: dict[str, dict[str, _Raw]] = {}
        shown = []
        for path in order:
            one = parsed.get(path)
            if one is None:
                continue
            label = _label(directory, path)
            shown.append(label)
            defaults.update({k: _Raw(v, label, "DEFAULT") for k, v in one.defaults.items()})
            for section, keys in one.sections.items():
                found = _CONDITIONAL.match(section)
                if found:
                    section = found.group(1)
                    keys = {k + found.group(2): v for k, v in keys.items()}
                raws = {k: _Raw(v, label, section) for k, v in keys.items()}
                if section in sections:
                    before = sections[section]
                    sections.setdefault(KNOWN + section, {}).update({k: before[k] for k in raws if k in before})
                    before.update(raws)
                else:
                    sections[section] = raws
        for key, value in (extra_defaults or {}).items():
            defaults.setdefault(key, _Raw(value, "(fail2ban itself)", "DEFAULT"))
        return cls(directory, shown, defaults, sections, skipped)

    def sections(self) -> list[str]:
        """The sections in the order first read, but `[INCLUDES]` and the `KNOWN/` ones."""
        return [s for s in self._sections if s != INCLUDES and not s.startswith(KNOWN)]

    def has(self, section: str, key: str) -> bool:
        return self._raw(section, key.lower()) is not None

    def get(self, section: str, key: str) -> Setting:
        """The key of the section (or `[DEFAULT]`), interpolated. KeyError if neither has it;
        Fail2banError for a reference to nothing or a `%` out of place, naming where."""
        key = key.lower()
        raw = self._raw(section, key)
        if raw is None:
            raise KeyError(f"[{section}] {key}")
        via: list[tuple[str, str, str]] = []
        value = self._interpolate(section, key, raw, raw.value, 1, via)
        return Setting(key, value, raw.value, raw.file, raw.section, tuple(via))

    def _raw(self, section: str, key: str) -> _Raw | None:
        own = self._sections.get(section, {}).get(key)
        return own if own is not None else self.defaults.get(key)

    def _interpolate(self, section: str, key: str, raw: _Raw, rest: str, depth: int,
                     via: list[tuple[str, str, str]]) -> str:
        """configparser's BasicInterpolation._interpolate_some, with fail2ban's names added."""
        where = f"{raw.file} [{raw.section}] {key}"
        if depth > MAX_DEPTH:
            raise Fail2banError(f"{where}: references nested deeper than {MAX_DEPTH} (a loop?) in {rest!r}")
        out: list[str] = []
        while rest:
            at = rest.find("%")
            if at < 0:
                out.append(rest)
                break
            out.append(rest[:at])
            rest = rest[at:]
            following = rest[1:2]
            if following == "%":
                out.append("%")
                rest = rest[2:]
            elif following == "(":
                found = _REFERENCE.match(rest)
                if found is None:
                    raise Fail2banError(f"{where}: bad reference {rest!r} (expected %(name)s)")
                name = found.group(1).lower()
                rest = rest[found.end():]
                target = self._reference(section, name)
                if target is None:
                    raise Fail2banError(f"{where} = {raw.value.strip()!r}: %({name})s names nothing "
                                        f"in [{section}] or [DEFAULT]")
                via.append((name, target.file, target.section))
                if "%" in target.value:
                    out.append(self._interpolate(section, key, raw, target.value, depth + 1, via))
                else:
                    out.append(target.value)
            else:
                raise Fail2banError(f"{where}: '%' must be followed by '%' or '(' in {rest!r}")
        return "".join(out)

    def _reference(self, section: str, name: str) -> _Raw | None:
        """What `%(name)s` stands for in `section` (configparserinc's _map_section_options)."""
        if name == "__name__":
            return _Raw(section, "(the section's name)", section)
        found = self._raw(section, name)
        if found is not None or "/" not in name:
            return found
        other, _, key = name.partition("/")
        if other == "default":
            return self.defaults.get(key)
        if other == "known":
            return self._sections.get(KNOWN + section, {}).get(key) or self.defaults.get(key)
        if other not in self._sections:
            return None
        return self._sections[other].get(key) or self.defaults.get(key)


@dataclass(frozen=True, slots=True)
class _Parsed:
    defaults: dict[str, str]
    sections: dict[str, dict[str, str]]
    includes: dict[str, list[str]]      # "before", "after": the files named, as written


def _parse(path: str) -> _Parsed:
    """One file, alone, as fail2ban's parser reads it. Fail2banError for what configparser refuses
    (fail2ban refuses it too); UnicodeDecodeError is the caller's (fail2ban skips such a file)."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f, path)
    except configparser.Error as e:
        raise Fail2banError(f"{path}: {' '.join(str(e).split())}") from None
    except OSError as e:
        raise Fail2banError(f"{path}: cannot read: {e.strerror}") from None
    # configparser keeps a section's own keys apart from the defaults only here (fail2ban reads it too).
    own: dict[str, dict[str, str]] = {name: dict(keys) for name, keys in vars(parser)["_sections"].items()}
    includes: dict[str, list[str]] = {}
    for option in ("before", "after"):
        value = own.get(INCLUDES, {}).get(option)
        if value:
            includes[option] = [line.strip() for line in value.split("\n") if line.strip()]
    return _Parsed(dict(parser.defaults()), own, includes)


def _with_includes(paths: list[str], seen: list[str], parsed: dict[str, _Parsed | None],
                   skipped: list[str]) -> list[str]:
    """The files to read for `paths`, includes and `.local` companions in place
    (configparserinc's _getIncludes and __getIncludesUncached)."""
    names = list(paths)
    for path in paths:
        local = os.path.splitext(path)[0] + ".local"
        if local not in names and os.path.isfile(local):
            names.append(local)
    order: list[str] = []
    for path in names:
        if path not in parsed:
            try:
                parsed[path] = _parse(path) if os.path.isfile(path) else None
            except UnicodeDecodeError as e:
                parsed[path] = None
                skipped.append(f"{path}: not UTF-8 ({e.reason}): skipped, as fail2ban skips it")
        one = parsed[path]
        if one is None:
            continue
        around: dict[str, list[str]] = {"before": [], "after": []}
        for option, files in one.includes.items():
            for name in files:
                included = name if os.path.isabs(name) else os.path.join(os.path.dirname(path), name)
                if included in seen:
                    continue
                around[option] += _with_includes([included], [*seen, path], parsed, skipped)
        order += [*around["before"], path, *around["after"]]
    return order


def _label(directory: Path, path: str) -> str:
    try:
        return str(Path(path).relative_to(directory))
    except ValueError:
        return path


# --- jails ---

@dataclass(frozen=True, slots=True)
class Jail:
    """One jail: whether it is enabled and, when it is, the options a migration reads (`JAIL_OPTIONS`
    that it has, as fail2ban reads them) and the ones that could not be read."""

    name: str
    enabled: bool
    settings: dict[str, Setting] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def get(self, key: str) -> Setting | None:
        return self.settings.get(key)

    @property
    def filter(self) -> tuple[str, dict[str, str]]:
        """The filter's name and options: `postfix[mode=auth]` is ("postfix", {"mode": "auth"})."""
        setting = self.get("filter")
        return filter_options(setting.value if setting is not None else self.name)


@dataclass(frozen=True, slots=True)
class Fail2ban:
    """What `read` found: the jails in the order of their sections, the files read, and what the
    daemon's own configuration (`fail2ban.conf`) says of its database."""

    directory: Path
    files: tuple[str, ...]
    jails: tuple[Jail, ...]
    purge_age: Setting | None      # fail2ban.conf dbpurgeage: how long its database keeps bans
    database: Setting | None       # fail2ban.conf dbfile
    skipped: tuple[str, ...] = ()

    def jail(self, name: str) -> Jail:
        return next(j for j in self.jails if j.name == name)


def read(directory: Path, version: str = "1.0") -> Fail2ban:
    """fail2ban's configuration in `directory`: every jail, and the options of the enabled ones.

    `version` is what fail2ban itself puts in `%(fail2ban_version)s`. Fail2banError for a directory or
    a file that cannot be read."""
    jail_files = Configuration.read(directory, "jail", {"fail2ban_version": version,
                                                        "fail2ban_confpath": str(directory)})
    jails = []
    for name in jail_files.sections():
        problems: list[str] = []
        enabled = False
        settings: dict[str, Setting] = {}
        try:
            if jail_files.has(name, "enabled"):
                settings["enabled"] = jail_files.get(name, "enabled")
                enabled = as_bool(settings["enabled"].value)
        except Fail2banError as e:
            problems.append(str(e))
        if enabled:
            for key in JAIL_OPTIONS[1:]:
                if jail_files.has(name, key):
                    try:
                        settings[key] = jail_files.get(name, key)
                    except Fail2banError as e:
                        problems.append(str(e))
        jails.append(Jail(name, enabled, settings, tuple(problems)))
    daemon = Configuration.read(directory, "fail2ban")
    purge_age = daemon.get("Definition", "dbpurgeage") if daemon.has("Definition", "dbpurgeage") else None
    database = daemon.get("Definition", "dbfile") if daemon.has("Definition", "dbfile") else None
    return Fail2ban(directory, tuple(jail_files.files), tuple(jails), purge_age, database,
                    tuple(jail_files.skipped + daemon.skipped))


def as_bool(value: str) -> bool:
    """fail2ban's `_as_bool`: 1, on, true and yes, in any case, are true; anything else false."""
    return value.strip().lower() in ("1", "on", "true", "yes")


# helpers.OPTION_CRE and OPTION_EXTRACT_CRE: `name[key=value, key="value"]`.
_OPTION = re.compile(r"^([^\[]+)(?:\[(.*)\])?\s*$", re.DOTALL)
_OPTION_ITEM = re.compile(r'\s*([\w\-_\.]+)=(?:"([^"]*)"|\'([^\']*)\'|([^,\]]*))(?:,|\]\s*\[|$)', re.DOTALL)


def filter_options(value: str) -> tuple[str, dict[str, str]]:
    """A `filter` (or `action`) value taken apart as fail2ban's extractOptions does."""
    found = _OPTION.match(value.strip())
    if found is None:
        return value.strip(), {}
    options = {}
    for item in _OPTION_ITEM.finditer(found.group(2) or ""):
        given = next(v for v in item.group(2, 3, 4) if v is not None)
        options[item.group(1).strip()] = given.strip()
    return found.group(1).strip(), options


def split_words(value: str) -> list[str]:
    """fail2ban's splitwords: the words of `ignoreip`, between spaces, commas and new lines."""
    return [word for word in re.split(r"[ ,\n]+", value) if word.strip()]


# --- durations and formulas: arithmetic fail2ban evals ---

# MyTime.str2seconds: `1d12h` → `1d 12h` → `1*86400 12*3600` → `1*86400+12*3600`.
_TOGETHER = re.compile(r"(?i)(?<=[a-z])(\d)")
_APART = re.compile(r"(\d)\s+(\d)")
_UNIT = r"(?i)(?<=[\d\s])(%s)\b"
_UNITS = tuple((re.compile(_UNIT % names), "*" + str(size)) for names, size in (
    (r"days?|da|dd?", 24 * 60 * 60), (r"weeks?|wee?|ww?", 7 * 24 * 60 * 60),
    (r"months?|mon?", (365 * 3 + 366) * 24 * 60 * 60 / 4 / 12),
    (r"years?|yea?|yy?", (365 * 3 + 366) * 24 * 60 * 60 / 4),
    (r"seconds?|sec?|ss?", 1), (r"minutes?|min?|mm?", 60), (r"hours?|hou?|hh?", 60 * 60)))


def seconds(text: str) -> float:
    """A fail2ban duration in seconds: `600`, `10m`, `1h 30m`, `1d12h`, `1year-6mo`, `-1` (as fail2ban's
    MyTime.str2seconds reads it). ValueError for anything else."""
    value = _TOGETHER.sub(r" \1", text.strip())
    for unit, size in _UNITS:
        value = unit.sub(size, value)
    value = _APART.sub(r"\1+\2", value)
    result = evaluate(value, {})
    if isinstance(result, bool) or not isinstance(result, (int, float)):
        raise ValueError(f"{text!r} is not a duration")
    return float(result)


Number = int | float
_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Number, Number], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_LARGEST_EXPONENT = 1024     # 2 ** 1024 and 1 << 1024 are already past any ban


def evaluate(expression: str, names: Mapping[str, object]) -> Number:
    """An arithmetic expression, as fail2ban evals durations and `bantime.formula`, without eval.

    Numbers, `+ - * / // % ** << >>`, comparisons, `a if test else b`, `and`/`or`/`not`, parentheses;
    a name is looked up in `names`, `name.attribute` in the mapping `names[name]`, and a call may be
    made of a callable found there (`math.exp`, `max`). ValueError for anything else."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"{expression!r} is not an arithmetic expression") from None

    def value(node: ast.AST) -> object:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in names:
                raise ValueError(f"{expression!r}: unknown name {node.id!r}")
            return names[node.id]
        if isinstance(node, ast.Attribute):
            owner = value(node.value)
            if not isinstance(owner, Mapping) or node.attr not in owner:
                raise ValueError(f"{expression!r}: unknown name {node.attr!r}")
            return owner[node.attr]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = number(node.left), number(node.right)
            if isinstance(node.op, (ast.Pow, ast.LShift)) and abs(right) > _LARGEST_EXPONENT:
                raise ValueError(f"{expression!r}: an exponent of {right} is too large")
            try:
                return _BINARY[type(node.op)](left, right)
            except (ArithmeticError, ValueError) as e:
                raise ValueError(f"{expression!r}: {e}") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            operand = number(node.operand)
            return -operand if isinstance(node.op, ast.USub) else (not operand) \
                if isinstance(node.op, ast.Not) else operand
        if isinstance(node, ast.Compare):
            left = number(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                compare = _COMPARE.get(type(op))
                if compare is None:
                    raise ValueError(f"{expression!r}: {ast.unparse(node)!r} is not arithmetic")
                right = number(right_node)
                if not compare(left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return value(node.body) if number(node.test) else value(node.orelse)
        if isinstance(node, ast.BoolOp):
            results = [number(v) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.Call) and not node.keywords:
            function = value(node.func)
            if not callable(function):
                raise ValueError(f"{expression!r}: {ast.unparse(node.func)} is not a function")
            try:
                result: object = function(*(number(a) for a in node.args))
            except (ArithmeticError, ValueError, TypeError) as e:
                raise ValueError(f"{expression!r}: {e}") from None
            return result
        raise ValueError(f"{expression!r}: {ast.unparse(node)!r} is not arithmetic")

    def number(node: ast.AST) -> Number:
        result = value(node)
        if not isinstance(result, (int, float)):
            raise ValueError(f"{expression!r}: {ast.unparse(node)!r} is not a number")
        return result

    return number(tree)


# What `bantime.formula` may name (fail2ban evals it with the ban and banFactor in scope, and math).
MATH: dict[str, object] = {name: getattr(math, name) for name in (
    "exp", "log", "log2", "log10", "sqrt", "pow", "floor", "ceil", "e", "pi")}
FUNCTIONS: dict[str, object] = {"min": min, "max": max, "abs": abs, "float": float, "int": int, "round": round}
