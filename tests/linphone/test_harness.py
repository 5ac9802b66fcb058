"""Self-test of the Linphone harness: the real SDK against a scripted loopback peer."""

from __future__ import annotations

import hashlib
import re
import secrets
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator

import pytest

from tests.conftest import INTEROP
from tests.linphone.client import LinphoneClient
from tests.linphone.peer import ScriptedPeer, SipMessage

pytestmark = pytest.mark.linphone

RLS = "sip:rls@example.org"
IDENTITY = "sip:alice@example.org"
PASSWORD = "secret"
# Spelled as a phone's address book would: one national number, normalised with prefix 33.
FRIENDS = {
    "Bob": "+33612345678",
    "Nina": "+33600000002",
    "Nico": "0700000001",
    "Carol": "sip:carol@example.org",
    "Dave": "sip:dave@example.org",
}
# What the captured NOTIFYs' resource URIs name, in the order the SDK sends them.
ENTRIES = [
    "sip:+33600000002@example.org;user=phone",
    "sip:+33612345678@example.org;user=phone",
    "sip:+33700000001@example.org;user=phone",
    "sip:carol@example.org",
    "sip:dave@example.org",
]
RESOURCE_LISTS = "{urn:ietf:params:xml:ns:resource-lists}"


@pytest.fixture
def peer() -> Iterator[ScriptedPeer]:
    with ScriptedPeer() as p:
        yield p


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_params(header: str) -> dict[str, str]:
    return {
        k.lower(): v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', header)
    }


def register(client: LinphoneClient, peer: ScriptedPeer, challenge: bool = False) -> SipMessage:
    client.account(IDENTITY, PASSWORD, peer.uri, register=True, prefix="33")
    request = peer.expect("REGISTER")
    if challenge:
        nonce = secrets.token_hex(8)
        peer.reply(
            request,
            401,
            "Unauthorized",
            [("WWW-Authenticate", f'Digest realm="example.org", nonce="{nonce}", qop="auth"')],
        )
        request = peer.expect("REGISTER")
        auth = digest_params(request.header("Authorization") or "")
        ha1 = md5(f"alice:example.org:{PASSWORD}")
        ha2 = md5(f"REGISTER:{auth['uri']}")
        expected = md5(f"{ha1}:{nonce}:{auth['nc']}:{auth['cnonce']}:{auth['qop']}:{ha2}")
        assert (auth["username"], auth["nonce"], auth["response"]) == ("alice", nonce, expected)
    peer.accept_register(request)
    client.wait_registration("Ok")
    return request


def subscribe(client: LinphoneClient, peer: ScriptedPeer) -> SipMessage:
    for name, item in FRIENDS.items():
        client.add_friend(name, item)
    client.subscribe(RLS)
    return peer.expect("SUBSCRIBE")


def accept(peer: ScriptedPeer, subscribe: SipMessage, to_tag: str) -> None:
    contact = f"<sip:rls@{peer.host}:{peer.port};transport=udp>"
    peer.reply(subscribe, 200, "OK", [("Contact", contact), ("Expires", "3600")], to_tag=to_tag)


def entries(body: bytes) -> list[str]:
    root = ET.fromstring(body)
    return [e.get("uri", "") for e in root.iter(f"{RESOURCE_LISTS}entry")]


def assert_presences_applied(client: LinphoneClient) -> None:
    assert client.presence("+33612345678") == ("open", "sip:bob@example.org")
    assert client.presence_of("+33612345678").activity == "away"
    assert client.presence("sip:carol@example.org") == ("open", "sip:carol@example.org")
    for non_user in ("+33600000002", "0700000001", "sip:dave@example.org"):
        assert client.presence(non_user) == ("none", None)


def test_list_subscribe_matches_readme_and_notify_is_applied(linphone_client_factory, peer):
    client = linphone_client_factory()
    client.set_user_agent("LpclientHarness", "1.0")
    register(client, peer, challenge=True)
    sub = subscribe(client, peer)

    assert sub.request_uri == RLS
    assert sub.header("Event") == "presence"
    assert sub.header("Expires") == "3600"
    assert sub.header("Supported") == "eventlist"
    assert sub.header("Require") == "recipient-list-subscribe"
    assert sub.header("Content-Disposition") == "recipient-list"
    assert sub.header("Content-Type") == "application/resource-lists+xml"
    assert sub.header_all("Accept") == [
        "multipart/related",
        "application/pidf+xml",
        "application/rlmi+xml",
    ]
    assert sub.header("Accept-Encoding") == "deflate"
    assert sub.header("Content-Encoding") == "deflate"
    assert (sub.header("User-Agent") or "").startswith("LpclientHarness/1.0")
    assert f":{peer.port};transport=udp;lr" in (sub.header("Route") or "")
    assert int(sub.header("Content-Length") or -1) == len(sub.body)
    assert sub.body[:1] == b"\x78"  # a zlib stream (RFC 1950), not raw deflate
    assert entries(zlib.decompress(sub.body)) == ENTRIES

    tag = secrets.token_hex(4)
    accept(peer, sub, tag)
    client.wait_subscription("Active")
    mark = client.mark()
    peer.notify(sub, tag, (INTEROP / "sip" / "notify-accepted-plain.raw").read_bytes())
    received = client.wait_presence_received(after=mark)
    assert peer.expect("NOTIFY", status=200)
    assert {f["name"] for f in received["friends"]} == {"Bob", "Carol"}
    assert_presences_applied(client)
