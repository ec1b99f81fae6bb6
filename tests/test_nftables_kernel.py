"""adaptive's table in a real kernel, tested with real packets between throwaway network namespaces.

Each test gets two fresh namespaces joined by a veth pair: `srv`, the protected host, listening on TCP
22, 25, 143, 993 and 2525, and `cli`, with several IPv4 and IPv6 addresses to connect from (and a
listener on 25 and 2525 for outbound tests). The backend runs in `srv`'s worker process; the
namespace the tests run in is never touched.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from netns import PYTHON, Namespace, Namespaces, connect, missing, release, serve, wait_for

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "adaptive.toml"

_missing = missing()
pytestmark = pytest.mark.skipif(bool(_missing), reason=_missing)

SRV = ["192.0.2.1/24", "198.51.100.1/24", "fd00::1/64", "fd01::1/64"]
CLI = ["192.0.2.2/24", "192.0.2.3/24", "192.0.2.4/24", "198.51.100.2/24", "198.51.100.3/24",
       "fd00::2/64", "fd00::3/64", "fd00::4/64", "fd01::2/64", "fd01::3/64"]
SERVER = {4: "192.0.2.1", 6: "fd00::1"}
PREFIX_SERVER = {4: "198.51.100.1", 6: "fd01::1"}


@dataclass
class Lab:
    srv: Namespace
    cli: Namespace
    devices: tuple[str, str]

    def unpin_neighbours(self) -> None:
        Namespaces.unpin_neighbours((self.srv, self.devices[0]), (self.cli, self.devices[1]))

    def connect(self, source: str, port: int = 25, timeout: float = 0.25) -> str:
        # A SYN-ACK across the veth takes well under a millisecond: a quarter second unanswered is a drop.
        server = (PREFIX_SERVER if source.startswith(("198.51.100.", "fd01:")) else SERVER)[
            6 if ":" in source else 4]
        return self.cli.call(connect, source, server, port, timeout)


@pytest.fixture
def lab():
    with Namespaces() as nets:
        srv, cli = nets.add("srv"), nets.add("cli")
        devices = nets.veth(srv, cli, SRV, CLI)
        # As if the clients were behind a router: a banned on-link IPv6 neighbour could not even do
        # neighbour discovery, and its failed resolution would hold up the other addresses' packets.
        nets.pin_neighbours(srv, devices[0], cli, devices[1])
        srv.call(serve, [22, 25, 143, 993, 2525])
        cli.call(serve, [25, 2525])
        yield Lab(srv, cli, devices)


# --- run in srv's worker: the backend lives there between calls ---

_backend = None


def _config(text: str):
    from adaptive import config
    with tempfile.TemporaryDirectory(prefix="adt-conf-") as directory:
        path = Path(directory) / "adaptive.toml"
        path.write_text(text)
        return config.load([path], None)


def k_apply(text: str = "", restore: list[tuple[str, int, int | None]] = ()) -> int:
    global _backend
    from adaptive.config import ConfigError
    from adaptive.nftables import Backend, Ban, Executor
    try:
        config = _config(text)
    except ConfigError as e:
        raise ValueError(str(e)) from None  # ConfigError does not survive pickling whole
    if _backend is None:
        _backend = Backend(Executor(), config)
    return _backend.apply(config, [Ban(*r) for r in restore]).bans


def k_check(text: str = "") -> int:
    from adaptive.nftables import Backend, Executor
    return Backend(Executor(), _config(text)).check().bans


def k_ban(*entries: tuple[str, int | None], replace: bool | None = None) -> int:
    from adaptive.nftables import Ban
    if replace is not None:
        _backend._updates_timeout = not replace
    return _backend.ban([Ban(a, t) for a, t in entries])


def k_unban(*entries: str) -> int:
    return _backend.unban(entries)


def k_list() -> dict[str, tuple[int | None, int | None]]:
    return {str(b.network): (b.timeout, b.expires) for b in _backend.list()}


def k_counters() -> dict[str, tuple[int, int]]:
    return {name: (c.packets, c.bytes) for name, c in _backend.counters().items()}


def k_listing() -> list[dict]:
    """adaptive's table as the kernel lists it, without handles or times left, for comparisons."""
    from adaptive.nftables import Executor
    listing = Executor().run({"nftables": [{"list": {"table": {"family": "inet", "name": "adaptive"}}}]})
    for obj in listing:
        for value in obj.values():
            value.pop("handle", None)
            for elem in value.get("elem", ()):
                if isinstance(elem, dict) and "elem" in elem:
                    elem["elem"].pop("expires", None)
    return listing


