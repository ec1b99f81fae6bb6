"""The configuration's schema: one frozen dataclass per section, their defaults and their checks.

Each section is a dataclass; a field's `metadata["check"]` validates and converts the raw TOML value
(and its annotation says which TOML type it takes). A later stage adds its section by adding a
dataclass here and a field to `Config`. Reading files and naming the file at fault is `loading`'s.

Every key that takes seconds takes a duration as the command line does too (`"90s"`, `"1h"`, `"7d"`,
`"1w"`, `"1h30m"`, `adaptive.durations`); a plain number is still seconds.
"""

from __future__ import annotations

import grp
import importlib.resources
import ipaddress
import math
import pwd
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptive.addresses import Network, parse_network
from adaptive.durations import LONGEST, parse_duration
from adaptive.vocabulary import REASONS

# The kinds of source a `[sources.NAME]` section may name in `type`; `adaptive.sources` registers one
# source for each (a test checks that they agree).
SOURCE_TYPES = ("file", "journal")
# The filters shipped with adaptive: package data (adaptive/filters/shipped/*.toml), so a checkout, a
# wheel and an editable install all find them. The Debian package keeps them in /usr/share/adaptive/filters
# and links that directory here. Not a zip import: the engine reads them as files.
SHIPPED_FILTERS = Path(str(importlib.resources.files("adaptive.filters").joinpath("shipped")))


# --- value checks: each takes the raw TOML value and returns the converted one or raises ValueError ---

def host_port(value: str) -> tuple[str, int]:
    """A checked `metrics.listen` ("host:port", an IPv6 host in brackets or not) as (host, port)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _host_port(value: str) -> str:
    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('expected "host:port" (or "" for off)')
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{host!r} is not an IP address") from None
    return value


def _networks(value: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses and prefixes as everything else reads them (`addresses.parse_network`): an IPv4-mapped
    `::ffff:192.0.2.5` is 192.0.2.5, so that it protects (or names) the IPv4 address it stands for."""
    nets = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a string")
        try:
            nets.append(parse_network(item))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or prefix") from None
    return tuple(nets)


# The widest prefixes an allowlist may hold: 10.0.0.0/8 and fc00::/7 are sites' own; shorter ones
# (0.0.0.0/0, ::/0) would exempt much of the Internet, and so protect nothing.
_WIDEST_ALLOWED = {4: 8, 6: 7}


