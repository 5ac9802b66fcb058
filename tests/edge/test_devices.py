"""An account's devices (`chalicelib.live.devices`): its REGISTER bindings and list
subscriptions through the real edge, merged per device with their User-Agents, and signing one
out (its binding deleted, its subscription ended with a final NOTIFY)."""

from __future__ import annotations

from chalicelib import clock
from chalicelib.live import devices, registrar
from testkit.sip_client import SipClient
from testkit.wait import wait_until
from tests.edge.conftest import DOMAIN, PASSWORD, make_account
from tests.edge.test_edge_subscribe import ENTRIES, subscribe

ALICE = f"alice@{DOMAIN}"
PIXEL = "LinphoneAndroid/6.0.1 (Pixel 8) LinphoneSDK/5.4.30 (tags/5.4.30^0)"
INSTANCE = '"<urn:uuid:0b1e4e0a-3c3e-4c7a-9d2c-6f1b1f0e2a11>"'


def register(client: SipClient, agent: str) -> int:
    headers = [("Expires", "600"), ("User-Agent", agent)]
    client.request("REGISTER", f"sip:{DOMAIN}", from_uri=f"sip:{ALICE}", headers=headers)
    challenge = client.response("REGISTER")
    client.authorized("REGISTER", f"sip:{DOMAIN}", challenge, username="alice",
                      password=PASSWORD, from_uri=f"sip:{ALICE}", headers=headers)  # fmt: skip
    return client.response("REGISTER").status


def test_a_phone_that_registers_and_subscribes_is_one_device(edge, client):
    make_account("alice", "+33611111111")
    make_account("bob", "+33612345678")
    assert register(client, PIXEL) == 200
    ok = subscribe(client, ENTRIES, extra=[("User-Agent", PIXEL)])
    assert ok.status == 200
    assert client.notify() is not None

    (device,) = devices.of_account(ALICE)
    assert (device.user_agent, device.name) == (PIXEL, "Pixel 8")
    assert (device.registered, device.subscriptions) == (True, 1)
    assert device.uuid.startswith("contact-")  # no +sip.instance: the Contact URI's digest
    assert abs(device.update_time - clock.now()) < 5
    shown = device.to_json()
    assert shown["update_time"].endswith("Z") and shown["user_agent"] == PIXEL
    assert devices.of_account(f"bob@{DOMAIN}") == []


def test_signing_a_device_out_ends_its_binding_and_its_subscription(edge, client):
    make_account("alice", "+33611111111")
    make_account("bob", "+33612345678")
    assert register(client, PIXEL) == 200
    assert subscribe(client, ENTRIES, extra=[("User-Agent", PIXEL)]).status == 200
    assert client.notify() is not None
    (device,) = devices.of_account(ALICE)

    assert devices.sign_out(f"bob@{DOMAIN}", device.uuid) is False  # not bob's
    assert devices.sign_out(ALICE, "urn:uuid:not-a-device") is False
    assert registrar.bindings(ALICE)

    assert devices.sign_out(ALICE, device.uuid) is True
    assert registrar.bindings(ALICE) == []
    final = client.notify(timeout=10)  # the edge reads its queue, then ends the dialog
    assert final is not None
    assert final.headers.get("Subscription-State") == "terminated;reason=rejected"
    assert wait_until(lambda: devices.of_account(ALICE) == [], 5)


def test_devices_are_named_by_their_instance_and_merged_across_bindings(aws):
    make_account("alice", "+33611111111")
    for n, (agent, uri) in enumerate(
        [("LinphoneiOS/6.0 (iPhone 15) LinphoneSDK/5.4", "sip:alice@192.0.2.7:5060"),
         ("LinphoneiOS/6.0.1 (iPhone 15) LinphoneSDK/5.4", "sip:alice@192.0.2.8:5060")]
    ):  # fmt: skip
        registrar.register(
            ALICE,
            [registrar.ContactRequest(uri=uri, instance=INSTANCE)],
            call_id="c1",
            cseq=n + 1,
            expires_header=600,
            user_agent=agent,
        )
    (device,) = devices.of_account(ALICE)
    assert device.uuid == "urn:uuid:0b1e4e0a-3c3e-4c7a-9d2c-6f1b1f0e2a11"
    assert device.user_agent == "LinphoneiOS/6.0.1 (iPhone 15) LinphoneSDK/5.4"
    assert device.name == "iPhone 15"
    long_agent = "x" * 5000
    registrar.register(
        ALICE,
        [registrar.ContactRequest(uri="sip:alice@192.0.2.9:5060")],
        call_id="c2",
        cseq=1,
        expires_header=600,
        user_agent=long_agent,
    )
    assert max(len(d.user_agent) for d in devices.of_account(ALICE)) == 256
    assert devices.sign_out(ALICE, device.uuid) is True
    assert [d.uuid for d in devices.of_account(ALICE)] != [device.uuid]
    assert all(d.uuid != device.uuid for d in devices.of_account(ALICE))


def test_device_ids_are_the_instance_or_a_digest():
    assert devices.device_id('"<urn:uuid:abc-1>"') == "urn:uuid:abc-1"
    assert devices.device_id("<urn:uuid:abc-1>") == "urn:uuid:abc-1"
    contact = devices.device_id("sip:alice@192.0.2.7:5060")
    assert contact.startswith("contact-") and "192.0.2.7" not in contact
    assert devices.device_id("sip:alice@192.0.2.7:5060") == contact
