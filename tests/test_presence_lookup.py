"""Classifying entries, resolving users in DynamoDB (moto) and the presence_lookup contract."""

from __future__ import annotations

import base64
import zlib

import pytest

from chalicelib import dynamo, settings, tables
from chalicelib.accounts import phone
from chalicelib.api import presence_lookup
from chalicelib.presence import resolve as presence
from chalicelib.presence import watched
from chalicelib.presence.resolve import Kind, Target
from testkit.notify_body import parse_body
from tests.presence_helpers import (
    FIXTURE_ENTRIES,
    FIXTURE_USERS,
    UNQUOTED_LAST_BOUNDARY,
    put_account,
    seed_fixture_users,
    sip_message,
)


@pytest.mark.parametrize(
    ("uri", "region", "target"),
    [
        ("sip:+33612345678@example.org;user=phone", None, Target(Kind.PHONE, "+33612345678")),
        ("sip:0612345678@example.org;user=phone", "FR", Target(Kind.PHONE, "+33612345678")),
        ("sip:06-12-34-56-78@example.org;user=phone", "FR", Target(Kind.PHONE, "+33612345678")),
        ("sip:07400123456@example.org;user=phone", "GB", Target(Kind.PHONE, "+447400123456")),
        ("sip:+33612345678@elsewhere.com", None, Target(Kind.PHONE, "+33612345678")),
        ("sips:0033612345678@example.org:5061", None, Target(Kind.PHONE, "+33612345678")),
        ("tel:+33612345678", None, Target(Kind.PHONE, "+33612345678")),
        ("tel:+33-6-12-34-56-78", None, Target(Kind.PHONE, "+33612345678")),
        ("tel:07400123456;phone-context=+44", "FR", Target(Kind.PHONE, "+447400123456")),
        (
            "sip:07400123456;phone-context=+44@example.org;user=phone",
            "FR",
            Target(Kind.PHONE, "+447400123456"),
        ),
        ("sip:carol@example.org", None, Target(Kind.ACCOUNT, "carol@example.org")),
        (
            "SIP:Carol@EXAMPLE.org:5060;transport=tcp",
            None,
            Target(Kind.ACCOUNT, "carol@example.org"),
        ),
        ("sip:carol:secret@example.org", None, Target(Kind.ACCOUNT, "carol@example.org")),
        ("sip:c%61rol@example.org", None, Target(Kind.ACCOUNT, "carol@example.org")),
        ("<sip:carol@example.org>", None, Target(Kind.ACCOUNT, "carol@example.org")),
        ("sip:bob@alias.example.net", None, Target(Kind.ACCOUNT, "bob@alias.example.net")),
        ("sip:carol@elsewhere.com", None, presence.NOTHING),
        ("sip:example.org", None, presence.NOTHING),
        ("sip:alice;user=phone@example.org;user=phone", None, presence.NOTHING),
        ("sip:1234@pbx.example.com", None, presence.NOTHING),  # an extension, not a number
        ("sip:+33700000001@example.org;user=phone", None, presence.NOTHING),  # invalid number
        ("mailto:carol@example.org", None, presence.NOTHING),
        ("carol", None, presence.NOTHING),
        ("tel:*21#", None, presence.NOTHING),
    ],
)
def test_classify(uri, region, target, monkeypatch):
    monkeypatch.setenv("SIP_EXTRA_DOMAINS", "alias.example.net")
    settings.get.cache_clear()
    try:
        used = region or settings.get().default_region.upper()
        assert presence.classify_all([uri], region=region) == ([target], used)
    finally:
        settings.get.cache_clear()


@pytest.fixture
def users(aws):
    seed_fixture_users()
    put_account("alice", phone_number="+447400123001")  # the subscriber, in GB
    put_account("eve", phone_number="+33611111111", disabled=True)
    put_account("frank", phone_number="+33622222222", discoverable=False)
    put_account("gina", phone_number="+447400123456")


def test_resolve_only_discoverable_enabled_accounts(users):
    entries = [
        *FIXTURE_ENTRIES,
        "sip:+33611111111@example.org;user=phone",
        "sip:eve@example.org",
        "sip:+33622222222@example.org;user=phone",
        "sip:frank@example.org",
        "tel:+33612345678",  # the same number as bob's sip:...;user=phone: both are users
    ]
    resolved, _ = presence.resolve(entries, subscriber="alice@example.org")
    users = {r.uri: r.contact for r in resolved if r.is_user}
    assert users == {**FIXTURE_USERS, "tel:+33612345678": "sip:bob@example.org"}


def test_national_numbers_use_the_subscribers_region(users):
    entries = ["sip:07400123456@example.org;user=phone"]
    counter = dynamo.CallCounter()
    resolved, region = presence.resolve(
        entries, subscriber="sip:alice@example.org", counter=counter
    )
    assert region == "GB" and resolved[0].contact == "sip:gina@example.org"
    assert counter.calls == 2  # the subscriber's account, then the phone index
    # Without a number of their own, the configured default region (FR) applies.
    resolved, region = presence.resolve(["sip:0612345678@example.org"], subscriber="bob2@x.org")
    assert region == "FR" and resolved[0].contact == "sip:bob@example.org"
    # With the region given (as the edge does on later calls), no account read.
    counter = dynamo.CallCounter()
    presence.resolve(entries, subscriber="alice@example.org", region="GB", counter=counter)
    assert counter.calls == 1