def _allowlist(value: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = _networks(value)
    for net in nets:
        if net.prefixlen < _WIDEST_ALLOWED[net.version]:
            raise ValueError(f"{str(net)!r} would exempt too much of the Internet from every ban: "
                             f"allowlist prefixes are at most /{_WIDEST_ALLOWED[net.version]} wide "
                             f"for IPv{net.version}")
    return nets


def _table_name(value: str) -> str:
    if not value or not (value[0].isalpha() and all(c.isalnum() or c in "_-" for c in value)):
        raise ValueError("a table name is letters, digits, '_' and '-', starting with a letter")
    return value


def _one_of(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value
    return check


def _path(value: str) -> Path:
    if not value:
        raise ValueError("a path must not be empty")
    return Path(value)


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def _checked(default: Any, check: Callable[[Any], Any], doc: str = "") -> Any:
    return field(default=default, metadata={"check": check, "doc": doc})


def _ports(value: list[int]) -> tuple[int, ...]:
    ports = []
    for item in value:
        if not isinstance(item, int) or isinstance(item, bool) or not 0 < item < 65536:
            raise ValueError(f"{item!r} is not a port (1 to 65535)")
        if item not in ports:
            ports.append(item)
    return tuple(ports)


def _ssh_ports(value: list[int]) -> tuple[int, ...]:
    if not value:
        raise ValueError("SSH can never be closed: give at least one port")
    return _ports(value)


def _priority(value: int) -> int:
    # Conntrack runs at -200; the chains match on ct state, so they must come after it.
    if not -200 < value < 2**31:
        raise ValueError("expected a priority above -200 (conntrack)")
    return value


def _prefix_lengths(bits: int) -> Callable[[list[int]], tuple[int, ...]]:
    def check(value: list[int]) -> tuple[int, ...]:
        for item in value:
            if not isinstance(item, int) or isinstance(item, bool) or not 0 < item < bits:
                raise ValueError(f"{item!r} is not a prefix length from 1 to {bits - 1}")
        return tuple(sorted(set(value)))
    return check


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _duration(value: float | str, zero: bool = False) -> float:
    """Seconds, from a number of them or from a duration as the command line takes it ("1h", "7d")."""
    if isinstance(value, str):
        return parse_duration(value, zero=zero)
    return float(value)


def _seconds(value: float | str) -> float:
    seconds = _duration(value)
    if not 0 < seconds < math.inf:
        raise ValueError("expected a number of seconds above 0")
    return seconds


def _whole_seconds(value: int | str, zero: bool = False) -> int:
    """Whole seconds, a duration's fraction rounded up ("1.5s" is 2)."""
    return value if isinstance(value, int) else math.ceil(_duration(value, zero))


def _window(value: int | str) -> int:
    return _positive(_whole_seconds(value))


def _lookback(value: int | str) -> int:
    return _non_negative(_whole_seconds(value, zero=True))


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _ban_seconds(value: int | str) -> int:
    """A ban's length: the kernel refuses an element timeout past about 584 years, and a state that held
    one would fail every start; ten years is longer than any ban means."""
    value = _whole_seconds(value)
    if value < 1 or value > LONGEST:
        raise ValueError(f"must be from 1 to {LONGEST} seconds (ten years); a ban that never ends is "
                         "`adaptive ban --for permanent`")
    return value


def _flag(value: bool) -> bool:
    return value


@dataclass(frozen=True)
class PortLimit:
    """New connections per source to one TCP port: `rate` per `per`, after a first `burst`."""
    port: int
    rate: int
    per: str       # "second", "minute", "hour" or "day"
    burst: int


_RATE = re.compile(r"([1-9][0-9]*)/(second|minute|hour|day)")


def _port_limits(value: list[dict[str, Any]]) -> tuple[PortLimit, ...]:
    limits: dict[int, PortLimit] = {}
    for item in value:
        if not isinstance(item, dict) or set(item) - {"port", "rate", "burst"} or "port" not in item:
            raise ValueError(f"{_shown(item)}: expected {{ port = N, rate = \"N/minute\", burst = N }}")
        port, rate, burst = item["port"], item.get("rate", "30/minute"), item.get("burst", 20)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"port {port!r} is not a port (1 to 65535)")
        match = _RATE.fullmatch(rate) if isinstance(rate, str) else None
        if match is None:
            raise ValueError(f"port {port}: rate {rate!r} is not N/second, N/minute, N/hour or N/day")
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
            raise ValueError(f"port {port}: burst {burst!r} is not a whole number of at least 1")
        if port in limits:
            raise ValueError(f"port {port} is given twice")
        limits[port] = PortLimit(port, int(match[1]), match[2], burst)
    return tuple(limits.values())


def _shown(item: Any) -> str:
    if not isinstance(item, dict):
        return repr(item)
    return "{ " + ", ".join(f"{k} = {v!r}" for k, v in item.items()) + " }"


def _users(value: list[str]) -> tuple[int, ...]:
    """User names (or numeric uids) resolved to uids now, so an unknown user fails at load."""
    uids = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            uids.append(item)
            continue
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a user name")
        try:
            uids.append(pwd.getpwnam(item).pw_uid)
        except KeyError:
            raise ValueError(f"no such user {item!r}") from None
    return tuple(dict.fromkeys(uids))


def journal_match(value: str) -> str:
    """A journal match `FIELD=value`, as journalctl takes one: FIELD in upper case letters, digits and
    underscores, not beginning with a digit."""
    name, sep, _ = value.partition("=")
    if not sep or not name or name[0].isdigit() \
            or not all(c.isascii() and (c.isupper() or c.isdigit() or c == "_") for c in name):
        raise ValueError(f"{value!r} is not a journal match FIELD=value (FIELD in upper case, as in "
                         "_SYSTEMD_UNIT=postfix@-.service)")
    return value


def _journal_directory(value: str) -> str:
    if value and not value.startswith("/"):
        raise ValueError("expected an absolute path, or \"\" for this host's journal")
    return value


def _busy_poll(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError("expected seconds from 0 (off) to 1")
    return float(value)


def _matches(value: list[str]) -> tuple[str, ...]:
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a string")
        journal_match(item)
    return tuple(value)


def _known_users(*names: str) -> tuple[int, ...]:
    found = []
    for name in names:
        try:
            found.append(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    return tuple(found)


# --- sections ---

@dataclass(frozen=True)
class SourceConfig:
    """One log to follow; the section name (`[sources.NAME]`) names it in metrics and status."""
    # What kind of log: each type is opened by the source registered for it (`adaptive.sources`).
    type: str = _checked("file", _one_of(*SOURCE_TYPES))
    # type "file": the file to follow (required).
    path: Path | None = _checked(None, _path)
    # type "journal": "" reads this host's journal, else the journal files of a directory (another
    # host's, a container's); `match` says which entries, ORed ([] = Postfix's and Dovecot's units and
    # the mail facility).
    directory: str = _checked("", _journal_directory)
    match: tuple[str, ...] = _checked((), _matches)
    # type "journal": seconds between looks at the journal while entries keep coming (journald tells
    # its readers of an entry up to half a second late); 0: only when journald tells.
    busy_poll: float = _checked(0.005, _busy_poll)
    # type "file": when the file does not exist as the daemon starts, "journal" reads the journal
    # `directory` and `match` say instead (a host without rsyslog); "" waits for the file.
    fallback: str = _checked("", _one_of("", "journal"))
    # Where to begin when no position was saved: "end" skips history, "beginning" reads it.
    start: str = _checked("end", _one_of("end", "beginning"))
    # A symbolic link at the path (or a rotated name) is refused unless true: whoever may write the
    # log's directory could point it at any file the daemon can read (/etc/shadow).
    follow_symlinks: bool = _checked(False, _flag)
    # Who may own the log file (user names or uids; [] = anyone): a file of another user in the log's
    # directory is refused. Default: root, and syslog where that user exists (Ubuntu's rsyslog).
    owners: tuple[int, ...] = _checked(_known_users("root", "syslog"), _users)
    # False leaves the source out, as if its section were not there: a drop-in turns off a shipped one.
    enabled: bool = _checked(True, _flag)


@dataclass(frozen=True)
class FiltersConfig:
    # Directory of filter files; empty means the filters shipped with adaptive.
    directory: Path | None = _checked(None, _optional_path)


@dataclass(frozen=True)
class StateConfig:
    path: Path = _checked(Path("/var/lib/adaptive/state.db"), _path)


def _group(value: str) -> int | None:
    """A group name (or numeric gid) resolved to its gid now, so an unknown group fails at load."""
    if value == "":
        return None
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ValueError(f"no such group {value!r}") from None


@dataclass(frozen=True)
class ControlConfig:
    socket: Path = _checked(Path("/run/adaptive/control.sock"), _path)
    # A group whose members may use the socket too (mode 0660, root:group); None: root only.
    group: int | None = _checked(None, _group)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = _checked("127.0.0.1:9469", _host_port)


@dataclass(frozen=True)
class NftablesConfig:
    table: str = _checked("adaptive", _table_name)
    priority: int = _checked(-10, _priority)
    action: str = _checked("drop", _one_of("drop", "reject"))
    ipv4_prefixes: tuple[int, ...] = _checked((24,), _prefix_lengths(32))
    ipv6_prefixes: tuple[int, ...] = _checked((48, 64), _prefix_lengths(128))
    remove_on_exit: bool = _checked(False, _flag)
    reconcile_every: float = _checked(300.0, _seconds)


@dataclass(frozen=True)
class RateLimitConfig:
    """`[rate_limit]`: new connections per source, per port, in the kernel; optional concurrent cap."""
    ports: tuple[PortLimit, ...] = _checked(
        (PortLimit(25, 30, "minute", 20), PortLimit(143, 30, "minute", 20), PortLimit(993, 30, "minute", 20)),
        _port_limits)
    # Concurrent connections per source to the ports above; 0 for no cap.
    conn_limit: int = _checked(0, _non_negative)
    # Most sources tracked per port and family; past it new sources go unlimited.
    size: int = _checked(65536, _positive)


@dataclass(frozen=True)
class WholeHostConfig:
    """`[whole_host]`: whole-host mode, where adaptive's input chain is the host's firewall policy."""
    enabled: bool = _checked(False, _flag)
    ssh_ports: tuple[int, ...] = _checked((22,), _ssh_ports)
    open_ports: tuple[int, ...] = _checked((25, 143, 993), _ports)
    ping: bool = _checked(True, _flag)


@dataclass(frozen=True)
class OutboundConfig:
    """`[outbound]`: who may open SMTP connections from this host, and to where."""
    enabled: bool = _checked(False, _flag)
    ports: tuple[int, ...] = _checked((25,), _ports)
    relays: tuple[Network, ...] = _checked((), _networks)
    users: tuple[int, ...] = _checked((), _users)


@dataclass(frozen=True)
class AllowlistConfig:
    addresses: tuple[Network, ...] = _checked((), _allowlist)


# --- decisions: how long a ban lasts ---

# `[decisions] reasons` overrides ban lengths per reason (`adaptive.vocabulary.REASONS`).


def _multiplier(value: float) -> float:
    if not 1 <= value < float("inf"):
        raise ValueError("expected a number of at least 1")
    return float(value)


def _sources(value: int) -> int:
    if value < 0 or value == 1:
        raise ValueError("expected 0 (never) or at least 2")
    return value


def _prefix_length(bits: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not 0 < value < bits:
            raise ValueError(f"expected a prefix length from 1 to {bits - 1}")
        return value
    return check


# The keys a reason may override, and their checks: those of the same keys in [decisions].
_BAN_KEYS: dict[str, Callable[[Any], Any]] = {
    "ban_base": _ban_seconds, "ban_multiplier": _multiplier, "ban_max": _ban_seconds, "lookback": _lookback,
}
# `[decisions] reasons` as `DecisionsConfig` holds it: what `_reasons` makes of the table.
_Overrides = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]


def _reasons(value: dict[str, Any]) -> _Overrides:
    """`{ slow = { ban_base = 86400 } }` as sorted pairs (reason, ((key, value), ...)), so it compares."""
    reasons = []
    for reason, keys in value.items():
        if reason not in REASONS:
            raise ValueError(f"{reason!r} is not a reason (expected one of {', '.join(REASONS)})")
        if not isinstance(keys, dict):
            raise ValueError(f"{reason} = {_show(keys)}: expected a table of {', '.join(_BAN_KEYS)}")
        checked = []
        for key, raw in keys.items():
            check = _BAN_KEYS.get(key)
            if check is None:
                raise ValueError(f"{reason}.{key} is not a key here (expected {', '.join(_BAN_KEYS)})")
            expected = _toml_type(check, None)
            if expected is not None and not _is_type(raw, expected):
                raise ValueError(f"{reason}.{key} = {_show(raw)}: expected {_type_name(expected)}")
            try:
                checked.append((key, check(raw)))
            except ValueError as e:
                raise ValueError(f"{reason}.{key} = {_show(raw)}: {e}") from None
        reasons.append((reason, tuple(sorted(checked))))
    return tuple(sorted(reasons))


@dataclass(frozen=True)
class BanProfile:
    """How long a ban lasts: `base` × `multiplier`^(n−1) seconds, at most `max`, where n counts the
    target's bans within the last `lookback` seconds, this one included."""
    base: int
    multiplier: float
    max: int
    lookback: int

    def duration(self, n: int) -> int:
        try:
            length = self.base * self.multiplier ** (n - 1)
        except OverflowError:
            return self.max
        return min(self.max, math.ceil(length))


@dataclass(frozen=True)
class DecisionsConfig:
    """`[decisions]`: what an offence leads to: the length of its ban, prefix bans, dry run."""
    dry_run: bool = _checked(False, _flag)
    ban_base: int = _checked(3600, _ban_seconds)
    ban_multiplier: float = _checked(4.0, _multiplier)
    ban_max: int = _checked(604800, _ban_seconds)
    lookback: int = _checked(2592000, _lookback)
    reasons: _Overrides = _checked((("slow", (("ban_base", 86400),)),), _reasons)
    subnet_sources: int = _checked(5, _sources)
    subnet_window: int = _checked(3600, _window)
    subnet_ipv4_prefix: int = _checked(24, _prefix_length(32))
    subnet_ipv6_prefix: int = _checked(48, _prefix_length(64))
    own_addresses: tuple[Network, ...] = _checked((), _networks)

    def profile(self, reason: str) -> BanProfile:
        """The ban lengths for `reason`: this section's keys, with the reason's own overrides."""
        own = dict(dict(self.reasons).get(reason, ()))
        return BanProfile(own.get("ban_base", self.ban_base), own.get("ban_multiplier", self.ban_multiplier),
                          own.get("ban_max", self.ban_max), own.get("lookback", self.lookback))


# --- scoring: how events add up to offences ---

# The kinds that score, with their default weights, in `Kind` order. auth_success forgives (`forgive`)
# and message_accepted paces (the burst limits): neither has a weight.
DEFAULT_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("auth_failure", 1.0), ("unknown_user", 1.0), ("relay_denied", 2.0), ("rbl_listed", 2.0),
    ("helo_rejected", 0.5), ("sender_rejected", 0.5), ("client_rejected", 0.5), ("message_rejected", 1.0),
    ("protocol_abuse", 1.0), ("lost_connection", 0.3), ("no_auth_disconnect", 0.2),
)
_WEIGHED = tuple(kind for kind, _ in DEFAULT_WEIGHTS)


def _threshold(value: float) -> float:
    if not 1 <= value < math.inf:
        raise ValueError("expected a number of at least 1: below one failure's weight, a single typo bans")
    return float(value)


# About 180 bytes a tracked source: ten million is 1.8 GB, more than a mail host should give it.
MAX_TRACKED = 10_000_000


def _tracked(value: int) -> int:
    if not 1 <= value <= MAX_TRACKED:
        raise ValueError(f"expected 1 to {MAX_TRACKED:,} sources (about 180 bytes each)")
    return value


def _above_zero(value: float) -> float:
    if not 0 < value < math.inf:
        raise ValueError("expected a number above 0")
    return float(value)


def _amount(value: float) -> float:
    if not 0 <= value < math.inf:
        raise ValueError("expected a number of at least 0")
    return float(value)


def _source_prefix(value: int) -> int:
    if not 0 < value <= 128:
        raise ValueError("expected an IPv6 prefix length from 1 to 128")
    return value


def _weights(value: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """`{ auth_failure = 1, ... }` as (kind, weight) pairs in kind order; kinds left out keep their default."""
    weights = dict(DEFAULT_WEIGHTS)
    for kind, weight in value.items():
        if kind not in weights:
            raise ValueError(f"{kind!r} is not a kind that scores (expected one of {', '.join(_WEIGHED)})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ValueError(f"{kind} = {_show(weight)}: expected a number of at least 0")
        weights[kind] = float(weight)
    return tuple(weights.items())


def _kinds(value: list[str]) -> tuple[str, ...]:
    kinds: list[str] = []
    for item in value:
        if item not in _WEIGHED:
            raise ValueError(f"{_show(item)} is not a kind that scores (expected one of {', '.join(_WEIGHED)})")
        if item not in kinds:
            kinds.append(item)
    return tuple(kinds)


@dataclass(frozen=True)
class ScoringConfig:
    """`[scoring]`: how events add up to offences: decaying scores per source, a slow score, bursts."""
    threshold: float = _checked(4.5, _threshold)
    half_life: float = _checked(3600.0, _seconds)
    weights: tuple[tuple[str, float], ...] = _checked(DEFAULT_WEIGHTS, _weights)
    ipv6_prefix: int = _checked(64, _source_prefix)
    slow_threshold: float = _checked(7.0, _threshold)
    slow_half_life: float = _checked(172800.0, _seconds)
    slow_kinds: tuple[str, ...] = _checked(("auth_failure",), _kinds)
    forgive: float = _checked(1.0, _amount)
    forgive_kinds: tuple[str, ...] = _checked(("auth_failure",), _kinds)
    pair_window: float = _checked(10.0, _seconds)
    spam_window: float = _checked(600.0, _seconds)
    spam_limit: int = _checked(200, _positive)
    harvest_window: float = _checked(600.0, _seconds)
    harvest_limit: int = _checked(20, _positive)
    dictionary_window: float = _checked(3600.0, _seconds)
    dictionary_limit: int = _checked(6, _positive)
    account_window: float = _checked(3600.0, _seconds)
    account_messages: int = _checked(100, _positive)
    account_recipients: int = _checked(300, _positive)
    max_sources: int = _checked(250_000, _tracked)
    burst_events: int = _checked(100_000, _positive)


@dataclass(frozen=True)
class Config:
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    state: StateConfig = field(default_factory=StateConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    nftables: NftablesConfig = field(default_factory=NftablesConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    whole_host: WholeHostConfig = field(default_factory=WholeHostConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    allowlist: AllowlistConfig = field(default_factory=AllowlistConfig)
    decisions: DecisionsConfig = field(default_factory=DecisionsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    # The files read, in order, for messages and `adaptive status`.
    files: tuple[Path, ...] = ()

    @property
    def filters_directory(self) -> Path:
        return self.filters.directory or SHIPPED_FILTERS


# --- how a raw value is typed and shown, for the checks here and the messages of loading ---

def _toml_type(check: Callable[..., Any], default: Any) -> type | tuple[type, ...] | None:
    """The TOML type a check accepts, read from its annotation so the two never disagree: a union
    (`float | str`, a duration's) is a tuple of them."""
    hints = typing.get_type_hints(check)
    arg = next((v for k, v in hints.items() if k != "return"), None)
    if isinstance(arg, types.UnionType):
        return tuple(typing.get_origin(t) or t for t in typing.get_args(arg))
    return typing.get_origin(arg) or arg


def _is_type(raw: Any, expected: type | tuple[type, ...]) -> bool:
    if isinstance(expected, tuple):
        return any(_is_type(raw, one) for one in expected)
    if expected is float:
        return isinstance(raw, (int, float)) and not isinstance(raw, bool)
    if expected is int:
        return isinstance(raw, int) and not isinstance(raw, bool)
    return isinstance(raw, expected)


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        if str in t and (int in t or float in t):      # a duration
            whole = "whole " if float not in t else ""
            return f'a number of {whole}seconds or a duration ("90s", "4h", "7d")'
        return " or ".join(_type_name(one) for one in t)
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(t, t.__name__)


def _show(raw: Any) -> str:
    if isinstance(raw, str):
        return '"' + raw.replace('"', '\\"') + '"'
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return repr(raw)