def k_send_with_broken_rule(text: str) -> str:
    """The ruleset for `text` plus one rule the kernel refuses, sent as one payload."""
    from adaptive.nftables import Executor, NftablesError
    from adaptive.nftables.ruleset import build_ruleset
    payload = build_ruleset(_config(text))
    payload["nftables"].append({"add": {"rule": {"family": "inet", "table": "adaptive", "chain": "input",
                                                 "expr": [{"jump": {"target": "no_such_chain"}}]}}})
    try:
        Executor().run(payload)
    except NftablesError as e:
        assert e.payload is payload
        return e.message
    raise AssertionError("the kernel took a broken ruleset")


def k_tables() -> list[str]:
    from adaptive.nftables import Executor
    return [o["table"]["name"] for o in Executor().run({"nftables": [{"list": {"tables": None}}]})]


# --- bans ---

def test_banned_source_cannot_connect_and_others_can(lab):
    lab.srv.call(k_apply)
    assert lab.srv.call(k_ban, ("192.0.2.3", 60), ("fd00::3", 60), ("::ffff:192.0.2.4", 60)) == 3
    assert lab.connect("192.0.2.3") == "timeout"
    assert lab.connect("fd00::3") == "timeout"
    assert lab.connect("192.0.2.4", port=2525) == "timeout"  # banned as IPv4-mapped IPv6
    assert lab.connect("192.0.2.2") == "connected"
    assert lab.connect("fd00::2") == "connected"
    # At least the three SYNs; an IPv6 neighbour solicitation from a banned address is dropped too.
    assert lab.srv.call(k_counters)["bans"][0] >= 3
    listed = lab.srv.call(k_list)
    assert set(listed) == {"192.0.2.3/32", "192.0.2.4/32", "fd00::3/128"}
    assert all(timeout == 60 and 55 <= left <= 60 for timeout, left in listed.values())


def test_reject_action_answers_banned_sources(lab):
    lab.srv.call(k_apply, '[nftables]\naction = "reject"\n')
    lab.srv.call(k_ban, ("192.0.2.3", 60), ("fd00::3", 60))
    assert lab.connect("192.0.2.3", timeout=3) == "EHOSTUNREACH"
    assert lab.connect("fd00::3", timeout=3) == "EACCES"
    assert lab.connect("192.0.2.2") == "connected"


def test_ban_lapses_after_its_timeout(lab):
    lab.srv.call(k_apply)
    lab.srv.call(k_ban, ("192.0.2.3", 2), ("fd00::3", 2))
    assert lab.connect("192.0.2.3") == "timeout" and lab.connect("fd00::3") == "timeout"
    assert wait_for(lambda: lab.connect("192.0.2.3", port=2525, timeout=0.2) == "connected", timeout=6)
    assert wait_for(lambda: lab.connect("fd00::3", port=2525, timeout=0.2) == "connected", timeout=3)
    assert lab.srv.call(k_list) == {}


def test_prefix_bans_cover_their_addresses_and_overlap_without_loss(lab):
    lab.srv.call(k_apply)
    lab.srv.call(k_ban, ("198.51.100.77/24", 300), ("fd01::/64", 300))
    for source in ("198.51.100.2", "198.51.100.3", "fd01::2", "fd01::3"):
        assert lab.connect(source) == "timeout", source
    assert lab.connect("192.0.2.2") == "connected" and lab.connect("fd00::2") == "connected"
    # An address inside a banned prefix, and a prefix over banned addresses: both succeed, nothing lost.
    lab.srv.call(k_ban, ("198.51.100.2", 600), ("fd01::2", 600))
    lab.srv.call(k_ban, ("192.0.2.3", 900), ("fd00::3", 900))
    lab.srv.call(k_ban, ("192.0.2.0/24", 30), ("fd00::/64", 30))
    listed = lab.srv.call(k_list)
    assert {n: t for n, (t, _) in listed.items()} == {
        "198.51.100.0/24": 300, "fd01::/64": 300, "198.51.100.2/32": 600, "fd01::2/128": 600,
        "192.0.2.3/32": 900, "fd00::3/128": 900, "192.0.2.0/24": 30, "fd00::/64": 30}
    # Lifting the prefixes leaves the addresses' own bans in force.
    assert lab.srv.call(k_unban, "198.51.100.0/24", "fd01::/64", "192.0.2.0/24", "fd00::/64") == 4
    assert lab.connect("198.51.100.3") == "connected" and lab.connect("fd01::3") == "connected"
    assert lab.connect("198.51.100.2") == "timeout" and lab.connect("fd01::2") == "timeout"
    assert lab.connect("192.0.2.3") == "timeout" and lab.connect("192.0.2.2") == "connected"


