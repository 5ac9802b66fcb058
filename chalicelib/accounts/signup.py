"""Sign-up and recovery with a phone number: ask for an SMS code, confirm it into an account.

Callable without HTTP (the REST routes and the XML-RPC assistant API share it). Asking for a
code answers the same whether or not the number has an account; confirming it creates the
account, or signs in to the account that already has the number (recovery: new credentials).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from chalicelib import accounts, digest, settings
from chalicelib.accounts import phone, verification
from chalicelib.errors import DomainError
from chalicelib.observability import logger, metrics


@dataclass(frozen=True)
class SignupResult:
    username: str
    sip_uri: str
    phone: str
    recovered: bool

    @property
    def http_status(self) -> int:
        return 200 if self.recovered else 201

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _region(default_region: object) -> str | None:
    return None if default_region is None else phone.valid_region(default_region)


def request_code(
    phone_raw: object,
    *,
    username: object = None,
    default_region: object = None,
    source_ip: str = "unknown",
    payload: dict[str, str] | None = None,
) -> int:
    """Send a sign-up code to the number; answer the code's lifetime in seconds.

    `username` (optional) is the account's username if the confirm creates one; it is checked
    now (409 `username_taken`) and again, atomically, at confirm. Without it the username is
    the E.164 number. `payload` is kept with the code (`verification.send`). Raises 400
    (number, username, region), 403 (country not allowed), 409, 429 (a limit, with
    Retry-After) or 503 (SMS not sent)."""
    e164 = phone.parse(phone_raw, _region(default_region))
    wanted = None if username is None else accounts.validate_username(username)
    if wanted is not None and accounts.get_by_username(wanted) is not None:
        raise DomainError(
            "username_taken",
            f"username: {wanted} is taken (to recover your own account, ask without a username)",
        )
    return verification.send(
        verification.SIGNUP, e164, e164, wanted, source_ip=source_ip, payload=payload
    )


def _fingerprint(password: object, ha1: object, algorithm: object) -> str:
    # Independent of the username, which is only known once the code is used.
    if password is not None:
        material = "password:" + str(password)
    else:
        material = f"ha1:{str(algorithm).upper()}:{str(ha1).lower()}"
    return digest.keyed_hash(settings.get().code_hash_key, material)


def _credentials(
    username: str, password: object, ha1: object, algorithm: object
) -> accounts.Credentials:
    if password is not None:
        return accounts.credentials_from_password(username, password)
    return accounts.credentials_from_ha1(ha1, algorithm)


def confirm(
    phone_raw: object,
    code: object,
    *,
    password: object = None,
    ha1: object = None,
    algorithm: object = "MD5",
    default_region: object = None,
    same_username_only: bool = False,
) -> SignupResult:
    """Prove the number with its code and get an account with these credentials.

    Give `password`, or `ha1` = H(username:domain:password) in `algorithm` (MD5 or SHA-256,
    what the Linphone assistant sends; the account then has only that HA1 until the password
    is seen). A new account answers `recovered=False` (HTTP 201); if the number already has an
    account, its credentials are replaced and it answers `recovered=True` (HTTP 200) — unless
    `same_username_only` and that account has another username than the one the code was asked
    for: then 409 `phone_taken` (an HA1 is only valid for the username it was made with). A retry
    with the same code and credentials answers the same. Raises the codes of
    `verification.consume`, `username_taken` (409: the requested name went meanwhile),
    `account_disabled` (403) and 400 for bad input."""
    e164 = phone.parse(phone_raw, _region(default_region))
    if (password is None) == (ha1 is None):
        raise DomainError("invalid_field", "give either password or ha1")
    # Validate the credentials before using the code, so a typo does not burn it.
    _credentials("x", password, ha1, algorithm)
    claim = verification.consume(
        verification.SIGNUP,
        e164,
        code,
        e164=e164,
        fingerprint=_fingerprint(password, ha1, algorithm),
    )
    if claim.replay is not None:
        if "error" in claim.replay:
            raise DomainError(claim.replay["error"]["code"], claim.replay["error"]["message"])
        return SignupResult(**claim.replay)
    try:
        result = _create_or_recover(
            e164, claim.subject, password, ha1, algorithm, same_username_only
        )
    except DomainError as exc:
        if exc.code in {"username_taken", "account_disabled", "phone_taken"}:
            # Final for this code (it is bound to that username): a retry gets the same answer.
            verification.complete(claim, exc.to_json())
        else:
            verification.release(claim)
        raise
    except Exception:
        verification.release(claim)
        raise
    verification.complete(claim, result.to_json())
    return result


def _create_or_recover(
    e164: str,
    wanted: str | None,
    password: object,
    ha1: object,
    algorithm: object,
    same_username_only: bool = False,
) -> SignupResult:
    for _ in range(3):
        existing = accounts.find_by_phone(e164)
        if existing is not None:
            if same_username_only and existing.username != (wanted or e164):
                raise DomainError("phone_taken", "phone: already linked to another account")
            return _recover(existing, password, ha1, algorithm)
        username = wanted or e164
        try:
            account = accounts.create(
                username, _credentials(username, password, ha1, algorithm), phone_e164=e164
            )
        except DomainError as exc:
            if exc.code == "phone_taken":
                continue  # linked meanwhile by another request: recover that account instead
            raise
        metrics.add_metric(name="Signups", unit=MetricUnit.Count, value=1)
        logger.info("account created", extra={"phone": phone.mask(e164), "aor": account.aor})
        return SignupResult(account.username, account.sip_uri, e164, recovered=False)
    raise DomainError("conflict", "the number changed during sign-up; try again")


def _recover(
    account: accounts.Account, password: object, ha1: object, algorithm: object
) -> SignupResult:
    if account.disabled:
        raise DomainError("account_disabled", "the account of this number is disabled")
    credentials = _credentials(account.username, password, ha1, algorithm)
    account = accounts.update(account.aor, credentials=credentials)
    metrics.add_metric(name="Recoveries", unit=MetricUnit.Count, value=1)
    logger.info(
        "account recovered", extra={"phone": phone.mask(account.phone or ""), "aor": account.aor}
    )
    return SignupResult(account.username, account.sip_uri, account.phone or "", recovered=True)


def prove_number(phone_raw: object, code: object) -> accounts.Account:
    """Prove the number with its pending sign-up code and answer its account, unchanged.

    The Linphone assistant's recovery reads the account's HA1 instead of setting new
    credentials. A used code is refused (410 `code_expired`), even with the right digits:
    answering again would let anyone brute-force a used code, which counts no tries. Raises
    the codes of `verification.consume`, 404 `not_found` (no account has the number; the code
    stays usable) and 403 `account_disabled`."""
    e164 = phone.parse(phone_raw)
    fingerprint = digest.keyed_hash(settings.get().code_hash_key, "prove-number")
    claim = verification.consume(
        verification.SIGNUP, e164, code, e164=e164, fingerprint=fingerprint
    )
    if claim.replay is not None:
        raise DomainError("code_expired", "the code was already used: request a new one")
    account = accounts.find_by_phone(e164)
    if account is None:
        verification.release(claim)
        raise DomainError("not_found", "no account has this number")
    if account.disabled:
        verification.complete(claim, {"aor": account.aor})
        raise DomainError("account_disabled", "the account of this number is disabled")
    verification.complete(claim, {"aor": account.aor})
    logger.info("number proven", extra={"phone": phone.mask(e164), "aor": account.aor})
    return account
