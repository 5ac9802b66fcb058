"""The contract between the SIP edge and the functions: names, ids, payloads and answers.

Both sides import this module and nothing else of each other. Each function the edge calls is
a `Function` naming its payload and answer types: the edge calls it through
`Function.ask`, `app.py` registers its handler with the same `Function`, and the
function modules take and answer the same TypedDicts, so the type checker sees any drift
between the two sides. Queue messages to an edge (`LiveUpdate`, `Revocation`) are typed here
too. It imports nothing but the standard library and `settings`, so the edge carries no domain
code. A refusal is answered as `ErrorAnswer` (codes: `chalicelib.errors`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import (
    Any,
    Final,
    Generic,
    Literal,
    NotRequired,
    Protocol,
    TypedDict,
    TypeVar,
    cast,
    final,
)

from chalicelib import settings

#: Added by the edge to every invoked payload: the seconds it still waits for the answer. The
#: function bounds its own AWS calls by it (chalicelib.resilience.within_time_left), so it gives
#: up with the edge instead of working on for a phone that already got its 503.
TIME_LEFT = "time_left"
#: Longest User-Agent the edge passes on (REGISTER, SUBSCRIBE): the account's devices list
#: shows it; a longer one is cut, so a client cannot make the stored items grow.
USER_AGENT_MAX = 256


# --- Ids ----------------------------------------------------------------------------------


def subscription_id(call_id: str, local_tag: str) -> str:
    """A dialog's key: its Call-ID and the edge's own tag (RFC 6665 §4.1.3)."""
    return hashlib.sha256(f"{call_id}\x00{local_tag}".encode()).hexdigest()[:32]


def watcher_id(subscriber: str, device: str, resource: str = "") -> str:
    """One phone of one account: `device` is its +sip.instance, else its Contact URI.

    A phone that subscribes per contact (RFC 3856, baresip) holds one dialog per `resource`,
    each its own watcher: one watcher for all would keep only the last contact's keys.
    """
    key = f"{subscriber.lower()}\x00{device}" + (f"\x00{resource}" if resource else "")
    return hashlib.sha256(key.encode()).hexdigest()[:32]


#: Bytes of one entry key (a dialog's list kept as keys, sip_edge/dialog.py): a false match
#: among 5,000 entries is ~1 in 3.7e15.
ENTRY_KEY_BYTES = 8


def entry_keys(uris: Iterable[str], key: bytes) -> bytes:
    """A list's entries as sorted, distinct keyed hashes (BLAKE2b, `key` up to 64 bytes),
    concatenated: what an edge keeps of a large list. The edge picks `key` and never stores
    it, so nobody can craft a URI matching another's entry."""
    digests = {
        hashlib.blake2b(u.encode(), digest_size=ENTRY_KEY_BYTES, key=key).digest() for u in uris
    }
    return b"".join(sorted(digests))


def queue_name(edge_id: str) -> str:
    """The SQS queue on which the stream handlers tell an edge what to look at again."""
    return settings.get().edge_queue_prefix + re.sub(r"[^A-Za-z0-9_-]", "-", edge_id)[:60]


# --- Refusals -------------------------------------------------------------------------------


class ErrorDetail(TypedDict):
    """What a function refuses with: a `chalicelib.errors` code, and headers for the SIP
    answer (a list value: the header repeated)."""

    code: str
    message: str
    headers: NotRequired[dict[str, str | list[str]]]


class ErrorAnswer(TypedDict):
    error: ErrorDetail


def refusal(answer: Mapping[str, object]) -> ErrorDetail | None:
    """The refusal an answer carries, if it is one."""
    error = answer.get("error")
    return error if isinstance(error, dict) and error else None  # type: ignore[return-value]


# --- sip_auth -------------------------------------------------------------------------------


class SipAuthRequest(TypedDict):
    method: str
    realm: str
    params: dict[str, str]  # the parsed digest Authorization parameters
    source: NotRequired[str | None]  # the address the request came from (guessing limits)
    instance: NotRequired[str | None]  # the Contact's +sip.instance, when there is one


@final
class SipAuthAnswer(TypedDict):
    result: Literal["ok", "forbidden"]
    aor: NotRequired[str]  # "ok": the account the credentials prove
    reason: NotRequired[str]  # "forbidden": why, for the logs


# --- sip_registrar --------------------------------------------------------------------------


