"""Addresses and prefixes: one module to read them, one form to write them, for every boundary.

Everything that names an address or a ban target passes through here, and is read one way: validated,
an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) made the IPv4 address it stands for (a mapped prefix,
`::ffff:198.51.100.0/120`, the IPv4 prefix), a prefix's host bits cleared. `text` writes it back as the
rest of adaptive shows it: an address as itself, a prefix as address/length. The readers differ only
in what they give and what they take:

- `parse_network`: an `ipaddress` network, from text or from an `ipaddress` object (the configuration,
  decisions, the scorer's ranges, the kernel side);
- `read`: the same answer taken apart (`Target`), from the C parser `inet_pton`, for the paths that see
  100,000 targets at once (a blocklist import, a restore); `exact` refuses space around the text too
  (what the control socket takes), and `canonical` is its text;
- `read_address`: an address alone, as an event carries it (the filters' engine, on a cache miss).

Then what is never banned: `LOOPBACK` (and `is_loopback` for a target), `NOT_CLIENTS`, and the
allowlist entry over a target (`allowlisted`). Pure and dependency-free, so the filters, decisions, the
kernel side and the control socket all use it without importing each other.

>>> canonical("::ffff:192.0.2.7"), canonical("203.0.113.9/24"), canonical("2001:DB8:0:0::1:0/112")
('192.0.2.7', '203.0.113.0/24', '2001:db8::1:0/112')
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import NamedTuple

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK: tuple[Network, ...] = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))
# No client connects from these: unspecified, limited broadcast, multicast. A ban of one, or over one,
# is a mistake (or a forged line), never a decision.
NOT_CLIENTS: tuple[Network, ...] = (
    ipaddress.IPv4Network("0.0.0.0/32"), ipaddress.IPv4Network("255.255.255.255/32"),
    ipaddress.IPv4Network("224.0.0.0/4"), ipaddress.IPv6Network("::/128"), ipaddress.IPv6Network("ff00::/8"))
NEVER_LOOPBACK = "loopback is never banned"


def parse_network(value: str | Network | Address) -> Network:
    """An address or prefix as a network, validated; raises ValueError for anything else."""
    if isinstance(value, str) and "/" not in value:
        try:
            return _host(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or prefix") from None
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return _host(value)
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        network = value
    elif isinstance(value, str):
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or prefix") from None
    else:
        raise ValueError(f"{value!r} is not an IP address or prefix")
    if network.version == 6 and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.IPv4Network((mapped, network.prefixlen - 96), strict=False)
    return network


def _host(address: Address) -> Network:
    # From the integer: the quickest way ipaddress has to make a /32 or /128.
    if address.version == 4:
        return ipaddress.IPv4Network(int(address))
    mapped = address.ipv4_mapped
    return ipaddress.IPv4Network(int(mapped)) if mapped is not None else ipaddress.IPv6Network(int(address))


def text(network: Network) -> str:
    """An address as itself, a prefix as "address/length"."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


class Target(NamedTuple):
    """An address or prefix taken apart: what `parse_network` gives, without the `ipaddress` objects.

    >>> read("::ffff:192.0.2.7"), read("2001:DB8::1:0/112").text
    (Target(version=4, first=3221225991, length=32, text='192.0.2.7'), '2001:db8::1:0/112')
    """
    version: int
    first: int      # the first address, as an integer
    length: int     # the prefix length: 32 or 128 for an address
    text: str       # written as `text` writes its network: "192.0.2.7", "203.0.113.0/24"

    @property
    def host(self) -> bool:
        return self.length == (32 if self.version == 4 else 128)

    @property
    def last(self) -> int:
        """The last address, as an integer."""
        return self.first | ((1 << ((32 if self.version == 4 else 128) - self.length)) - 1)

    @property
    def address(self) -> str:
        """The first address's text (the whole text for an address)."""
        return self.text.partition("/")[0]


_pton = socket.inet_pton
_ntop = socket.inet_ntop
_INET, _INET6 = socket.AF_INET, socket.AF_INET6


def read(value: str) -> Target:
    """`parse_network`'s answer taken apart; raises ValueError for anything that is not an address or
    prefix. `inet_pton` validates (five times quicker than `ipaddress`, which is most of a 100,000-line
    blocklist), and the text is the one `ipaddress` writes: the tests hold the two to it."""
    written, slash, bits = value.strip().partition("/")
    v6 = ":" in written
    try:
        raw = _pton(_INET6 if v6 else _INET, written)
    except (OSError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IP address or prefix") from None
    size = 128 if v6 else 32
    if slash:
        if not (bits.isascii() and bits.isdigit() and len(bits) <= 3 and int(bits) <= size):
            raise ValueError(f"{value!r} is not an IP address or prefix")
        length = int(bits)
    else:
        length = size
    if not v6 and length == 32:
        return Target(4, int.from_bytes(raw), 32, written)   # inet_pton takes only the canonical form
    first = int.from_bytes(raw)
    version = 6 if v6 else 4
    if v6 and length >= 96 and first >> 32 == 0xFFFF:
        version, size, length, first = 4, 32, length - 96, first & 0xFFFFFFFF
    first = first >> (size - length) << (size - length)
    if version == 4:
        written = _ntop(_INET, first.to_bytes(4))
    else:
        written = _ntop(_INET6, first.to_bytes(16))
        if "." in written:       # glibc writes ::a.b.c.d where ipaddress writes ::xxxx:xxxx
            written = str(ipaddress.IPv6Address(first))
    return Target(version, first, length, written if length == size else f"{written}/{length}")


def exact(value: str) -> Target:
    """The address or prefix `value` names, read (`read`); raises ValueError for anything else, space
    around it included (a client sends targets exactly)."""
    if value.strip() != value:
        raise ValueError(f"{value!r} is not an IP address or prefix")
    return read(value)


def canonical(value: str) -> str:
    """The one way of writing an address or prefix; raises ValueError as `exact` does."""
    return exact(value).text


def read_address(value: str) -> str:
    """An address alone (no prefix), written as events carry it: IPv4 dotted quad or compressed IPv6,
    never IPv4-mapped. Raises ValueError for anything else."""
    address = ipaddress.ip_address(value)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def is_loopback(target: Target) -> bool:
    """True when `target` is, or holds, a loopback address (127.0.0.0/8, ::1)."""
    if target.version == 4:
        return target.first <= 0x7FFFFFFF and target.last >= 0x7F000000
    return target.first <= 1 <= target.last


def allowlisted(target: str, allowlist: Iterable[Network]) -> Network | None:
    """The allowlist entry that overlaps `target` (a ban on it would drop allowed traffic), or None."""
    net = parse_network(target)
    return next((a for a in allowlist if a.version == net.version and a.overlaps(net)), None)