def test_allowlisted_source_connects_even_when_banned(lab):
    lab.srv.call(k_apply, '[allowlist]\naddresses = ["192.0.2.4", "fd00::4/127"]\n')
    lab.srv.call(k_ban, ("192.0.2.4", 60), ("192.0.2.3", 60), ("192.0.2.0/24", 60), ("fd00::4", 60),
                 ("fd00::/64", 60))
    assert lab.connect("192.0.2.4") == "connected"
    assert lab.connect("fd00::4") == "connected"
    assert lab.connect("192.0.2.3") == "timeout" and lab.connect("fd00::3") == "timeout"


def test_reban_sets_the_new_timeout_and_batches_are_one_transaction(lab):
    lab.srv.call(k_apply)
    batch = [(f"10.0.{i >> 8}.{i & 255}", 3600) for i in range(3000)] + [(f"2001:db8::{i:x}", 3600)
                                                                         for i in range(3000)]
    assert lab.srv.call(k_ban, *batch) == 6000
    assert len(lab.srv.call(k_list)) == 6000
    for replace in (False, True):  # this kernel's way, and the add-delete-add of older kernels
        lab.srv.call(k_ban, ("10.0.0.1", 100), ("2001:db8::", 7200), replace=replace)
        listed = lab.srv.call(k_list)
        assert listed["10.0.0.1/32"][0] == 100 and 95 <= listed["10.0.0.1/32"][1] <= 100
        assert listed["2001:db8::/128"][0] == 7200 and listed["10.0.0.2/32"] != listed["10.0.0.1/32"]
        lab.srv.call(k_ban, ("10.0.0.1", 3600), ("2001:db8::", 3600), replace=replace)
        assert lab.srv.call(k_list)["10.0.0.1/32"][0] == 3600
    assert lab.srv.call(k_unban, "10.0.0.1", "10.0.0.1", "10.0.0.9", "192.0.2.99") == 3  # one never banned
    assert len(lab.srv.call(k_list)) == 5998


def test_a_permanent_ban_has_no_timeout_and_a_reban_either_way_changes_it(lab):
    """`adaptive ban --for permanent` is an element without a timeout: the kernel never lifts it. A ban
    of the same target with a length gives it one, and a permanent ban takes it away again, whether
    the kernel changes a live element's timeout on `add` or needs add, delete, add."""
    lab.srv.call(k_apply)
    forever = [("192.0.2.3", None), ("198.51.100.0/24", None), ("fd00::3", None)]
    assert lab.srv.call(k_ban, *forever) == 3
    assert lab.srv.call(k_list) == {"192.0.2.3/32": (None, None), "198.51.100.0/24": (None, None),
                                    "fd00::3/128": (None, None)}
    assert lab.connect("192.0.2.3") == "timeout" and lab.connect("198.51.100.2") == "timeout"
    assert lab.connect("fd00::3") == "timeout" and lab.connect("192.0.2.2") == "connected"
    for replace in (False, True):
        lab.srv.call(k_ban, ("192.0.2.3", 300), ("198.51.100.0/24", 300), replace=replace)
        timed = lab.srv.call(k_list)
        assert timed["192.0.2.3/32"][0] == 300 and 295 <= timed["198.51.100.0/24"][1] <= 300, replace
        lab.srv.call(k_ban, ("192.0.2.3", None), ("198.51.100.0/24", None), replace=replace)
        assert lab.srv.call(k_list)["192.0.2.3/32"] == (None, None), replace
        assert lab.srv.call(k_list)["198.51.100.0/24"] == (None, None), replace
    # A start restores the state's permanent bans as they are, beside the timed ones.
    lab.srv.restart_worker()
    lab.srv.call(serve, [25])                            # the listeners went with the worker
    lab.srv.call(k_apply, "", [("192.0.2.4", None, None), ("192.0.2.2", 60, 50)])
    restored = lab.srv.call(k_list)
    assert restored["192.0.2.4/32"] == (None, None) and restored["192.0.2.2/32"][0] == 60
    assert restored["fd00::3/128"] == (None, None)       # kept by the apply in place
    assert lab.srv.call(k_unban, "192.0.2.3", "198.51.100.0/24") == 2
    assert lab.connect("192.0.2.3") == "connected" and lab.connect("198.51.100.2") == "connected"