class ContactBinding(TypedDict):
    """One Contact of a REGISTER, as the edge parsed it."""

    uri: str
    expires: int | None  # its own expires parameter
    instance: str | None  # +sip.instance, quotes removed
    params: str  # its other header parameters, for the 200's Contact list


class RegisterRequest(TypedDict):
    op: Literal["register", "bindings"]  # "bindings": only list them (a REGISTER without Contact)
    aor: str
    call_id: NotRequired[str]
    cseq: NotRequired[int]
    expires_header: NotRequired[int | None]
    wildcard: NotRequired[bool]  # `Contact: *`
    source: NotRequired[str]  # "transport:host:port" the REGISTER came from
    edge_id: NotRequired[str]
    user_agent: NotRequired[str]  # the device's User-Agent, cut to USER_AGENT_MAX
    contacts: NotRequired[list[ContactBinding]]


class Binding(TypedDict):
    uri: str
    params: str
    expires: int  # seconds left


@final
class RegisterAnswer(TypedDict):
    bindings: list[Binding]


# --- sip_publish ----------------------------------------------------------------------------


class PublishRequest(TypedDict):
    op: Literal["publish"]
    aor: str
    call_id: str
    cseq: int
    if_match: str | None  # SIP-If-Match
    expires: int | None
    body_b64: str | None  # the PIDF; None: a refresh or a removal


@final
class PublishAnswer(TypedDict):
    etag: str
    expires: int


# --- sip_subscriptions: the edge's store of dialogs -----------------------------------------


class PeerRecord(TypedDict):
    transport: str
    host: str
    port: int
    connection: int | None


class DialogRecord(TypedDict):
    """A dialog as the edge stores it, so that the edge that reloads it can go on notifying.

    Versioned: `schema` is the version of this shape, and the edge reads every older one
    (`sip_edge.presence.record`). The functions store it as it comes; the account's devices
    list reads its `device` and `user_agent` (of any version: missing ones read as empty)."""

    schema: int
    subscription_id: str
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the SUBSCRIBE's To, without tag
    remote_uri: str  # the SUBSCRIBE's From, without tag
    remote_target: str  # the subscriber's Contact URI
    route_set: list[str]
    subscriber: str
    peer: PeerRecord
    expires_at: float
    event_id: str | None
    profile: str  # "linphone" or "rfc"
    accept_deflate: bool
    is_list: bool
    device: str  # the phone: its +sip.instance, else its Contact URI
    user_agent: str  # cut to USER_AGENT_MAX
    version: int  # the RLMI version of the next NOTIFY
    local_cseq: int  # the CSeq of the last NOTIFY
    remote_cseq: int
    synced: bool  # the phone answered a full-state NOTIFY before this was written


class SubscriptionSave(TypedDict):
    """A new dialog, with its list and its watcher (one phone of one account)."""

    op: Literal["save"]
    subscription_id: str
    edge_id: str
    subscriber: str
    watcher: str
    expires_at: int
    version: int
    dialog: DialogRecord
    entries: list[str]


class SubscriptionRefresh(TypedDict):
    """A stored dialog written again: a refresh, or a NOTIFY's new CSeq and version."""

    op: Literal["refresh"]
    subscription_id: str
    expires_at: int
    version: int
    dialog: DialogRecord


class SubscriptionDelete(TypedDict):
    op: Literal["delete"]
    subscription_id: str


class SubscriptionLoad(TypedDict):
    """One page of the dialogs an edge stored (its restart reloads them)."""

    op: Literal["load_edge"]
    edge_id: str
    cursor: NotRequired[str]  # the `next` of the previous page
    # A list stored deflated in more than `inline_limit` bytes comes as `entry_keys_b64`
    # (entry_keys with `keys_key_hex`) instead of its entries: ~40 KB, not ~0.6 MB.
    inline_limit: NotRequired[int]
    keys_key_hex: NotRequired[str]


SubscriptionsRequest = (
    SubscriptionSave | SubscriptionRefresh | SubscriptionDelete | SubscriptionLoad
)


class StoredSubscription(TypedDict):
    subscription_id: str
    edge_id: str
    subscriber: str
    expires_at: int
    version: int
    dialog: dict[str, Any]  # a DialogRecord of this schema or an older one
    entries: NotRequired[list[str]]
    entry_keys_b64: NotRequired[str]  # instead of entries, see SubscriptionLoad


