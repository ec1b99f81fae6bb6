"""The nftables backend: adaptive's table in the kernel, applied, filled with bans, listed, counted."""

from __future__ import annotations

import builtins
import contextlib
import gc
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from adaptive.addresses import Network, Target, parse_network
from adaptive.config import Config
from adaptive.nftables.bans import BAN_SET, Ban, Counter, read_bans, read_counters
from adaptive.nftables.executor import NftablesError, Runner
from adaptive.nftables.netlink import chain_names, rules_digest, set_names
from adaptive.nftables.render import Json
from adaptive.nftables.ruleset import (
    LEGACY_SETS,
    MARKER,
    Existing,
    Layout,
    build_ban,
    build_ban_targets,
    build_delete_table,
    build_flush_probe,
    build_list_chains,
    build_list_counters,
    build_list_set,
    build_list_sets,
    build_list_table,
    build_probe,
    build_ruleset,
    build_unban,
    counter_names,
    expected,
)


class NotOurTable(NftablesError):
    """The configured table is there and adaptive did not make it: it is never replaced or deleted."""

    def __init__(self, table: str):
        super().__init__(f"table inet {table} exists and was not made by adaptive (it has no set {MARKER}): "
                         f"adaptive never replaces or deletes a table it did not create; set [nftables] "
                         f"table to a name of its own (the default is \"adaptive\")", {})


@dataclass(frozen=True)
class Plan:
    """What applying a configuration sends: the layout, the one payload, and how many bans it restores."""
    layout: Layout
    payload: Json
    bans: int


