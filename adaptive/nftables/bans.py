"""Bans as the kernel holds them: an address or prefix, validated, with its timeout.

Everything that reaches a ban set is read by `adaptive.addresses.read`: validated (by `inet_pton`),
an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) becomes the IPv4 address it stands for, and a
prefix's host bits are cleared. `read_bans` and `read_counters` turn the kernel's JSON listings back into
values. All of it is pure; `ruleset` builds the JSON that puts bans into the kernel.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

from adaptive.addresses import Address, Network, parse_network, read, text
from adaptive.durations import LONGEST
from adaptive.nftables.render import Json

# A ban set's name says its family and, for a prefix set, the prefix length: ban4, ban6, ban4_24, ban6_64.
BAN_SET = re.compile(r"ban([46])(?:_(\d{1,3}))?")


def _seconds(value: float | None, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is int and 0 < value <= LONGEST:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{what} {value!r} is not a positive number of seconds")
    if value > LONGEST:
        # The kernel refuses past about 584 years ("Numerical result out of range"); none is meant.
        raise ValueError(f"{what} {value!r} is longer than ten years ({LONGEST} s): a ban that never "
                         "ends has no timeout")
    return math.ceil(value)


class Ban:
    """One address or prefix dropped for `timeout` seconds (None: until unbanned).

        Ban("192.0.2.7", 3600), Ban("2001:db8:1:2::/64", 86400)

    `expires` is the time left: `list()` reports it, and a restore passes it so a ban keeps its end.
    Banning a live element again sets its time left to the new ban's timeout. Immutable.

    A ban keeps the element it becomes (`key`, the address or a prefix's first address) rather than an
    `ipaddress` network, which `network` makes on demand: validating 100,000 addresses then costs one
    `inet_pton` each and leaves no objects for the garbage collector to walk.
    """

    __slots__ = ("key", "version", "prefixlen", "host", "timeout", "expires")
    key: str
    version: int
    prefixlen: int
    host: bool         # an address rather than a prefix
    timeout: int | None
    expires: int | None

    def __init__(self, network: str | Network | Address, timeout: float | None = None,
                 expires: float | None = None):
        if not isinstance(network, str):
            network = text(parse_network(network))
        version, _, prefixlen, written = read(network)
        host = prefixlen == (32 if version == 4 else 128)
        setattr_ = object.__setattr__
        setattr_(self, "key", written if host else written.partition("/")[0])
        setattr_(self, "version", version)
        setattr_(self, "prefixlen", prefixlen)
        setattr_(self, "host", host)
        timeout = _seconds(timeout, "timeout")
        expires = _seconds(expires, "expires")
        if expires is not None and (timeout is None or expires > timeout):
            timeout = expires
        setattr_(self, "timeout", timeout)
        setattr_(self, "expires", expires)

    @property
    def target(self) -> str:
        """The ban as a target is written: the address, or the prefix with its length."""
        return self.key if self.host else f"{self.key}/{self.prefixlen}"

    @property
    def network(self) -> Network:
        if self.version == 4:
            return ipaddress.IPv4Network((self.key, self.prefixlen))
        return ipaddress.IPv6Network((self.key, self.prefixlen))

    @property
    def left(self) -> int | None:
        """Seconds until the kernel lifts it; None for never."""
        return self.expires if self.expires is not None else self.timeout

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Ban cannot be changed")

    def __reduce__(self) -> tuple[type[Ban], tuple[str, int | None, int | None]]:
        return (Ban, (f"{self.key}/{self.prefixlen}", self.timeout, self.expires))

    def _identity(self) -> tuple[int, str, int, int | None, int | None]:
        return (self.version, self.key, self.prefixlen, self.timeout, self.expires)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ban) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        network = self.key if self.host else f"{self.key}/{self.prefixlen}"
        return f"Ban({network!r}, timeout={self.timeout!r}, expires={self.expires!r})"


def read_bans(listing: list[Json]) -> list[Ban]:
    """The bans in a JSON listing of adaptive's ban sets (the `nftables` array of libnftables)."""
    bans = []
    for obj in listing:
        s = obj.get("set")
        match = BAN_SET.fullmatch(s["name"]) if s else None
        if s is None or match is None:
            continue
        length = match[2]
        for elem in s.get("elem", ()):
            if isinstance(elem, dict) and "elem" in elem:
                value = elem["elem"]["val"]
                timeout, expires = elem["elem"].get("timeout"), elem["elem"].get("expires")
            else:
                value, timeout, expires = elem, None, None
            if timeout is not None and not expires:
                continue  # lapsing within the second
            bans.append(Ban(f"{value}/{length}" if length else value, timeout or None, expires))
    return bans


@dataclass(frozen=True, slots=True)
class Counter:
    """A named counter's totals since the table was first made (re-applying keeps them)."""
    packets: int
    bytes: int


def read_counters(listing: list[Json]) -> dict[str, Counter]:
    """Counters by name from a JSON listing of adaptive's table or counters."""
    return {c["name"]: Counter(c.get("packets", 0), c.get("bytes", 0))
            for obj in listing if (c := obj.get("counter"))}
