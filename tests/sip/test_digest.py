"""Digest helpers: RFC 7616 vectors, stateless nonces, challenges and verification verdicts."""

from __future__ import annotations

import pytest

from sip_edge.sip import digest
from sip_edge.sip.digest import NonceStatus, Verdict
from sip_edge.sip.message import parse_credentials
from sip_edge.sip.parser import parse_datagram
from tests.conftest import INTEROP

# RFC 7616 3.9.1
MUFASA = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "uri": "/dir/index.html",
}
RFC7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}
KEY = b"0123456789abcdef0123456789abcdef"
REALM = "example.org"
NOW = 1_800_000_000.0


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_vectors(algorithm):
    m = MUFASA
    ha1 = digest.compute_ha1(m["username"], m["realm"], m["password"], algorithm)
    got = digest.compute_response(
        algorithm, ha1, "GET", m["uri"], m["nonce"], qop="auth", nc="00000001", cnonce=m["cnonce"]
    )
    assert got == RFC7616_RESPONSES[algorithm]


def test_rfc2617_vector_without_qop():
    # RFC 2617 3.5 with qop removed is RFC 2069: the same HA1/HA2, only nonce in between.
    ha1 = digest.compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert ha1 == "939e7578ed9e3c518a452acee763bce9"
    resp = digest.compute_response(
        "MD5", ha1, "GET", "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth", nc="00000001", cnonce="0a4f113b",
    )  # fmt: skip
    assert resp == "6629fae49393a05397450978507c4ef1"


def test_nonce_lifecycle():
    nonce = digest.make_nonce(KEY, REALM, NOW)
    assert digest.check_nonce(KEY, REALM, nonce, NOW + 10, 300) is NonceStatus.VALID
    assert digest.check_nonce(KEY, REALM, nonce, NOW + 301, 300) is NonceStatus.STALE
    assert digest.check_nonce(KEY, "other.org", nonce, NOW, 300) is NonceStatus.INVALID
    assert digest.check_nonce(b"another key", REALM, nonce, NOW, 300) is NonceStatus.INVALID
    assert digest.check_nonce(KEY, REALM, nonce, NOW - 60, 300) is NonceStatus.INVALID
    stamp, salt, mac = nonce.split(".")
    forged = f"{int(stamp, 16) + 1000:x}.{salt}.{mac}"
    assert digest.check_nonce(KEY, REALM, forged, NOW, 300) is NonceStatus.INVALID
    for junk in ("", "a.b", "XPMiJnPn648ibjbb", "zz.zz.zz", "é.é.é"):
        assert digest.check_nonce(KEY, REALM, junk, NOW, 300) is NonceStatus.INVALID


def test_nonce_compatible_with_chalicelib():
    chalice_digest = pytest.importorskip("chalicelib.digest")
    theirs = chalice_digest.Nonces(KEY.decode(), 300)
    assert digest.check_nonce(KEY, REALM, theirs.make(REALM, NOW), NOW, 300) is NonceStatus.VALID
    assert theirs.check(digest.make_nonce(KEY, REALM, NOW), REALM, NOW) == "ok"


def test_challenges_offer_sha256_first():
    values = digest.challenges(REALM, "n1", stale=True)
    assert len(values) == 2
    assert "algorithm=SHA-256" in values[0] and "algorithm=MD5" in values[1]
    for value in values:
        creds = parse_credentials(value)
        assert creds.is_digest
        assert creds.params["realm"] == REALM and creds.params["nonce"] == "n1"
        assert creds.params["qop"] == "auth" and creds.params["stale"] == "true"
    assert "stale" not in digest.challenges(REALM, "n1")[0]


def authorization(algorithm, password="secret", *, realm=REALM, nonce=None, uri="sip:rls@x"):
    nonce = nonce or digest.make_nonce(KEY, REALM, NOW)
    ha1 = digest.compute_ha1("alice", realm, password, algorithm)
    resp = digest.compute_response(
        algorithm, ha1, "SUBSCRIBE", uri, nonce, qop="auth", nc="00000001", cnonce="c0ffee"
    )
    return parse_credentials(
        f'Digest username="alice", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{resp}", algorithm={algorithm}, qop=auth, nc=00000001, cnonce="c0ffee"'
    )


def check(creds, algorithm, *, now=NOW, password="secret", **kw):
    ha1 = digest.compute_ha1("alice", REALM, password, algorithm)
    return digest.verify(
        creds, method="SUBSCRIBE", realm=REALM, ha1=ha1, key=KEY, now=now, max_age=300, **kw
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_verify_verdicts(algorithm):
    good = authorization(algorithm)
    assert check(good, algorithm) is Verdict.OK
    assert check(good, algorithm, now=NOW + 1000) is Verdict.STALE
    assert check(good, algorithm, password="wrong") is Verdict.WRONG_RESPONSE
    assert check(authorization(algorithm, "wrong"), algorithm) is Verdict.WRONG_RESPONSE
    # A wrong password never earns stale=true, even with an expired nonce.
    assert check(authorization(algorithm, "wrong"), algorithm, now=NOW + 1000) is (
        Verdict.WRONG_RESPONSE
    )
    assert check(authorization(algorithm, realm="evil.org"), algorithm) is Verdict.WRONG_REALM
    assert check(authorization(algorithm, nonce="XPMiJnPn648ibjbb"), algorithm) is (
        Verdict.BAD_NONCE
    )
    assert check(good, algorithm, request_uri="sip:rls@x") is Verdict.OK
    assert check(good, algorithm, request_uri="sip:other@x") is Verdict.WRONG_URI


def test_verify_rejects_what_we_do_not_offer():
    good = authorization("MD5")
    for name, value in (("algorithm", "SHA-512-256"), ("qop", "auth-int")):
        creds = parse_credentials(f"Digest {name}={value}")
        creds.params = {**good.params, name: value}
        assert check(creds, "MD5") is Verdict.UNSUPPORTED
    partial = parse_credentials('Digest username="alice", realm="example.org"')
    assert check(partial, "MD5") is Verdict.MALFORMED
    basic = parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    assert basic.token68 == "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert check(basic, "MD5") is Verdict.MALFORMED
    no_nc = parse_credentials("Digest x=1")
    no_nc.params = {k: v for k, v in good.params.items() if k != "nc"}
    assert check(no_nc, "MD5") is Verdict.MALFORMED


def test_md5_ha1_does_not_verify_sha256_credentials():
    creds = authorization("SHA-256")
    md5_ha1 = digest.compute_ha1("alice", REALM, "secret", "MD5")
    verdict = digest.verify(creds, method="SUBSCRIBE", realm=REALM, ha1=md5_ha1, key=KEY, now=NOW)
    assert verdict is Verdict.WRONG_RESPONSE


def test_linphone_capture_recomputes_from_its_own_fields():
    # The capture's password is unknown, so only the shape is checked: a 32-hex MD5 response
    # over qop=auth, which `compute_response` reproduces given the right HA1.
    msg = parse_datagram((INTEROP / "sip" / "subscribe-unsubscribe-tcp-digest.raw").read_bytes())
    (creds,) = msg.authorization(proxy=True)
    p = creds.params
    assert p["algorithm"] == "MD5" and p["qop"] == "auth" and len(p["response"]) == 32
    assert p["uri"] == msg.uri
    ha1 = digest.compute_ha1("alice", "example.org", "guess")
    assert (
        digest.compute_response(
            "MD5", ha1, msg.method, p["uri"], p["nonce"], qop="auth", nc=p["nc"], cnonce=p["cnonce"]
        )
        != p["response"]
    )
