"""adaptive's table, built from the configuration as libnftables JSON. Pure: nothing here touches the kernel.

The table (family inet, named by `nftables.table`) is all adaptive ever writes; other tables, the
admin's or firewalld's, are never named. It holds:

- `allow4`, `allow6`: the allowlist (loopback always), interval sets checked before anything drops;
- `ban4`, `ban6`: banned addresses, `flags timeout`: each element's timeout is its ban's length, so the
  kernel lifts a ban even when the daemon is dead;
- `ban4_24`, `ban6_64`, ...: banned prefixes, one set per prefix length, holding the prefix's first
  address; the rule masks the source before looking it up. Prefixes of any two lengths and addresses
  therefore never overlap in a set: banning an address inside a banned prefix, or a prefix over banned
  addresses, adds an element beside the others and each keeps its own timeout;
- `rate4_PORT`, `rate6_PORT`: per-source token buckets for new connections to PORT (`update @set
  { ip saddr limit rate over ... }`), and `conn4`, `conn6` for the concurrent-connection cap;
- `relay4`, `relay6`: where outbound SMTP may go; `probe`: a scratch set to learn what the kernel does;
  `managed_by_adaptive`: empty, the mark of a table adaptive made (it replaces no other);
- named counters: `bans`, `rate_limit_PORT`, `conn_limit`, `closed` (whole-host mode), `outbound`;
- chains: `input` (hook input), `host` (whole-host policy, jumped to from input), `output`.

`build_ruleset` makes the whole table in one payload that begins with `add table; delete table; add
table`, so applying it replaces the old table atomically whether or not one exists; the backend appends
the live bans (`build_ban`) to the same payload so none is lost.

Writing a payload out, as JSON text or as an `nft -f` script, is `render`'s.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from adaptive.addresses import LOOPBACK, Network, Target, parse_network
from adaptive.config import Config, NftablesConfig, OutboundConfig, WholeHostConfig
from adaptive.nftables.bans import Ban
from adaptive.nftables.render import Json

FAMILY = "inet"
# Seconds a rate-limit element outlives its source's last new connection, by the rate's unit.
RATE_SET_TIMEOUT = {"second": 60, "minute": 60, "hour": 3600, "day": 86400}
# What IPv6 needs to work at all under a drop policy; errors for live flows come as ct related.
ICMPV6_NEEDED = ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert", "mld-listener-query"]
REJECT = {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}


@dataclass(frozen=True)
class _Family:
    version: int
    protocol: str    # payload protocol: "ip" or "ip6"
    nfproto: str     # meta nfproto: "ipv4" or "ipv6"
    type: str        # set type: "ipv4_addr" or "ipv6_addr"


V4 = _Family(4, "ip", "ipv4", "ipv4_addr")
V6 = _Family(6, "ip6", "ipv6", "ipv6_addr")
FAMILIES = (V4, V6)


@dataclass(frozen=True)
class Layout:
    """Where each ban goes in adaptive's table: what `ban`, `unban` and `list` need to know.

    The prefix lengths are the configured ones plus any a live ban still uses, so re-applying a config
    that dropped a length keeps that length's bans until they lapse.
    """

    table: str
    ipv4_prefixes: tuple[int, ...] = (24,)
    ipv6_prefixes: tuple[int, ...] = (64,)

    @classmethod
    def of(cls, config: NftablesConfig, bans: Iterable[Ban] = ()) -> Layout:
        v4, v6 = set(config.ipv4_prefixes), set(config.ipv6_prefixes)
        for ban in bans:
            if not ban.host:
                (v4 if ban.version == 4 else v6).add(ban.prefixlen)
        return cls(config.table, tuple(sorted(v4)), tuple(sorted(v6)))

    def prefixes(self, version: int) -> tuple[int, ...]:
        return self.ipv4_prefixes if version == 4 else self.ipv6_prefixes

    def ban_set(self, network: Network) -> str:
        """The set that holds a ban of `network`; ValueError if no set takes its prefix length."""
        return self.set_for(network.version, str(network.network_address), network.prefixlen)

    def set_for(self, version: int, key: str, prefixlen: int) -> str:
        """`ban_set` of a network taken apart (`key` its first address, named in the error)."""
        if prefixlen == (32 if version == 4 else 128):
            return f"ban{version}"
        if prefixlen in self.prefixes(version):
            return f"ban{version}_{prefixlen}"
        lengths = ", ".join(str(n) for n in self.prefixes(version))
        raise ValueError(f"cannot ban {key}/{prefixlen}: no set for /{prefixlen} prefixes "
                         f"(nftables.ipv{version}_prefixes = [{lengths}])")

    @property
    def ban_sets(self) -> tuple[str, ...]:
        return tuple(name for f in FAMILIES for name in
                     [f"ban{f.version}", *(f"ban{f.version}_{n}" for n in self.prefixes(f.version))])


# --- expressions and statements ---

def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _match(left: Any, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _ports(ports: Iterable[int]) -> Any:
    ports = list(ports)
    return ports[0] if len(ports) == 1 else {"set": ports}


def _new_tcp(ports: Iterable[int]) -> list[Json]:
    return [_match(_payload("tcp", "dport"), _ports(ports)),
            _match({"ct": {"key": "state"}}, "new", "in")]


def _mask(family: _Family, length: int) -> str:
    return str(ipaddress.ip_network((0 if family is V4 else "::", length)).netmask)


def element_value(network: Network) -> Any:
    """A network as an element of an interval set: the bare address for a host, else a prefix."""
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def _elements(networks: Iterable[Network], family: _Family) -> dict[str, list[Any]]:
    """The `elem` of an interval set holding `family`'s networks, overlaps merged; none when empty."""
    nets = [parse_network(n) for n in networks]
    # collapse_addresses takes the networks of one version, and its type says so.
    merged: Iterator[Network]
    if family is V4:
        merged = ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network))
    else:
        merged = ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network))
    elem = [element_value(n) for n in merged]
    return {"elem": elem} if elem else {}


