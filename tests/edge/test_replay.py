"""No replay: a captured Authorization is worth nothing from another address, a second time,
for another Request-URI, without qop, or once its nonce expired, over real sockets.

The one nonce that outlives NONCE_TTL_SECONDS is the one that authenticated a subscription, and
only for refreshes of that dialog from its own source with a higher count: Linphone 5.1 re-uses
it at every refresh (tests/linphone proves the real SDK still refreshes).
"""

from __future__ import annotations

import secrets

import pytest

from chalicelib import digest
from testkit.sip_client import SipClient
from tests.edge.conftest import DOMAIN, PASSWORD, EdgeThread
from tests.edge.test_edge_subscribe import LIST_HEADERS, RLS, resource_list

ALICE = f"sip:alice@{DOMAIN}"
OTHER_HOST = "127.0.0.2"


def credentials(
    challenge, method: str, uri: str, *, nc: str = "00000001", qop: bool = True,
    digest_uri: str | None = None,
) -> str:  # fmt: skip
    params = digest.parse_params(challenge.headers.get_all("WWW-Authenticate")[0])
    alg, nonce = params["algorithm"], params["nonce"]
    ha1 = digest.ha1(alg, "alice", DOMAIN, PASSWORD)
    duri, cnonce = digest_uri or uri, secrets.token_hex(4)
    if not qop:
        response = digest.expected_response(alg, ha1, method, duri, nonce)
        return (f'Digest username="alice", realm="{DOMAIN}", nonce="{nonce}", uri="{duri}", '
                f'response="{response}", algorithm={alg}')  # fmt: skip
    response = digest.expected_response(alg, ha1, method, duri, nonce, qop="auth", nc=nc,
                                        cnonce=cnonce)  # fmt: skip
    head = f'Digest username="alice", realm="{DOMAIN}", nonce="{nonce}", uri="{duri}", '
    return head + f'response="{response}", algorithm={alg}, qop=auth, nc={nc}, cnonce="{cnonce}"'


def challenged(client: SipClient, method: str = "REGISTER"):
    client.request(method, f"sip:{DOMAIN}", from_uri=ALICE, headers=[("Expires", "600")])
    answer = client.response(method)
    assert answer is not None and answer.status == 401
    return answer


def register_with(client: SipClient, auth: str) -> tuple[bytes, int]:
    sent = client.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE,
                          headers=[("Expires", "600"), ("Authorization", auth)])  # fmt: skip
    answer = client.response("REGISTER")
    assert answer is not None
    return sent, answer.status


@pytest.fixture
def other(edge):
    c = SipClient(edge.address, host=OTHER_HOST)
    yield c
    c.close()


def test_a_register_replayed_from_another_address_is_refused(client, other, alice):
    challenge = challenged(client)
    sent, status = register_with(client, credentials(challenge, "REGISTER", f"sip:{DOMAIN}"))
    assert status == 200
    other.send_raw(sent)  # the captured datagram, byte for byte, from elsewhere
    answer = other.receive(lambda m: getattr(m, "status", 0) >= 200, timeout=3)
    assert answer is not None and answer.status == 401
    assert "stale=true" in answer.headers.get("WWW-Authenticate")
    # Even with a fresh count: the nonce was bound to the first address.
    _, status = register_with(other, credentials(challenge, "REGISTER", f"sip:{DOMAIN}", nc="9"))
    assert status == 401


def test_a_digest_for_another_uri_or_without_qop_is_refused(client, alice):
    challenge = challenged(client)
    wrong = credentials(challenge, "REGISTER", f"sip:{DOMAIN}", digest_uri="sip:other.org")
    assert register_with(client, wrong)[1] == 401
    bare = credentials(challenge, "REGISTER", f"sip:{DOMAIN}", qop=False)
    assert register_with(client, bare)[1] == 401
    good = credentials(challenge, "REGISTER", f"sip:{DOMAIN}", nc="00000002")
    assert register_with(client, good)[1] == 200


NONCE_TTL = 30  # long enough for a loaded machine's round trips; the edge's clock then jumps


def expire_nonces(edge: EdgeThread) -> None:
    """Move the edge's wall clock (nonces, expiries) past NONCE_TTL, as time passing would."""
    wall = edge.edge.clock
    edge.edge.clock = lambda: wall() + NONCE_TTL + 1


def test_an_expired_nonce_is_never_accepted_for_register(aws, alice):
    edge = EdgeThread(nonce_ttl_seconds=NONCE_TTL)
    client = SipClient(edge.address)
    try:
        challenge = challenged(client)
        expire_nonces(edge)
        _, status = register_with(client, credentials(challenge, "REGISTER", f"sip:{DOMAIN}"))
        assert status == 401
    finally:
        client.close()
        edge.stop()


def subscribe(client: SipClient):
    body = resource_list(["sip:+33600000000@example.org;user=phone"])
    client.request("SUBSCRIBE", RLS, from_uri=ALICE, to=f"<{RLS}>", headers=LIST_HEADERS,
                   body=body)  # fmt: skip
    challenge = client.response("SUBSCRIBE")
    auth = credentials(challenge, "SUBSCRIBE", RLS)
    client.request("SUBSCRIBE", RLS, from_uri=ALICE, to=f"<{RLS}>", body=body,
                   headers=[*LIST_HEADERS, ("Authorization", auth)])  # fmt: skip
    ok = client.response("SUBSCRIBE")
    assert ok is not None and ok.status == 200
    assert client.notify() is not None
    return challenge, ok.headers.get("To")


def refresh(client: SipClient, challenge, to: str, nc: str) -> bytes:
    auth = credentials(challenge, "SUBSCRIBE", RLS, nc=nc)
    return client.request("SUBSCRIBE", RLS, from_uri=ALICE, to=to,
                          headers=[("Event", "presence"), ("Expires", "600"),
                                   ("Authorization", auth)])  # fmt: skip


def test_in_dialog_refresh_after_nonce_expiry_only_from_its_own_source(aws, alice):
    """The attack: a refresh captured and re-sent from elsewhere once the nonce
    expired. Refused (481, so nobody's NOTIFYs move); the phone's own next refresh, with a
    higher count, is taken as Linphone 5.1 needs; the same refresh again is refused."""
    edge = EdgeThread(nonce_ttl_seconds=NONCE_TTL)
    client = SipClient(edge.address)
    attacker = SipClient(edge.address, host=OTHER_HOST)
    try:
        challenge, to = subscribe(client)
        expire_nonces(edge)
        captured = refresh(client, challenge, to, "00000002")
        ok = client.response("SUBSCRIBE")
        assert ok is not None and ok.status == 200
        client.notify()
        attacker.send_raw(captured)
        stolen = attacker.receive(lambda m: getattr(m, "status", 0) >= 200, timeout=3)
        assert stolen is not None and stolen.status == 481
        assert attacker.receive(lambda m: True, timeout=0.5) is None  # and no NOTIFY
        # The same count again from the phone's own address (a spoofed replay): refused.
        refresh(client, challenge, to, "00000002")
        again = client.response("SUBSCRIBE")
        assert again is not None and again.status == 481
        dialog = next(iter(edge.edge.subscriptions.dialogs.values()))
        assert dialog.peer.host == "127.0.0.1" and dialog.peer.port == client.port
    finally:
        client.close()
        attacker.close()
        edge.stop()
