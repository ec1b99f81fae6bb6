"""Addresses and prefixes: one way to read them, one form to write them.

Everything that names a source or a ban target passes through `parse_network`: `ipaddress` validates
it, an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) becomes the IPv4 address it stands for, and a
prefix's host bits are cleared. `text` writes it back as the rest of adaptive shows it: an address as
itself, a prefix as address/length. Pure and dependency-free, so decisions, the kernel side and the
control socket all use it without importing each other.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK: tuple[Network, ...] = (ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128"))


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
