"""Sign-up and recovery with a phone number: ask for an SMS code, confirm it into an account.

Callable without HTTP (the REST routes and the XML-RPC assistant API share it). Asking for a
code answers the same whether or not the number or the username has an account: nothing is
looked up before the code proves the number. Confirming it creates the account, or recovers
the account that already has the number: new credentials, and everything signed in with the
old ones (SIP dialogs, registrations) is ended through the live-update path.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from chalicelib import accounts, digest, settings
from chalicelib.accounts import phone, verification
from chalicelib.errors import DomainError
from chalicelib.observability import logger, metrics, pseudonym

#: The binding of codes asked by the Linphone assistant's recovery (recover_phone_account):
#: such a code recovers the number's account, it never creates one.
RECOVER = "recover"

Make = Callable[[str], accounts.Credentials]


@dataclass(frozen=True)
class SignupResult:
    username: str
    sip_uri: str
    phone: str
    recovered: bool
    #: On recovery: the old password stopped working, and the SIP dialogs and registrations
    #: made with it are being ended.
    credentials_replaced: bool = False
    sessions_ended: bool = False

    @property
    def http_status(self) -> int:
        return 200 if self.recovered else 201

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _region(default_region: object) -> str | None:
    return None if default_region is None else phone.valid_region(default_region)


def assistant_binding(algorithm: str) -> str:
    """What a code asked by the assistant's create_phone_account is bound to: the algorithm
    its activation must name."""
    return f"xmlrpc:{algorithm}"


def request_code(
    phone_raw: object,
    *,
    username: object = None,
    default_region: object = None,
    source_ip: str = "unknown",
    payload: dict[str, str] | None = None,
    owner: str | None = None,
    binding: str = "",
) -> int:
    """Send a sign-up code to the number; answer the code's lifetime in seconds.

    `username` (optional) is the account's username if the confirm creates one; whether it
    is free is only told once the code is proven (409 at confirm). Without it the username
    is the E.164 number. `owner` names the requester (default: what it asked for); a pending
    code of another owner is not replaced (429). Raises 400 (number, username, region),
    403 (country, number type), 429 (a limit, with Retry-After) or 503 (SMS not sent)."""
    e164 = phone.parse(phone_raw, _region(default_region))
    wanted = None if username is None else accounts.validate_username(username)
    return verification.send(
        verification.SIGNUP,
        e164,
        e164,
        wanted,
        source_ip=source_ip,
        payload=payload,
        owner=owner or f"rest|{wanted or ''}",
        binding=binding,
    )


def _fingerprint(password: object, ha1: object, algorithm: object) -> str:
    # Independent of the username, which is only known once the code is used.
    if password is not None:
        material = "password:" + str(password)
    else:
        material = f"ha1:{str(algorithm).upper()}:{str(ha1).lower()}"
    return digest.keyed_hash(settings.get().code_hash_key, material)


def _maker(password: object, ha1: object, algorithm: object) -> Make:
    if password is not None:
        return lambda username: accounts.credentials_from_password(username, password)
    return lambda username: accounts.credentials_from_ha1(ha1, algorithm)


def confirm(
    phone_raw: object,
    code: object,
    *,
    password: object = None,
    ha1: object = None,
    algorithm: object = "MD5",
    default_region: object = None,
) -> SignupResult:
    """Prove the number with its code and get an account with these credentials (REST).

    Give `password`, or `ha1` = H(username:domain:password) in `algorithm`. A new account
    answers `recovered=False` (HTTP 201); if the number already has an account, its
    credentials are replaced, its sessions ended, and it answers `recovered=True` (HTTP 200).
    A retry with the same code and credentials answers the same. Raises the codes of
    `verification.consume`, `username_taken` (409: the requested name is not free),
    `account_disabled` (403) and 400 for bad input."""
    e164 = phone.parse(phone_raw, _region(default_region))
    if (password is None) == (ha1 is None):
        raise DomainError("invalid_field", "give either password or ha1")
    make = _maker(password, ha1, algorithm)
    # Validate the credentials before using the code, so a typo does not burn it.
    make("x")
    claim = verification.consume(
        verification.SIGNUP,
        e164,
        code,
        e164=e164,
        fingerprint=_fingerprint(password, ha1, algorithm),
    )
    if claim.replay is not None:
        return _replayed(claim.replay)
    return _finish(claim, e164, lambda: _create_or_recover(e164, claim.subject, make))


def _replayed(answer: dict[str, Any]) -> SignupResult:
    """The answer a code's first use gave, for a retry of the same request."""
    if "error" in answer:
        raise DomainError(answer["error"]["code"], answer["error"]["message"])
    return SignupResult(**answer)


def _finish(claim: verification.Claim, e164: str, work: Callable[[], SignupResult]) -> SignupResult:
    try:
        result = work()
    except DomainError as exc:
        if exc.code in {"username_taken", "account_disabled", "phone_taken", "not_found"}:
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


