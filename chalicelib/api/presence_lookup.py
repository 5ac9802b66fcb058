"""The `presence_lookup` function's contract: a list (body or stored entries) in, NOTIFY bodies out.

The SIP edge calls it for the first NOTIFY of a subscription (with the SUBSCRIBE body) and for
later full-state NOTIFYs (with the entries it kept from the first answer: refreshes carry no
body; or, for a list too large for the edge to keep, with the subscription's id, and the list
is read from where the dialog stored it). JSON in, JSON out, bodies in base64; errors come back
as `{"error": {code, message}}` with a code of the error catalogue, which the edge maps to a SIP
status. See docs/presence_lookup.md.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit

from chalicelib import accounts, clock, dynamo, settings, tables
from chalicelib.accounts import discovery_budget, phone
from chalicelib.edge_contract import (
    ErrorAnswer,
    NotifyBody,
    PresenceLookupAnswer,
    PresenceLookupRequest,
    ResourceAnswer,
)
from chalicelib.errors import DomainError
from chalicelib.live import status as live_status
from chalicelib.live import subscriptions
from chalicelib.observability import flush_metrics, logger, metrics
from chalicelib.presence import multipart, notify, pidf, resource_list
from chalicelib.presence import resolve as presence

#: How a resource's kind is named in the answer.
_KINDS: dict[presence.Kind, Literal["phone", "account", "other"]] = {
    presence.Kind.PHONE: "phone",
    presence.Kind.ACCOUNT: "account",
    presence.Kind.OTHER: "other",
}


def _field(
    payload: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any
) -> Any:
    value = payload.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise DomainError("invalid_field", f"{name}: wrong type")
    return value


def _positive(limits: dict[str, Any], name: str, default: int, *, ceiling: int | None) -> int:
    value = limits.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DomainError("invalid_field", f"limits.{name}: expected a positive integer")
    # List limits protect the service: a caller may lower them, never raise them.
    return min(value, ceiling) if ceiling is not None else value


def _read_list(
    payload: PresenceLookupRequest,
    limits: dict[str, Any],
    subscriber: str,
    counter: dynamo.CallCounter,
) -> resource_list.ResourceList:
    cfg = settings.get()
    list_limits = resource_list.ListLimits(
        _positive(
            limits,
            "list_max_inflated_bytes",
            cfg.list_max_inflated_bytes,
            ceiling=cfg.list_max_inflated_bytes,
        ),
        _positive(limits, "list_max_entries", cfg.list_max_entries, ceiling=cfg.list_max_entries),
    )
    if payload.get("entries") is not None:
        return resource_list.from_entries(payload["entries"], list_limits)
    encoded = _field(payload, "list_b64", str, None)
    sub_id = _field(payload, "subscription_id", str, None)
    if encoded is None and sub_id is not None:
        stored = subscriptions.stored_list(sub_id, subscriber, counter)
        if stored is None:
            raise DomainError("not_found", "no stored list for this subscriber's subscription")
        return resource_list.from_entries(stored, list_limits)
    if encoded is None:
        raise DomainError("missing_field", "list_b64, entries or subscription_id is required")
    if len(encoded) > list_limits.max_inflated_bytes * 4 // 3 + 4:
        raise DomainError("list_too_large", "list body larger than the inflated-size limit")
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise DomainError("invalid_field", "list_b64: not base64") from None
    encoding = _field(payload, "content_encoding", str, None)
    return resource_list.parse(body, encoding, list_limits)


def _body_json(body: notify.NotifyBody) -> NotifyBody:
    return {
        "body_b64": base64.b64encode(body.body).decode("ascii"),
        "content_type": body.content_type,
        "content_encoding": body.content_encoding,
        "version": body.version,
        "full_state": body.full_state,
        "resources": len(body.uris),
        "users": body.users,
        "bytes": len(body.body),
        "plain_bytes": body.plain_bytes,
    }


def _single_body(
    resolved: presence.Resolved,
    deflate: bool,
    options: notify.BodyOptions,
    status_of: Callable[[presence.Resolved], pidf.PresenceStatus],
    version: int,
) -> NotifyBody:
    """A single-resource subscription (no list): a bare PIDF, or no body for a non-user."""
    if resolved.contact is None:
        # No state to give; the dialog stays up so that a later sign-up can be announced.
        return {"body_b64": "", "content_type": None, "content_encoding": None, "bytes": 0,
                "version": version}  # fmt: skip
    doc = pidf.document(
        resolved.uri, resolved.contact, status_of(resolved), now=options.now()
    ).encode()
    wire, encoding = multipart.encode(doc, deflate)
    return {
        "body_b64": base64.b64encode(wire).decode("ascii"),
        "content_type": pidf.MEDIA_TYPE,  # no parameter: baresip 1.0 answers 415 to one
        "content_encoding": encoding,
        "bytes": len(wire),
        "plain_bytes": len(doc),
        "version": version,
    }


def _subscriber(
    aor: str | None, entries: Sequence[str]
) -> tuple[accounts.Account | None, discovery_budget.Bucket | None]:
    """The subscriber's account and, when the list names numbers (which the budget pays for),
    its discovery bucket: one consistent BatchGetItem for both."""
    if not aor:
        return None, None
    if not presence.names_numbers(entries):
        return accounts.get(aor), None
    found = dynamo.batch_get_many(
        {tables.ACCOUNTS: [aor], tables.DISCOVERY_BUDGETS: [aor]}, consistent=True
    )
    item = found[tables.ACCOUNTS].get(aor)
    account = accounts.Account.from_item(item) if item else None
    return account, discovery_budget.state_of(found[tables.DISCOVERY_BUDGETS].get(aor))


def _resolve_within_budget(
    entries: Sequence[str],
    subscriber: str,
    region: str | None,
    counter: dynamo.CallCounter,
    bucket: discovery_budget.Bucket | None,
) -> tuple[list[presence.Resolved], str, set[str], int]:
    """Resolve the entries the subscriber's discovery budget pays for (account URIs are free;
    numbers seen before too); the others stay unresolved. Answers the resolved entries, the
    region used, the URIs deferred, and when to ask about them again."""
    targets, used_region = presence.classify_all(
        entries, subscriber=subscriber, region=region, counter=counter
    )
    numbers = [t.key for t in targets if t.kind is presence.Kind.PHONE]
    aor = presence.parse_aor(subscriber)
    charge = discovery_budget.charge(aor, numbers, bucket) if aor and numbers else None
    held = set(charge.deferred) if charge else set()

    def paid(target: presence.Target) -> bool:
        return not (target.kind is presence.Kind.PHONE and target.key in held)

    users = presence.find_users([t for t in targets if paid(t)], counter)
    resolved = [
        presence.Resolved(uri, t, users.get(t) if paid(t) else None)
        for uri, t in zip(entries, targets, strict=True)
    ]
    deferred = {r.uri for r in resolved if not paid(r.target)}
    wait = settings.get().discovery_recheck_seconds
    if charge is not None and charge.retry_after:
        wait = min(wait, charge.retry_after)
    return resolved, used_region, deferred, clock.now_int() + max(1, wait)


def build_answer(
    payload: PresenceLookupRequest, *, options: notify.BodyOptions | None = None
) -> PresenceLookupAnswer:
    """Run one lookup; raises DomainError (see `handle` for the JSON error form)."""
    if not isinstance(payload, dict):
        raise DomainError("invalid_json", "payload must be a JSON object")
    cfg = settings.get()
    subscriber = _field(payload, "subscriber", str, "")
    if not subscriber:
        raise DomainError("missing_field", "subscriber is required")
    profile_name = _field(payload, "profile", str, "rfc")
    if profile_name not in multipart.PROFILES:
        raise DomainError("invalid_field", f"profile: one of {sorted(multipart.PROFILES)}")
    version = _field(payload, "version", int, 0)
    if version < 0:
        raise DomainError("invalid_field", "version: expected an integer >= 0")
    full_state = _field(payload, "full_state", bool, True)
    single = _field(payload, "single", bool, False)
    list_uri = _field(payload, "list_uri", str, f"sip:rls@{cfg.sip_domain}")
    region = _field(payload, "region", str, None)
    if region is not None:
        region = phone.valid_region(region)
    limits = _field(payload, "limits", dict, {})
    accept = payload.get("accept_encoding")
    if accept is not None and not isinstance(accept, str | list):
        raise DomainError("invalid_field", "accept_encoding: a string or a list of strings")
    deflate = multipart.accepts_deflate(accept)
    notify_limit = _positive(limits, "notify_limit", cfg.notify_limit, ceiling=None)
    max_bytes = _positive(limits, "notify_max_bytes", cfg.notify_max_bytes, ceiling=None)

    counter = dynamo.CallCounter()
    rl = _read_list(payload, limits, subscriber, counter)
    aor = presence.parse_aor(subscriber)
    counter = dynamo.CallCounter()
    account, bucket = _subscriber(aor, rl.entries)
    if account is not None and account.disabled:
        # A dialog made before the account was disabled learns nothing more.
        raise DomainError("account_disabled", "the subscriber's account is disabled")
    resolved, used_region, deferred, recheck_at = _resolve_within_budget(
        rl.entries, subscriber, region, counter, bucket
    )
    options = replace(
        options or notify.BodyOptions(),
        profile=multipart.profile(profile_name),
        deflate=deflate,
        notify_limit=notify_limit,
        max_bytes=max_bytes,
    )
    # The mutual-contacts rule decides how much each user's status says (live_status).
    # The account read above is the subscriber's when the edge sent a bare AOR (it does).
    if aor == subscriber.lower():
        seen = live_status.statuses_for(subscriber, resolved, account=account)
    else:
        seen = live_status.statuses_for(subscriber, resolved)
    # Numbers past the discovery budget go out as not (yet) users; the edge asks again about
    # them at `recheck_at` and sends a partial NOTIFY once they are paid for.
    seen.rechecks.update(dict.fromkeys(deferred, recheck_at))
    if single:
        if len(resolved) != 1:
            raise DomainError("list_malformed", "a single-resource lookup takes one entry")
        bodies = [_single_body(resolved[0], deflate, options, seen.status_of, version)]
        next_version = version + 1
    else:
        built = notify.build(
            list_uri,
            presence.states(resolved, seen.status_of),
            version=version,
            full_state=full_state,
            options=options,
        )
        bodies = [_body_json(b) for b in built]
        next_version = version + len(built)
    users = sum(r.is_user for r in resolved)
    logger.info(
        "presence_lookup",
        extra={
            "entries": len(rl.entries),
            "users": users,
            "deferred": len(deferred),
            "bodies": len(bodies),
            "dynamodb_calls": counter.calls,
            "profile": profile_name,
            "deflate": deflate,
        },
    )
    return {
        "bodies": bodies,
        "version": next_version,
        "entries": list(rl.entries),
        "resources": [_resource(r, seen.fingerprints, seen.rechecks) for r in resolved],
        "region": used_region,
        "stats": {
            "entries_read": rl.total,
            "duplicates": rl.duplicates,
            "skipped": rl.skipped,
            "users": users,
            "deferred": len(deferred),
            "dynamodb_calls": counter.calls,
        },
    }


def _resource(
    resolved: presence.Resolved, fingerprints: Mapping[str, str], rechecks: Mapping[str, int]
) -> ResourceAnswer:
    return {
        "uri": resolved.uri,
        "kind": _KINDS[resolved.target.kind],
        "user": resolved.contact,
        "status": fingerprints.get(resolved.uri),
        "recheck_at": rechecks.get(resolved.uri),
    }


def handle(payload: PresenceLookupRequest) -> PresenceLookupAnswer | ErrorAnswer:
    """The Lambda entry point: every DomainError becomes `{"error": {...}}`, never a crash."""
    try:
        answer = build_answer(payload)
    except DomainError as exc:
        logger.info("presence_lookup refused", extra={"code": exc.code})
        return exc.to_function_answer()
    stats = answer["stats"]
    metrics.add_metric(name="EntriesLookedUp", unit=MetricUnit.Count, value=stats["entries_read"])
    metrics.add_metric(name="UsersFound", unit=MetricUnit.Count, value=stats["users"])
    metrics.add_metric(name="LookupCalls", unit=MetricUnit.Count, value=stats["dynamodb_calls"])
    flush_metrics()
    return answer
