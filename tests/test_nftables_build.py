"""The nftables JSON, built from configurations without a kernel: what each config key puts where."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from adaptive import config as config_module
from adaptive.addresses import parse_network, read
from adaptive.nftables.backend import Backend
from adaptive.nftables.bans import Ban, Counter, read_bans, read_counters
from adaptive.nftables.render import render_text
from adaptive.nftables.ruleset import (
    Layout,
    build_ban,
    build_ban_targets,
    build_ruleset,
    build_unban,
)

REPO = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, text: str = "") -> config_module.Config:
    path = tmp_path / "local.toml"
    path.write_text(text)
    return config_module.load([path], None)


def commands(payload: dict, verb: str, kind: str) -> list[dict]:
    return [c[verb][kind] for c in payload["nftables"] if kind in c.get(verb, {})]


def rules(payload: dict, chain: str) -> list[list[dict]]:
    return [r["expr"] for r in commands(payload, "add", "rule") if r["chain"] == chain]


def sets(payload: dict) -> dict[str, dict]:
    return {s["name"]: s for s in commands(payload, "add", "set")}


def chains(payload: dict) -> dict[str, dict]:
    return {c["name"]: c for c in commands(payload, "add", "chain")}


def has(expr: list[dict], fragment: Any) -> bool:
    return json.dumps(fragment)[1:-1] in json.dumps(expr)


# --- the table ---

def test_payload_replaces_only_its_own_table(tmp_path):
    payload = build_ruleset(load(tmp_path, '[nftables]\ntable = "blocker"\n'))
    table = {"family": "inet", "name": "blocker"}
    assert payload["nftables"][:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                                       {"add": {"table": table}}]
    for cmd in payload["nftables"][3:]:
        (obj,) = next(iter(cmd.values())).values()
        assert (obj["family"], obj["table"]) == ("inet", "blocker")


def test_chain_priority_and_default_policy(tmp_path):
    payload = build_ruleset(load(tmp_path, "[nftables]\npriority = 5\n"))
    assert chains(payload) == {"input": {"family": "inet", "table": "adaptive", "name": "input", "type": "filter",
                                         "hook": "input", "prio": 5, "policy": "accept"}}


def test_ban_sets_time_out_and_prefix_sets_are_masked(tmp_path):
    payload = build_ruleset(load(tmp_path, "[nftables]\nipv6_prefixes = [48, 64]\n"))
    s = sets(payload)
    for name in ("ban4", "ban6", "ban4_24", "ban6_48", "ban6_64"):
        assert s[name]["flags"] == ["timeout"]
    assert s["ban4"]["type"] == "ipv4_addr" and s["ban6_64"]["type"] == "ipv6_addr"
    input_rules = rules(payload, "input")
    masked = {r[0]["match"]["right"]: r[0]["match"]["left"]["&"][1] for r in input_rules
              if "&" in r[0].get("match", {}).get("left", {})}
    assert masked == {"@ban4_24": "255.255.255.0", "@ban6_48": "ffff:ffff:ffff::",
                      "@ban6_64": "ffff:ffff:ffff:ffff::"}
    bans = [r for r in input_rules if {"counter": "bans"} in r]
    assert len(bans) == 5 and all(r[-1] == {"drop": None} for r in bans)


def test_reject_action(tmp_path):
    payload = build_ruleset(load(tmp_path, '[nftables]\naction = "reject"\n'))
    bans = [r for r in rules(payload, "input") if {"counter": "bans"} in r]
    assert all(r[-1] == {"reject": {"type": "icmpx", "expr": "admin-prohibited"}} for r in bans)


def test_allowlist_always_has_loopback_and_comes_before_bans(tmp_path):
    payload = build_ruleset(load(tmp_path, '[allowlist]\naddresses = ["203.0.113.0/25", "203.0.113.128/25", '
                                           '"::ffff:198.51.100.9", "2001:db8::1"]\n'))
    s = sets(payload)
    assert s["allow4"]["elem"] == [{"prefix": {"addr": "127.0.0.0", "len": 8}}, "198.51.100.9",
                                   {"prefix": {"addr": "203.0.113.0", "len": 24}}]
    assert s["allow6"]["elem"] == ["::1", "2001:db8::1"]
    input_rules = rules(payload, "input")
    first_ban = next(i for i, r in enumerate(input_rules) if {"counter": "bans"} in r)
    allows = [i for i, r in enumerate(input_rules) if has(r, {"right": "@allow4"}) or has(r, {"right": "@allow6"})]
    assert len(allows) == 2 and max(allows) < first_ban
    assert input_rules[0] == [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
                              {"accept": None}]


def test_rate_limits_per_port_and_family(tmp_path):
    payload = build_ruleset(load(tmp_path, '[rate_limit]\nports = [{ port = 25, rate = "10/minute", '
                                           'burst = 4 }, { port = 993, rate = "2/second", burst = 1 }]\n'))
    limited = [r for r in rules(payload, "input") if any("set" in s for s in r)]
    assert len(limited) == 4
    rule = limited[0]
    assert rule[0] == {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}
    assert rule[1] == {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                 "right": 25}}
    assert rule[2] == {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}
    assert rule[3] == {"set": {"op": "update", "elem": {"payload": {"protocol": "ip", "field": "saddr"}},
                               "set": "@rate4_25", "stmt": [{"limit": {"rate": 10, "per": "minute", "burst": 4,
                                                                       "inv": True}}]}}
    assert rule[4:] == [{"counter": "rate_limit_25"}, {"drop": None}]
    assert has(limited[1], {"set": "@rate6_25"}) and has(limited[1], {"right": "ipv6"})
    assert has(limited[3], {"rate": 2, "per": "second", "burst": 1, "inv": True})
    s = sets(payload)
    assert s["rate4_993"]["timeout"] == 60 and s["rate6_25"]["size"] == 65536
    assert "rate4_143" not in s and "conn4" not in s


def test_default_rate_limits_cover_25_143_993(tmp_path):
    payload = build_ruleset(load(tmp_path))
    ports = sorted({e["match"]["right"] for r in rules(payload, "input") for e in r
                    if "match" in e and e["match"]["left"] == {"payload": {"protocol": "tcp", "field": "dport"}}})
    assert ports == [25, 143, 993]
    assert {c["name"] for c in commands(payload, "add", "counter")} == {
        "bans", "rate_limit_25", "rate_limit_143", "rate_limit_993"}


def test_connection_cap(tmp_path):
    payload = build_ruleset(load(tmp_path, "[rate_limit]\nconn_limit = 8\n"))
    capped = [r for r in rules(payload, "input") if {"counter": "conn_limit"} in r]
    assert len(capped) == 2
    assert has(capped[0], {"right": {"set": [25, 143, 993]}})
    assert has(capped[1], {"set": "@conn6", "stmt": [{"ct count": {"val": 8, "inv": True}}]})
    assert "flags" not in sets(payload)["conn4"]


def test_whole_host_mode(tmp_path):
    payload = build_ruleset(load(tmp_path, "[whole_host]\nenabled = true\nssh_ports = [22, 2222]\n"
                                           "open_ports = [25, 587, 22]\nping = false\n"))
    assert chains(payload)["input"]["policy"] == "drop"
    assert rules(payload, "input")[-1] == [{"goto": {"target": "host"}}]
    host = rules(payload, "host")
    assert host[0] == [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
                       {"accept": None}]
    assert has(host[1], {"protocol": "icmpv6", "field": "type"}) and not any(has(r, "echo-request") for r in host)
    assert host[2][0]["match"]["right"] == {"set": [22, 2222]}
    assert host[3][0]["match"]["right"] == {"set": [25, 587]}
    assert host[-1] == [{"counter": "closed"}, {"drop": None}]


def test_whole_host_mode_off_by_default(tmp_path):
    payload = build_ruleset(load(tmp_path))
    assert set(chains(payload)) == {"input"} and chains(payload)["input"]["policy"] == "accept"


@pytest.mark.parametrize("ssh", ["[]"])
def test_ssh_can_never_be_closed(tmp_path, ssh):
    with pytest.raises(config_module.ConfigError) as e:
        load(tmp_path, f"[whole_host]\nenabled = true\nssh_ports = {ssh}\n")
    assert "local.toml: whole_host.ssh_ports = []: SSH can never be closed" in str(e.value)


def test_outbound_to_relays_and_from_users(tmp_path):
    payload = build_ruleset(load(tmp_path, '[outbound]\nenabled = true\nrelays = ["192.0.2.0/24", '
                                           '"192.0.2.7", "2001:db8::25"]\nusers = ["root", 4242]\n'))
    out = chains(payload)["output"]
    assert (out["hook"], out["policy"], out["prio"]) == ("output", "accept", -10)
    s = sets(payload)
    assert s["relay4"]["elem"] == [{"prefix": {"addr": "192.0.2.0", "len": 24}}]
    assert s["relay6"]["elem"] == ["2001:db8::25"]
    output = rules(payload, "output")
    assert output[0] == [{"match": {"op": "==", "left": {"meta": {"key": "oif"}}, "right": "lo"}}, {"accept": None}]
    assert has(output[1], {"right": "@relay4"}) and has(output[1], {"left": {"meta": {"key": "skuid"}},
                                                                    "right": {"set": [0, 4242]}})
    assert output[-1][-2:] == [{"counter": "outbound"}, {"drop": None}]
    assert all(has(r, {"right": "new"}) and has(r, {"right": 25}) for r in output[1:])
    assert not any(has(r, {"right": 53}) for r in output)


def test_outbound_users_only(tmp_path):
    payload = build_ruleset(load(tmp_path, '[outbound]\nenabled = true\nusers = ["root"]\nports = [25, 465]\n'))
    output = rules(payload, "output")
    assert len(output) == 3 and has(output[1], {"left": {"meta": {"key": "skuid"}}, "right": 0})
    assert has(output[1], {"right": {"set": [25, 465]}}) and "relay4" not in sets(payload)


def test_outbound_off_by_default(tmp_path):
    assert "output" not in chains(build_ruleset(load(tmp_path)))


@pytest.mark.parametrize("text, message", [
    ('[outbound]\nusers = ["no-such-user-adt"]\n',
     "outbound.users = ['no-such-user-adt']: no such user 'no-such-user-adt'"),
    ('[rate_limit]\nports = [{ port = 25, rate = "30/fortnight" }]\n',
     "port 25: rate '30/fortnight' is not N/second, N/minute, N/hour or N/day"),
    ('[rate_limit]\nports = [{ port = 25, burst = 0 }]\n', "port 25: burst 0 is not a whole number"),
    ('[rate_limit]\nports = [{ port = 25 }, { port = 25 }]\n', "port 25 is given twice"),
    ('[rate_limit]\nports = [{ port = 70000 }]\n', "port 70000 is not a port"),
    ('[rate_limit]\nports = [{ port = 25, rat = "1/second" }]\n', "expected { port = N"),
    ("[nftables]\nipv4_prefixes = [32]\n", "nftables.ipv4_prefixes = [32]: 32 is not a prefix length from 1 to 31"),
    ("[nftables]\npriority = -200\n", "nftables.priority = -200: expected a priority above -200"),
    ('[nftables]\naction = "tarpit"\n', 'nftables.action = "tarpit": expected one of drop, reject'),
    ("[whole_host]\nopen_ports = [0]\n", "whole_host.open_ports = [0]: 0 is not a port"),
    ("[whole_host]\nenabled = 1\n", "whole_host.enabled = 1: expected true or false"),
    ("[whole_host]\nsh_ports = [22]\n", "unknown key whole_host.sh_ports"),
    ('[whole_host]\nssh_ports = "22"\n', 'whole_host.ssh_ports = "22": expected a list'),
    ('[outbound]\nrelays = ["mx.example"]\n', "'mx.example' is not an address or prefix"),
])
def test_config_errors_name_file_key_and_value(tmp_path, text, message):
    with pytest.raises(config_module.ConfigError) as e:
        load(tmp_path, text)
    assert message in str(e.value)
    assert str(tmp_path / "local.toml") in str(e.value)


def test_shipped_config_sets_every_enforcement_key_to_its_default():
    import tomllib
    tree = tomllib.loads((REPO / "conf" / "adaptive.toml").read_text())
    shipped, defaults = config_module.load([REPO / "conf" / "adaptive.toml"], None), config_module.Config()
    for section in ("nftables", "rate_limit", "whole_host", "outbound"):
        assert set(tree[section]) == set(getattr(defaults, section).__dataclass_fields__), section
        assert getattr(shipped, section) == getattr(defaults, section), section


# --- bans ---

@pytest.mark.parametrize("text, network", [
    ("192.0.2.7", "192.0.2.7/32"),
    ("::ffff:192.0.2.7", "192.0.2.7/32"),
    ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
    ("192.0.2.77/24", "192.0.2.0/24"),
    (" 2001:db8:1:2:3::9/64 ", "2001:db8:1:2::/64"),
    ("2001:DB8::1", "2001:db8::1/128"),
])
def test_networks_are_validated_and_normalised(text, network):
    assert parse_network(text) == ipaddress.ip_network(network)
    assert Ban(text, 10).network == ipaddress.ip_network(network)


@pytest.mark.parametrize("bad", ["192.0.2.256", "mx.example.org", "", "192.0.2.1; flush ruleset", 3232235521])
def test_invalid_addresses_never_reach_a_payload(bad):
    with pytest.raises(ValueError):
        Ban(bad, 60)


def test_ban_timeouts():
    assert Ban("192.0.2.1", 1.2).timeout == 2
    assert Ban("192.0.2.1").timeout is None
    assert Ban("192.0.2.1", 10, expires=4).left == 4
    for bad in (0, -5, float("inf"), "60", True):
        with pytest.raises(ValueError):
            Ban("192.0.2.1", bad)


def test_build_ban_groups_elements_by_set():
    layout = Layout("adaptive", (24,), (48, 64))
    payload = build_ban(layout, [Ban("192.0.2.1", 60), Ban("192.0.2.0/24", 120, expires=30), Ban("2001:db8::1"),
                                 Ban("2001:db8:1::/48", 3600), Ban("192.0.2.1", 90)])
    assert payload == {"nftables": [
        {"add": {"element": {"family": "inet", "table": "adaptive", "name": "ban4",
                             "elem": [{"elem": {"val": "192.0.2.1", "timeout": 90}}]}}},
        {"add": {"element": {"family": "inet", "table": "adaptive", "name": "ban6", "elem": ["2001:db8::1"]}}},
        {"add": {"element": {"family": "inet", "table": "adaptive", "name": "ban4_24",
                             "elem": [{"elem": {"val": "192.0.2.0", "timeout": 120, "expires": 30}}]}}},
        {"add": {"element": {"family": "inet", "table": "adaptive", "name": "ban6_48",
                             "elem": [{"elem": {"val": "2001:db8:1::", "timeout": 3600}}]}}},
    ]}


def test_an_ipv6_slash_32_is_a_prefix_not_an_address():
    payload = build_ban(Layout("adaptive", (24,), (32,)), [Ban("2001:db8::/32", 60), Ban("10.1.2.3/32", 60)])
    assert [(c["add"]["element"]["name"], len(c["add"]["element"]["elem"])) for c in payload["nftables"]] == [
        ("ban4", 1), ("ban6_32", 1)]


def test_build_ban_replace_deletes_and_adds_in_one_payload():
    payload = build_ban(Layout("adaptive"), [Ban("192.0.2.1", 60)], replace=True)
    assert [next(iter(c)) for c in payload["nftables"]] == ["add", "delete", "add"]
    assert payload["nftables"][1]["delete"]["element"]["elem"] == ["192.0.2.1"]


@pytest.mark.parametrize("timeout", [3600, None])
@pytest.mark.parametrize("replace", [False, True])
def test_build_ban_targets_is_build_ban_of_their_bans(timeout, replace):
    layout = Layout("adaptive", (24,), (48, 64))
    targets = ["192.0.2.1", "::ffff:192.0.2.2", "198.51.100.7/24", "2001:db8::1", "2001:DB8:1:0:5::/48",
               "2001:db8:2:3::/64", "192.0.2.1"]
    assert build_ban_targets(layout, [read(t) for t in targets], timeout, replace) == \
        build_ban(layout, [Ban(t, timeout) for t in targets], replace)
    with pytest.raises(ValueError, match=r"no set for /16 prefixes"):
        build_ban_targets(layout, [read("10.0.0.0/16")], timeout)
    for bad in (0, -5, 1.5, "60", True):
        with pytest.raises(ValueError, match="not a positive number of seconds"):
            build_ban_targets(layout, [read("192.0.2.1")], bad)


def test_ban_of_an_unconfigured_prefix_length_is_refused():
    with pytest.raises(ValueError, match=r"no set for /16 prefixes \(nftables.ipv4_prefixes = \[24\]\)"):
        build_ban(Layout("adaptive"), [Ban("10.0.0.0/16", 60)])


def test_layout_keeps_prefix_lengths_live_bans_use(tmp_path):
    layout = Layout.of(load(tmp_path).nftables, [Ban("10.0.0.0/16"), Ban("2001:db8::/56", 60)])
    assert layout.ipv4_prefixes == (16, 24) and layout.ipv6_prefixes == (48, 56, 64)
    assert layout.ban_sets == ("ban4", "ban4_16", "ban4_24", "ban6", "ban6_48", "ban6_56", "ban6_64")


def test_build_unban_adds_then_deletes():
    payload = build_unban(Layout("adaptive"), [parse_network("192.0.2.9"), parse_network("2001:db8:5:6::/64")])
    assert [(next(iter(c)), next(iter(c.values()))["element"]["name"]) for c in payload["nftables"]] == [
        ("add", "ban4"), ("add", "ban6_64"), ("delete", "ban4"), ("delete", "ban6_64")]


def test_read_bans_and_counters_from_a_listing():
    listing = [
        {"table": {"family": "inet", "name": "adaptive"}},
        {"set": {"family": "inet", "name": "ban4", "table": "adaptive", "elem": [
            {"elem": {"val": "192.0.2.1", "timeout": 3600, "expires": 1799}}, "192.0.2.2",
            {"elem": {"val": "192.0.2.3", "timeout": 60, "expires": 0}}]}},
        {"set": {"family": "inet", "name": "ban6_64", "table": "adaptive",
                 "elem": [{"elem": {"val": "2001:db8:1:2::", "timeout": 86400, "expires": 86000}}]}},
        {"set": {"family": "inet", "name": "rate4_25", "table": "adaptive", "elem": ["198.51.100.1"]}},
        {"counter": {"family": "inet", "name": "bans", "table": "adaptive", "packets": 7, "bytes": 420}},
    ]
    assert read_bans(listing) == [Ban("192.0.2.1", 3600, 1799), Ban("192.0.2.2"),
                                  Ban("2001:db8:1:2::/64", 86400, 86000)]
    assert read_counters(listing) == {"bans": Counter(7, 420)}


# --- the text form ---

def test_text_form(tmp_path):
    payload = build_ruleset(load(tmp_path, "[rate_limit]\nconn_limit = 3\n[outbound]\n"
                                           'enabled = true\nrelays = ["192.0.2.2"]\n'))
    payload["nftables"] += build_ban(Layout("adaptive"), [Ban("192.0.2.9", 60, 30)])["nftables"]
    text = render_text(payload).splitlines()
    assert text[:3] == ["add table inet adaptive", "delete table inet adaptive", "add table inet adaptive"]
    for line in [
        'add rule inet adaptive input meta iif "lo" accept',
        "add rule inet adaptive input ip saddr & 255.255.255.0 @ban4_24 counter name \"bans\" drop",
        "add rule inet adaptive input meta nfproto ipv6 tcp dport 25 ct state new update @rate6_25 "
        '{ ip6 saddr limit rate over 30/minute burst 20 packets } counter name "rate_limit_25" drop',
        "add rule inet adaptive input meta nfproto ipv4 tcp dport { 25, 143, 993 } ct state new "
        'add @conn4 { ip saddr ct count over 3 } counter name "conn_limit" drop',
        "add set inet adaptive rate4_25 { type ipv4_addr; flags timeout; timeout 60s; size 65536; }",
        "add chain inet adaptive input { type filter hook input priority -10; policy accept; }",
        "add rule inet adaptive output tcp dport 25 ct state new ip daddr @relay4 accept",
        "add element inet adaptive ban4 { 192.0.2.9 timeout 60s expires 30s }",
    ]:
        assert line in text


# --- the command line ---

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adaptive", *args], capture_output=True, text=True, cwd=REPO)


def test_cli_prints_the_payload(tmp_path):
    conf = tmp_path / "a.toml"
    conf.write_text('[nftables]\ntable = "mail"\n')
    done = cli("ruleset", "--print", "-c", str(conf), "--dropins", "")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == build_ruleset(config_module.load([conf], None))
    text = cli("ruleset", "--text", "-c", str(conf), "--dropins", "")
    assert text.returncode == 0 and text.stdout.startswith("add table inet mail\n")


def test_cli_refuses_a_bad_config_and_bad_usage(tmp_path):
    conf = tmp_path / "a.toml"
    conf.write_text("[nftables]\nipv6_prefixes = [129]\n")
    done = cli("ruleset", "--apply", "-c", str(conf), "--dropins", "")
    assert done.returncode == 2
    assert f"{conf}: nftables.ipv6_prefixes = [129]: 129 is not a prefix length" in done.stderr
    assert cli("ruleset", "--apply", "--text", "-c", str(conf)).returncode == 2
    assert cli("ruleset", "--apply", "--check").returncode == 2


# --- the backend's decisions, with a fake kernel ---

class FakeRunner:
    """Records payloads; answers listings from `tables` and `sets`."""

    def __init__(self, tables: list[str] = (), probe_timeout: int = 3600):
        self.tables = list(tables)
        self.probe_timeout = probe_timeout
        self.sent: list[dict] = []
        self.checked: list[dict] = []

    def run(self, payload: dict, *, terse: bool = False) -> list[dict]:
        cmd = payload["nftables"][0]
        if "list" in cmd:
            what = cmd["list"]
            if "sets" in what:
                return [{"set": {"family": "inet", "table": t, "name": "allow4"}} for t in self.tables]
            if what.get("set", {}).get("name") == "probe":
                return [{"set": {"name": "probe", "elem": [{"elem": {"val": "192.0.2.0",
                                                                     "timeout": self.probe_timeout}}]}}]
            return []
        self.sent.append(payload)
        return []

    def check(self, payload: dict) -> None:
        self.checked.append(payload)


def test_backend_applies_one_payload_and_checks_without_applying(tmp_path):
    runner = FakeRunner()
    backend = Backend(runner, load(tmp_path))
    assert backend.check().bans == 0
    assert runner.sent == [] and len(runner.checked) == 1
    backend.apply(restore=[Ban("192.0.2.1", 60), Ban("192.0.2.1", 600, 300), Ban("10.1.0.0/16", 60)])
    (payload,) = runner.sent
    elems = commands(payload, "add", "element")
    assert [(e["name"], e["elem"]) for e in elems] == [
        ("ban4", [{"elem": {"val": "192.0.2.1", "timeout": 600, "expires": 300}}]),
        ("ban4_16", [{"elem": {"val": "10.1.0.0", "timeout": 60}}])]
    assert "ban4_16" in sets(payload) and backend.layout.ipv4_prefixes == (16, 24)


def test_backend_replaces_elements_on_a_kernel_that_keeps_timeouts(tmp_path):
    runner = FakeRunner(tables=["adaptive"], probe_timeout=60)
    backend = Backend(runner, load(tmp_path))
    backend.ban([Ban("192.0.2.1", 60)])
    assert [next(iter(c)) for c in runner.sent[-1]["nftables"]] == ["add", "delete", "add"]
    fresh = FakeRunner(tables=["adaptive"])
    Backend(fresh, load(tmp_path)).ban([Ban("192.0.2.1", 60)])
    assert [next(iter(c)) for c in fresh.sent[-1]["nftables"]] == ["add"]


def test_backend_validates_before_the_kernel(tmp_path):
    runner = FakeRunner(tables=["adaptive"])
    backend = Backend(runner, load(tmp_path))
    with pytest.raises(ValueError):
        backend.unban(["192.0.2.300"])
    with pytest.raises(ValueError):
        backend.ban([Ban("10.0.0.0/8", 60)])
    with pytest.raises(TypeError):
        backend.ban(["192.0.2.1"])  # type: ignore[list-item]
    assert [p for p in runner.sent if "element" in json.dumps(p) and "probe" not in json.dumps(p)] == []


def test_render_parses_back_to_the_payload():
    """The fast rendering of element lists is JSON that reads back as exactly the payload."""
    import json as _json

    from adaptive.nftables.render import render
    payload = {"nftables": [
        {"add": {"table": {"family": "inet", "name": "adaptive"}}},
        {"add": {"element": {"family": "inet", "table": "adaptive", "name": "ban4", "elem": [
            "192.0.2.1", {"elem": {"val": "192.0.2.2", "timeout": 60}},
            {"elem": {"val": "192.0.2.3", "timeout": 60, "expires": 30}},
            {"elem": {"val": "2001:db8::/64", "timeout": 60, "comment": "odd \"shape\""}},
            'x"y', {"prefix": {"addr": "198.51.100.0", "len": 24}}]}}},
        {"delete": {"element": {"family": "inet", "table": "adaptive", "name": "ban6", "elem": ["2001:db8::1"]}}},
    ]}
    assert _json.loads(render(payload)) == payload


def test_the_executor_holds_signals_back_while_libnftables_waits_for_the_kernel():
    # A signal on the calling thread during the call failed it with EINTR, though the kernel may have
    # done it: the signals from outside are blocked for the call, and the mask is as it was after.
    import signal as signals

    from adaptive.nftables.executor import Executor

    class Nft:
        def set_json_output(self, on):
            pass

        def cmd(self, text):
            self.blocked = signals.pthread_sigmask(signals.SIG_BLOCK, [])
            return 0, "", ""

    nft = Nft()
    before = signals.pthread_sigmask(signals.SIG_BLOCK, [])
    Executor(nft).run({"nftables": []})
    assert {signals.SIGHUP, signals.SIGTERM, signals.SIGINT} <= nft.blocked
    assert signals.pthread_sigmask(signals.SIG_BLOCK, []) == before
