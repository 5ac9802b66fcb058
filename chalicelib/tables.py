"""The DynamoDB table schemas: the single definition used by the local stack, the tests and the
CloudFormation template (`infra/`).

Each `TableSpec` renders itself both as `create_table` arguments (local stack, tests) and as an
`AWS::DynamoDB::Table` resource (infra). All tables are on-demand (PAY_PER_REQUEST).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib import settings


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: str
    range_key: str | None = None
    projection: str = "ALL"  # KEYS_ONLY where the reader fetches the items again anyway


@dataclass(frozen=True)
class TableSpec:
    logical: str  # CloudFormation logical id suffix and default table name suffix
    hash_key: str
    range_key: str | None = None
    ttl_attribute: str | None = None
    stream: bool = False  # NEW_AND_OLD_IMAGES, for the live-update handler
    indexes: tuple[Index, ...] = field(default_factory=tuple)
    doc: str = ""

    @property
    def env_var(self) -> str:
        return (
            "TABLE_"
            + "".join("_" + c if c.isupper() else c for c in self.logical).lstrip("_").upper()
        )

    def name(self) -> str:
        import os

        return os.environ.get(self.env_var) or settings.get().table_prefix + self.logical

    def _attributes(self) -> list[dict[str, str]]:
        names = [self.hash_key] + ([self.range_key] if self.range_key else [])
        for ix in self.indexes:
            names += [ix.hash_key] + ([ix.range_key] if ix.range_key else [])
        seen: list[str] = []
        for n in names:
            if n not in seen:
                seen.append(n)
        return [{"AttributeName": n, "AttributeType": "S"} for n in seen]

    def _keys(self, hash_key: str, range_key: str | None) -> list[dict[str, str]]:
        keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
        return keys

    def create_table_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self.name(),
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": self._attributes(),
            "KeySchema": self._keys(self.hash_key, self.range_key),
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": ix.name,
                    "KeySchema": self._keys(ix.hash_key, ix.range_key),
                    "Projection": {"ProjectionType": ix.projection},
                }
                for ix in self.indexes
            ]
        if self.stream:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
        return kwargs

    def cloudformation(self, name: Any) -> dict[str, Any]:
        """The `AWS::DynamoDB::Table` resource; `name` may be a CloudFormation intrinsic."""
        kwargs = self.create_table_kwargs()
        props: dict[str, Any] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": kwargs["AttributeDefinitions"],
            "KeySchema": kwargs["KeySchema"],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
        }
        if "GlobalSecondaryIndexes" in kwargs:
            props["GlobalSecondaryIndexes"] = kwargs["GlobalSecondaryIndexes"]
        if self.stream:
            props["StreamSpecification"] = {"StreamViewType": "NEW_AND_OLD_IMAGES"}
        if self.ttl_attribute:
            props["TimeToLiveSpecification"] = {
                "AttributeName": self.ttl_attribute,
                "Enabled": True,
            }
        return {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": props,
        }


ACCOUNTS = TableSpec(
    "Accounts",
    hash_key="aor",
    stream=True,
    # Only pending accounts (made by an app's creation token, no number proven yet) have it.
    ttl_attribute="pending_until",
    doc="One item per account, keyed by its address of record `username@domain`.",
)
PHONE_INDEX = TableSpec(
    "PhoneIndex",
    hash_key="phone_hash",
    stream=True,
    doc="HMAC-SHA256(key, E.164) -> account; one item per linked number (uniqueness).",
)
VERIFICATION_CODES = TableSpec(
    "VerificationCodes",
    hash_key="code_id",
    ttl_attribute="expires_at",
    doc="Pending SMS codes, keyed by purpose and phone hash, stored as an HMAC.",
)
RATE_LIMITS = TableSpec(
    "RateLimits",
    hash_key="bucket",
    ttl_attribute="expires_at",
    doc="Fixed-window counters for anti-abuse limits, updated atomically.",
)
DISCOVERY_BUDGETS = TableSpec(
    "DiscoveryBudgets",
    hash_key="aor",
    ttl_attribute="expires_at",
    doc="Per account: discovery tokens left and the numbers already answered (4-byte HMACs).",
)
IDEMPOTENCY = TableSpec(
    "Idempotency",
    hash_key="id",
    ttl_attribute="expiration",
    doc="Powertools idempotency records (retried confirms answer the same).",
)
REGISTRATIONS = TableSpec(
    "Registrations",
    hash_key="aor",
    range_key="contact_key",
    ttl_attribute="expires_at",
    stream=True,
    doc="REGISTER bindings of each account (online while one is live).",
)
PUBLICATIONS = TableSpec(
    "Publications",
    hash_key="aor",
    range_key="etag",
    ttl_attribute="expires_at",
    stream=True,
    doc="PUBLISHed presence documents (RFC 3903), one per entity tag.",
)
SUBSCRIPTIONS = TableSpec(
    "Subscriptions",
    hash_key="subscription_id",
    ttl_attribute="expires_at",
    # Read at an edge's restart only, then each item is fetched whole: keys are enough.
    # by_subscriber: an account's dialogs, to end them when it is disabled, deleted or
    # recovered (watcher pointers carry the subscriber too; readers skip them).
    indexes=(
        Index("by_edge", "edge_id", "subscription_id", projection="KEYS_ONLY"),
        Index("by_subscriber", "subscriber", "subscription_id", projection="KEYS_ONLY"),
    ),
    doc="Live SUBSCRIBE dialogs with their list, version and owning edge.",
)
WATCHERS = TableSpec(
    "Watchers",
    hash_key="watched",
    range_key="watcher",
    # No expiry of their own: a watcher's pointer (in Subscriptions) expires, and readers then
    # delete its items.
    doc="Watchers index: phone hash or account AOR -> the phones (watchers) whose lists hold it.",
)

WEB_SESSIONS = TableSpec(
    "WebSessions",
    hash_key="session_hash",
    ttl_attribute="expires_at",
    # by_account: an account's sessions, to end them (new password, recovery, disable, delete)
    # and to keep at most WEB_SESSIONS_PER_ACCOUNT.
    indexes=(Index("by_account", "aor", "session_hash"),),
    doc="Signed-in web sessions: a keyed hash of the cookie's token -> account, with expiry.",
)

TOKENS = TableSpec(
    "Tokens",
    hash_key="token_id",
    ttl_attribute="expires_at",
    doc="Single-use, short-lived tokens (account creation, creation requests, provisioning"
    " links), keyed by a keyed hash of their value.",
)

ALL: tuple[TableSpec, ...] = (
    ACCOUNTS,
    PHONE_INDEX,
    VERIFICATION_CODES,
    RATE_LIMITS,
    DISCOVERY_BUDGETS,
    IDEMPOTENCY,
    REGISTRATIONS,
    PUBLICATIONS,
    SUBSCRIPTIONS,
    WATCHERS,
    WEB_SESSIONS,
    TOKENS,
)


def create_all(dynamodb_client: Any) -> None:
    """Create every table (and its TTL) if missing: the local stack's and the tests' bootstrap."""
    existing = set(dynamodb_client.list_tables()["TableNames"])
    for spec in ALL:
        if spec.name() in existing:
            continue
        dynamodb_client.create_table(**spec.create_table_kwargs())
        if spec.ttl_attribute:
            dynamodb_client.update_time_to_live(
                TableName=spec.name(),
                TimeToLiveSpecification={"AttributeName": spec.ttl_attribute, "Enabled": True},
            )


def stream_arn(spec: TableSpec) -> str:
    """The stream a handler listens to: set by the deployment, a placeholder for packaging."""
    import os

    return os.environ.get(
        f"{spec.env_var}_STREAM_ARN",
        f"arn:aws:dynamodb:{settings.aws_region()}:000000000000:table/{spec.name()}/stream/latest",
    )


def table(spec: TableSpec) -> Any:
    """The boto3 Table of `spec`, made once per resource: boto3 builds each Table from its
    resource model, a millisecond of CPU that every call through it would pay again."""
    from chalicelib.aws import resource

    dynamodb = resource("dynamodb")
    made: dict[str, Any] = dynamodb.__dict__.setdefault("_tables_made", {})
    name = spec.name()
    found = made.get(name)
    if found is None:
        found = made[name] = dynamodb.Table(name)
    return found
