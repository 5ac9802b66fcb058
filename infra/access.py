"""What each Lambda function may touch: the one list its IAM role and environment are built from.

A function's role grants exactly the tables (and the access level) named here, plus what every
function needs (its own log group, the HMAC-keys secret). A function declared in `app.py` that
is missing here stops the build: a new function must say what it needs before it can deploy.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib import tables
from chalicelib.tables import TableSpec

READ = "read"
WRITE = "write"  # read + write: every writer here also reads what it writes

#: DynamoDB actions per access level; no Scan anywhere (the code never scans).
ACTIONS: dict[str, tuple[str, ...]] = {
    READ: ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"),
    WRITE: (
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
    ),
}


@dataclass(frozen=True)
class Access:
    """The permissions of one function beyond logs and the secret."""

    tables: tuple[tuple[TableSpec, str], ...] = ()
    sms: bool = False  # sns:Publish to phone numbers (never to a topic)
    push: bool = False  # SNS mobile push: endpoints of the stack's platform applications
    edge_queues: bool = False  # sqs:SendMessage to the edges' queues (live updates)
    doc: str = ""

    def level(self, spec: TableSpec) -> str | None:
        return next((lvl for s, lvl in self.tables if s is spec), None)


T = tables

#: The functions the code declares, by Chalice name.
FUNCTIONS: dict[str, Access] = {
    "api_handler": Access(
        tables=(
            (T.ACCOUNTS, WRITE),
            (T.PHONE_INDEX, WRITE),
            (T.VERIFICATION_CODES, WRITE),
            (T.RATE_LIMITS, WRITE),
            (T.DISCOVERY_BUDGETS, WRITE),
            (T.WEB_SESSIONS, WRITE),
            (T.TOKENS, WRITE),
            # An account's devices (live.devices): listed from its bindings and subscriptions;
            # signing one out deletes its bindings and tells the edges to end its dialogs.
            (T.REGISTRATIONS, WRITE),
            (T.SUBSCRIPTIONS, READ),
        ),
        sms=True,
        push=True,
        edge_queues=True,
        doc="REST API and web pages: sign-up, SMS codes, account changes, contact discovery "
        "(and its budget), password-guessing counters, web sessions, devices signed out; the "
        "Linphone apps' account API (creation and provisioning tokens).",
    ),
    "sip_auth": Access(
        tables=((T.ACCOUNTS, READ), (T.RATE_LIMITS, WRITE)),
        doc="Digest check against the account's HA1 (GetItem on Accounts), behind the "
        "password-guessing counters (RateLimits).",
    ),
    "sip_registrar": Access(
        tables=((T.REGISTRATIONS, WRITE), (T.IDEMPOTENCY, WRITE)),
        doc="REGISTER bindings (Query/Put/Delete on Registrations), once per SIP request "
        "(Powertools idempotency records).",
    ),
    "presence_lookup": Access(
        tables=(
            (T.PHONE_INDEX, READ),
            (T.ACCOUNTS, READ),
            (T.REGISTRATIONS, READ),
            (T.PUBLICATIONS, READ),
            (T.SUBSCRIPTIONS, READ),
            (T.WATCHERS, READ),
            (T.DISCOVERY_BUDGETS, WRITE),
        ),
        doc="Resolves a list: PhoneIndex BatchGetItem, status from bindings and publications, "
        "the mutual-contact rule from the watchers index; new numbers take discovery tokens.",
    ),
    "sip_subscriptions": Access(
        tables=((T.SUBSCRIPTIONS, WRITE), (T.WATCHERS, WRITE), (T.ACCOUNTS, READ)),
        edge_queues=True,
        doc="Persisted dialogs and the watchers index (save, refresh, delete, reload); a new "
        "subscription tells the edges of the lists watching its subscriber to look again.",
    ),
    "sip_publish": Access(
        tables=((T.PUBLICATIONS, WRITE), (T.IDEMPOTENCY, WRITE)),
        doc="PUBLISH (RFC 3903): entity tags and documents in Publications, once per SIP "
        "request (Powertools idempotency records).",
    ),
}

#: A function triggered by DynamoDB streams and not named above gets this profile: it finds the
#: watchers of a changed account and tells their edges, on their queues, what to look at again.
LIVE_UPDATES = Access(
    tables=(
        (T.PHONE_INDEX, READ),
        (T.ACCOUNTS, READ),
        # Write: a revoked account's bindings are deleted here (live.updates.revoke).
        (T.REGISTRATIONS, WRITE),
        (T.PUBLICATIONS, READ),
        (T.SUBSCRIPTIONS, READ),
        # Write: it deletes the watcher items of phones whose pointer expired (they have no
        # expiry of their own), as it meets them.
        (T.WATCHERS, WRITE),
        # Write: it deletes the web sessions of an account disabled, deleted or given new
        # credentials.
        (T.WEB_SESSIONS, WRITE),
    ),
    edge_queues=True,
    doc="Stream handler: watchers lookup (and cleanup), changes to the owning edge's queue; "
    "a revoked account's bindings and web sessions deleted.",
)


class UndeclaredFunction(LookupError):
    """A function in app.py has no entry in infra/access.py."""


def for_function(name: str, *, stream_handler: bool) -> Access:
    if name in FUNCTIONS:
        return FUNCTIONS[name]
    if stream_handler:
        return LIVE_UPDATES
    raise UndeclaredFunction(
        f"function {name!r} is declared in app.py but infra/access.py does not say which "
        "tables it reads or writes; add it to infra.access.FUNCTIONS"
    )