# --- limits ---

RATE = ('[rate_limit]\nports = [{ port = 25, rate = "1/minute", burst = 3 }, '
        '{ port = 143, rate = "1/minute", burst = 3 }, { port = 993, rate = "1/minute", burst = 3 }]\n')


def test_new_connection_past_the_burst_is_dropped_per_port_and_source(lab):
    lab.srv.call(k_apply, RATE)
    for port in (25, 143, 993):
        for source in ("192.0.2.2", "fd00::2"):
            assert [lab.connect(source, port) for _ in range(4)] == ["connected"] * 3 + ["timeout"], (port, source)
        assert lab.connect("192.0.2.3", port) == "connected"  # per source
    assert [lab.connect("192.0.2.2", 2525) for _ in range(6)] == ["connected"] * 6
    counters = lab.srv.call(k_counters)
    assert {p: counters[f"rate_limit_{p}"][0] for p in (25, 143, 993)} == {25: 2, 143: 2, 993: 2}


def test_a_full_rate_set_lets_new_sources_through_unlimited_and_keeps_the_others_limited(lab):
    # rate_limit.size bounds the sources tracked: past it the kernel cannot add one, the rule does not
    # match, and the new source passes unlimited (never locked out) until an old one lapses.
    lab.srv.call(k_apply, RATE + "size = 1\n")
    assert [lab.connect("192.0.2.2", 25) for _ in range(4)] == ["connected"] * 3 + ["timeout"]
    assert [lab.connect("192.0.2.3", 25) for _ in range(6)] == ["connected"] * 6
    assert lab.connect("192.0.2.2", 25) == "timeout"


def test_concurrent_connection_cap(lab):
    lab.srv.call(k_apply, "[rate_limit]\nconn_limit = 2\n")
    assert [lab.cli.call(connect, "192.0.2.2", "192.0.2.1", 143, hold=True) for _ in range(2)] == ["connected"] * 2
    assert lab.connect("192.0.2.2", 993) == "timeout"
    assert lab.connect("192.0.2.3", 993) == "connected"
    assert lab.connect("192.0.2.2", 2525) == "connected"
    assert lab.srv.call(k_counters)["conn_limit"][0] == 1
    assert lab.cli.call(release) == 2
    assert wait_for(lambda: lab.connect("192.0.2.2", 993) == "connected", timeout=5)


# --- whole-host mode and outbound ---

def test_whole_host_mode_opens_only_ssh_and_the_open_ports(lab):
    lab.unpin_neighbours()
    lab.srv.call(k_apply, "[whole_host]\nenabled = true\nopen_ports = [25, 993]\n")
    for source in ("fd00::2", "192.0.2.2"):  # IPv6 first: neighbour discovery must pass
        assert lab.connect(source, 22) == "connected"
        assert lab.connect(source, 25) == "connected"
        assert lab.connect(source, 993) == "connected"
        assert lab.connect(source, 143) == "timeout"
        assert lab.connect(source, 2525) == "timeout"
    # Four SYNs, and whatever else the peer sends unasked (MLD reports, say).
    assert lab.srv.call(k_counters)["closed"][0] >= 4
    assert lab.srv.call(connect, "127.0.0.1", "127.0.0.1", 2525) == "connected"
    assert lab.srv.call(connect, "::1", "::1", 2525) == "connected"