def test_e164_lists_never_read_the_subscriber(users):
    counter = dynamo.CallCounter()
    presence.resolve(FIXTURE_ENTRIES[:3], subscriber="alice@example.org", counter=counter)
    assert counter.calls == 1


def test_a_thousand_entries_cost_at_most_ten_calls(aws):
    numbers = [f"+336{i:08d}" for i in range(900)]
    with tables.table(tables.PHONE_INDEX).batch_writer() as batch:
        for i, n in enumerate(numbers[::3]):
            batch.put_item(Item={"phone_hash": phone.phone_hash(n), "aor": f"u{i}@example.org"})
    with tables.table(tables.ACCOUNTS).batch_writer() as batch:
        for i in range(30):
            batch.put_item(Item={"aor": f"s{i}@example.org", "discoverable": True})
    entries = [f"sip:{n}@example.org;user=phone" for n in numbers] + [
        f"sip:s{i}@example.org" for i in range(100)
    ]
    counter = dynamo.CallCounter()
    resolved, _ = presence.resolve(entries, subscriber="nobody@example.org", counter=counter)
    assert len(resolved) == 1000
    assert sum(r.is_user for r in resolved) == 300 + 30
    assert counter.calls <= 10


def test_resolve_numbers_for_rest_discovery(users):
    matches = presence.resolve_numbers(
        ["06 12 34 56 78", "+33612345678", "not a number", "+33622222222", "06 12 34 56 78"],
        "fr",
    )
    assert [m.to_json() for m in matches] == [
        {"phone": "06 12 34 56 78", "e164": "+33612345678", "sip_uri": "sip:bob@example.org"},
        {"phone": "+33612345678", "e164": "+33612345678", "sip_uri": "sip:bob@example.org"},
    ]


def test_watched_keys_for_the_watchers_index(users):
    keys = watched.watched_keys(FIXTURE_ENTRIES, "alice@example.org")
    assert [(w.uri, w.key) for w in keys] == [
        (FIXTURE_ENTRIES[0], watched.phone_key("+33600000002")),
        (FIXTURE_ENTRIES[1], watched.phone_key("+33612345678")),
        (FIXTURE_ENTRIES[3], watched.account_key("carol@example.org")),
        (FIXTURE_ENTRIES[4], watched.account_key("dave@example.org")),
    ]


# --- The function contract ---------------------------------------------------------------------


def payload_from(name: str, profile: str = "linphone") -> dict:
    headers, body = sip_message(name)
    return {
        "subscriber": "sip:alice@example.org",
        "list_uri": "sip:rls@example.org",
        "list_b64": base64.b64encode(body).decode(),
        "content_encoding": headers.get("content-encoding"),
        "accept_encoding": [headers["accept-encoding"]] if "accept-encoding" in headers else [],
        "profile": profile,
        "version": 0,
    }


def bodies_of(answer: dict) -> list:
    return [
        parse_body(b["content_type"], base64.b64decode(b["body_b64"]), b["content_encoding"])
        for b in answer["bodies"]
    ]


@pytest.mark.parametrize(
    "name",
    [
        "subscribe-initial-udp-deflate",
        "subscribe-initial-tcp-deflate",
        "subscribe-initial-udp-plain",
    ],
)
def test_captured_subscribes_get_the_expected_users(users, name):
    answer = presence_lookup.handle(payload_from(name))
    assert "error" not in answer
    assert answer["entries"] == FIXTURE_ENTRIES
    assert answer["version"] == 1
    (body,) = answer["bodies"]
    deflated = name.endswith("deflate")
    assert body["content_encoding"] == ("deflate" if deflated else None)
    assert UNQUOTED_LAST_BOUNDARY.match(body["content_type"])
    (parsed,) = bodies_of(answer)
    assert parsed.uris() == FIXTURE_ENTRIES
    assert parsed.users() == FIXTURE_USERS
    assert {r["uri"]: r["user"] for r in answer["resources"] if r["user"]} == FIXTURE_USERS
    # Numbers and SIP accounts share one BatchGetItem (it may span tables).
    assert answer["stats"]["dynamodb_calls"] == 1
    assert answer["region"] == "FR"


def test_refresh_with_stored_entries_is_full_state_at_the_next_version(users):
    first = presence_lookup.handle(payload_from("subscribe-initial-udp-deflate"))
    again = presence_lookup.handle(
        {
            "subscriber": "sip:alice@example.org",
            "entries": first["entries"],
            "accept_encoding": ["deflate"],
            "profile": "linphone",
            "version": first["version"],
            "region": first["region"],
        }
    )
    (parsed,) = bodies_of(again)
    assert (parsed.rlmi.get("version"), parsed.rlmi.get("fullState")) == ("1", "true")
    assert parsed.users() == FIXTURE_USERS and again["version"] == 2