# --- the table ---

class _Builder:
    def __init__(self, table: str):
        self.table = table
        self.commands: list[Json] = []

    def add(self, kind: str, name: str, **fields: Any) -> None:
        self.commands.append({"add": {kind: {"family": FAMILY, "table": self.table, "name": name, **fields}}})

    def rule(self, chain: str, *expr: Json) -> None:
        self.commands.append({"add": {"rule": {"family": FAMILY, "table": self.table, "chain": chain,
                                               "expr": list(expr)}}})


def counter_names(config: Config) -> list[str]:
    """The named counters the table holds: what `counters()` reports."""
    names = ["bans"] + [f"rate_limit_{p.port}" for p in config.rate_limit.ports]
    if config.rate_limit.conn_limit and config.rate_limit.ports:
        names.append("conn_limit")
    if config.whole_host.enabled:
        names.append("closed")
    if config.outbound.enabled:
        names.append("outbound")
    return names


# An empty set that says the table is adaptive's: one without it (and without the sets every table of
# adaptive's has held, for tables made before the marker) is never replaced or deleted.
MARKER = "managed_by_adaptive"
LEGACY_SETS = frozenset({"allow4", "allow6", "ban4", "ban6", "probe"})


def expected(config: Config, layout: Layout) -> tuple[list[str], list[str]]:
    """The sets and the chains `build_ruleset(config, layout)` makes: what a watch of the table
    expects to find there."""
    sets = ["allow4", "allow6", *layout.ban_sets]
    limits, out = config.rate_limit, config.outbound
    sets += [f"rate{f.version}_{limit.port}" for limit in limits.ports for f in FAMILIES]
    if limits.conn_limit and limits.ports:
        sets += ["conn4", "conn6"]
    if out.enabled and out.relays:
        sets += ["relay4", "relay6"]
    chains = ["input"] + (["host"] if config.whole_host.enabled else []) + (["output"] if out.enabled else [])
    return sets + ["probe", MARKER], chains


