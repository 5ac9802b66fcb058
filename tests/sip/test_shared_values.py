"""Parsed URIs and addresses are remembered by their text and shared by every message holding
that text, so none of their parts can be changed (a change would leak into other messages)."""

from __future__ import annotations

import dataclasses

import pytest

from sip_edge.sip.uri import parse_uri
from sip_edge.sip.values import parse_name_addr, parse_name_addr_list

CONTACT = '"Alice" <sip:alice@example.org;transport=tcp?Subject=hi>;expires=60;+sip.instance="<x>"'


def test_a_remembered_uri_is_shared_and_read_only():
    uri = parse_uri("sip:alice@example.org;transport=tcp?Subject=hi")
    assert parse_uri("sip:alice@example.org;transport=tcp?Subject=hi") is uri
    assert uri.params == {"transport": "tcp"} and uri.headers == (("Subject", "hi"),)
    with pytest.raises(TypeError):
        uri.params["transport"] = "udp"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        uri.host = "evil.example"  # type: ignore[misc]
    assert parse_uri("sip:bob@example.org").params == {}


def test_a_remembered_address_is_shared_and_read_only():
    addr = parse_name_addr(CONTACT)
    assert parse_name_addr(CONTACT) is addr
    assert addr.param("+sip.instance") == "<x>" and addr.params["expires"] == "60"
    with pytest.raises(TypeError):
        addr.params["tag"] = "stolen"  # type: ignore[index]
    assert "tag" not in parse_name_addr(CONTACT).params
    (first,) = parse_name_addr_list(CONTACT)
    assert first is addr or first == addr
    listed = parse_name_addr_list(CONTACT)
    listed.clear()  # a caller's list is its own; the remembered one is a tuple
    assert parse_name_addr_list(CONTACT) == [addr]