def test_outbound_smtp_only_to_relays(lab):
    lab.srv.call(k_apply, '[outbound]\nenabled = true\nrelays = ["192.0.2.2", "fd00::2"]\n')
    assert lab.srv.call(connect, "192.0.2.1", "192.0.2.2", 25) == "connected"
    assert lab.srv.call(connect, "fd00::1", "fd00::2", 25) == "connected"
    assert lab.srv.call(connect, "192.0.2.1", "192.0.2.3", 25) == "timeout"
    assert lab.srv.call(connect, "fd00::1", "fd00::3", 25) == "timeout"
    assert lab.srv.call(connect, "192.0.2.1", "192.0.2.3", 2525) == "connected"
    assert lab.srv.call(k_counters)["outbound"][0] == 2


def test_outbound_smtp_only_from_users(lab):
    lab.srv.call(k_apply, '[outbound]\nenabled = true\nusers = ["nobody"]\n')
    assert lab.srv.call(connect, "192.0.2.1", "192.0.2.2", 25) == "timeout"  # the worker runs as root
    lab.srv.call(k_apply, '[outbound]\nenabled = true\nusers = ["root"]\n')
    assert lab.srv.call(connect, "192.0.2.1", "192.0.2.3", 25) == "connected"


# --- applying ---

def test_reapply_keeps_bans_with_their_time_and_counters(lab):
    lab.srv.call(k_apply)
    lab.srv.call(k_ban, ("192.0.2.3", 300), ("fd01::/64", 400), ("198.51.100.3", None))
    assert lab.connect("192.0.2.3") == "timeout"
    before = lab.srv.call(k_list)
    dropped = lab.srv.call(k_counters)["bans"][0]
    assert dropped >= 1
    # A changed config, applied by a fresh process as after a restart.
    lab.srv.restart_worker()
    # /64 no longer configured (scoring then groups IPv6 by /48, which must have its set)
    # Applied in place: the ban sets and counters stay as they are, nothing restored, nothing listed.
    assert lab.srv.call(k_apply, '[nftables]\naction = "reject"\nipv6_prefixes = [48]\n'
                                 '[scoring]\nipv6_prefix = 48\n') == 0
    after = lab.srv.call(k_list)
    assert set(after) == set(before)
    for network, (timeout, left) in after.items():
        assert timeout == before[network][0]
        assert left is None or before[network][1] - 5 <= left <= before[network][1]
    assert lab.srv.call(k_counters)["bans"][0] >= dropped
    assert lab.connect("192.0.2.3", timeout=3) == "EHOSTUNREACH"
    assert lab.connect("fd01::2", timeout=3) == "EACCES"  # /64 kept though no longer configured
    assert lab.connect("198.51.100.3", timeout=3) == "EHOSTUNREACH"
    # Restoring bans from the state into the live table: the longer ban of a network wins.
    lab.srv.call(k_apply, "", [("192.0.2.3", 600, 500), ("192.0.2.2", 60, 50)])
    restored = lab.srv.call(k_list)
    assert restored["192.0.2.3/32"][0] == 600 and restored["192.0.2.2/32"][0] == 60
    # The leftover /64 set goes once it is empty, and with it its rule.
    lab.srv.call(k_unban, "fd01::/64")
    lab.srv.call(k_apply, '[nftables]\nipv6_prefixes = [48]\n[scoring]\nipv6_prefix = 48\n')
    sets = lab.srv.exec("nft", "list", "sets", "inet").stdout
    assert "ban6_48" in sets and "ban6_64" not in sets
    assert "ban6_64" not in lab.srv.exec("nft", "list", "chain", "inet", "adaptive", "input").stdout
    assert set(lab.srv.call(k_list)) == {"192.0.2.3/32", "192.0.2.2/32", "198.51.100.3/32"}