@dataclass(frozen=True)
class Existing:
    """What the table in the kernel holds, as far as the cheap listings tell (`list sets`, `list
    chains`): the chains and the sets that an apply in place deletes and makes again."""
    chains: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()      # every set but the ban sets that stay


def build_ruleset(config: Config, layout: Layout | None = None, existing: Existing | None = None) -> Json:
    """The whole table as one payload. Without `existing`, it replaces any old table. With it, the
    table that is there is changed in place: every rule flushed, the chains and `existing.sets`
    deleted and made again, and the ban sets and counters only added, which leaves them as they are,
    elements and values kept, so that nothing has to list them (a listing costs the kernel time that
    grows with the square of a set's size)."""
    nft = config.nftables
    layout = layout or Layout.of(nft)
    b = _Builder(nft.table)
    table = {"family": FAMILY, "name": nft.table}
    if existing is None:
        b.commands += [{"add": {"table": table}}, {"delete": {"table": table}}, {"add": {"table": table}}]
    else:
        b.commands += [{"add": {"table": table}}, {"flush": {"table": table}}]
        b.commands += [{"delete": {"chain": {"family": FAMILY, "table": nft.table, "name": name}}}
                       for name in existing.chains]
        b.commands += [{"delete": {"set": {"family": FAMILY, "table": nft.table, "name": name}}}
                       for name in existing.sets]

    for name in counter_names(config):
        b.add("counter", name, packets=0, bytes=0)    # an existing counter keeps its values

    allow = [*LOOPBACK, *config.allowlist.addresses]
    for f in FAMILIES:
        b.add("set", f"allow{f.version}", type=f.type, flags=["interval"], **_elements(allow, f))
    for f in FAMILIES:
        b.add("set", f"ban{f.version}", type=f.type, flags=["timeout"])
        for length in layout.prefixes(f.version):
            b.add("set", f"ban{f.version}_{length}", type=f.type, flags=["timeout"])
    limits = config.rate_limit
    for limit in limits.ports:
        for f in FAMILIES:
            b.add("set", f"rate{f.version}_{limit.port}", type=f.type, flags=["timeout"],
                  timeout=RATE_SET_TIMEOUT[limit.per], size=limits.size)
    if limits.conn_limit and limits.ports:
        for f in FAMILIES:
            b.add("set", f"conn{f.version}", type=f.type, size=limits.size)
    out, host = config.outbound, config.whole_host
    if out.enabled and out.relays:
        for f in FAMILIES:
            b.add("set", f"relay{f.version}", type=f.type, flags=["interval"], **_elements(out.relays, f))
    b.add("set", "probe", type=V4.type, flags=["timeout"])
    b.add("set", MARKER, type=V4.type)

    b.add("chain", "input", type="filter", hook="input", prio=nft.priority,
          policy="drop" if host.enabled else "accept")
    if host.enabled:
        b.add("chain", "host")
    if out.enabled:
        b.add("chain", "output", type="filter", hook="output", prio=nft.priority, policy="accept")

    _input_rules(b, config, layout)
    if host.enabled:
        _host_rules(b, host)
    if out.enabled:
        _output_rules(b, out)
    return {"nftables": b.commands}