class Backend:
    """adaptive's table in the kernel, and the only object that changes it.

        backend = Backend(Executor(), config)
        backend.apply()                          # atomic; live bans and counters carried over
        backend.ban([Ban("192.0.2.7", 3600), Ban("2001:db8::/64", 86400)])
        backend.list(), backend.counters()

    Each change is one libnftables transaction; nothing but its own table is named. To only print or
    test the ruleset, use `ruleset.build_ruleset`, which needs no kernel.
    """

    def __init__(self, runner: Runner, config: Config):
        self._runner = runner
        self._config = config
        self._layout = Layout.of(config.nftables)
        self._updates_timeout: bool | None = None
        self._rules: dict[str, str] | None = None   # the rules as the last apply left them (digests)
        # Tables this backend applied: while it runs, a table of that name is its own whatever another
        # tool left there (a replaced table is repaired); before, one without the marker is refused.
        self._made: set[str] = set()
        self._lock = threading.RLock()

    @property
    def config(self) -> Config:
        return self._config

    @property
    def layout(self) -> Layout:
        return self._layout

    @property
    def table(self) -> str:
        return self._config.nftables.table

    # --- the ruleset ---

    def exists(self, table: str | None = None) -> bool:
        """Whether the table is there: it always holds sets, and their names come cheap (over netlink),
        where libnftables 1.0.6 answers `list tables` only after fetching every set's elements."""
        return bool(_set_names(self._runner, table or self.table))

    def missing(self) -> list[str]:
        """What of the table last applied is not in the kernel now: "table", or "set NAME" and "chain
        NAME" for each one gone; [] when all is there; "rules" when the rules differ from those the
        last `apply` left. Names and rules are read over netlink (`nftables.netlink`), no element
        fetched: about half a millisecond whatever the number of bans, so the daemon can look every
        second."""
        with self._lock:
            missing = _missing(self._runner, self._config, self._layout)
            if not missing and self._rules is not None:
                now = _digest(self.table)
                if now is not None and now != self._rules:
                    missing.append("rules")
            return missing

    def plan(self, config: Config | None = None, restore: Iterable[Ban] = ()) -> Plan:
        """The payload `apply` would send: the table for `config`, changed in place if it is there (the
        ban sets keep their elements and time left, the counters their values, and nothing is listed
        but names), plus `restore` (bans from the state; a network gets its longest ban)."""
        config = config or self._config
        with self._lock:
            existing, kept = self._existing(config)
        bans = _merge(restore)
        layout = Layout.of(config.nftables, bans.values())
        if kept:
            layout = Layout(layout.table, tuple(sorted({*layout.ipv4_prefixes, *kept.get(4, ())})),
                            tuple(sorted({*layout.ipv6_prefixes, *kept.get(6, ())})))
        payload = build_ruleset(config, layout, existing=existing)
        payload["nftables"] += build_ban(layout, bans.values())["nftables"]
        return Plan(layout, payload, len(bans))

    def apply(self, config: Config | None = None, restore: Iterable[Ban] = ()) -> Plan:
        """Make the table `config` describes, atomically, keeping live bans; then use `config`.
        Returns the plan applied (`bans`: how many it restored). On NftablesError the kernel is as it
        was."""
        config = config or self._config
        with self._lock, _collector_paused():
            plan = self.plan(config, restore)
            self._runner.run(plan.payload)
            self._made.add(config.nftables.table)
            self._config, self._layout = config, plan.layout
            self._rules = _digest(self.table)
        return plan

    def check(self, config: Config | None = None, restore: Iterable[Ban] = ()) -> Plan:
        """Have the kernel validate what `apply` would do, changing nothing (NftablesError if refused)."""
        with self._lock, _collector_paused():
            plan = self.plan(config, restore)
            self._runner.check(plan.payload)
        return plan

    def ensure_ours(self) -> None:
        """NotOurTable if the configured table is there and adaptive did not make it (names only)."""
        with self._lock:
            self._existing(self._config)

    def remove(self) -> bool:
        """Delete adaptive's table, bans and all (uninstall); False if there was none."""
        with self._lock:
            there = self._existing(self._config)[0] is not None
            if there:
                self._runner.run(build_delete_table(self.table))
            self._rules = None
            return there

    # --- bans ---

    def ban(self, bans: Iterable[Ban]) -> int:
        """Add bans in one transaction; a live element's timeout becomes the new ban's. Returns how many
        entries were sent. ValueError (before the kernel is asked) for a prefix no set takes."""
        bans = list(bans)
        with self._lock, _collector_paused():
            replace = not self._kernel_updates_timeout()
            try:
                payload = build_ban(self._layout, bans, replace=replace)
            except AttributeError:
                raise TypeError("ban() takes Ban entries, validated when made") from None
            if payload["nftables"]:
                self._runner.run(payload)
        return len(bans)

    def ban_targets(self, targets: Sequence[Target], timeout: int | None) -> int:
        """`ban` of `Ban.of(target, timeout)` for each target (read by `adaptive.addresses.read`), in
        one transaction: an imported blocklist, without making a `Ban` of every line."""
        with self._lock, _collector_paused():
            payload = build_ban_targets(self._layout, targets, timeout,
                                        replace=not self._kernel_updates_timeout())
            if payload["nftables"]:
                self._runner.run(payload)
        return len(targets)

    def unban(self, entries: Iterable[Ban | Network | str]) -> int:
        """Remove bans (addresses or prefixes, exactly as banned) in one transaction; lapsed ones are
        no error. Returns how many networks were named."""
        networks = [e.network if isinstance(e, Ban) else parse_network(e) for e in entries]
        with self._lock:
            payload = build_unban(self._layout, networks)
            if payload["nftables"]:
                self._runner.run(payload)
        return len(set(networks))

    # Below, in the class body, `list` is this method: annotations there name `builtins.list`.
    def list(self) -> list[Ban]:
        """Every ban in the kernel, with its timeout and the time left (`expires`)."""
        with self._lock:
            return read_bans(self._listing(self.table, counters=False))

    def counters(self) -> dict[str, Counter]:
        """Packets and bytes per named counter: bans, rate_limit_PORT, conn_limit, closed, outbound.
        libnftables 1.0.6 fetches every set's elements first: about 0.5 s with 100,000 bans."""
        with self._lock:
            if not self.exists():
                return {}
            return self._named(read_counters(self._runner.run(build_list_counters(self.table))))

    def figures(self) -> tuple[dict[str, int], dict[str, Counter]]:
        """Elements per ban set, and the named counters, from one listing: what the metrics read.
        Empty if the table does not exist. As slow as `counters()` (0.7 s with 100,000 bans)."""
        with self._lock, _collector_paused():
            listing = self._listing(self.table)
        sizes = {s["name"]: len(s.get("elem", ())) for obj in listing
                 if (s := obj.get("set")) and BAN_SET.fullmatch(s["name"])}
        return sizes, self._named(read_counters(listing))

    # --- internals ---

    def _named(self, counters: dict[str, Counter]) -> dict[str, Counter]:
        # An apply in place keeps counters; one a past configuration named lingers, unused: not reported.
        names = set(counter_names(self._config))
        return {name: c for name, c in counters.items() if name in names}

    def _existing(self, config: Config) -> tuple[Existing | None, dict[int, builtins.list[int]]]:
        """What an apply in place must delete (None: there is no table), and the prefix lengths of ban
        sets the config no longer names that still hold bans (kept, with their rules, until they lapse).
        Only names are listed, which costs nothing, but for such a leftover set."""
        table = config.nftables.table
        sets = _set_names(self._runner, table)
        chains = _chain_names(self._runner, table)
        if not sets and not chains:
            return None, {}
        if MARKER not in sets and not LEGACY_SETS <= set(sets) and table not in self._made:
            raise NotOurTable(table)      # the admin's own `inet filter`, say
        configured = set(Layout.of(config.nftables).ban_sets)
        gone: list[str] = []
        kept: dict[int, list[int]] = {}
        for name in sets:
            match = BAN_SET.fullmatch(name)
            if match is None:
                gone.append(name)
            elif name not in configured:
                listing = self._runner.run(build_list_set(table, name))
                if any(obj["set"].get("elem") for obj in listing if "set" in obj):
                    kept.setdefault(int(match[1]), []).append(int(match[2]))
                else:
                    gone.append(name)
        return Existing(tuple(chains), tuple(gone)), kept

    def _listing(self, table: str, counters: bool = True) -> builtins.list[Json]:
        """The ban sets (with elements) and, with `counters`, everything else of `table`; nothing if it
        does not exist. With counters it is one `list table`: libnftables 1.0.6 fetches every element
        for a counter listing anyway, so one fetch serves both."""
        names = _set_names(self._runner, table)
        if not names:
            return []
        if counters:
            return self._runner.run(build_list_table(table))
        listing = []
        for name in names:
            if BAN_SET.fullmatch(name):
                listing += self._runner.run(build_list_set(table, name))
        return listing

    def _kernel_updates_timeout(self) -> bool:
        """Whether `add` of a live element sets its timeout (recent kernels do; older ones keep it)."""
        if self._updates_timeout is None:
            self._runner.run(build_probe(self.table, 60))
            self._runner.run(build_probe(self.table, 3600))
            probe = self._runner.run(build_list_set(self.table, "probe"))
            self._runner.run(build_flush_probe(self.table))
            elems = [e for obj in probe if "set" in obj for e in obj["set"].get("elem", ())]
            self._updates_timeout = bool(elems) and elems[0]["elem"].get("timeout") == 3600
        return self._updates_timeout