def test_an_apply_in_place_remakes_chains_and_sets_but_keeps_bans_and_counters(lab):
    lab.srv.call(k_apply, RATE)
    lab.srv.call(k_ban, ("192.0.2.3", 300))
    assert lab.connect("192.0.2.3") == "timeout"
    dropped = lab.srv.call(k_counters)["bans"][0]
    lab.srv.restart_worker()
    # Another priority (a base chain cannot be changed so: it is deleted and made again), whole-host
    # mode (a chain more), outbound (another base chain), no rate limit (its sets go).
    assert lab.srv.call(k_apply, '[nftables]\npriority = -5\n[whole_host]\nenabled = true\n'
                                 '[outbound]\nenabled = true\nrelays = ["192.0.2.2"]\n[rate_limit]\nports = []\n') == 0
    table = lab.srv.exec("nft", "list", "table", "inet", "adaptive").stdout
    assert "priority filter - 5" in table and "chain host" in table and "chain output" in table
    assert "rate4_25" not in table
    assert "192.0.2.3/32" in lab.srv.call(k_list)
    assert lab.connect("192.0.2.3") == "timeout"
    assert lab.srv.call(k_counters)["bans"][0] > dropped
    lab.srv.call(k_apply)             # and back
    table = lab.srv.exec("nft", "list", "table", "inet", "adaptive").stdout
    assert "chain host" not in table and "chain output" not in table and "rate4_25" in table
    assert lab.connect("192.0.2.3") == "timeout"


def test_a_refused_ruleset_changes_nothing(lab):
    lab.srv.call(k_apply, RATE)
    lab.srv.call(k_ban, ("192.0.2.3", 300), ("fd01::/64", 300))
    before = lab.srv.call(k_listing)
    with pytest.raises(ValueError) as e:  # a ConfigError, raised before the kernel is asked
        lab.srv.call(k_apply, '[nftables]\naction = "reject"\n[whole_host]\nenabled = true\nssh_ports = []\n')
    assert "SSH can never be closed" in str(e.value)
    message = lab.srv.call(k_send_with_broken_rule, '[nftables]\naction = "reject"\n')
    assert "No such file or directory" in message
    assert lab.srv.call(k_listing) == before
    assert lab.connect("192.0.2.3") == "timeout"


def test_check_is_a_dry_run(lab):
    assert lab.srv.call(k_check) == 0
    assert lab.srv.call(k_tables) == []
    lab.srv.call(k_apply)
    lab.srv.call(k_ban, ("192.0.2.3", 300))
    before = lab.srv.call(k_listing)
    assert lab.srv.call(k_check, "[whole_host]\nenabled = true\n") == 0      # in place: nothing to restore
    assert lab.srv.call(k_listing) == before


def test_text_form_makes_the_same_table(lab, tmp_path):
    text = ('[allowlist]\naddresses = ["203.0.113.0/24", "2001:db8::/48"]\n[nftables]\naction = "reject"\n'
            '[rate_limit]\nconn_limit = 4\n[whole_host]\nenabled = true\n'
            '[outbound]\nenabled = true\nrelays = ["192.0.2.2"]\nusers = ["root"]\n')
    from adaptive.nftables.render import render_text
    from adaptive.nftables.ruleset import build_ruleset
    lab.srv.call(k_apply, text)
    from_json = lab.srv.call(k_listing)
    script = tmp_path / "ruleset.nft"
    script.write_text(render_text(build_ruleset(_config(text))))
    lab.srv.exec("nft", "-f", str(script))
    assert lab.srv.call(k_listing) == from_json


def test_only_its_own_table_is_touched(lab):
    lab.srv.exec("nft", "add table inet filter; add chain inet filter input { type filter hook input priority 0; }; "
                        "add rule inet filter input tcp dport 2525 counter")
    lab.srv.call(k_apply)
    lab.srv.call(k_apply, "[whole_host]\nenabled = true\n")
    assert sorted(lab.srv.call(k_tables)) == ["adaptive", "filter"]
    assert "tcp dport 2525 counter" in lab.srv.exec("nft", "list", "table", "inet", "filter").stdout
    # A drop in either table is final; an accept in adaptive's leaves the decision to the other.
    assert lab.connect("192.0.2.2", 25) == "connected"


def k_fresh(text: str, action: str) -> str:
    """A new backend (as at a start) applies or removes the table `text` names: "" or why it refused."""
    from adaptive.nftables import Backend, Executor
    from adaptive.nftables.backend import NotOurTable
    backend = Backend(Executor(), _config(text))
    try:
        backend.apply() if action == "apply" else backend.remove()
    except NotOurTable as e:
        return str(e)
    return ""