def test_rfc_profile_and_limits(users):
    payload = payload_from("subscribe-initial-udp-plain", profile="rfc")
    payload["limits"] = {"notify_limit": 1}
    answer = presence_lookup.handle(payload)
    assert len(answer["bodies"]) == 2 and answer["version"] == 2
    first, second = bodies_of(answer)
    assert first.boundary and '"' in answer["bodies"][0]["content_type"]
    assert first.rlmi.get("fullState") == "true" and second.rlmi.get("fullState") == "false"
    assert {**first.users(), **second.users()} == FIXTURE_USERS


def test_single_resource_subscriptions(users):
    base = {"subscriber": "alice@example.org", "single": True, "accept_encoding": "deflate"}
    answer = presence_lookup.handle({**base, "entries": ["sip:+33612345678@example.org"]})
    (body,) = answer["bodies"]
    # No parameter: baresip 1.0 compares the whole value and answers 415 to a charset.
    assert body["content_type"] == "application/pidf+xml"
    assert body["content_encoding"] == "deflate"
    doc = zlib.decompress(base64.b64decode(body["body_b64"]))
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert b"<contact>sip:bob@example.org</contact>" in doc and b"<basic>open</basic>" in doc
    answer = presence_lookup.handle({**base, "entries": ["sip:dave@example.org"]})
    assert answer["bodies"][0]["body_b64"] == "" and answer["bodies"][0]["content_type"] is None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"list_b64": base64.b64encode(b"<!DOCTYPE x><x/>").decode()}, "list_forbidden_xml"),
        ({"list_b64": "!!!"}, "invalid_field"),
        ({"list_b64": ""}, "list_malformed"),
        ({"content_encoding": "br"}, "list_bad_encoding"),
        ({"list_b64": None}, "missing_field"),
        ({"subscriber": ""}, "missing_field"),
        ({"profile": "snom"}, "invalid_field"),
        ({"version": -1}, "invalid_field"),
        ({"version": "1"}, "invalid_field"),
        ({"limits": {"notify_limit": 0}}, "invalid_field"),
        ({"region": "XX"}, "invalid_field"),
        ({"entries": ["sip:a@x"] * 6000, "list_b64": None}, "list_too_many_entries"),
        ({"limits": {"list_max_entries": 2}}, "list_too_many_entries"),
    ],
)
def test_errors_are_answered_with_catalogue_codes(change, code):
    # All refused before any DynamoDB read: no moto needed.
    payload = {**payload_from("subscribe-initial-udp-deflate"), **change}
    assert presence_lookup.handle(payload)["error"]["code"] == code


def test_callers_may_lower_list_limits_but_not_raise_them(users):
    limits = {"list_max_inflated_bytes": 10**9, "list_max_entries": 10**9}
    payload = {**payload_from("subscribe-initial-udp-deflate"), "limits": limits}
    assert "error" not in presence_lookup.handle(payload)
    payload["entries"] = ["sip:a@x"] * 5001
    assert presence_lookup.handle(payload)["error"]["code"] == "list_too_many_entries"


def test_the_chalice_function_is_wired(users):
    import app

    answer = app.presence_lookup(payload_from("subscribe-initial-udp-plain"), None)
    assert [r["user"] for r in answer["resources"]] == [
        None,
        "sip:bob@example.org",
        None,
        "sip:carol@example.org",
        None,
    ]


def test_a_mixed_thousand_entry_list_costs_ten_calls(aws):
    from chalicelib import dynamo
    from chalicelib.presence import resolve as presence

    entries = [f"sip:+336{i:08d}@example.org;user=phone" for i in range(700)]
    entries += [f"sip:user{i}@example.org" for i in range(300)]
    counter = dynamo.CallCounter()
    presence.resolve(entries, subscriber="alice@example.org", region="FR", counter=counter)
    assert counter.calls == 10


def test_a_stored_list_is_read_by_subscription_id_for_its_own_subscriber_only(users):
    """An edge keeping only keys of a large list names the subscription; the function reads
    the list that dialog stored, and refuses another account's or an unknown one."""
    from chalicelib.live import subscriptions

    first = presence_lookup.handle(payload_from("subscribe-initial-udp-deflate"))
    subscriptions.save(
        "sub-big", edge_id="e1", subscriber="alice@example.org", expires_at=2**31,
        version=first["version"], dialog={}, entries=first["entries"], watched=[],
    )  # fmt: skip
    by_id = {
        "subscriber": "alice@example.org",
        "subscription_id": "sub-big",
        "accept_encoding": ["deflate"],
        "profile": "linphone",
        "version": first["version"],
    }
    again = presence_lookup.handle(by_id)
    (parsed,) = bodies_of(again)
    assert parsed.rlmi.get("fullState") == "true" and parsed.uris() == FIXTURE_ENTRIES
    assert parsed.users() == FIXTURE_USERS and again["entries"] == first["entries"]
    for other in ({"subscriber": "bob@example.org"}, {"subscription_id": "sub-none"}):
        assert presence_lookup.handle({**by_id, **other})["error"]["code"] == "not_found"
