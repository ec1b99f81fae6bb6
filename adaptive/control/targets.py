"""Targets of the admin's commands: an address or prefix, validated and written one way.

Every target that crosses the control socket passes through here, on both sides: the client reports
what is not an address with its line number, the server checks again (a client may be anything) and
refuses loopback, so a handler only ever sees canonical text: `192.0.2.7`, `203.0.113.0/24`,
`2001:db8::/64` (an IPv4-mapped address becomes the IPv4 one, a prefix's host bits are cleared), the
text `ipaddress` writes, made by `adaptive.addresses.read`.

>>> canonical("::ffff:192.0.2.7"), canonical("203.0.113.9/24"), canonical("2001:DB8:0:0::1:0/112")
('192.0.2.7', '203.0.113.0/24', '2001:db8::1:0/112')
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from adaptive.addresses import Network, Target, parse_network, read, text

NEVER_LOOPBACK = "loopback is never banned"


def exact(text: str) -> Target:
    """The address or prefix `text` names, read (`adaptive.addresses.read`); raises ValueError for
    anything else, space around it included (a client sends targets exactly)."""
    if text.strip() != text:
        raise ValueError(f"{text!r} is not an IP address or prefix")
    return read(text)


def canonical(text: str) -> str:
    """The one way of writing an address or prefix; raises ValueError as `exact` does."""
    return exact(text).text


write = text   # an `ipaddress` network as a target: an address without its length, a prefix with it


def is_loopback(target: Target) -> bool:
    """True when `target` is, or holds, a loopback address (127.0.0.0/8, ::1)."""
    if target.version == 4:
        return target.first <= 0x7FFFFFFF and target.last >= 0x7F000000
    return target.first <= 1 <= target.last


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
