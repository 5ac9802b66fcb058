"""The SIP registrar's state (RFC 3261 §10.3): bindings of each account in DynamoDB.

The edge parses REGISTER and calls `register()` through the `sip_registrar` function; an account
with a live binding counts as online. Bindings are keyed by `+sip.instance` when the client sends
one (RFC 5626), else by the contact URI, so a phone that changes address replaces its binding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from chalicelib import accounts, clock, edge_contract, settings, tables
from chalicelib.errors import DomainError


@dataclass(frozen=True)
class ContactRequest:
    """One Contact of a REGISTER, as the edge parsed it."""

    uri: str
    expires: int | None = None  # the contact's own expires parameter
    instance: str | None = None  # +sip.instance, without quotes
    params: str = ""  # other header parameters, kept for the 200's Contact list

    @property
    def key(self) -> str:
        return self.instance or self.uri


@dataclass(frozen=True)
class Binding:
    uri: str
    expires_at: int
    params: str = ""
    instance: str | None = None
    source: str | None = None  # transport address the REGISTER came from
    edge_id: str | None = None
    user_agent: str = ""  # the device's User-Agent (the account's devices list)
    written_ms: int = 0  # when the phone last REGISTERed this binding (epoch ms)

    def expires_in(self, now: float) -> int:
        return max(0, math.ceil(self.expires_at - now))


def _granted(requested: int | None, header: int | None) -> int:
    cfg = settings.get()
    value = requested if requested is not None else header
    if value is None:
        value = cfg.register_default_expires
    if value == 0:
        return 0
    if value < cfg.register_min_expires:
        raise DomainError(
            "interval_too_brief",
            f"expires {value} is under the minimum {cfg.register_min_expires}",
            headers={"Min-Expires": str(cfg.register_min_expires)},
        )
    return min(value, cfg.register_max_expires)


def _stored(aor: str) -> dict[str, dict[str, Any]]:
    items = tables.table(tables.REGISTRATIONS).query(
        KeyConditionExpression=Key("aor").eq(aor), ConsistentRead=True
    )["Items"]
    return {item["contact_key"]: item for item in items}


def _binding(item: dict[str, Any]) -> Binding:
    return Binding(
        uri=item["contact"],
        expires_at=int(item["expires_at"]),
        params=item.get("params", ""),
        instance=item.get("instance"),
        source=item.get("source"),
        edge_id=item.get("edge_id"),
        user_agent=str(item.get("user_agent", "")),
        written_ms=int(item.get("written_ms", 0)),
    )


def bindings(aor: str, now: float | None = None) -> list[Binding]:
    """Live bindings (DynamoDB TTL deletes late, so expired ones are filtered here)."""
    now = clock.now() if now is None else now
    live = [_binding(i) for i in _stored(aor).values() if int(i["expires_at"]) > now]
    return sorted(live, key=lambda b: b.uri)


def register(
    aor: str,
    contacts: list[ContactRequest],
    *,
    call_id: str,
    cseq: int,
    expires_header: int | None = None,
    wildcard: bool = False,
    source: str | None = None,
    edge_id: str | None = None,
    user_agent: str = "",
    now: float | None = None,
) -> list[Binding]:
    """Apply one REGISTER (RFC 3261 §10.3 steps 6-8) and return the live bindings."""
    now = clock.now() if now is None else now
    table = tables.table(tables.REGISTRATIONS)
    stored = _stored(aor)
    if wildcard:
        if contacts or expires_header != 0:
            raise DomainError("invalid_contact", "Contact: * needs Expires: 0 and no other contact")
        for item in stored.values():
            if item.get("call_id") == call_id and int(item.get("cseq", 0)) >= cseq:
                raise DomainError("binding_out_of_order", "REGISTER CSeq out of order")
        with table.batch_writer() as batch:
            for key in stored:
                batch.delete_item(Key={"aor": aor, "contact_key": key})
        return []
    live_keys = {k for k, i in stored.items() if int(i["expires_at"]) > now}
    longest = settings.get().register_max_contact_bytes
    for contact in contacts:
        if len(contact.uri) + len(contact.params) > longest:
            # Every stored byte goes back in each 200 (and to other devices' lookups).
            raise DomainError("invalid_contact", f"Contact longer than {longest} bytes")
        expires = _granted(contact.expires, expires_header)
        previous = stored.get(contact.key)
        if previous and previous.get("call_id") == call_id and int(previous["cseq"]) >= cseq:
            raise DomainError("binding_out_of_order", "REGISTER CSeq out of order")
        if expires == 0:
            if previous:
                table.delete_item(Key={"aor": aor, "contact_key": contact.key})
            live_keys.discard(contact.key)
            continue
        if contact.key not in live_keys and len(live_keys) >= settings.get().register_max_bindings:
            raise DomainError("too_many_bindings", "too many registered contacts")
        item = {
            "aor": aor,
            "contact_key": contact.key,
            "contact": contact.uri,
            "params": contact.params,
            "expires_at": int(now) + expires,
            "call_id": call_id,
            "cseq": cseq,
            "written_ms": int(clock.now() * 1000),  # which bindings a revocation ends
        }
        for name, value in (
            ("instance", contact.instance),
            ("source", source),
            ("user_agent", user_agent[: edge_contract.USER_AGENT_MAX]),
        ):
            if value:
                item[name] = value
        if edge_id:
            item["edge_id"] = edge_id
        table.put_item(Item=item)
        live_keys.add(contact.key)
    return bindings(aor, now)


def remove_device(aor: str, contact_keys: list[str]) -> int:
    """Delete the bindings `contact_keys` of `aor` (a device signed out by its owner); their
    stream then tells the account's watchers. Answers how many were there."""
    stored = _stored(aor)
    doomed = [key for key in contact_keys if key in stored]
    with tables.table(tables.REGISTRATIONS).batch_writer() as batch:
        for key in doomed:
            batch.delete_item(Key={"aor": aor, "contact_key": key})
    return len(doomed)