def confirm_assistant(
    phone_raw: object, code: object, *, username: str | None, algorithm: str
) -> tuple[SignupResult, str]:
    """The Linphone assistant's activate_phone_account: prove the code asked by
    create_phone_account and answer the result and the HA1 (in `algorithm`) the app stores.

    The username and algorithm are checked as part of the code (a wrong one is a wrong code).
    The credentials are the HA1 the app gave when it asked (then deleted from the code), else
    a random password made now. If the number already has an account of that username, it is
    recovered with these credentials; of another username: 409 `phone_taken`. A used code is
    gone: answering again would hand the HA1 to whoever guesses a code that counts no tries."""
    e164 = phone.parse(phone_raw)
    claim = verification.consume(
        verification.SIGNUP,
        e164,
        code,
        e164=e164,
        subject=username,
        binding=assistant_binding(algorithm),
        fingerprint="assistant",
        replay=False,
    )
    given = (claim.payload or {}).get("ha1")
    final_username = claim.subject or e164
    if given:
        credentials = accounts.credentials_from_ha1(given, algorithm)
        ha1 = given
    else:
        password = secrets.token_urlsafe(24)
        credentials = accounts.credentials_from_password(final_username, password)
        ha1 = digest.ha1(algorithm, final_username, accounts.domain(), password)

    def work() -> SignupResult:
        return _create_or_recover(
            e164, claim.subject, lambda _username: credentials, same_username_only=True
        )

    return _finish(claim, e164, work), ha1


def recover_assistant(e164: str, code: object, *, algorithm: str) -> tuple[SignupResult, str]:
    """The assistant's recover_account_from_confirmation_key: prove the code that
    recover_phone_account sent, give the number's account new credentials (a random password;
    never its existing HA1) and answer them as an HA1 of `algorithm`. Its old sessions end.
    Raises the codes of `verification.consume`, then (the number proven) 404 `not_found` or
    403 `account_disabled`."""
    claim = verification.consume(
        verification.SIGNUP,
        e164,
        code,
        e164=e164,
        subject=None,
        binding=RECOVER,
        fingerprint="recover",
        replay=False,
    )
    password = secrets.token_urlsafe(24)
    chosen: dict[str, str] = {}

    def work() -> SignupResult:
        account = accounts.find_by_phone(e164)
        if account is None:
            raise DomainError("not_found", "no account has this number")
        chosen["username"] = account.username
        return _recover(account, accounts.credentials_from_password(account.username, password))

    result = _finish(claim, e164, work)
    return result, digest.ha1(algorithm, chosen["username"], accounts.domain(), password)


def recover(
    phone_raw: object, code: object, *, password: object, default_region: object = None
) -> SignupResult:
    """A forgotten password (the web page's recovery): prove the number with the code asked
    with `binding=RECOVER` and give the number's account `password`; never creates an
    account. Its sessions made with the old password end. A retry with the same code and
    password answers the same. Raises the codes of `verification.consume`, then (the number
    proven) 404 `not_found` or 403 `account_disabled`, and 400 for bad input."""
    e164 = phone.parse(phone_raw, _region(default_region))
    accounts.validate_password(password)  # before the code is used: a typo does not burn it
    claim = verification.consume(
        verification.SIGNUP,
        e164,
        code,
        e164=e164,
        subject=None,
        binding=RECOVER,
        fingerprint=_fingerprint(password, None, None),
    )
    if claim.replay is not None:
        return _replayed(claim.replay)

    def work() -> SignupResult:
        account = accounts.find_by_phone(e164)
        if account is None:
            raise DomainError("not_found", "no account has this number")
        return _recover(account, accounts.credentials_from_password(account.username, password))

    return _finish(claim, e164, work)


def _create_or_recover(
    e164: str, wanted: str | None, make: Make, same_username_only: bool = False
) -> SignupResult:
    for _ in range(3):
        existing = accounts.find_by_phone(e164)
        if existing is not None:
            if same_username_only and existing.aor != accounts.aor_for(wanted or e164):
                raise DomainError("phone_taken", "phone: already linked to another account")
            return _recover(existing, make(existing.username))
        username = wanted or e164
        try:
            account = accounts.create(username, make(username), phone_e164=e164)
        except DomainError as exc:
            if exc.code == "phone_taken":
                continue  # linked meanwhile by another request: recover that account instead
            raise
        metrics.add_metric(name="Signups", unit=MetricUnit.Count, value=1)
        logger.info("account created", extra={"aor": pseudonym(account.aor)})
        return SignupResult(account.username, account.sip_uri, e164, recovered=False)
    raise DomainError("conflict", "the number changed during sign-up; try again")


def _recover(account: accounts.Account, credentials: accounts.Credentials) -> SignupResult:
    if account.disabled:
        raise DomainError("account_disabled", "the account of this number is disabled")
    # New credentials and the end of every session made with the old ones, in one write: the
    # stream of that write is what ends the SIP dialogs and registrations.
    account = accounts.update(account.aor, credentials=credentials, revoke=True)
    metrics.add_metric(name="Recoveries", unit=MetricUnit.Count, value=1)
    logger.info("account recovered", extra={"aor": pseudonym(account.aor)})
    return SignupResult(
        account.username,
        account.sip_uri,
        account.phone or "",
        recovered=True,
        credentials_replaced=True,
        sessions_ended=True,
    )
