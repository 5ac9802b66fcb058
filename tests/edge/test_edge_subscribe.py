"""List subscriptions through the edge over real sockets (RFC 6665, RFC 5367, RFC 4662)."""

from __future__ import annotations

import pytest

from testkit.notify_body import parse_notify, users_in
from testkit.sip_client import SipClient
from testkit.wait import wait_until
from tests.edge.conftest import DOMAIN, PASSWORD, make_account

ALICE = f"sip:alice@{DOMAIN}"
RLS = f"sip:rls@{DOMAIN}"
ENTRIES = [
    f"sip:+33600000002@{DOMAIN};user=phone",
    f"sip:+33612345678@{DOMAIN};user=phone",
    f"sip:carol@{DOMAIN}",
    f"sip:dave@{DOMAIN}",
]
LIST_HEADERS = [
    ("Event", "presence"),
    ("Supported", "eventlist"),
    ("Require", "recipient-list-subscribe"),
    ("Content-Disposition", "recipient-list"),
    ("Content-Type", "application/resource-lists+xml"),
    ("Accept", "multipart/related"),
    ("Accept", "application/pidf+xml"),
    ("Accept", "application/rlmi+xml"),
    ("Expires", "600"),
]


def resource_list(entries: list[str]) -> bytes:
    items = "".join(f'<entry uri="{e}"/>' for e in entries)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
        f"<list>{items}</list></resource-lists>"
    ).encode()


@pytest.fixture
def users(aws):
    return {
        "alice": make_account("alice", "+33611111111"),
        "bob": make_account("bob", "+33612345678"),
        "carol": make_account("carol"),
    }


def settled(edge, key: str) -> bool:
    """The dialog's phone has answered its full state and nothing is left in progress."""
    dialog = edge.edge.subscriptions.dialogs.get(key)
    return bool(dialog and dialog.synced and dialog.work is None and not dialog.writes)


def subscribe(client: SipClient, entries: list[str], extra=(), user="alice"):
    body = resource_list(entries)
    client.request("SUBSCRIBE", RLS, from_uri=f"sip:{user}@{DOMAIN}", to=f"<{RLS}>",
                   headers=[*LIST_HEADERS, *extra], body=body)  # fmt: skip
    challenge = client.response("SUBSCRIBE")
    assert challenge.status == 401
    client.authorized("SUBSCRIBE", RLS, challenge, username=user, password=PASSWORD,
                      from_uri=f"sip:{user}@{DOMAIN}", to=f"<{RLS}>",
                      headers=[*LIST_HEADERS, *extra], body=body)  # fmt: skip
    return client.response("SUBSCRIBE")


def test_list_subscribe_notifies_users(client, users):
    ok = subscribe(client, ENTRIES, extra=[("User-Agent", "LinphoneAndroid/4.6 LinphoneSDK/5.1")])
    assert ok.status == 200, ok.reason
    assert ok.headers.get("Expires") == "600"
    assert ok.to.tag and ok.headers.get("Contact")
    notify = client.notify()
    assert notify.headers.get("Event") == "Presence"
    assert notify.headers.get("Subscription-State").startswith("active;expires=")
    assert users_in(notify) == {
        ENTRIES[1]: f"sip:bob@{DOMAIN}",
        ENTRIES[2]: f"sip:carol@{DOMAIN}",
    }


def test_refresh_keeps_the_list_and_unsubscribe_terminates(client, users):
    ok = subscribe(client, ENTRIES)
    first = client.notify()
    assert first.headers.get("Event") == "presence"  # rfc profile for other agents
    to = ok.headers.get("To")
    # The refresh carries no body (as Linphone's do) and must not wipe the list.
    assert in_dialog_subscribe(client, to, 600).status == 200
    again = client.notify()
    assert len(users_in(again)) == 2
    assert in_dialog_subscribe(client, to, 0).status == 200
    last = client.notify()
    assert last.headers.get("Subscription-State").startswith("terminated")


def test_a_dialog_is_stored_once_per_subscribe_as_it_stands_after_its_notify(
    edge, client, users, monkeypatch
):
    """One store call per SUBSCRIBE, new or refresh (no second write for its NOTIFY's
    version): what is stored already carries that NOTIFY's CSeq and the next RLMI version, so
    an edge that restarts after it resumes above both."""
    from chalicelib.edge_contract import subscription_id
    from chalicelib.live import subscriptions

    ops: list[str] = []
    handle = subscriptions.handle
    monkeypatch.setattr(
        subscriptions, "handle", lambda event, **kw: ops.append(event["op"]) or handle(event, **kw)
    )
    ok = subscribe(client, ENTRIES)
    notify = client.notify()
    assert ok.status == 200 and notify is not None
    rlmi_version = int(parse_notify(notify).rlmi.get("version"))
    key = subscription_id(client.call_id, ok.to.tag)
    # Once the NOTIFY's 200 is in and the dialog has no work or write left, any second write
    # would have been made.
    assert wait_until(lambda: settled(edge, key), 5)
    stored = subscriptions.get(key)
    assert stored is not None
    assert ops == ["save"]
    assert stored["dialog"]["local_cseq"] == notify.cseq.seq
    assert stored["dialog"]["synced"] is False  # written before the phone could answer
    assert stored["version"] == stored["dialog"]["version"] == rlmi_version + 1
    # A refresh: one write too, its full-state NOTIFY's CSeq and version in it.
    assert in_dialog_subscribe(client, ok.headers.get("To"), 600).status == 200
    again = client.notify()
    assert wait_until(lambda: settled(edge, key), 5)
    stored = subscriptions.get(key)
    assert stored is not None
    assert ops == ["save", "refresh"]
    assert stored["dialog"]["local_cseq"] == again.cseq.seq
    assert stored["dialog"]["synced"] is True  # the first NOTIFY's answer, on record now
    assert stored["version"] == int(parse_notify(again).rlmi.get("version")) + 1


