"""A retried invocation of one SIP request runs its function once (powertools idempotency)."""

from __future__ import annotations

import app


def _register(cseq: int) -> dict:
    return {
        "op": "register", "aor": "alice@example.org", "call_id": "c1", "cseq": cseq,
        "contacts": [{"uri": "sip:alice@192.0.2.1:5060"}], "expires_header": 600,
    }  # fmt: skip


def test_a_retried_register_answers_the_same(aws):
    first = app.sip_registrar(_register(1), None)
    assert first["bindings"][0]["uri"] == "sip:alice@192.0.2.1:5060"
    # Without idempotency the same CSeq again would be "out of order" (a SIP 500).
    again = app.sip_registrar(_register(1), None)
    assert again == first
    assert "error" in app.sip_registrar(_register(1) | {"call_id": "c1", "cseq": 0}, None)


def test_a_retried_publish_keeps_one_entity_tag(aws):
    import base64

    pidf = (
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.org">'
        "<tuple id='t'><status><basic>open</basic></status></tuple></presence>"
    )
    payload = {"op": "publish", "aor": "alice@example.org", "call_id": "p1", "cseq": 7,
               "expires": 600, "body_b64": base64.b64encode(pidf.encode()).decode()}  # fmt: skip
    first = app.sip_publish(payload, None)
    assert app.sip_publish(payload, None) == first
    from chalicelib import tables

    items = tables.table(tables.PUBLICATIONS).scan()["Items"]
    assert [i["etag"] for i in items] == [first["etag"]]
