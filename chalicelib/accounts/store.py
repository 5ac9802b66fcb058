"""The accounts store: SIP accounts and their phone numbers in DynamoDB.

Uniqueness of usernames and phone numbers is enforced by DynamoDB transactions whose conditions
claim the username (`Accounts.aor`) and the number (`PhoneIndex.phone_hash`); reads only prepare
the expected state of a transaction, whose conditions make it safe (optimistic retries).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import clock, digest, dynamo, tables
from chalicelib.accounts import phone
from chalicelib.accounts.credentials import Credentials, check_password
from chalicelib.accounts.model import (
    LEGACY_USERNAME_RE,
    OPTIONAL_ATTRIBUTES,
    Account,
    aor_for,
    domain,
    validate_username,
)
from chalicelib.aws import client
from chalicelib.errors import DomainError

_MAX_OPTIMISTIC_TRIES = 5


# --- Reads --------------------------------------------------------------------------------


def get(aor: str) -> Account | None:
    """The account of `username@domain` (consistent read), or None. The SIP edge's HA1 source.
    The lookup folds the case like the key does: `Bob@d` and `bob@d` are one account."""
    item = client("dynamodb").get_item(
        TableName=tables.ACCOUNTS.name(), Key={"aor": {"S": aor.lower()}}, ConsistentRead=True
    )
    raw = item.get("Item")
    if not raw:
        return None
    account = Account.from_item(dynamo.from_item(raw))
    return None if account.gone(clock.now()) else account


def get_by_username(username: str) -> Account | None:
    return get(aor_for(username))


def require(aor: str) -> Account:
    account = get(aor)
    if account is None:
        raise DomainError("not_found", "no such account")
    return account


def _index_owner(phone_hash: str) -> str | None:
    item = client("dynamodb").get_item(
        TableName=tables.PHONE_INDEX.name(),
        Key={"phone_hash": {"S": phone_hash}},
        ConsistentRead=True,
    )
    raw = item.get("Item")
    return raw["aor"]["S"] if raw else None


def find_by_phone(e164: str) -> Account | None:
    """The account a number is linked to (discoverable or not, enabled or not), or None."""
    owner = _index_owner(phone.phone_hash(e164))
    return get(owner) if owner else None


# --- Transactions -------------------------------------------------------------------------


class _Cancelled(Exception):
    """A transaction whose condition `failed_index` failed (or which conflicted: None)."""

    def __init__(self, failed_index: int | None) -> None:
        super().__init__(failed_index)
        self.failed_index = failed_index


def _transact(items: list[dict[str, Any]]) -> None:
    try:
        client("dynamodb").transact_write_items(TransactItems=items)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            raise
        reasons = exc.response.get("CancellationReasons") or []
        for i, reason in enumerate(reasons):
            if reason.get("Code") == "ConditionalCheckFailed":
                raise _Cancelled(i) from None
        # TransactionConflict: another transaction held one of the items; the caller retries.
        raise _Cancelled(None) from None


def _values(data: dict[str, Any]) -> dict[str, Any]:
    return dynamo.to_item(data)


def _index_put(account: Account, e164: str, *, condition: str, values: dict[str, Any]) -> dict:
    item = {
        "phone_hash": phone.phone_hash(e164),
        "aor": account.aor,
        # A disabled account is never discoverable, whatever its owner chose.
        "discoverable": account.discoverable and not account.disabled,
        "updated_at": account.updated_at,
    }
    put: dict[str, Any] = {
        "TableName": tables.PHONE_INDEX.name(),
        "Item": _values(item),
        "ConditionExpression": condition,
    }
    if values:
        put["ExpressionAttributeValues"] = _values(values)
    return {"Put": put}


def _index_delete_if_owned(e164: str, aor: str) -> dict[str, Any]:
    return {
        "Delete": {
            "TableName": tables.PHONE_INDEX.name(),
            "Key": {"phone_hash": {"S": phone.phone_hash(e164)}},
            "ConditionExpression": "aor = :aor",
            "ExpressionAttributeValues": _values({":aor": aor}),
        }
    }


def _version_condition(expected: Account) -> tuple[str, dict[str, Any]]:
    if expected.version == 0:  # an item written before versions existed (or by hand)
        return "attribute_exists(aor) AND attribute_not_exists(version)", {}
    return "attribute_exists(aor) AND version = :v", {":v": expected.version}


def _account_put(account: Account, expected: Account | None) -> dict[str, Any]:
    """Write the account's attributes, provided it is still the version read (`expected`), or
    does not exist yet (None; or is a pending account past its deadline, which the TTL has not
    deleted yet). An Update, not a Put: attributes other modules may keep on the account item
    survive."""
    if expected is None:
        return {
            "Put": {
                "TableName": tables.ACCOUNTS.name(),
                "Item": _values(account.to_item()),
                "ConditionExpression": "attribute_not_exists(aor) OR pending_until <= :now",
                "ExpressionAttributeValues": _values({":now": clock.now_int()}),
            }
        }
    item = account.to_item()
    del item["aor"]
    names = {f"#{k}": k for k in item}
    values = {f":{k}": v for k, v in item.items()}
    optional = [k for k in OPTIONAL_ATTRIBUTES if k not in item]
    names.update({f"#{k}": k for k in optional})
    expression = "SET " + ", ".join(f"#{k} = :{k}" for k in item)
    if optional:
        expression += " REMOVE " + ", ".join(f"#{k}" for k in optional)
    condition, condition_values = _version_condition(expected)
    values.update(condition_values)
    return {
        "Update": {
            "TableName": tables.ACCOUNTS.name(),
            "Key": {"aor": {"S": account.aor}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _values(values),
        }
    }


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.01 * 2**attempt))


def _next_version(account: Account) -> Account:
    return replace(account, version=account.version + 1, updated_at=clock.now_int())


def _mutate(
    aor: str, change: Callable[[Account, Account], tuple[Account, list[dict[str, Any]]]]
) -> Account:
    """Read the account, let `change(current, draft)` build its new state (from `draft`, the
    current one with a new version) and extra transaction items, then write both conditioned
    on nothing having moved meanwhile; retry a few times if something did."""
    aor = aor.lower()
    for attempt in range(_MAX_OPTIMISTIC_TRIES):
        current = require(aor)
        updated, extra = change(current, _next_version(current))
        if updated == current:
            return current
        try:
            _transact([_account_put(updated, current), *extra])
            return updated
        except _Cancelled:
            _backoff(attempt)
    raise DomainError("conflict", "the account changed during the operation; try again")


# --- Writes -------------------------------------------------------------------------------


def create(
    username: str,
    credentials: Credentials,
    *,
    phone_e164: str | None = None,
    discoverable: bool = True,
    legacy: bool = False,
    pending_until: int = 0,
) -> Account:
    """Create an account, claiming its username and (optionally) its number atomically.

    Usernames are unique case-insensitively: the item key is the folded address of record,
    so `bob` cannot be created beside `Bob`. Raises `username_taken` or `phone_taken` (409)
    when another account holds either. With `pending_until` (epoch seconds) the account is
    pending until a number is linked, and deleted at that time if none is."""
    username = validate_username(username, legacy=legacy or username == phone_e164)
    if not credentials.ha1_md5 and not credentials.ha1_sha256:
        raise DomainError("invalid_field", "an account needs a password or an HA1")
    now = clock.now_int()
    account = Account(
        username=username,
        domain=domain(),
        ha1_md5=credentials.ha1_md5,
        ha1_sha256=credentials.ha1_sha256,
        phone=phone_e164,
        discoverable=discoverable,
        created_at=now,
        updated_at=now,
        version=1,
        pending_until=pending_until,
    )
    items = [_account_put(account, None)]
    if phone_e164:
        items.append(
            _index_put(account, phone_e164, condition="attribute_not_exists(phone_hash)", values={})
        )
    for attempt in range(_MAX_OPTIMISTIC_TRIES):
        try:
            _transact(items)
            return account
        except _Cancelled as exc:
            if exc.failed_index == 0:
                raise DomainError(
                    "username_taken", f"username: {username} is taken (case is ignored)"
                ) from None
            if exc.failed_index == 1:
                raise DomainError("phone_taken", "phone: already linked to an account") from None
            _backoff(attempt)
    raise DomainError("conflict", "too much contention creating the account; try again")


def _index_items(before: Account, after: Account) -> list[dict[str, Any]]:
    """Keep the PhoneIndex entry of `after` in step with the account (same transaction)."""
    if before.phone and before.phone != after.phone:
        raise AssertionError("phone changes go through link_phone/unlink_phone")
    if not after.phone:
        return []
    return [
        _index_put(
            after,
            after.phone,
            condition="attribute_not_exists(phone_hash) OR aor = :aor",
            values={":aor": after.aor},
        )
    ]


def update(
    aor: str,
    *,
    discoverable: bool | None = None,
    credentials: Credentials | None = None,
    revoke: bool = False,
) -> Account:
    """Change discoverability and/or credentials (the index follows in the same transaction).
    With `revoke`, the sessions made before (SIP dialogs, registrations) are ended: the
    live-update stream handler sees `revoked_at` move."""

    def change(current: Account, draft: Account) -> tuple[Account, list[dict[str, Any]]]:
        after = draft
        if credentials is not None:
            after = replace(after, ha1_md5=credentials.ha1_md5, ha1_sha256=credentials.ha1_sha256)
        if discoverable is not None:
            after = replace(after, discoverable=discoverable)
        if revoke:
            # Milliseconds: sessions made before this instant end, a new phone's a moment later
            # (signed in with the new credentials) does not.
            now_ms = int(clock.now() * 1000)
            after = replace(after, revoked_at=max(now_ms, current.revoked_at + 1))
        elif (after.ha1_md5, after.ha1_sha256, after.discoverable) == (
            current.ha1_md5,
            current.ha1_sha256,
            current.discoverable,
        ):
            return current, []
        extra = _index_items(current, after) if after.discoverable != current.discoverable else []
        return after, extra

    return _mutate(aor, change)


def set_disabled(aor: str, disabled: bool) -> Account:
    """Disable (or enable) an account: no sign-in, no SIP, hidden from discovery."""

    def change(current: Account, draft: Account) -> tuple[Account, list[dict[str, Any]]]:
        if current.disabled == disabled:
            return current, []
        after = replace(draft, disabled=disabled)
        return after, _index_items(current, after)

    return _mutate(aor, change)


def link_phone(aor: str, e164: str) -> tuple[Account, str | None]:
    """Link `e164` to the account, moving it from the account that had it, if any.

    The caller has proven ownership of the number. Returns the account and the address of
    record the number was taken from (None if it was free or already ours)."""
    aor = aor.lower()
    moved_from: list[str | None] = [None]

    def change(current: Account, draft: Account) -> tuple[Account, list[dict[str, Any]]]:
        moved_from[0] = None
        if current.phone == e164 and current.activated:
            return current, []
        # A proven number activates a pending account (and ends its deadline).
        after = replace(draft, phone=e164, pending_until=0)
        extra: list[dict[str, Any]] = []
        owner_aor = _index_owner(phone.phone_hash(e164))
        if owner_aor is None:
            extra.append(
                _index_put(after, e164, condition="attribute_not_exists(phone_hash)", values={})
            )
        else:
            extra.append(
                _index_put(after, e164, condition="aor = :owner", values={":owner": owner_aor})
            )
            owner = get(owner_aor) if owner_aor != aor else None
            if owner is not None and owner.phone == e164:
                freed = replace(_next_version(owner), phone=None)
                extra.append(_account_put(freed, owner))
        if current.phone and _index_owner(phone.phone_hash(current.phone)) == aor:
            extra.append(_index_delete_if_owned(current.phone, aor))
        moved_from[0] = owner_aor if owner_aor != aor else None
        return after, extra

    account = _mutate(aor, change)
    return account, moved_from[0]


def unlink_phone(aor: str) -> Account:
    """Remove the account's number (404 `no_phone` when it has none); frees the number."""
    aor = aor.lower()

    def change(current: Account, draft: Account) -> tuple[Account, list[dict[str, Any]]]:
        if not current.phone:
            raise DomainError("no_phone", "no phone number is linked to this account")
        extra = []
        if _index_owner(phone.phone_hash(current.phone)) == aor:
            extra.append(_index_delete_if_owned(current.phone, aor))
        return replace(draft, phone=None), extra

    return _mutate(aor, change)


