"""Whatever JSON (or bytes) a client sends to the account routes, the answer is never a 500."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.accounts_support import basic, sign_up

ROUTES = [
    ("POST", "/v1/signup/phone", False),
    ("POST", "/v1/signup/phone/confirm", False),
    ("PATCH", "/v1/accounts/me", True),
    ("POST", "/v1/accounts/me/phone", True),
    ("POST", "/v1/accounts/me/phone/confirm", True),
    ("POST", "/v1/contacts/discover", True),
]
FIELDS = ["phone", "username", "default_region", "code", "password", "discoverable", "phones"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["+33612345678", "0612345678", "FR", "1234", "correct horse", "ZZ"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=4).map(json.dumps),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    values.map(json.dumps),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_no_input_gives_a_500(api, route, body):
    method, path, authenticated = route
    if not getattr(api, "_fuzz_user", False):
        sign_up(api, "+33698765432", "fuzz")
        api._fuzz_user = True
    headers = {"Content-Type": "application/json", **(basic("fuzz") if authenticated else {})}
    r = api.http.request(method, path, headers=headers, body=body.encode("utf-8"))
    # 401: a fuzzed PATCH may have changed the password of the fuzz account.
    assert r.status_code in {200, 201, 202, 400, 401, 403, 404, 409, 410, 413, 429}, r.body
    if r.status_code >= 400:
        assert set(r.json_body["error"]) == {"code", "message"}