def _set_names(runner: Runner, table: str) -> list[str]:
    """The names of `table`'s sets, in the kernel's order ([]: no such table): asked over netlink (see
    `netlink.set_names`), else of libnftables, terse, which answers without fetching an element."""
    try:
        return set_names(table)
    except OSError:
        return [obj["set"]["name"] for obj in runner.run(build_list_sets(), terse=True)
                if "set" in obj and obj["set"].get("table") == table]


def _chain_names(runner: Runner, table: str) -> list[str]:
    """The names of `table`'s chains ([]: no such table): over netlink, else of libnftables."""
    try:
        return chain_names(table)
    except OSError:
        return [obj["chain"]["name"] for obj in runner.run(build_list_chains())
                if "chain" in obj and obj["chain"].get("table") == table]


def _digest(table: str) -> dict[str, str] | None:
    """`rules_digest`, or None where netlink cannot be asked (then rules are not compared)."""
    try:
        return rules_digest(table)
    except OSError:
        return None


def _missing(runner: Runner, config: Config, layout: Layout) -> list[str]:
    table = config.nftables.table
    sets = set(_set_names(runner, table))
    if not sets:
        return ["table"]      # a table of adaptive's always holds sets: none listed means it is gone
    chains = set(_chain_names(runner, table))
    wanted_sets, wanted_chains = expected(config, layout)
    return ([f"set {name}" for name in wanted_sets if name not in sets]
            + [f"chain {name}" for name in wanted_chains if name not in chains])


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A 100,000-ban payload is 300,000 fresh dicts, none in a cycle; left running, the cyclic garbage
    collector walks them over and over while they are built."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _merge(bans: Iterable[Ban]) -> dict[tuple[int, str, int], Ban]:
    """One ban per network, the one that lasts longest (None, never lifted, lasts longest)."""
    merged: dict[tuple[int, str, int], Ban] = {}
    for ban in bans:
        network = (ban.version, ban.key, ban.prefixlen)
        old = merged.get(network)
        if old is None or old.left is not None and (ban.left is None or ban.left > old.left):
            merged[network] = ban
    return merged
