"""Normalising the greylisting triplet."""

from __future__ import annotations

import pytest

from mailsift.daemon import parse_networks
from mailsift.policy.triplet import (client_network, domain_matches, make_triplet,
                                     normalise_sender, in_networks, parse_address)


@pytest.mark.parametrize("address, network", [
    ("192.0.2.10", "192.0.2.0/24"),
    ("192.0.2.255", "192.0.2.0/24"),
    ("198.51.100.1", "198.51.100.0/24"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.77", "192.0.2.0/24"),
    ("[2001:db8::1]", "2001:db8::/64"),
])
def test_client_network(address: str, network: str) -> None:
    assert client_network(address) == network


@pytest.mark.parametrize("bad", ["", "unknown", "192.0.2", "300.1.1.1", "example.org"])
def test_client_network_refuses_non_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        client_network(bad)


@pytest.mark.parametrize("sender, normal", [
    ("Bob@Sender.Test", "bob@sender.test"),
    ("bob+newsletter@sender.test", "bob@sender.test"),
    ("prvs=1234abcdef=bob@sender.test", "bob@sender.test"),
    ("PRVS=0123456789=Bob+x@Sender.test", "bob@sender.test"),
    ("msprvs1=20094vzcpxqyn=bounces-123@sender.test", "bounces-#@sender.test"),
    ("btv1==8327c5b8a6a==bob@sender.test", "bob@sender.test"),
    ("bounce-123-45678@lists.test", "bounce-#-#@lists.test"),
    ("list-bounces-4711@lists.test", "list-bounces-#@lists.test"),
    ("0100018c1d2e3f4a-5b6c7d8e-9f0a-4b1c@amazonses.test", "#-5b6c7d8e-9f0a-4b1c@amazonses.test"),
    ("bob2@sender.test", "bob2@sender.test"),
    ("", "<>"),
    ("<>", "<>"),
])
def test_normalise_sender(sender: str, normal: str) -> None:
    assert normalise_sender(sender) == normal


def test_verp_variants_of_one_list_share_a_triplet() -> None:
    a = make_triplet("192.0.2.1", "list-bounces-1001@lists.test", "Alice@Example.test")
    b = make_triplet("192.0.2.200", "list-bounces-1002@lists.test", "alice@example.test")
    assert a == b and a.key() == b.key()
    c = make_triplet("192.0.3.1", "list-bounces-1002@lists.test", "alice@example.test")
    assert c != a


def test_domains_and_networks() -> None:
    assert domain_matches("example.org", ("Example.ORG",))
    assert domain_matches("mx.example.org", ("example.org",))
    assert not domain_matches("badexample.org", ("example.org",))
    assert not domain_matches("", ("example.org",))
    nets = parse_networks(("192.0.2.0/24", "2001:db8::/32", "198.51.100.7"))
    assert in_networks(parse_address("192.0.2.9"), nets)
    assert in_networks(parse_address("198.51.100.7"), nets)
    assert not in_networks(parse_address("198.51.100.8"), nets)
    assert in_networks(parse_address("2001:db8:ffff::1"), nets)
    with pytest.raises(ValueError):
        parse_networks(("not-a-network",))