def delete(aor: str) -> None:
    """Delete the account, freeing its username and its number."""
    aor = aor.lower()
    for attempt in range(_MAX_OPTIMISTIC_TRIES):
        current = require(aor)
        condition, values = _version_condition(current)
        delete: dict[str, Any] = {
            "TableName": tables.ACCOUNTS.name(),
            "Key": {"aor": {"S": aor}},
            "ConditionExpression": condition,
        }
        if values:
            delete["ExpressionAttributeValues"] = _values(values)
        items: list[dict[str, Any]] = [{"Delete": delete}]
        if current.phone and _index_owner(phone.phone_hash(current.phone)) == aor:
            items.append(_index_delete_if_owned(current.phone, aor))
        try:
            _transact(items)
            return
        except _Cancelled:
            _backoff(attempt)
    raise DomainError("conflict", "the account changed during the operation; try again")


# --- Authentication -------------------------------------------------------------------------


def authenticate_password(username: str, password: str) -> Account | None:
    """The account whose username and password these are, or None (HTTP Basic).

    An account that has only one HA1 (created from a client HA1) gets the other one now that
    the password is known, so SHA-256 digest works for it afterwards."""
    if not LEGACY_USERNAME_RE.fullmatch(username):
        return None
    account = get_by_username(username)
    if account is None or not check_password(account, password):
        return None
    if not (account.ha1_md5 and account.ha1_sha256):
        account = _backfill(account, password)
    return account


def _backfill(checked: Account, password: str) -> Account:
    full = digest.ha1_pair(checked.username, checked.domain, password)

    def change(current: Account, draft: Account) -> tuple[Account, list[dict[str, Any]]]:
        # Only if the credentials are still the ones the password was checked against.
        if current.ha1s() != checked.ha1s():
            return current, []
        return replace(draft, ha1_md5=full["ha1_md5"], ha1_sha256=full["ha1_sha256"]), []

    try:
        return _mutate(checked.aor, change)
    except DomainError:
        return checked  # a concurrent change or deletion: the backfill waits for next time
