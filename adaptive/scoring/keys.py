"""Address keys: the one int a scored address is known by, and its text for offences.

An IPv4 address is scored as itself, keyed by its 32-bit number. An IPv6 address is scored by its
prefix (the first `ipv6_prefix` bits, /64 by default: one host, or one customer line, owns a /64 and
can use every address in it), stored as the bitwise complement of that number, so the two families
never collide (IPv4 keys are ≥ 0, IPv6 keys < 0). An int costs a third of the memory of the address's
text and is made in C (`inet_aton`, `inet_pton`), which matters at a million tracked addresses.

A prefix that holds an address that is never banned (the host's own, an allowlisted one) is *split*:
each of its addresses is scored on its own, keyed `~(address + 2^128)` (below every prefix key), so
that an attacker sharing the host's /64 at a hosting provider is scored and banned by its /128
instead of adding to a /64 that could never be banned.

The scorer inlines `key` on its hot path; the rest is for offences, `forgive` and `explain`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from socket import AF_INET6, inet_aton, inet_pton

from adaptive.addresses import parse_network

EXACT = 1 << 128    # an address of a split prefix: key ~(address + EXACT)


class Keys:
    """Address text to key and back, for one IPv6 prefix length.

    >>> keys = Keys(64)
    >>> keys.target(keys.key("2001:db8:1:2::7"))
    '2001:db8:1:2::/64'
    """

    def __init__(self, ipv6_prefix: int = 64):
        if not 0 < ipv6_prefix <= 128:
            raise ValueError(f"IPv6 prefix length {ipv6_prefix} is not from 1 to 128")
        self.prefix = ipv6_prefix
        self.shift = 128 - ipv6_prefix
        self.split: frozenset[int] = frozenset()   # prefix keys whose addresses are scored one by one

    def split_around(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        """Split every scored IPv6 prefix that holds one of `networks` narrower than itself."""
        self.split = frozenset(~(int(n.network_address) >> self.shift) for n in networks
                               if n.version == 6 and n.prefixlen > self.prefix)

    def key(self, ip: str) -> int:
        """The key of a normalised address, as events carry it (no validation: see `parse`)."""
        if ":" in ip:
            x = int.from_bytes(inet_pton(AF_INET6, ip), "big")
            k = ~(x >> self.shift)
            return ~(x + EXACT) if k in self.split else k
        return int.from_bytes(inet_aton(ip), "big")

    def target(self, key: int) -> str:
        """The text of a key: "203.0.113.7", "2001:db8:1:2::/64", or an address of a split prefix."""
        if key >= 0:
            return str(ipaddress.IPv4Address(key))
        if key < -EXACT:
            return str(ipaddress.IPv6Address(~key - EXACT))
        if self.shift == 0:
            return str(ipaddress.IPv6Address(~key))
        return f"{ipaddress.IPv6Address((~key) << self.shift)}/{self.prefix}"

    def parse(self, text: str) -> tuple[int, int]:
        """The keys an address or prefix covers, as an inclusive range (low, high) of keys.

        An address, or a prefix longer than the scored IPv6 prefix, covers the one key it is in; a
        shorter prefix ("198.51.100.0/24", "2001:db8::/48") covers every key inside it. The text is
        read by `adaptive.addresses.parse_network` (an IPv4-mapped address or prefix is the IPv4 one).
        ValueError for anything else.
        """
        return self.ranges(text)[0]

    def ranges(self, text: str) -> list[tuple[int, int]]:
        """The keys an address or prefix covers, as `parse` gives them, then, for a prefix wider than
        one key that covers split prefixes, the range of their addresses' keys."""
        net = parse_network(text)
        first, last = int(net.network_address), int(net.broadcast_address)
        if isinstance(net, ipaddress.IPv4Network):
            return [(first, last)]
        low, high = first >> self.shift, last >> self.shift
        addresses = ~(last + EXACT), ~(first + EXACT)
        if net.prefixlen > self.prefix:
            return [addresses if ~low in self.split else (~high, ~low)]
        if any(~high <= k <= ~low for k in self.split):
            return [(~high, ~low), addresses]
        return [(~high, ~low)]
