"""Linking a phone number to an existing account (proven by an SMS code), and unlinking it.

A number linked to another account moves to this one: the code proves ownership of it.
Callable without HTTP (the REST routes and the XML-RPC assistant API share it).
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from chalicelib import accounts
from chalicelib.accounts import phone, verification
from chalicelib.errors import DomainError
from chalicelib.observability import logger, metrics, pseudonym


def _subject(account: accounts.Account) -> str:
    # The creation time too: a code asked by a deleted account cannot serve a new one that
    # reuses its username.
    return f"{account.aor}#{account.created_at}"


def request(
    account: accounts.Account,
    phone_raw: object,
    *,
    default_region: object = None,
    source_ip: str = "unknown",
) -> int:
    """Send a code to the number to link it to `account` (signed in); answer its lifetime.

    The region of national numbers is `default_region`, else the account's own number's.
    Link SMS come from budgets of their own (per number, per account), so they never use up
    the number's recovery SMS. Raises 400, 403 (country, number type), 409
    `phone_already_linked` (already this account's), 429, 503."""
    region = (
        phone.valid_region(default_region)
        if default_region is not None
        else (phone.region_of(account.phone) if account.phone else None)
    )
    e164 = phone.parse(phone_raw, region)
    if account.phone == e164:
        raise DomainError("phone_already_linked", "phone: already linked to this account")
    return verification.send(
        verification.LINK,
        account.aor,
        e164,
        _subject(account),
        source_ip=source_ip,
        owner="account",
        authenticated=True,
        account=account.aor,
    )


def request_unauthenticated(username: str, phone_raw: object, *, source_ip: str) -> int:
    """A link request that names an account without proving it (the Linphone assistant's
    link_phone_number_with_account). It answers and costs the same whether the account
    exists or not, and whether the number is already its own: the limits (per source, per
    number, per named account) are spent the same and a pending code is recorded the same,
    but the SMS goes out only for an enabled account that the number is not linked to yet.
    It cannot replace a pending link code asked for another number, nor spend the number's
    recovery SMS. The activation needs the account's HA1."""
    e164 = phone.parse(phone_raw)
    accounts.validate_username(username, legacy=True)
    aor = accounts.aor_for(username)
    account = accounts.get(aor)
    real = account is not None and not account.disabled and account.phone != e164
    subject = _subject(account) if real and account is not None else f"{aor}#none"
    return verification.send(
        verification.LINK,
        aor,
        e164,
        subject,
        source_ip=source_ip,
        owner=f"number|{e164}",
        account=aor,
        deliver=real,
    )


def confirm(
    account: accounts.Account, code: object, *, phone_e164: str | None = None
) -> accounts.Account:
    """Link the number the pending code was sent to; answer the updated account.

    `phone_e164`, when the caller names the number (the Linphone assistant does), must be the
    one the code was sent to (else 404 `code_not_found`). A retry with the same code answers
    the account as it is. Raises the codes of `verification.consume`."""
    subject = _subject(account)
    claim = verification.consume(
        verification.LINK,
        account.aor,
        code,
        subject=subject,
        fingerprint=subject,
        e164=phone_e164,
    )
    if claim.replay is not None:
        return accounts.require(account.aor)
    try:
        linked, moved_from = accounts.link_phone(account.aor, claim.phone)
    except Exception:
        verification.release(claim)
        raise
    verification.complete(claim, {"phone": claim.phone})
    metrics.add_metric(name="Links", unit=MetricUnit.Count, value=1)
    logger.info(
        "number linked",
        extra={
            "phone": pseudonym(claim.phone),
            "aor": pseudonym(linked.aor),
            "moved": bool(moved_from),
        },
    )
    return linked


def unlink(account: accounts.Account) -> accounts.Account:
    """Remove the account's number (404 `no_phone` if none), freeing it for others."""
    updated = accounts.unlink_phone(account.aor)
    metrics.add_metric(name="Unlinks", unit=MetricUnit.Count, value=1)
    logger.info("number unlinked", extra={"aor": pseudonym(account.aor)})
    return updated
