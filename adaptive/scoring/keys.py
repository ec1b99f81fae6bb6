"""Source keys: the one int a tracked source is known by, and its text for offences.

An IPv4 source is its address as a 32-bit number. An IPv6 source is its prefix (the first
`ipv6_prefix` bits, /64 by default: one host, or one customer line, owns a /64 and can use every
address in it), stored as the bitwise complement of that number, so the two families never collide
(IPv4 keys are ≥ 0, IPv6 keys < 0). An int costs a third of the memory of the address's text and is
made in C (`inet_aton`, `inet_pton`), which matters at a million tracked sources.

The scorer inlines `key` on its hot path; the rest is for offences, `forgive` and `explain`.
"""

from __future__ import annotations

import ipaddress
from socket import AF_INET6, inet_aton, inet_pton


class Keys:
    """Address text to source key and back, for one IPv6 prefix length.

    >>> keys = Keys(64)
    >>> keys.target(keys.key("2001:db8:1:2::7"))
    '2001:db8:1:2::/64'
    """

    def __init__(self, ipv6_prefix: int = 64):
        if not 0 < ipv6_prefix <= 128:
            raise ValueError(f"IPv6 prefix length {ipv6_prefix} is not from 1 to 128")
        self.prefix = ipv6_prefix
        self.shift = 128 - ipv6_prefix

    def key(self, ip: str) -> int:
        """The key of a normalised address, as events carry it (no validation: see `parse`)."""
        if ":" in ip:
            return ~(int.from_bytes(inet_pton(AF_INET6, ip), "big") >> self.shift)
        return int.from_bytes(inet_aton(ip), "big")

    def target(self, key: int) -> str:
        """The text of a key: "203.0.113.7", or "2001:db8:1:2::/64"."""
        if key >= 0:
            return str(ipaddress.IPv4Address(key))
        if self.shift == 0:
            return str(ipaddress.IPv6Address(~key))
        return f"{ipaddress.IPv6Address((~key) << self.shift)}/{self.prefix}"

    def parse(self, text: str) -> tuple[int, int]:
        """The keys an address or prefix covers, as an inclusive range (low, high) of keys.

        An address, or a prefix longer than the IPv6 source prefix, covers the one source it is in;
        a shorter prefix ("198.51.100.0/24", "2001:db8::/48") covers every source inside it. An
        IPv4-mapped IPv6 address is its IPv4 address. ValueError for anything else.
        """
        try:
            net = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not an address or prefix") from None
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128 and net.network_address.ipv4_mapped:
            net = ipaddress.IPv4Network(net.network_address.ipv4_mapped)
        if isinstance(net, ipaddress.IPv4Network):
            return int(net.network_address), int(net.broadcast_address)
        low = int(net.network_address) >> self.shift
        high = int(net.broadcast_address) >> self.shift
        return ~high, ~low
