"""Targets of the admin's commands: an address or prefix, validated and written one way.

Every target that crosses the control socket passes through here, on both sides: the client reports
what is not an address with its line number, the server checks again (a client may be anything) and
refuses loopback, so a handler only ever sees canonical text: `192.0.2.7`, `203.0.113.0/24`,
`2001:db8::/64` (an IPv4-mapped address becomes the IPv4 one, a prefix's host bits are cleared), the
same text `ipaddress` writes.

>>> canonical("::ffff:192.0.2.7"), canonical("203.0.113.9/24"), canonical("2001:DB8:0:0::1:0/112")
('192.0.2.7', '203.0.113.0/24', '2001:db8::1:0/112')
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator

from adaptive.addresses import Network, parse_network, text

NEVER_LOOPBACK = "loopback is never banned"
_MAPPED = bytes(10) + b"\xff\xff"


def canonical(text: str) -> str:
    """The one way of writing an address or prefix; raises ValueError for anything else.

    The C parser of `inet_pton` does the validating: a blocklist of 100,000 IPv6 prefixes costs a
    fraction of a second, where `ipaddress` takes five times as long. The text it makes is the text
    `ipaddress` makes (the tests hold the two to it); `Ban` checks again with `ipaddress` before the
    kernel sees any of it.
    """
    address, slash, length = text.partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in address else (socket.AF_INET, 32)
    try:
        packed = socket.inet_pton(family, address)
    except (OSError, ValueError):
        raise ValueError(f"{text!r} is not an IP address or prefix") from None
    prefixlen = bits
    if slash:
        if not (length.isascii() and length.isdigit() and int(length) <= bits):
            raise ValueError(f"{text!r} is not an IP address or prefix")
        prefixlen = int(length)
    if family == socket.AF_INET6 and prefixlen >= 96 and packed.startswith(_MAPPED):
        family, bits, packed, prefixlen = socket.AF_INET, 32, packed[12:], prefixlen - 96
    if prefixlen < bits:
        host_bits = bits - prefixlen
        packed = (int.from_bytes(packed) >> host_bits << host_bits).to_bytes(bits // 8)
    written = socket.inet_ntop(family, packed)
    if family == socket.AF_INET6 and "." in written:
        written = str(ipaddress.IPv6Address(packed))   # glibc writes ::a.b.c.d where ipaddress does not
    return written if prefixlen == bits else f"{written}/{prefixlen}"


write = text   # an `ipaddress` network as a target: an address without its length, a prefix with it


def is_loopback(target: str) -> bool:
    """True when the canonical `target` is, or holds, a loopback address (127.0.0.0/8, ::1)."""
    if ":" in target:
        return target == "::1" or target.startswith("::/")
    first = int(target.split(".", 1)[0])
    prefixlen = int(target.partition("/")[2] or 32)
    shift = max(0, 8 - prefixlen)
    return first >> shift == 127 >> shift


def allowlisted(target: str, allowlist: Iterable[Network]) -> Network | None:
    """The allowlist entry that overlaps `target` (a ban on it would drop allowed traffic), or None."""
    net = parse_network(target)
    return next((a for a in allowlist if a.version == net.version and a.overlaps(net)), None)


def read_lines(lines: Iterable[str]) -> Iterator[tuple[int, str | None, str]]:
    """(line number, canonical target or None, problem) for each line that is not blank or a comment.

    A `#` starts a comment anywhere on a line, so `192.0.2.7  # seen on 24 Nov` is read as its address.
    """
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            yield number, canonical(text), ""
        except ValueError:
            yield number, None, f"{text!r} is not an IP address or prefix"
