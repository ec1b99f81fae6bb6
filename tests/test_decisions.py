"""Decisions: ban lengths that grow with a target's record, protected targets, dry run, prefix bans."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from adaptive import config
from adaptive.addresses import parse_network, text
from adaptive.config import BanProfile
from adaptive.decisions import Decider, Decision, Outcome, Refused, format_duration, host_addresses
from adaptive.scoring.offence import Offence
from adaptive.state import State
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = 1_800_000_000.0
RULES = {"postfix/sasl-auth-failed": 5}


def make_config(allowlist: list[str] = (), **decisions) -> config.Config:
    # the kernel needs a ban set for each prefix length a subnet ban may take
    sets = {"ipv4_prefixes": sorted({24, decisions.get("subnet_ipv4_prefix", 24)}),
            "ipv6_prefixes": sorted({48, 64, decisions.get("subnet_ipv6_prefix", 48)})}
    tree = {"decisions": decisions, "allowlist": {"addresses": list(allowlist)}, "nftables": sets}
    return config.build(tree, {})


def offence(time: float, target: str = "203.0.113.7", reason: str = "score", score: float = 10.0,
            rules: dict[str, int] | None = None, user: str | None = None) -> Offence:
    return Offence(time=time, target=target, reason=reason, score=score,
                   rules=dict(RULES if rules is None else rules), user=user)


def decider(allowlist: list[str] = (), own: list[str] = (), state: State | None = None,
            clock=lambda: T0, **decisions) -> Decider:
    return Decider(make_config(allowlist, **decisions), state or State(":memory:"), own_addresses=own,
                   clock=clock)


def only(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


# --- lengths ---

def test_a_first_ban_has_the_base_length_and_carries_its_reasons():
    d = decider()
    ban = only(d.decide(offence(T0, score=12.5, user="alice")))
    assert ban == Decision(time=T0, target="203.0.113.7", duration=3600, reason="score", score=12.5,
                           rules=RULES, user="alice", outcome=Outcome.BAN, n=1)
    assert ban.origin == "automatic" and ban.outcome == "ban" and ban.end == T0 + 3600
    [record] = d.state.live_bans(T0)
    assert (record.target, record.start, record.end, record.rules, record.count) == \
        ("203.0.113.7", T0, T0 + 3600, RULES, 1)


def test_repeat_bans_grow_by_the_multiplier_up_to_the_cap():
    d = decider(ban_base=60, ban_multiplier=2, ban_max=300)
    lengths, t = [], T0
    for _ in range(6):
        ban = only(d.decide(offence(t)))
        lengths.append((ban.n, ban.duration))
        t = ban.end + 1                      # the next offence once this ban is over
    assert lengths == [(1, 60), (2, 120), (3, 240), (4, 300), (5, 300), (6, 300)]


def test_bans_older_than_the_lookback_do_not_count():
    d = decider(ban_base=60, lookback=1000)
    assert only(d.decide(offence(T0))).n == 1
    assert only(d.decide(offence(T0 + 999))).n == 2          # the first ban is 999 s old
    third = only(d.decide(offence(T0 + 999 + 1001)))         # both earlier ones are out of reach now
    assert (third.n, third.duration) == (1, 60)


def test_lookback_zero_makes_every_ban_a_first():
    d = decider(ban_base=60, lookback=0)
    assert [only(d.decide(offence(T0 + 100 * i))).n for i in range(3)] == [1, 1, 1]


def test_each_reason_has_its_own_lengths_but_one_record_per_target():
    d = decider(ban_base=100, reasons={"slow": {"ban_base": 5000, "ban_max": 10000}})
    assert only(d.decide(offence(T0, reason="slow"))).duration == 5000
    second = only(d.decide(offence(T0 + 6000, reason="score")))
    assert (second.n, second.duration) == (2, 400)
    third = only(d.decide(offence(T0 + 7000, reason="slow")))
    assert (third.n, third.duration) == (3, 10000)


def test_an_offence_inside_a_live_ban_decides_nothing():
    d = decider(ban_base=600)
    only(d.decide(offence(T0)))
    assert d.decide(offence(T0 + 599)) == []
    assert d.counts["covered"] == 1
    assert only(d.decide(offence(T0 + 600))).n == 2


def test_an_address_inside_a_banned_prefix_decides_nothing():
    d = decider()
    d.manual("198.51.100.0/24", 3600)
    assert d.decide(offence(T0 + 10, "198.51.100.9")) == []
    assert only(d.decide(offence(T0 + 10, "198.51.101.9"))).outcome == "ban"


def test_the_record_survives_a_restart(tmp_path: Path):
    path = tmp_path / "state.db"
    with State(path) as state:
        only(decider(state=state).decide(offence(T0)))
    with State(path) as state:
        d = decider(state=state)
        assert d.decide(offence(T0 + 60)) == []                # still banned, as the kernel has it
        again = only(d.decide(offence(T0 + 3600)))
        assert (again.n, again.duration) == (2, 4 * 3600)
    with State(path) as state:
        assert [r.count for r in state.live_bans(T0 + 3600)] == [2]


def test_huge_counts_stay_at_the_cap():
    assert BanProfile(3600, 4.0, 604800, 0).duration(10_000) == 604800
    assert BanProfile(3600, 1.0, 604800, 0).duration(10_000) == 3600


# --- protected targets ---

@pytest.mark.parametrize("target, protected", [
    ("192.0.2.10", "allowlist 192.0.2.10"),
    ("198.51.100.77", "allowlist 198.51.100.0/24"),          # inside an allowlisted prefix
    ("198.51.0.0/16", "allowlist 198.51.100.0/24"),          # a prefix that holds one
    ("127.0.0.1", "loopback"),
    ("127.45.6.7", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),                         # IPv4-mapped is the IPv4 address
    ("::1", "loopback"),
    ("0.0.0.0/0", "loopback"),
    ("0.0.0.0", "0.0.0.0 is no client's address (unspecified, broadcast or multicast)"),
    ("255.255.255.255", "255.255.255.255 is no client's address (unspecified, broadcast or multicast)"),
    ("224.0.0.5", "224.0.0.0/4 is no client's address (unspecified, broadcast or multicast)"),
    ("::", ":: is no client's address (unspecified, broadcast or multicast)"),
    ("ff02::1", "ff00::/8 is no client's address (unspecified, broadcast or multicast)"),
    ("203.0.113.25", "own address 203.0.113.25"),
    ("203.0.113.0/24", "own address 203.0.113.25"),
    ("2001:db8:25:1::/64", "own address 2001:db8:25:1::25"),  # an IPv6 source's /64 holds it
    ("2001:db8:7::/48", "own address 2001:db8:7::/56"),       # own_addresses from the config
])
def test_protected_targets_are_suppressed_not_banned(target, protected):
    d = decider(allowlist=["192.0.2.10", "198.51.100.0/24"], own=["203.0.113.25", "2001:db8:25:1::25"],
                own_addresses=["2001:db8:7::/56"])
    suppressed = only(d.decide(offence(T0, target)))
    assert suppressed.outcome == "suppressed" and suppressed.protected == protected
    assert suppressed.duration == 3600 and suppressed.rules == RULES
    assert d.state.bans() == [] and d.counts == {"suppressed": 1}


def test_ipv4_mapped_allowlist_and_own_entries_protect_the_ipv4_address():
    # `::ffff:192.0.2.5` in the allowlist (or own_addresses) stayed an IPv6 network and protected nothing.
    d = decider(allowlist=["::ffff:192.0.2.5", "::ffff:198.51.100.0/120"], own_addresses=["::ffff:203.0.113.25"])
    for target, protected in (("192.0.2.5", "allowlist 192.0.2.5"), ("198.51.100.9", "allowlist 198.51.100.0/24"),
                              ("::ffff:192.0.2.5", "allowlist 192.0.2.5"),
                              ("203.0.113.25", "own address 203.0.113.25")):
        decision = only(d.decide(offence(T0, target)))
        assert (decision.outcome, decision.protected) == ("suppressed", protected), target


def test_neighbours_of_protected_addresses_are_banned():
    d = decider(allowlist=["192.0.2.10"], own=["2001:db8:25:1::25"])
    for target in ("192.0.2.11", "2001:db8:25:2::/64", "126.255.255.255", "::2"):
        assert only(d.decide(offence(T0, target))).outcome == "ban", target


# --- dry run ---

def test_dry_run_records_but_does_not_enforce():
    state = State(":memory:")
    d = decider(state=state, dry_run=True)
    ban = only(d.decide(offence(T0)))
    assert ban.outcome == "dry_run" and ban.duration == 3600
    assert d.decide(offence(T0 + 60)) == []                       # as if banned: judged alike
    assert state.live_bans(T0) == []                              # nothing to put into the kernel
    assert [r.target for r in state.live_bans(T0, outcome="dry_run")] == ["203.0.113.7"]
    # Going live: a dry-run ban covers nothing, but it is on the record.
    enforcing = decider(state=state)
    real = only(enforcing.decide(offence(T0 + 120)))
    assert (real.outcome, real.n, real.duration) == ("ban", 2, 4 * 3600)


def test_dry_run_still_suppresses_protected_targets():
    d = decider(allowlist=["203.0.113.7"], dry_run=True)
    assert only(d.decide(offence(T0))).outcome == "suppressed"


# --- subnet escalation ---

def test_k_bans_in_one_prefix_within_the_window_ban_the_prefix():
    d = decider(subnet_sources=3, subnet_window=600)
    only(d.decide(offence(T0, "198.51.100.1", score=10, rules={"postfix/a": 5})))
    only(d.decide(offence(T0 + 100, "198.51.100.2", score=11, rules={"postfix/a": 2, "dovecot/b": 4})))
    member, subnet = d.decide(offence(T0 + 600, "198.51.100.3", score=12, rules={"dovecot/b": 6}))
    assert member.target == "198.51.100.3" and member.outcome == "ban"
    assert subnet == Decision(time=T0 + 600, target="198.51.100.0/24", duration=3600, reason="subnet",
                              score=33, rules={"postfix/a": 7, "dovecot/b": 10}, user=None,
                              outcome=Outcome.BAN, n=1)
    assert d.decide(offence(T0 + 700, "198.51.100.4")) == []      # inside the banned prefix
    assert {r.target for r in d.state.live_bans(T0 + 700)} == {
        "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.0/24"}


def test_k_minus_one_bans_ban_no_prefix():
    d = decider(subnet_sources=3, subnet_window=600)
    only(d.decide(offence(T0, "198.51.100.1")))
    only(d.decide(offence(T0 + 1, "198.51.100.2")))
    only(d.decide(offence(T0 + 2, "198.51.101.3")))              # another /24
    only(d.decide(offence(T0 + 3, "2001:db8:1:2::/64")))


def test_bans_outside_the_window_ban_no_prefix():
    d = decider(subnet_sources=3, subnet_window=600, ban_base=60)
    only(d.decide(offence(T0, "198.51.100.1")))
    only(d.decide(offence(T0 + 300, "198.51.100.2")))
    only(d.decide(offence(T0 + 601, "198.51.100.3")))            # .1 is out of the window by now
    only(d.decide(offence(T0 + 1000, "198.51.100.3")))           # .3 again (its ban is over): one source
    only(d.decide(offence(T0 + 1001, "198.51.100.4")))           # .3 and .4: two
    assert len(d.decide(offence(T0 + 1002, "198.51.100.5"))) == 2   # .3, .4 and .5: the prefix


def test_subnet_escalation_is_off_with_zero():
    d = decider(subnet_sources=0)
    for i in range(10):
        only(d.decide(offence(T0 + i, f"198.51.100.{i + 1}")))


def test_a_prefix_holding_an_allowlisted_address_is_not_banned():
    d = decider(allowlist=["198.51.100.200"], subnet_sources=2)
    only(d.decide(offence(T0, "198.51.100.1")))
    member, subnet = d.decide(offence(T0 + 1, "198.51.100.2"))
    assert member.outcome == "ban"
    assert subnet.outcome == "suppressed" and subnet.target == "198.51.100.0/24"
    assert subnet.protected == "allowlist 198.51.100.200"
    assert only(d.decide(offence(T0 + 2, "198.51.100.3"))).outcome == "ban"   # not covered


def test_ipv6_sources_escalate_to_their_48():
    d = decider(subnet_sources=2, subnet_ipv6_prefix=48)
    only(d.decide(offence(T0, "2001:db8:1:1::/64")))
    member, subnet = d.decide(offence(T0 + 1, "2001:db8:1:2::/64"))
    assert (member.target, subnet.target) == ("2001:db8:1:2::/64", "2001:db8:1::/48")
    assert d.decide(offence(T0 + 2, "2001:db8:1:3::/64")) == []


def test_a_subnet_ban_grows_with_its_own_record():
    d = decider(subnet_sources=2, subnet_window=600, ban_base=100)
    only(d.decide(offence(T0, "198.51.100.1")))
    assert d.decide(offence(T0 + 1, "198.51.100.2"))[1].n == 1
    t = T0 + 10_000
    only(d.decide(offence(t, "198.51.100.3")))
    second = d.decide(offence(t + 1, "198.51.100.4"))[1]
    assert (second.target, second.n, second.duration) == ("198.51.100.0/24", 2, 400)


def test_dry_run_escalates_as_dry_run():
    d = decider(subnet_sources=2, dry_run=True)
    only(d.decide(offence(T0, "198.51.100.1")))
    assert [x.outcome for x in d.decide(offence(T0 + 1, "198.51.100.2"))] == ["dry_run", "dry_run"]


# --- manual bans ---

def test_manual_ban_now_for_the_length_given():
    d = decider(clock=lambda: T0 + 5)
    ban = d.manual("192.0.2.99", 7200, reason="manual")
    assert (ban.time, ban.target, ban.duration, ban.outcome, ban.origin, ban.n) == \
        (T0 + 5, "192.0.2.99", 7200, "ban", "manual", 1)
    forever = d.manual("2001:db8::/32", None)
    assert forever.end is None and forever.target == "2001:db8::/32"
    assert {r.target: r.end for r in d.state.live_bans(T0 + 10**9)} == {"2001:db8::/32": None}


def test_manual_ban_is_enforced_in_dry_run_too():
    assert decider(dry_run=True).manual("192.0.2.99", 60).outcome == "ban"


def test_manual_ban_refusals():
    d = decider(allowlist=["192.0.2.0/28"], own=["198.51.100.25"])
    with pytest.raises(Refused, match="loopback"):
        d.manual("127.0.0.1", 60, force=True)
    with pytest.raises(Refused, match="loopback"):
        d.manual("::/0", 60, force=True)
    with pytest.raises(Refused, match="own address 198.51.100.25"):
        d.manual("198.51.100.0/24", 60, force=True)
    with pytest.raises(Refused, match="allowlist"):
        d.manual("192.0.2.3", 60)
    assert d.state.bans() == []
    assert d.manual("192.0.2.3", 60, force=True).outcome == "ban"
    with pytest.raises(ValueError, match="not an IP address"):
        d.manual("example.org", 60)
    with pytest.raises(ValueError, match="seconds"):
        d.manual("192.0.2.77", 0)


def test_unban_forgets_the_ban_not_the_record():
    d = decider()
    only(d.decide(offence(T0)))
    assert d.unban("203.0.113.7") and not d.unban("203.0.113.7")
    assert d.state.live_bans(T0) == []
    assert only(d.decide(offence(T0 + 1))).n == 2


def test_a_batch_is_screened_as_single_manual_bans_are():
    d = decider(allowlist=["192.0.2.0/28"], own=["198.51.100.25"])
    targets = ["127.0.0.1", "::/0", "198.51.100.0/24", "192.0.2.3", "192.0.2.0/24", "example.org",
               "203.0.113.9", "::ffff:203.0.113.9", "2001:db8::/64", "192.0.2.16"]
    screened = d.screen(targets)
    assert [t.text for t in screened.passed] == ["203.0.113.9", "2001:db8::/64", "192.0.2.16"]
    assert screened.refused == [
        ("127.0.0.1", "never banned: loopback"), ("::/0", "never banned: loopback"),
        ("198.51.100.0/24", "never banned: own address 198.51.100.25"),
        ("192.0.2.3", "allowlisted: allowlist 192.0.2.0/28"), ("192.0.2.0/24", "allowlisted: allowlist 192.0.2.0/28"),
        ("example.org", "'example.org' is not an IP address or prefix")]
    forced = d.screen(targets, force=True)
    assert [t.text for t in forced.passed] == ["192.0.2.3", "192.0.2.0/24", "203.0.113.9", "2001:db8::/64",
                                               "192.0.2.16"]
    assert d.state.bans() == []    # screening changes nothing


def test_no_force_bans_an_address_no_client_has():
    d = decider()
    screened = d.screen(["0.0.0.0", "255.255.255.255", "239.1.2.3", "224.0.0.0/3", "ff02::1", "::"], force=True)
    assert screened.passed == [] and len(screened.refused) == 6
    assert all(why.startswith("never banned: ") and "no client's address" in why for _, why in screened.refused)


def test_a_batch_is_recorded_alike_and_covers_its_targets():
    d = decider(clock=lambda: T0 + 5, lookback=86400)
    d.manual("203.0.113.9", 60)
    d.record_manual(d.screen(["203.0.113.9", "2001:db8:1:2::/64"]).passed, 7200, reason="blocklist")
    records = {r.target: r for r in d.state.live_bans(T0 + 5)}
    assert {t: (r.start, r.end, r.reason, r.count, r.origin) for t, r in records.items()} == {
        "203.0.113.9": (T0 + 5, T0 + 7205, "blocklist", 2, "manual"),
        "2001:db8:1:2::/64": (T0 + 5, T0 + 7205, "blocklist", 1, "manual")}
    assert d.decide(offence(T0 + 10, "2001:db8:1:2::7")) == []     # inside the imported /64
    assert d.counts["ban"] == 3
    with pytest.raises(ValueError, match="seconds"):
        d.record_manual(d.screen(["192.0.2.77"]).passed, 0)


def test_earlier_bans_of_a_batch_lengthen_the_next_automatic_ban():
    d = decider(clock=lambda: T0, ban_base=600, ban_multiplier=2, ban_max=86400, lookback=86400)
    d.record_manual(d.screen(["203.0.113.9"]).passed, 60, reason="imported",
                    earlier=[(T0 - 7200, 600.0), (T0 + 999, 1200.0)])    # a time to come is taken as now
    assert d.state.ban("203.0.113.9").count == 3
    assert [h["start"] for h in d.state.history("203.0.113.9")] == [T0, T0, T0 - 7200]
    ban = only(d.decide(offence(T0 + 120, "203.0.113.9")))             # the imported ban has ended
    assert (ban.n, ban.duration) == (4, 600 * 2 ** 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.integers(0, 255).map(lambda i: f"192.0.2.{i}"), st.integers(0, 15).map(lambda i: f"198.51.100.{i}"),
    st.integers(0, 2**24 - 1).map(lambda i: str(ipaddress.IPv4Address((127 << 24) + i))),
    st.integers(0, 32).map(lambda n: f"{ipaddress.IPv4Address((192 << 24) + (2 << 8) + 5)}/{n}"),
    st.integers(0, 128).map(lambda n: f"2001:db8:a::/{n}"), st.sampled_from(["::1", "::/0", "::ffff:127.0.0.1"])),
    max_size=30), st.booleans())
def test_screening_a_batch_agrees_with_the_single_check(targets, force):
    d = decider(allowlist=["192.0.2.0/24", "2001:db8:a::/48", "198.51.100.7"], own=["198.51.100.12"])
    passed = {t.text for t in d.screen(targets, force).passed}
    for target in targets:
        why = d._protection(parse_network(target))
        allowed = why is None or (force and why[0] == "allowlist")
        assert (text(parse_network(target)) in passed) == allowed, (target, why)


# --- the property: protected targets are never banned ---

ALLOWLIST = ["192.0.2.0/24", "2001:db8:a::/48", "198.51.100.7"]
PROTECTED = [ipaddress.ip_network(n) for n in ALLOWLIST + ["127.0.0.0/8", "::1/128"]]

_v4 = st.one_of(
    st.integers(0, 255).map(lambda i: f"192.0.2.{i}"),            # allowlisted /24
    st.integers(0, 15).map(lambda i: f"198.51.100.{i}"),          # next to an allowlisted address
    st.integers(0, 2**24 - 1).map(lambda i: str(ipaddress.IPv4Address((127 << 24) + i))),
    st.integers(0, 7).map(lambda i: f"192.0.{i}.9"),              # neighbouring /24s
    st.sampled_from(["198.51.100.7", "::ffff:127.0.0.1", "::ffff:192.0.2.1"]),
)
_v6 = st.one_of(
    st.integers(0, 3).map(lambda i: f"2001:db8:a:{i}::/64"),      # inside the allowlisted /48
    st.integers(0, 3).map(lambda i: f"2001:db8:b:{i}::/64"),
    st.sampled_from(["::1", "::/0", "2001:db8::/32"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(_v4, _v6), st.floats(0, 5000), st.sampled_from(["score", "slow"])),
                max_size=40),
       st.booleans())
def test_no_sequence_of_offences_bans_a_protected_target(offences, dry_run):
    d = decider(allowlist=ALLOWLIST, subnet_sources=2, subnet_window=3000, subnet_ipv4_prefix=24,
                subnet_ipv6_prefix=40, ban_base=60, dry_run=dry_run)
    t = T0
    for target, gap, reason in offences:
        t += gap
        for decision in d.decide(offence(t, target, reason=reason)):
            network = ipaddress.ip_network(decision.target)
            if any(p.version == network.version and p.overlaps(network) for p in PROTECTED):
                assert decision.outcome == "suppressed", decision
    for record in d.state.bans():
        network = ipaddress.ip_network(record.target)
        assert not any(p.version == network.version and p.overlaps(network) for p in PROTECTED)


# --- the host's own addresses, formats ---

FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
           |-- 192.0.2.3
              /32 host LOCAL
Local:
           |-- 127.0.0.1
              /32 host LOCAL
"""
IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000025 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
"""


def test_host_addresses_from_proc(tmp_path):
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    (tmp_path / "if_inet6").write_text(IF_INET6)
    found = host_addresses(str(tmp_path / "fib_trie"), str(tmp_path / "if_inet6"))
    assert [str(a) for a in found] == ["127.0.0.1", "192.0.2.2", "192.0.2.3", "::1", "2001:db8::25",
                                       "fe80::fc:ff:fe00:1"]


def test_host_addresses_of_this_host_include_loopback(caplog):
    found = host_addresses()
    assert ipaddress.ip_address("127.0.0.1") in found
    missing = host_addresses("/nonexistent/fib_trie", "/nonexistent/if_inet6")
    assert missing == () and "fib_trie" in caplog.text


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (59, "59s"), (90, "1m30s"), (3600, "1h"), (14400, "4h"), (86400, "1d"),
    (604800, "7d"), (90000, "1d1h"), (None, "forever"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_decision_reads_as_a_log_line():
    d = decider(allowlist=["203.0.113.0/24"])
    text = str(only(d.decide(offence(T0, user="bob"))))
    assert text == ("suppressed ban of 203.0.113.7 for 1h: score, score 10, ban 1, "
                    "postfix/sasl-auth-failed=5, user 'bob' (allowlist 203.0.113.0/24)")


