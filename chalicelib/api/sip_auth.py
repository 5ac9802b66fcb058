"""SIP digest verification for the edge (RFC 3261 §22, RFC 8760): HA1s never leave the functions.

The edge checks its own stateless nonce; this module checks the response against the account's
stored HA1 and says which account it proves.
"""

from __future__ import annotations

from typing import Any

from chalicelib import accounts, digest


def verify(method: str, realm: str, params: dict[str, str]) -> dict[str, Any]:
    """Answer {"result": "ok", "aor"} or {"result": "forbidden", "reason"}."""
    username = params.get("username", "")
    if not username or params.get("realm") != realm:
        return {"result": "forbidden", "reason": "wrong realm or no username"}
    account = accounts.get(f"{username}@{realm}")
    if account is None or account.disabled:
        return {"result": "forbidden", "reason": "unknown or disabled account"}
    if not digest.verify(params, method, account.ha1s()):
        return {"result": "forbidden", "reason": "wrong credentials"}
    return {"result": "ok", "aor": account.aor}