@final
class SubscriptionsAnswer(TypedDict, total=False):
    saved: bool  # save
    found: bool  # refresh: False when the dialog is stored no more
    deleted: bool  # delete
    subscriptions: list[StoredSubscription]  # load_edge
    next: str | None  # load_edge: the cursor of the next page; None: the last one


# --- presence_lookup ------------------------------------------------------------------------


class PresenceLookupRequest(TypedDict, total=False):
    """See docs/presence_lookup.md for each field."""

    subscriber: str
    list_b64: str
    content_encoding: str | None
    entries: list[str]
    subscription_id: str  # instead of entries: the list stored with this subscription
    single: bool
    accept_encoding: list[str] | str
    profile: str  # "linphone" or "rfc"
    version: int
    full_state: bool
    list_uri: str
    region: str
    limits: dict[str, int]


class NotifyBody(TypedDict):
    """One NOTIFY's body. A single-resource lookup of a non-user answers an empty one (no
    Content-Type): the dialog stays up so that a later sign-up can be told."""

    body_b64: str
    content_type: str | None
    content_encoding: str | None
    version: int
    bytes: int
    plain_bytes: NotRequired[int]
    full_state: NotRequired[bool]  # a list's bodies: the first of a full state says so
    resources: NotRequired[int]
    users: NotRequired[int]


class ResourceAnswer(TypedDict):
    """One entry of the list: a user or not, and what the phone is told of it."""

    uri: str
    kind: Literal["phone", "account", "other"]
    user: str | None  # the account's SIP URI, or None: not a user
    status: str | None  # a fingerprint of the status the phone sees (to skip no-op NOTIFYs)
    recheck_at: int | None  # when to look at it again (a status lapsing, a deferred number)


@final
class PresenceLookupAnswer(TypedDict):
    bodies: list[NotifyBody]
    version: int  # the RLMI version of the NOTIFY after these
    entries: list[str]
    resources: list[ResourceAnswer]
    region: str
    stats: dict[str, int]


# --- Messages on an edge's queue ------------------------------------------------------------


class LiveUpdate(TypedDict):
    """One SQS message to an edge: resources of one of its dialogs to look at again."""

    subscription_id: str
    uris: list[str]


class Revocation(TypedDict):
    """One SQS message to an edge: end the dialogs `subscription_ids` of `subscriber` (an AOR,
    compared without case) with a final NOTIFY `Subscription-State: terminated;reason=<reason>`.
    Sent when the account is disabled or deleted ("rejected") or its credentials replaced
    ("deactivated": only the dialogs made before, listed here)."""

    kind: Literal["revoke"]
    subscriber: str
    reason: Literal["rejected", "deactivated"]
    subscription_ids: list[str]


# --- The functions ----------------------------------------------------------------------------

Payload = TypeVar("Payload", bound=Mapping[str, object])
Answer = TypeVar("Answer", bound=Mapping[str, object])


class Caller(Protocol):
    """How the edge reaches the functions (`sip_edge.functions`): JSON in, JSON out."""

    async def call(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Function(Generic[Payload, Answer]):
    """A function the edge calls: its name (the Lambda `<SIP_FUNCTION_PREFIX><name>`, or the
    handler of `app.py` of that name in-process), and what it takes and answers. It answers
    `Answer`, or `ErrorAnswer` when it refuses."""

    name: str

    async def ask(self, caller: Caller, payload: Payload) -> Answer | ErrorAnswer:
        """Call this function through `caller` (which raises when it cannot)."""
        return cast("Answer | ErrorAnswer", await caller.call(self.name, payload))


# Answers are `final`, so that `"error" in answer` tells a refusal from an answer to mypy too.
SIP_AUTH: Final = Function[SipAuthRequest, SipAuthAnswer]("sip_auth")
SIP_REGISTRAR: Final = Function[RegisterRequest, RegisterAnswer]("sip_registrar")
SIP_SUBSCRIPTIONS: Final = Function[SubscriptionsRequest, SubscriptionsAnswer]("sip_subscriptions")
SIP_PUBLISH: Final = Function[PublishRequest, PublishAnswer]("sip_publish")
PRESENCE_LOOKUP: Final = Function[PresenceLookupRequest, PresenceLookupAnswer]("presence_lookup")
FUNCTIONS = tuple(
    f.name for f in (SIP_AUTH, SIP_REGISTRAR, SIP_SUBSCRIPTIONS, SIP_PUBLISH, PRESENCE_LOOKUP)
)
