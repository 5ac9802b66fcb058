"""Sign-up from a Linphone app: account-creation tokens, and the pending account made with one.

A creation token proves only that a real app on a real device asked: the mobile apps get it by
push (`send_token_by_push`), the desktop app by having a person validate a request token in a
browser (`request_token`, `validate_request_token`, `token_for_request`). With it the app
makes an account (`create_account`), which stays pending until its owner proves a phone number
by SMS code (`linking`): a number is still proven only by its code. Each way of getting a token
is budgeted (per device, per source address, for the whole service), a token is used once and
lives minutes, and it may be refused only `CREATION_TOKEN_TRIES` taken usernames: what is
taken is told only to who holds a token, a few names per token.

Callable without HTTP; `chalicelib.api.flexiapi` serves it to the apps.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from aws_lambda_powertools.metrics import MetricUnit

from chalicelib import accounts, clock, digest, settings
from chalicelib.accounts import push, rate_limits, tokens
from chalicelib.errors import DomainError
from chalicelib.observability import logger, metrics, pseudonym

ALGORITHMS = ("MD5", "SHA-256")


def _keyed(text: str) -> str:
    return digest.keyed_hash(settings.get().code_hash_key, text, length=32)


def send_token_by_push(device: push.Device, *, source_ip: str) -> int:
    """Push a new creation token to `device`; answer its lifetime. Budgets, each reserved
    before anything is sent and given back if the push fails: the device (a daily count and
    an interval), the source address (hourly), the service (daily). Raises 400 (push
    parameters, a provider not set up), 429 (a budget) or 503 (SNS)."""
    s = settings.get()
    push.check_available(device)
    reserved: list[rate_limits.Reservation] = []
    try:
        reserved.append(
            rate_limits.reserve_in_window(
                "push-ip:" + _keyed(source_ip),
                limit=s.push_tokens_per_ip_hourly,
                window=rate_limits.HOUR,
                what="source address",
            )
        )
        reserved.append(
            rate_limits.reserve_in_window(
                "push-device:" + device.key,
                limit=s.push_tokens_per_device_daily,
                window=rate_limits.DAY,
                min_interval=s.push_tokens_per_device_interval,
                what="pn_prid",
            )
        )
        reserved.append(
            rate_limits.reserve_in_day(
                "push-global", limit=s.push_tokens_global_daily, what="account creation"
            )
        )
    except DomainError:
        rate_limits.release_all(reserved)
        raise
    token = tokens.issue(
        tokens.CREATION,
        {"device": device.key},
        s.creation_token_ttl,
        max_tries=s.creation_token_tries,
    )
    try:
        push.send(device, {"token": token.value})
    except DomainError:
        rate_limits.release_all(reserved)
        raise
    metrics.add_metric(name="CreationTokensPushed", unit=MetricUnit.Count, value=1)
    return s.creation_token_ttl


def request_token(*, source_ip: str) -> tokens.Token:
    """A new creation request token (the desktop app's), for a person to validate in a
    browser; budgeted per source address (429 past it)."""
    s = settings.get()
    rate_limits.reserve_in_window(
        "request-token-ip:" + _keyed(source_ip),
        limit=s.request_tokens_per_ip_hourly,
        window=rate_limits.HOUR,
        what="source address",
    )
    return tokens.issue(tokens.REQUEST, {"validated": False}, s.request_token_ttl)


def request_token_state(value: object) -> str:
    """`pending` (waiting for a person), `validated`, or `invalid` (unknown, used, expired):
    what the validation page shows."""
    data = tokens.peek(tokens.REQUEST, value)
    if data is None:
        return "invalid"
    return "validated" if data.get("validated") else "pending"


def validate_request_token(value: object) -> bool:
    """A person validated the request token in a browser (the web page calls this once it has
    checked that a person is there): the app may now trade it for a creation token. False
    when the token is not live."""
    if not tokens.well_formed(value):
        return False
    assert isinstance(value, str)
    done = tokens.annotate(tokens.REQUEST, value, validated=True)
    if done:
        logger.info("creation request token validated")
    return done


def _traded(request_value: str) -> str:
    """The creation token a request token trades for, derived from it: a retried trade gets
    the same token without any table holding a usable one."""
    mac = hmac.new(
        settings.get().code_hash_key.encode(), b"creation|" + request_value.encode(), sha256
    )
    return tokens.encode(mac.digest()[: tokens.VALUE_BYTES])


def token_for_request(value: object) -> tokens.Token:
    """Trade a validated request token for a creation token (once; the same answer to a
    retry). Raises `token_not_validated` (404) while no person has validated it, and
    `token_invalid` when it is unknown, used by another trade, or expired."""
    s = settings.get()
    if not tokens.well_formed(value):
        raise tokens.invalid(tokens.REQUEST)
    assert isinstance(value, str)
    data = tokens.peek(tokens.REQUEST, value)
    if data is not None and not data.get("validated"):
        raise DomainError("token_not_validated", "the request token has not been validated yet")
    used = tokens.use(
        tokens.REQUEST,
        value,
        fingerprint=tokens.fingerprint("trade"),
        replay_window=s.creation_token_ttl,
    )
    creation = _traded(value)
    if used.replay is not None:
        return tokens.Token(tokens.CREATION, creation, int(used.replay["expires_at"]))
    token = tokens.issue(
        tokens.CREATION,
        {"request": True},
        s.creation_token_ttl,
        max_tries=s.creation_token_tries,
        value=creation,
    )
    tokens.complete(used, {"expires_at": token.expires_at})
    return token


def check_algorithm(algorithm: object) -> str:
    if not isinstance(algorithm, str) or algorithm.upper() not in ALGORITHMS:
        raise DomainError("unsupported_algorithm", "algorithm: expected MD5 or SHA-256")
    return algorithm.upper()


def create_account(
    token: object,
    *,
    username: object,
    password: object,
    algorithm: object,
    domain: object = None,
) -> accounts.Account:
    """Make a pending account with a creation token; answer it. A retry of the same request
    (same token, username and password) answers the same account.

    Checked before the token is touched (a typo spends nothing): the username (400
    `invalid_username`), the password (400), the algorithm (400 `unsupported_algorithm`;
    both HA1s are stored whatever it is) and, when given, the domain (404 `unknown_domain`).
    Then the token (403 `token_invalid`); a taken username spends one of its tries (409
    `username_taken`)."""
    s = settings.get()
    name = accounts.validate_username(username)
    check_algorithm(algorithm)
    if domain is not None and (not isinstance(domain, str) or domain.lower() != accounts.domain()):
        raise DomainError("unknown_domain", "domain: accounts are made in this service's domain")
    credentials = accounts.credentials_from_password(name, password)
    used = tokens.use(
        tokens.CREATION,
        token,
        fingerprint=tokens.fingerprint(name.lower(), _keyed("password|" + str(password))),
    )
    if used.replay is not None:
        account = accounts.get(str(used.replay["aor"]))
        if account is None:
            raise tokens.invalid(tokens.CREATION)
        return account
    try:
        account = accounts.create(
            name, credentials, pending_until=clock.now_int() + s.pending_account_ttl
        )
    except DomainError as exc:
        tokens.release(used, refused=exc.code == "username_taken")
        raise
    except Exception:
        tokens.release(used)
        raise
    tokens.complete(used, {"aor": account.aor})
    metrics.add_metric(name="AppSignups", unit=MetricUnit.Count, value=1)
    logger.info("pending account created", extra={"aor": pseudonym(account.aor)})
    return account


def change_password(
    account: accounts.Account, *, password: object, old_password: object
) -> accounts.Account:
    """A new password for the account (its owner, signed in), ending the sessions made with
    the old one. FlexiAPI names the current password `old_password` and the new one
    `password`; the Linphone 5.1 SDK sends them the other way round. Whichever of the two is
    the current password, the other becomes the new one (400 `invalid_field` on
    old_password when neither is)."""
    if not isinstance(password, str) or not isinstance(old_password, str):
        raise DomainError("invalid_field", "old_password: expected the current password")
    if accounts.check_password(account, old_password):
        new = password
    elif accounts.check_password(account, password):
        new = old_password
    else:
        raise DomainError("invalid_field", "old_password: not the account's current password")
    if accounts.check_password(account, new):
        return account
    credentials = accounts.credentials_from_password(account.username, new)
    updated = accounts.update(account.aor, credentials=credentials, revoke=True)
    logger.info("password changed", extra={"aor": pseudonym(account.aor)})
    return updated