def stored_bindings(aor: str, now: float | None = None) -> dict[str, Binding]:
    """The live bindings of `aor` by their key (the +sip.instance, else the contact URI)."""
    now = clock.now() if now is None else now
    return {k: _binding(i) for k, i in _stored(aor).items() if int(i["expires_at"]) > now}


def remove_all(aor: str, *, before_ms: int | None = None) -> int:
    """Delete the bindings of `aor` written before `before_ms` (epoch ms; all if None): its
    account was disabled, deleted or its credentials replaced, and what was registered with
    the old ones must not stay online. Answers how many."""
    doomed = [
        key
        for key, item in _stored(aor).items()
        if before_ms is None or int(item.get("written_ms", 0)) < before_ms
    ]
    with tables.table(tables.REGISTRATIONS).batch_writer() as batch:
        for key in doomed:
            batch.delete_item(Key={"aor": aor, "contact_key": key})
    return len(doomed)


def _refuse_disabled(aor: str) -> None:
    account = accounts.get(aor)
    if account is not None and account.disabled:
        raise DomainError("account_disabled", "the account is disabled")


def to_json(items: list[Binding], now: float | None = None) -> list[edge_contract.Binding]:
    """What the edge's 200 lists of each binding."""
    now = clock.now() if now is None else now
    return [{"uri": b.uri, "params": b.params, "expires": b.expires_in(now)} for b in items]


def handle(
    payload: edge_contract.RegisterRequest,
) -> edge_contract.RegisterAnswer | edge_contract.ErrorAnswer:
    """The `sip_registrar` function: {"op": "register"|"bindings", ...} -> {"bindings": [...]}."""
    aor = str(payload["aor"])
    now = clock.now()  # one instant for the write and the answer: no 599 for a 600
    try:
        # The edge authenticated the request a moment ago; the account may have been
        # disabled since (or the edge trusts a proxy that does not know).
        _refuse_disabled(aor)
    except DomainError as exc:
        return exc.to_function_answer()
    if payload.get("op") == "bindings":
        return {"bindings": to_json(bindings(aor, now), now)}
    contacts = [ContactRequest(**c) for c in payload.get("contacts", [])]
    try:
        result = register(
            aor,
            contacts,
            call_id=str(payload["call_id"]),
            cseq=int(payload["cseq"]),
            expires_header=payload.get("expires_header"),
            wildcard=bool(payload.get("wildcard")),
            source=payload.get("source"),
            edge_id=payload.get("edge_id"),
            user_agent=str(payload.get("user_agent") or ""),
            now=now,
        )
    except DomainError as exc:
        return exc.to_function_answer()
    return {"bindings": to_json(result, now)}