def _input_rules(b: _Builder, config: Config, layout: Layout) -> None:
    nft = config.nftables
    action = REJECT if nft.action == "reject" else {"drop": None}
    b.rule("input", _match(_meta("iif"), "lo"), {"accept": None})
    # An allowlisted source leaves adaptive's chains here: no ban, limit or closed port drops it.
    for f in FAMILIES:
        b.rule("input", _match(_payload(f.protocol, "saddr"), f"@allow{f.version}"), {"accept": None})
    for f in FAMILIES:
        saddr = _payload(f.protocol, "saddr")
        b.rule("input", _match(saddr, f"@ban{f.version}"), {"counter": "bans"}, action)
        for length in layout.prefixes(f.version):
            b.rule("input", _match({"&": [saddr, _mask(f, length)]}, f"@ban{f.version}_{length}"),
                   {"counter": "bans"}, action)
    limits = config.rate_limit
    for limit in limits.ports:
        for f in FAMILIES:
            bucket = {"limit": {"rate": limit.rate, "per": limit.per, "burst": limit.burst, "inv": True}}
            # The family match is explicit: a statement's payload gets no implicit dependency.
            b.rule("input", _match(_meta("nfproto"), f.nfproto), *_new_tcp([limit.port]),
                   {"set": {"op": "update", "elem": _payload(f.protocol, "saddr"),
                            "set": f"@rate{f.version}_{limit.port}", "stmt": [bucket]}},
                   {"counter": f"rate_limit_{limit.port}"}, {"drop": None})
    if limits.conn_limit and limits.ports:
        for f in FAMILIES:
            b.rule("input", _match(_meta("nfproto"), f.nfproto), *_new_tcp(p.port for p in limits.ports),
                   {"set": {"op": "add", "elem": _payload(f.protocol, "saddr"), "set": f"@conn{f.version}",
                            "stmt": [{"ct count": {"val": limits.conn_limit, "inv": True}}]}},
                   {"counter": "conn_limit"}, {"drop": None})
    if config.whole_host.enabled:
        b.rule("input", {"goto": {"target": "host"}})


def _host_rules(b: _Builder, host: WholeHostConfig) -> None:
    b.rule("host", _match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None})
    b.rule("host", _match(_payload("icmpv6", "type"), {"set": ICMPV6_NEEDED}), {"accept": None})
    if host.ping:
        b.rule("host", _match(_payload("icmp", "type"), "echo-request"), {"accept": None})
        b.rule("host", _match(_payload("icmpv6", "type"), "echo-request"), {"accept": None})
    # SSH first and on its own: whatever open_ports says, it cannot close SSH.
    b.rule("host", _match(_payload("tcp", "dport"), _ports(host.ssh_ports)), {"accept": None})
    open_ports = [p for p in host.open_ports if p not in host.ssh_ports]
    if open_ports:
        b.rule("host", _match(_payload("tcp", "dport"), _ports(open_ports)), {"accept": None})
    b.rule("host", {"counter": "closed"}, {"drop": None})


def _output_rules(b: _Builder, out: OutboundConfig) -> None:
    b.rule("output", _match(_meta("oif"), "lo"), {"accept": None})
    new_smtp = _new_tcp(out.ports)
    users = [_match(_meta("skuid"), _ports(out.users))] if out.users else []
    if out.relays:
        for f in FAMILIES:
            b.rule("output", *new_smtp, _match(_payload(f.protocol, "daddr"), f"@relay{f.version}"),
                   *users, {"accept": None})
    elif users:
        b.rule("output", *new_smtp, *users, {"accept": None})
    b.rule("output", *new_smtp, {"counter": "outbound"}, {"drop": None})


# --- bans ---

def _key(network: Network) -> str:
    # Prefix sets hold the prefix's first address; the rule masks the source before the lookup.
    return str(network.network_address)


def _per_set(op: str, layout: Layout, sets: dict[str, dict[Any, Any]]) -> list[Json]:
    return [{op: {"element": {"family": FAMILY, "table": layout.table, "name": name,
                              "elem": list(elems.values())}}}
            for name, elems in sets.items()]


def build_ban(layout: Layout, bans: Iterable[Ban], replace: bool = False) -> Json:
    """Add the bans to their sets (the last ban of a network wins). A kernel that keeps a live element's
    timeout on `add` needs `replace`: add, delete and add again, in the one transaction."""
    sets: dict[str, dict[str, Any]] = {}
    hosts = {4: sets.setdefault("ban4", {}), 6: sets.setdefault("ban6", {})}
    # The loop runs for every one of a 100,000-ban batch: hosts, the common case, take the short way.
    for ban in bans:
        key = ban.key
        if ban.host:
            elems = hosts[ban.version]
        else:
            elems = sets.setdefault(layout.set_for(ban.version, key, ban.prefixlen), {})
        if ban.timeout is None:
            elems[key] = key
        elif ban.expires is None:
            elems[key] = {"elem": {"val": key, "timeout": ban.timeout}}
        else:
            elems[key] = {"elem": {"val": key, "timeout": ban.timeout, "expires": ban.expires}}
    return _ban_payload(layout, sets, replace)