ADMINS = ("add table inet filter; add chain inet filter input { type filter hook input priority 0; policy drop; }; "
          "add rule inet filter input tcp dport 22 accept; add chain inet filter forward "
          "{ type filter hook forward priority 0; policy drop; }")


def test_a_table_adaptive_did_not_make_is_never_replaced_or_deleted(lab):
    # `[nftables] table = "filter"` deleted the admin's own inet filter, its SSH rule and forward policy.
    lab.srv.exec("nft", ADMINS)
    before = lab.srv.exec("nft", "list", "table", "inet", "filter").stdout
    for action in ("apply", "remove"):
        why = lab.srv.call(k_fresh, '[nftables]\ntable = "filter"\n', action)
        assert "table inet filter exists and was not made by adaptive" in why and "[nftables]" in why, why
    assert lab.srv.exec("nft", "list", "table", "inet", "filter").stdout == before
    local = Path(tempfile.mkdtemp()) / "local.toml"
    local.write_text('[nftables]\ntable = "filter"\n')
    checked = lab.srv.exec(str(PYTHON), "-m", "adaptive", "check-config", "-c", str(SHIPPED), "-c", str(local),
                           "--dropins", "", check=False)
    assert checked.returncode == 1 and "was not made by adaptive" in checked.stderr, checked
    # A set-less table of the admin's is no less the admin's.
    lab.srv.exec("nft", "add table inet bare; add chain inet bare c")
    assert "not made by adaptive" in lab.srv.call(k_fresh, '[nftables]\ntable = "bare"\n', "apply")


def test_ruleset_remove_deletes_its_own_table_only(lab, tmp_path):
    # The Debian package's prerm runs `adaptive ruleset --remove` on removal.
    lab.srv.exec("nft", ADMINS)
    conf = tmp_path / "a.toml"
    conf.write_text("")
    cli = (str(PYTHON), "-m", "adaptive", "ruleset", "-c", str(conf), "--dropins", "")
    assert lab.srv.exec(*cli, "--apply").returncode == 0
    assert sorted(lab.srv.call(k_tables)) == ["adaptive", "filter"]
    done = lab.srv.exec(*cli, "--remove")
    assert "table inet adaptive: removed" in done.stdout, done
    assert lab.srv.call(k_tables) == ["filter"]
    again = lab.srv.exec(*cli, "--remove")
    assert "not there, nothing to remove" in again.stdout, again
    conf.write_text('[nftables]\ntable = "filter"\n')
    refused = lab.srv.exec(*cli, "--remove", check=False)
    assert refused.returncode == 1 and "was not made by adaptive" in refused.stderr, refused
    assert lab.srv.call(k_tables) == ["filter"]


def test_its_own_table_is_applied_again_with_or_without_the_marker(lab):
    lab.srv.call(k_apply)
    assert lab.srv.call(k_fresh, "", "apply") == ""
    # A table made before the marker (its sets say whose it is) is applied in place, and marked.
    lab.srv.exec("nft", "delete set inet adaptive managed_by_adaptive")
    assert lab.srv.call(k_fresh, "", "apply") == ""
    assert "managed_by_adaptive" in lab.srv.exec("nft", "-t", "list", "sets", "inet").stdout


CONCURRENT_LISTINGS = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from adaptive import config
from adaptive.nftables import Backend, Executor
cfg = config.build({}, {})
Backend(Executor(), cfg).apply()
def lists():
    backend = Backend(Executor(), cfg)        # a libnftables context per thread, as the daemon has
    for _ in range(300):
        backend.figures()
threads = [threading.Thread(target=lists) for _ in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("listed")
"""


def test_listings_on_several_threads_never_end_the_process(lab):
    # libnftables' JSON listing of a set tokenises with strtok (global state): a scrape's listing beside
    # a status's ended the daemon ("json.c:71: set_dtype_json: Assertion `__out' failed").
    done = lab.srv.exec(str(PYTHON), "-c", CONCURRENT_LISTINGS, str(SHIPPED.parent.parent), check=False)
    assert done.returncode == 0 and "listed" in done.stdout, done.stderr[-2000:]
