"""adaptive's table read straight from the kernel over netlink, without set elements: its set and
chain names, and its rules.

libnftables 1.0.6 fetches every set's elements before it lists a single rule (0.7 s with 100,000 bans),
so the once-a-second look at the table cannot ask it for rules. The kernel itself answers a dump of one
table's rules (NFT_MSG_GETRULE, filtered by NFTA_RULE_TABLE) in a fraction of a millisecond, elements
untouched. What is read is only compared, never interpreted: per chain, the rules' expressions as the
kernel encodes them, without their handles. Expressions that hold changing state (an anonymous counter)
would make two reads differ; adaptive's rules use named counters, whose expression is only the name.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
from collections.abc import Callable

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETCHAIN, NFT_MSG_GETRULE, NFT_MSG_GETSET = 4, 7, 10     # each answered by NFT_MSG_NEWx = GETx - 1
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS = 1, 2, 4
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
NFTA_SET_TABLE, NFTA_SET_NAME, NFTA_SET_FLAGS = 1, 2, 3
NFT_SET_ANONYMOUS = 0x1
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFPROTO_INET = 1
_HEADER = struct.Struct("=IHHII")     # nlmsghdr: length, type, flags, sequence, port
_ATTR = struct.Struct("=HH")          # nlattr: length, type


def _attr(kind: int, value: bytes) -> bytes:
    data = _ATTR.pack(_ATTR.size + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    found, at = {}, 0
    while at + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, at)
        if length < _ATTR.size:
            break
        found[kind & 0x3fff] = data[at + _ATTR.size:at + length]
        at += (length + 3) & ~3
    return found


def rules_digest(table: str) -> dict[str, str]:
    """Per chain of `inet table`, a digest of its rules in order; a chain with no rule is absent, and a
    table that does not exist has none. About 0.2 ms. OSError if the kernel cannot be asked."""
    chains: dict[str, hashlib._Hash] = {}
    for attrs in _dump(NFT_MSG_GETRULE, NFTA_RULE_TABLE, table, "rules"):
        chain = attrs.get(NFTA_RULE_CHAIN, b"").rstrip(b"\0").decode(errors="replace")
        digest = chains.setdefault(chain, hashlib.sha256())
        digest.update(struct.pack("=I", len(attrs.get(NFTA_RULE_EXPRESSIONS, b""))))
        digest.update(attrs.get(NFTA_RULE_EXPRESSIONS, b""))
    return {name: h.hexdigest() for name, h in chains.items()}


def set_names(table: str) -> list[str]:
    """The names of `inet table`'s sets, in the kernel's order ([]: no such table), elements untouched.
    Asked of the kernel rather than of libnftables, whose JSON listing of sets is not safe beside
    another thread's (its set_dtype_json uses strtok: two at once end the process on an assertion)."""
    return _names(NFT_MSG_GETSET, NFTA_SET_TABLE, NFTA_SET_NAME, table, "sets",
                  lambda attrs: not struct.unpack(">I", attrs.get(NFTA_SET_FLAGS, b"\0\0\0\0")[:4])[0]
                  & NFT_SET_ANONYMOUS)   # a rule's own `{ 22, 25 }` (__set0): libnftables hides those


def chain_names(table: str) -> list[str]:
    """The names of `inet table`'s chains, in the kernel's order ([]: no such table)."""
    return _names(NFT_MSG_GETCHAIN, NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, table, "chains")


def _names(message: int, table_attr: int, name_attr: int, table: str, what: str,
           wanted: Callable[[dict[int, bytes]], bool] = lambda attrs: True) -> list[str]:
    return [attrs[name_attr].rstrip(b"\0").decode(errors="replace")
            for attrs in _dump(message, table_attr, table, what)
            if attrs.get(table_attr, b"").rstrip(b"\0") == table.encode() and name_attr in attrs
            and wanted(attrs)]


def _dump(message: int, table_attr: int, table: str, what: str) -> list[dict[int, bytes]]:
    """The attributes of every object a dump of `message` for `inet table` returns."""
    request = struct.pack("=BBH", NFPROTO_INET, 0, 0) + _attr(table_attr, table.encode() + b"\0")
    kind = NFNL_SUBSYS_NFTABLES << 8 | message
    found: list[dict[int, bytes]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        sock.send(_HEADER.pack(_HEADER.size + len(request), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + request)
        while True:
            data = sock.recv(1 << 16)
            at = 0
            while at + _HEADER.size <= len(data):
                length, kind, _, _, _ = _HEADER.unpack_from(data, at)
                body = data[at + _HEADER.size:at + length]
                at += (length + 3) & ~3
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", body)[0]
                    if error == 0:
                        continue
                    if error == 2:        # ENOENT: no such table (recent kernels dump nothing instead)
                        return []
                    raise OSError(error, f"netlink: listing the {what} of inet {table}: {os.strerror(error)}")
                if kind & 0xff == message - 1:      # NFT_MSG_NEWx answers NFT_MSG_GETx
                    found.append(_attrs(body[4:]))
