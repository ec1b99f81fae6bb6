"""`adaptive.addresses`: its readers of addresses and prefixes give one answer, written one way."""

from __future__ import annotations

import ipaddress

import pytest
from adaptive.addresses import (
    Target,
    allowlisted,
    canonical,
    exact,
    is_loopback,
    parse_network,
    read,
    read_address,
    text,
)
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.builds(lambda a, n: f"{ipaddress.IPv4Address(a)}/{n}", st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, n: f"{ipaddress.IPv6Address(a)}/{n}", st.integers(0, 2**128 - 1), st.integers(0, 128)),
    st.builds(lambda a: str(ipaddress.IPv6Address(0xFFFF00000000 | a)), st.integers(0, 2**32 - 1)),
    st.builds(lambda a: str(ipaddress.IPv6Address(a)), st.integers(0, 2**32 - 1)),   # ::a.b.c.d, glibc's way
    st.builds(lambda a: ipaddress.IPv6Address(a).exploded, st.integers(0, 2**128 - 1)),
    st.text(max_size=12)))
def test_read_answers_as_parse_network_does(value):
    try:
        network = parse_network(value)
    except ValueError:
        network = None
    try:
        target = read(value)
    except ValueError as e:
        assert network is None or "%" in value, value    # ipaddress takes a scope id (fe80::1%eth0)
        assert "is not an IP address or prefix" in str(e)
        return
    assert network is not None
    assert target == Target(network.version, int(network.network_address), network.prefixlen, text(network))
    assert target.last == int(network.broadcast_address)
    assert target.address == str(network.network_address)
    assert target.host == (network.prefixlen == network.max_prefixlen)


def test_read_makes_mapped_addresses_ipv4_and_clears_host_bits():
    assert read("::ffff:192.0.2.7") == Target(4, int(ipaddress.IPv4Address("192.0.2.7")), 32, "192.0.2.7")
    assert read("::ffff:198.51.100.9/120").text == "198.51.100.0/24"
    assert read(" 203.0.113.9/24 ").text == "203.0.113.0/24"
    assert read("2001:DB8:0:0:1::/64").text == "2001:db8::/64"
    assert read("::1.2.3.4").text == "::102:304"


@pytest.mark.parametrize("bad", ["", "x", "192.0.2", "192.0.2.256", "192.0.2.07", "192.0.2.7/33", "2001:db8::/129",
                                 "192.0.2.7/", "192.0.2.7/2x", "192.0.2.7/+8", "192.0.2.7/٣", "192.0.2.7/0008",
                                 "1.2.3.4\x00", "[::1]", "::1/64/64"])
def test_read_refuses_what_is_not_an_address_or_prefix(bad):
    with pytest.raises(ValueError, match="is not an IP address or prefix"):
        read(bad)


def test_targets_are_written_one_way():
    assert canonical("192.0.2.7") == "192.0.2.7"
    assert canonical("::ffff:192.0.2.7") == "192.0.2.7"
    assert canonical("203.0.113.9/24") == "203.0.113.0/24"
    assert canonical("2001:DB8:0:0:0:0:0:7") == "2001:db8::7"
    assert canonical("2001:db8:1:2:3::/64") == "2001:db8:1:2::/64"
    assert canonical("192.0.2.7/32") == "192.0.2.7"
    assert canonical("::ffff:198.51.100.0/120") == "198.51.100.0/24"
    for bad in ["", "x", "192.0.2", "192.0.2.256", "192.0.2.07", "192.0.2.7/33", "2001:db8::/129",
                "192.0.2.7/", " 192.0.2.7", "fe80::1%eth0", "192.0.2.7/2x"]:
        with pytest.raises(ValueError, match="not an IP address or prefix"):
            canonical(bad)


@given(st.one_of(st.integers(0, 2**32 - 1).map(lambda n: (ipaddress.IPv4Address(n), 32)),
                 st.integers(0, 2**128 - 1).map(lambda n: (ipaddress.IPv6Address(n), 128))),
       st.integers(0, 128))
def test_targets_are_written_as_ipaddress_writes_them(address_bits, length):
    address, bits = address_bits
    for value in (str(address), f"{address}/{length % (bits + 1)}", address.exploded):
        assert canonical(value) == text(parse_network(value))


def test_loopback_and_what_holds_it():
    for target in ["127.0.0.1", "127.255.0.0/16", "127.0.0.0/8", "126.0.0.0/7", "0.0.0.0/0", "::1", "::/0",
                   "::/127", "::ffff:0:0/96"]:    # the last is 0.0.0.0/0
        assert is_loopback(exact(target)), target
    for target in ["128.0.0.1", "126.0.0.0/8", "192.0.2.7", "::2", "2001:db8::/32", "::/128", "128.0.0.0/1"]:
        assert not is_loopback(exact(target)), target


def test_an_event_address_is_read_alone_and_mapped_as_every_address_is():
    assert read_address("::ffff:192.0.2.7") == "192.0.2.7"
    assert read_address("2001:DB8:0:0:0:0:0:7") == "2001:db8::7"
    assert read_address("192.0.2.7") == "192.0.2.7"
    for bad in ["192.0.2.7/32", "192.0.2.256", "", " 192.0.2.7", "x"]:
        with pytest.raises(ValueError):
            read_address(bad)


def test_the_allowlist_entry_over_a_target():
    allowlist = [parse_network("198.51.100.0/24"), parse_network("2001:db8::/48")]
    assert allowlisted("198.51.100.7", allowlist) == parse_network("198.51.100.0/24")
    assert allowlisted("198.51.0.0/16", allowlist) == parse_network("198.51.100.0/24")    # holds it
    assert allowlisted("::ffff:198.51.100.7", allowlist) == parse_network("198.51.100.0/24")
    assert allowlisted("2001:db8:0:1::/64", allowlist) == parse_network("2001:db8::/48")
    assert allowlisted("192.0.2.7", allowlist) is None
