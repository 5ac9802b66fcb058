"""Digest math: RFC 7616 §3.9.1 vectors, stateless nonces, parameter parsing."""

from __future__ import annotations

from chalicelib import digest

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


def test_parse_rejects_other_schemes_and_garbage():
    assert digest.parse_params("Basic Zm9vOmJhcg==") == {}
    assert digest.parse_params('Digest username="a", ,,=') == {}
