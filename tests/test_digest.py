"""Digest math: RFC 7616 §3.9.1 vectors, stateless nonces, parameter parsing."""

from __future__ import annotations

import pytest

from chalicelib import digest
from chalicelib.accounts import phone

# RFC 7616 §3.9.1: user Mufasa, password "Circle of Life", realm http-auth@example.org.
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def _rfc7616(algorithm: str) -> str:
    h1 = digest.ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life")
    return digest.expected_response(
        algorithm, h1, "GET", "/dir/index.html", NONCE, qop="auth", nc="00000001", cnonce=CNONCE
    )


def test_rfc7616_vectors():
    assert _rfc7616("MD5") == "8ca523f5e9506fed4657c9700eebdbec"
    assert _rfc7616("SHA-256") == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_verify_and_parse():
    header = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm=SHA-256, nonce="{NONCE}", nc=00000001, cnonce="{CNONCE}", qop=auth, '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"'
    )
    params = digest.parse_params(header)
    assert params["username"] == "Mufasa" and params["qop"] == "auth"
    stored = digest.ha1_pair("Mufasa", "http-auth@example.org", "Circle of Life")
    by_alg = {"MD5": stored["ha1_md5"], "SHA-256": stored["ha1_sha256"]}
    assert digest.verify(params, "GET", by_alg)
    assert not digest.verify({**params, "response": "0" * 64}, "GET", by_alg)
    assert not digest.verify(params, "POST", by_alg)
    assert not digest.verify({**params, "algorithm": "SHA-512"}, "GET", by_alg)


def test_nonces_stale_and_forged():
    nonces = digest.Nonces("k", ttl=300)
    n = nonces.make("example.org", now=1000)
    assert nonces.check(n, "example.org", now=1100) == "ok"
    assert nonces.check(n, "example.org", now=1400) == "stale"
    assert nonces.check(n, "other.org", now=1100) == "invalid"
    assert digest.Nonces("other", 300).check(n, "example.org", now=1100) == "invalid"
    assert nonces.check("garbage", "example.org") == "invalid"
    # Bound to a source: checked from another one, it is not ours.
    bound = nonces.make("example.org", now=1000, bind="192.0.2.1")
    assert nonces.check(bound, "example.org", now=1100, bind="192.0.2.1") == "ok"
    assert nonces.check(bound, "example.org", now=1100, bind="192.0.2.2") == "invalid"
    assert nonces.check(bound, "example.org", now=1400, bind="192.0.2.1", ttl=600) == "ok"


def test_parse_rejects_other_schemes_and_garbage():
    assert digest.parse_params("Basic Zm9vOmJhcg==") == {}
    assert digest.parse_params('Digest username="a", ,,=') == {}


def test_rfc2617_vector():
    h1 = digest.ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    assert h1 == "939e7578ed9e3c518a452acee763bce9"
    got = digest.expected_response(
        "MD5", h1, "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth", nc="00000001", cnonce="0a4f113b",
    )  # fmt: skip
    assert got == "6629fae49393a05397450978507c4ef1"


def test_md5_ha1_never_checks_sha256_credentials():
    stored = digest.ha1_pair("alice", "example.org", "secret")
    nonce = "n"
    good = digest.expected_response(
        "SHA-256", stored["ha1_sha256"], "SUBSCRIBE", "sip:rls@example.org", nonce,
        qop="auth", nc="00000001", cnonce="c",
    )  # fmt: skip
    params = {"algorithm": "SHA-256", "uri": "sip:rls@example.org", "nonce": nonce,
              "response": good, "qop": "auth", "nc": "00000001", "cnonce": "c"}  # fmt: skip
    assert digest.verify(params, "SUBSCRIBE", {"SHA-256": stored["ha1_sha256"]})
    assert not digest.verify(params, "SUBSCRIBE", {"MD5": stored["ha1_md5"]})


def test_an_answer_without_qop_is_refused():
    """RFC 2069 answers carry no nonce count: nothing could tell a replayed one."""
    stored = digest.ha1_pair("alice", "example.org", "secret")
    good = digest.expected_response("MD5", stored["ha1_md5"], "REGISTER", "sip:example.org", "n")
    params = {"algorithm": "MD5", "uri": "sip:example.org", "nonce": "n", "response": good}
    assert not digest.verify(params, "REGISTER", {"MD5": stored["ha1_md5"]})


def test_linphone_capture_parses_as_digest_credentials():
    from sip_edge.sip.parser import parse_datagram
    from tests.conftest import INTEROP

    msg = parse_datagram((INTEROP / "sip" / "subscribe-unsubscribe-tcp-digest.raw").read_bytes())
    (creds,) = msg.authorization(proxy=True)
    p = creds.params
    assert p["algorithm"] == "MD5" and p["qop"] == "auth" and len(p["response"]) == 32
    assert p["uri"] == msg.uri and p["username"] == "alice"


def test_nonce_counts_refuse_a_replayed_count():
    counts = digest.NonceCounts(ttl=300, max_nonces=2)
    assert not counts.is_replay("n1", "00000001")
    counts.record("n1", "00000001", now=0)
    assert counts.is_replay("n1", "00000001")
    assert not counts.is_replay("n1", "00000002")
    assert counts.is_replay("n1", "zz")
    assert counts.is_replay("n1", None)  # RFC 2069 style: no count, nothing to check
    counts.record("n2", "00000001", now=1)
    counts.record("n3", "00000001", now=2)  # over the bound: the oldest is forgotten...
    # ...but the horizon moved past it: a nonce issued by then may have been seen, so a
    # forgotten one counts as a replay while still alive; one issued later does not.
    assert counts.is_replay("n1", "00000001", issued=0) and counts.horizon == 0
    assert not counts.is_replay("n9", "00000001", issued=1)
    counts.record("n4", "00000001", now=400)  # past the lifetime: older ones go too
    assert not counts.is_replay("n2", "00000001") and not counts.is_replay("n3", "00000001")


def test_one_parser_refuses_a_repeated_parameter_over_http_and_sip() -> None:
    from sip_edge.sip.status import ParseError
    from sip_edge.sip.values import parse_credentials

    header = 'Digest username="alice", username="bob", realm="example.org", nonce="n"'
    assert digest.parse_params(header) == {}  # HTTP: no credentials, so 401
    with pytest.raises(ParseError, match="repeated username"):  # SIP: 400
        parse_credentials(header)
    ok = 'Digest username="al\\"ice", realm=example.org, nc=00000001'
    assert (
        digest.parse_params(ok)
        == parse_credentials(ok).params
        == {
            "username": 'al"ice',
            "realm": "example.org",
            "nc": "00000001",
        }
    )


def test_keyed_hash_is_hmac_sha256_so_stored_values_never_change():
    # RFC 4231 test case 2; stored keys (phone index, codes, buckets) depend on this.
    jefe = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert digest.keyed_hash("Jefe", "what do ya want for nothing?") == jefe
    assert digest.keyed_hash("Jefe", b"what do ya want for nothing?", length=32) == jefe[:32]
    # The phone index key of a number under the development key, as stored before the helper.
    assert phone.phone_hash("+33612345678") == (
        "56f932626fd6eabf7a460525745c819929ee6c9297e8926e0dc8f3981dac68cc"
    )


def test_a_non_digest_scheme_keeps_its_token68() -> None:
    cred = digest.parse_credentials("Basic Zm9vOmJhcg==")
    assert not cred.is_digest and cred.token68 == "Zm9vOmJhcg==" and cred.params == {}
