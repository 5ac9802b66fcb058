"""Registrar state (RFC 3261 §10.3): add, refresh, remove, wildcard, limits, ordering."""

from __future__ import annotations

import pytest

from chalicelib import settings
from chalicelib.errors import DomainError
from chalicelib.live import registrar
from chalicelib.live.registrar import ContactRequest

AOR = "alice@example.org"


def test_register_refresh_and_remove(aws):
    c = ContactRequest("sip:alice@10.0.0.1:5060", instance="<urn:uuid:1>")
    got = registrar.register(AOR, [c], call_id="a", cseq=1, now=1000)
    assert [(b.uri, b.expires_in(1000)) for b in got] == [
        (c.uri, settings.get().register_default_expires)
    ]
    assert registrar.bindings(AOR, now=1001)
    # Same instance from a new address replaces the binding rather than adding one.
    moved = ContactRequest("sip:alice@10.0.0.2:5060", expires=120, instance="<urn:uuid:1>")
    got = registrar.register(AOR, [moved], call_id="a", cseq=2, now=1010)
    assert [(b.uri, b.expires_in(1010)) for b in got] == [("sip:alice@10.0.0.2:5060", 120)]
    assert not registrar.bindings(AOR, now=1200)  # expired, even before TTL deletion
    got = registrar.register(
        AOR,
        [ContactRequest(moved.uri, expires=0, instance="<urn:uuid:1>")],
        call_id="a",
        cseq=3,
        now=1020,
    )
    assert got == []


def test_wildcard_removes_all(aws):
    for i in range(3):
        registrar.register(AOR, [ContactRequest(f"sip:a@h{i}")], call_id=f"c{i}", cseq=1, now=0)
    assert len(registrar.bindings(AOR, now=1)) == 3
    assert registrar.register(AOR, [], call_id="z", cseq=1, wildcard=True, expires_header=0) == []
    with pytest.raises(DomainError) as err:
        registrar.register(AOR, [], call_id="z", cseq=2, wildcard=True, expires_header=60)
    assert err.value.sip_status == 400


def test_interval_too_brief_and_clamp(aws):
    brief = settings.get().register_min_expires - 1
    with pytest.raises(DomainError) as err:
        registrar.register(AOR, [ContactRequest("sip:a@h", expires=brief)], call_id="a", cseq=1)
    assert err.value.sip_status == 423
    assert err.value.headers["Min-Expires"] == str(settings.get().register_min_expires)
    got = registrar.register(
        AOR, [ContactRequest("sip:a@h")], call_id="a", cseq=2, expires_header=10**9, now=0
    )
    assert got[0].expires_in(0) == settings.get().register_max_expires


def test_out_of_order_cseq_and_binding_cap(aws):
    registrar.register(AOR, [ContactRequest("sip:a@h")], call_id="a", cseq=5, now=0)
    with pytest.raises(DomainError) as err:
        registrar.register(AOR, [ContactRequest("sip:a@h")], call_id="a", cseq=4, now=1)
    assert err.value.sip_status == 500
    for i in range(9):
        registrar.register(AOR, [ContactRequest(f"sip:a@x{i}")], call_id=f"x{i}", cseq=1, now=0)
    with pytest.raises(DomainError) as err:
        registrar.register(AOR, [ContactRequest("sip:a@y")], call_id="y", cseq=1, now=0)
    assert err.value.code == "too_many_bindings"
