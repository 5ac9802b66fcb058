"""SIP digest verification for the edge (RFC 3261 §22, RFC 8760): HA1s never leave the functions.

The edge checks its own stateless nonce; this module checks the response against the account's
stored HA1 and says which account it proves.
"""

from __future__ import annotations

from typing import Any

from chalicelib import digest, tables


def verify(method: str, realm: str, params: dict[str, str]) -> dict[str, Any]:
    """Answer {"result": "ok", "aor"} or {"result": "forbidden", "reason"}."""
    username = params.get("username", "")
    if not username or params.get("realm") != realm:
        return {"result": "forbidden", "reason": "wrong realm or no username"}
    aor = f"{username}@{realm}"
    item = tables.table(tables.ACCOUNTS).get_item(Key={"aor": aor}).get("Item")
    if not item or item.get("disabled"):
        return {"result": "forbidden", "reason": "unknown or disabled account"}
    ha1s = {"MD5": item.get("ha1_md5", ""), "SHA-256": item.get("ha1_sha256", "")}
    if not digest.verify(params, method, {k: v for k, v in ha1s.items() if v}):
        return {"result": "forbidden", "reason": "wrong credentials"}
    return {"result": "ok", "aor": aor}