def test_a_refresh_whose_lookup_fails_is_stored_and_gets_full_state_once_it_answers(
    client, users, monkeypatch
):
    """The refresh's one write waits for the lookup (to carry the NOTIFY's CSeq); if the
    lookup fails, the longer expiry is stored all the same, and the phone, which has its 200,
    gets the full state when the lookup answers again, without asking again."""
    import app
    from chalicelib.edge_contract import subscription_id
    from chalicelib.live import subscriptions

    ok = subscribe(client, ENTRIES)
    assert client.notify() is not None
    key = subscription_id(client.call_id, ok.to.tag)
    before = subscriptions.get(key)
    assert before is not None

    def unavailable(event, context):
        raise RuntimeError("presence_lookup is down")

    lookup = app.presence_lookup
    monkeypatch.setattr(app, "presence_lookup", unavailable)
    assert in_dialog_subscribe(client, ok.headers.get("To"), 3600).status == 200
    assert client.notify(timeout=1.0) is None

    def stored_longer() -> bool:
        return (subscriptions.get(key) or {}).get("expires_at", 0) >= before["expires_at"] + 3000

    assert wait_until(stored_longer, 5), "the refresh's longer expiry was not stored"
    after = subscriptions.get(key)
    assert after is not None
    assert after["dialog"]["local_cseq"] == before["dialog"]["local_cseq"]

    monkeypatch.setattr(app, "presence_lookup", lookup)  # the backend is back
    full = client.notify(timeout=5.0)
    assert full is not None, "the refreshed phone never got its full state"
    assert full.cseq.seq > before["dialog"]["local_cseq"]
    assert parse_notify(full).rlmi.get("fullState") == "true"
    assert len(users_in(full)) == 2


def in_dialog_subscribe(client, to: str, expires: int):
    """A refresh (or, with 0, an un-SUBSCRIBE) as Linphone sends it: no body, digest on the
    second try. Its first try carries a stray Content-Encoding, as some clients' do."""
    client.request("SUBSCRIBE", RLS, from_uri=ALICE, to=to,
                   headers=[("Event", "presence"), ("Expires", str(expires)),
                            ("Content-Encoding", "deflate")])  # fmt: skip
    challenge = client.response("SUBSCRIBE")
    client.authorized("SUBSCRIBE", RLS, challenge, username="alice", password=PASSWORD,
                      from_uri=ALICE, to=to,
                      headers=[("Event", "presence"), ("Expires", str(expires))])  # fmt: skip
    return client.response("SUBSCRIBE")


def test_unknown_dialog_gets_481(client, users):
    client.request("SUBSCRIBE", RLS, from_uri=ALICE, to=f"<{RLS}>;tag=nope",
                   headers=[("Event", "presence")])  # fmt: skip
    challenge = client.response("SUBSCRIBE")
    client.authorized(
        "SUBSCRIBE",
        RLS,
        challenge,
        username="alice",
        password=PASSWORD,
        from_uri=ALICE,
        to=f"<{RLS}>;tag=nope",
        headers=[("Event", "presence")],
    )
    assert client.response("SUBSCRIBE").status == 481


@pytest.mark.parametrize(
    ("headers", "status", "header"),
    [
        ([("Event", "dialog")], 489, "Allow-Events"),
        ([("Event", "presence"), ("Require", "foo")], 420, "Unsupported"),
        ([("Event", "presence"), ("Expires", "5")], 423, "Min-Expires"),
    ],
)
def test_rejections_carry_rfc_headers(client, users, headers, status, header):
    client.request("SUBSCRIBE", RLS, from_uri=ALICE, headers=headers)
    r = client.response("SUBSCRIBE")
    assert r.status == status and r.headers.get(header)


def test_wrong_body_type_and_missing_extension(client, users):
    hdrs = [h for h in LIST_HEADERS if h[0] != "Content-Type"] + [("Content-Type", "text/plain")]
    client.request("SUBSCRIBE", RLS, from_uri=ALICE, headers=hdrs, body=b"hello")
    r = client.response("SUBSCRIBE")
    assert r.status == 415 and "resource-lists" in r.headers.get("Accept")
    hdrs = [h for h in LIST_HEADERS if h[0] != "Supported"]
    client.request("SUBSCRIBE", RLS, from_uri=ALICE, headers=hdrs, body=resource_list(ENTRIES))
    r = client.response("SUBSCRIBE")
    assert r.status == 421 and r.headers.get("Require") == "eventlist"