def build_ban_targets(layout: Layout, targets: Iterable[Target], timeout: int | None,
                      replace: bool = False) -> Json:
    """`build_ban` of `Ban.of(target, timeout)` for each target, without making the bans: what an
    imported blocklist sends, 100,000 targets read once by `adaptive.addresses.read`, in a third of the
    time. `timeout` is checked as `Ban` checks it."""
    if timeout is not None and (type(timeout) is not int or timeout < 1):
        raise ValueError(f"timeout {timeout!r} is not a positive number of seconds")
    sets: dict[str, dict[str, Any]] = {}
    hosts = {4: sets.setdefault("ban4", {}), 6: sets.setdefault("ban6", {})}
    for version, _, length, written in targets:
        if length == (32 if version == 4 else 128):
            key, elems = written, hosts[version]
        else:
            key = written.partition("/")[0]
            elems = sets.setdefault(layout.set_for(version, key, length), {})
        elems[key] = key if timeout is None else {"elem": {"val": key, "timeout": timeout}}
    return _ban_payload(layout, sets, replace)


def _ban_payload(layout: Layout, sets: dict[str, dict[str, Any]], replace: bool) -> Json:
    sets = {name: elems for name, elems in sets.items() if elems}
    added = _per_set("add", layout, sets)
    if not replace:
        return {"nftables": added}
    deleted = _per_set("delete", layout, {name: {k: k for k in elems} for name, elems in sets.items()})
    return {"nftables": added + deleted + added}


def build_unban(layout: Layout, networks: Iterable[Network]) -> Json:
    """Delete the elements; adding each first makes deleting one that already lapsed harmless."""
    sets: dict[str, dict[str, str]] = {}
    for network in networks:
        key = _key(network)
        sets.setdefault(layout.ban_set(network), {})[key] = key
    return {"nftables": _per_set("add", layout, sets) + _per_set("delete", layout, sets)}


def build_list_set(table: str, name: str) -> Json:
    return {"nftables": [{"list": {"set": {"family": FAMILY, "table": table, "name": name}}}]}


def build_list_table(table: str) -> Json:
    return {"nftables": [{"list": {"table": {"family": FAMILY, "name": table}}}]}


def build_list_counters(table: str) -> Json:
    return {"nftables": [{"list": {"counters": {"family": FAMILY, "table": table}}}]}


def build_list_chains() -> Json:
    """Every chain of the family, without rules: answered without fetching any set's elements."""
    return {"nftables": [{"list": {"chains": {"family": FAMILY}}}]}


def build_list_sets() -> Json:
    """Every set of the family; listed terse, names without elements, which libnftables answers cheaply."""
    return {"nftables": [{"list": {"sets": {"family": FAMILY}}}]}


def build_delete_table(table: str) -> Json:
    return {"nftables": [{"delete": {"table": {"family": FAMILY, "name": table}}}]}


def build_probe(table: str, timeout: int) -> Json:
    """Put one element in the scratch set with `timeout`: twice in a row tells whether re-adding a live
    element sets its timeout (recent kernels) or leaves it (older ones)."""
    probe = {"family": FAMILY, "table": table, "name": "probe",
             "elem": [{"elem": {"val": "192.0.2.0", "timeout": timeout}}]}
    return {"nftables": [{"add": {"element": probe}}]}


def build_flush_probe(table: str) -> Json:
    return {"nftables": [{"flush": {"set": {"family": FAMILY, "table": table, "name": "probe"}}}]}
