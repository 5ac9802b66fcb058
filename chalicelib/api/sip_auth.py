"""SIP digest verification for the edge (RFC 3261 §22, RFC 8760): HA1s never leave the functions.

The edge checks its own stateless nonce; this module checks the response against the account's
stored HA1 and says which account it proves, behind the password-guessing limits
(`accounts.auth_guard`) keyed by the source address the edge saw.
"""

from __future__ import annotations

from chalicelib import accounts, digest, settings
from chalicelib.accounts import auth_guard
from chalicelib.edge_contract import ErrorAnswer, SipAuthAnswer
from chalicelib.errors import DomainError
from chalicelib.observability import flush_metrics


def verify(
    method: str,
    realm: str,
    params: dict[str, str],
    *,
    source: str | None = None,
    instance: str | None = None,
) -> SipAuthAnswer | ErrorAnswer:
    """Answer {"result": "ok", "aor"} or {"result": "forbidden", "reason"}, or the error
    `auth_blocked` (the edge answers 403 with its Retry-After) without checking anything."""
    username = params.get("username", "")
    if not username or params.get("realm") != realm:
        return {"result": "forbidden", "reason": "wrong realm or no username"}
    if source in settings.get().sip_trusted_proxies:
        source = None  # a proxy speaks for many clients: count the account only
    aor = f"{username}@{realm}"

    def check() -> accounts.Account | None:
        account = accounts.get(aor)
        if account is None or account.disabled:
            return None  # counted like a wrong password: unknown names look the same
        return account if digest.verify(params, method, account.ha1s()) else None

    try:
        account = auth_guard.guarded(auth_guard.Attempt(aor, source, instance), check)
    except DomainError as exc:
        return exc.to_function_answer()
    finally:
        flush_metrics()
    if account is None:
        return {"result": "forbidden", "reason": "wrong credentials"}
    if not account.activated:
        # Told only to whoever has the password: no phone number proven yet.
        return {"result": "forbidden", "reason": "account not activated"}
    return {"result": "ok", "aor": account.aor}
