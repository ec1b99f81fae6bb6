"""The rules of adaptive's table, read straight from the kernel over netlink, without set elements.

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

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWRULE, NFT_MSG_GETRULE = 6, 7
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS = 1, 2, 4
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
    request = struct.pack("=BBH", NFPROTO_INET, 0, 0) + _attr(NFTA_RULE_TABLE, table.encode() + b"\0")
    kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        sock.send(_HEADER.pack(_HEADER.size + len(request), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + request)
        chains: dict[str, hashlib._Hash] = {}
        while True:
            data = sock.recv(1 << 16)
            at = 0
            while at + _HEADER.size <= len(data):
                length, kind, _, _, _ = _HEADER.unpack_from(data, at)
                body = data[at + _HEADER.size:at + length]
                at += (length + 3) & ~3
                if kind == NLMSG_DONE:
                    return {name: h.hexdigest() for name, h in chains.items()}
                if kind == NLMSG_ERROR:
                    error = -struct.unpack_from("=i", body)[0]
                    if error == 0:
                        continue
                    if error == 2:        # ENOENT: no such table (recent kernels dump nothing instead)
                        return {}
                    raise OSError(error, f"netlink: listing the rules of inet {table}: {os.strerror(error)}")
                if kind & 0xff != NFT_MSG_NEWRULE:
                    continue
                attrs = _attrs(body[4:])
                chain = attrs.get(NFTA_RULE_CHAIN, b"").rstrip(b"\0").decode(errors="replace")
                digest = chains.setdefault(chain, hashlib.sha256())
                digest.update(struct.pack("=I", len(attrs.get(NFTA_RULE_EXPRESSIONS, b""))))
                digest.update(attrs.get(NFTA_RULE_EXPRESSIONS, b""))
