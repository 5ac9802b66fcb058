"""Hostile header parameters on REGISTER, SUBSCRIBE and PUBLISH, over real UDP: every malformed
value gets a 4xx with a reason (never a 500) and the edge keeps answering."""

from __future__ import annotations

import random

import pytest

from testkit.sip_client import SipClient
from tests.edge.conftest import DOMAIN, EdgeThread
from tests.edge.test_edge_subscribe import LIST_HEADERS, RLS, resource_list

ALICE = f"sip:alice@{DOMAIN}"
BAD_VALUES = ["abc", "", "-1", "1.5", "0x10", "99999999999999999999999", "%00", '"5"', "1e3"]


@pytest.fixture
def trusted_edge(aws, alice):
    # Behind a trusted proxy the digest step is skipped: every request reaches its handler.
    edge = EdgeThread(sip_trusted_proxies=("127.0.0.1",))
    yield edge
    edge.stop()


def _answer(c: SipClient, method: str, **kwargs) -> int:
    c.request(method, kwargs.pop("uri", f"sip:{DOMAIN}"), from_uri=ALICE, **kwargs)
    r = c.response(method)
    if r is None and c.unparseable:
        # A 400 that echoes the broken header back fails our own strict parser: read its status.
        raw = c.unparseable.pop()
        assert raw.startswith(b"SIP/2.0 "), raw[:40]
        return int(raw[8:11])
    assert r is not None, f"no answer to {method} {kwargs}"
    return r.status


def test_register_contact_expires_not_a_number_is_400(trusted_edge):
    c = SipClient(trusted_edge.address)
    contact = f"<sip:x@127.0.0.1:{c.port}>;expires=abc"
    c.request("REGISTER", f"sip:{DOMAIN}", from_uri=ALICE, headers=[("Contact", contact)])
    r = c.response("REGISTER")
    assert r.status == 400, r.status
    assert "expires" in (r.reason + (r.headers.get("Warning") or "")).lower()
    c.close()


def test_fuzzed_header_parameters_never_get_a_500(trusted_edge):
    rng = random.Random(12)
    c = SipClient(trusted_edge.address)
    here = f"sip:x@127.0.0.1:{c.port}"
    cases: list[tuple[str, dict]] = []
    for bad in BAD_VALUES:
        cases += [
            ("REGISTER", {"headers": [("Contact", f"<{here}>;expires={bad}")]}),
            ("REGISTER", {"headers": [("Contact", f"<{here}>;q={bad}"), ("Expires", bad)]}),
            ("REGISTER", {"headers": [("Contact", f"<{here}>;+sip.instance={bad};reg-id={bad}")]}),
            ("SUBSCRIBE", {"uri": RLS, "to": f"<{RLS}>", "body": resource_list([ALICE]),
                           "headers": [*LIST_HEADERS[:-1], ("Expires", bad)]}),
            ("SUBSCRIBE", {"uri": RLS, "to": f"<{RLS}>;tag={bad}",
                           "headers": [("Event", f"presence;id={bad}")]}),
            ("SUBSCRIBE", {"uri": ALICE, "headers": [("Event", f"presence;{bad}={bad}"),
                                                     ("Accept", f"application/pidf+xml;q={bad}")]}),
            ("PUBLISH", {"uri": ALICE, "headers": [("Event", f"presence;id={bad}"),
                                                   ("Expires", bad)]}),
            ("PUBLISH", {"uri": ALICE, "headers": [("Event", "presence"),
                                                   ("SIP-If-Match", bad)]}),
        ]  # fmt: skip
    rng.shuffle(cases)
    statuses = {}
    for method, kwargs in cases:
        status = _answer(c, method, **kwargs)
        statuses[(method, repr(kwargs))] = status
        assert status < 500, (method, kwargs, status)
    assert any(s == 400 for s in statuses.values())
    c.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    assert c.response("OPTIONS").status == 200
    c.close()