def test_identity_must_match_credentials(client, users):
    body = resource_list(ENTRIES)
    client.request("SUBSCRIBE", RLS, from_uri=f"sip:bob@{DOMAIN}", headers=LIST_HEADERS, body=body)
    challenge = client.response("SUBSCRIBE")
    client.authorized("SUBSCRIBE", RLS, challenge, username="alice", password=PASSWORD,
                      from_uri=f"sip:bob@{DOMAIN}", headers=LIST_HEADERS, body=body)  # fmt: skip
    assert client.response("SUBSCRIBE").status == 403


def test_unanswered_notify_ends_the_subscription(edge, users):
    c = SipClient(edge.address)
    try:
        edge.edge.transactions.timers = type(edge.edge.transactions.timers)(t1=0.02, t2=0.1)
        assert subscribe(c, ENTRIES).status == 200
        assert c.notify(answer=None) is not None
        assert wait_until(lambda: not edge.edge.subscriptions.dialogs, 5)
    finally:
        c.close()


def test_a_notify_answered_481_ends_the_subscription(edge, users):
    c = SipClient(edge.address)
    try:
        assert subscribe(c, ENTRIES).status == 200
        assert c.notify(answer=481) is not None
        assert wait_until(lambda: not edge.edge.subscriptions.dialogs, 5)
    finally:
        c.close()


def subscribe_one(client: SipClient, target: str, agent: str = "baresip v1.0.0 (x86_64/linux)"):
    """A per-contact presence SUBSCRIBE (RFC 3856) as baresip sends it: no body, no Accept."""
    headers = [("Event", "presence"), ("Expires", "600"), ("User-Agent", agent)]
    client.request("SUBSCRIBE", target, from_uri=ALICE, to=f"<{target}>", headers=headers)
    challenge = client.response("SUBSCRIBE")
    assert challenge.status == 401
    client.authorized("SUBSCRIBE", target, challenge, username="alice", password=PASSWORD,
                      from_uri=ALICE, to=f"<{target}>", headers=headers,
                      algorithm="MD5")  # fmt: skip
    return client.response("SUBSCRIBE")


def test_single_resource_notify_has_a_bare_pidf_type_and_no_user_agent(client, users):
    assert subscribe_one(client, f"sip:bob@{DOMAIN}").status == 200
    notify = client.notify()
    assert notify.headers.get("Event") == "presence"
    assert notify.headers.get("Content-Type") == "application/pidf+xml"  # no ;charset
    assert notify.headers.get("Content-Encoding") is None
    assert notify.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<presence ')
    assert notify.headers.get("User-Agent") is None  # SIP_SERVER_HEADER is empty by default


def test_the_server_header_setting_names_the_edge_in_its_requests_too(users):
    from tests.edge.conftest import EdgeThread

    named = EdgeThread(sip_server_header="acme-edge/2")
    c = SipClient(named.address)
    try:
        ok = subscribe_one(c, f"sip:bob@{DOMAIN}")
        assert ok.headers.get("Server") == "acme-edge/2"
        assert c.notify().headers.get("User-Agent") == "acme-edge/2"
    finally:
        c.close()
        named.stop()


def test_dialogs_per_account_are_capped(users):
    """SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT: one account cannot fill an edge's memory with
    dialogs; past the cap a new SUBSCRIBE is 403, other accounts are served, a freed slot is
    usable again."""
    from tests.edge.conftest import EdgeThread

    edge = EdgeThread(subscribe_max_dialogs_per_account=2)
    phones = [SipClient(edge.address) for _ in range(4)]
    try:
        assert subscribe(phones[0], ENTRIES).status == 200
        assert subscribe(phones[1], ENTRIES).status == 200
        refused = subscribe(phones[2], ENTRIES)
        assert refused.status == 403 and "at most 2" in refused.reason
        assert subscribe(phones[3], ENTRIES, user="bob").status == 200
        assert len(edge.edge.subscriptions.dialogs) == 3
    finally:
        for phone in phones:
            phone.close()
        edge.stop()


def test_a_restart_reloads_its_dialogs_page_by_page(users):
    """LOAD_EDGE_PAGE_BYTES=1: every page of the reload holds one dialog; all come back."""
    from tests.edge.conftest import EdgeThread

    first = EdgeThread(edge_id="edge-paged")
    phones = [SipClient(first.address) for _ in range(3)]
    try:
        for phone in phones:
            assert subscribe(phone, ENTRIES).status == 200
            assert phone.notify() is not None  # sent once the dialog is stored
        first.has_the_answers()
        first.stop()
        second = EdgeThread(edge_id="edge-paged", load_edge_page_bytes=1)
        try:
            assert second.edge.stats["resumed"] == 3
        finally:
            second.stop()
    finally:
        for phone in phones:
            phone.close()
