"""The contract between the SIP edge and the functions: names, ids and payload shapes.

Both sides import this module and nothing else of each other: the edge builds these payloads
and reads these answers; the handlers in `app.py` take and return them. It imports nothing but
the standard library and `settings`, so the edge carries no domain code. Answers that report a
refusal carry `{"error": {"code", "message", "headers"}}` (codes: `chalicelib.errors`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, Literal, NotRequired, TypedDict

from chalicelib import settings

# --- Function names (Lambda `<SIP_FUNCTION_PREFIX><name>`, or app.py handlers in-process) -----

SIP_AUTH = "sip_auth"
SIP_REGISTRAR = "sip_registrar"
SIP_SUBSCRIPTIONS = "sip_subscriptions"
SIP_PUBLISH = "sip_publish"
PRESENCE_LOOKUP = "presence_lookup"
FUNCTIONS = (SIP_AUTH, SIP_REGISTRAR, SIP_SUBSCRIPTIONS, SIP_PUBLISH, PRESENCE_LOOKUP)
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


# --- Payloads and answers -------------------------------------------------------------------


class FunctionError(TypedDict):
    code: str
    message: str
    headers: NotRequired[dict[str, str]]


class ErrorAnswer(TypedDict):
    error: FunctionError


class SipAuthRequest(TypedDict):
    method: str
    realm: str
    params: dict[str, str]  # the parsed digest Authorization parameters
    source: NotRequired[str]  # the address the request came from (password-guessing limits)
    instance: NotRequired[str | None]  # the Contact's +sip.instance, when there is one


class SipAuthAnswer(TypedDict):
    result: Literal["ok", "forbidden"]
    aor: NotRequired[str]
    reason: NotRequired[str]


class ContactBinding(TypedDict):
    uri: str
    expires: int | None
    instance: str | None
    params: str


class RegisterRequest(TypedDict):
    op: Literal["register", "bindings"]
    aor: str
    call_id: NotRequired[str]
    cseq: NotRequired[int]
    expires_header: NotRequired[int | None]
    wildcard: NotRequired[bool]
    source: NotRequired[str]
    edge_id: NotRequired[str]
    user_agent: NotRequired[str]  # the device's User-Agent, cut to USER_AGENT_MAX
    contacts: NotRequired[list[ContactBinding]]


class Binding(TypedDict):
    uri: str
    params: str
    expires: int


class RegisterAnswer(TypedDict):
    bindings: list[Binding]


class PublishRequest(TypedDict):
    op: Literal["publish"]
    aor: str
    call_id: str
    cseq: int
    if_match: str | None
    expires: int | None
    body_b64: str | None


class PublishAnswer(TypedDict):
    etag: str
    expires: int


class SubscriptionSave(TypedDict):
    op: Literal["save", "refresh"]
    subscription_id: str
    expires_at: int
    version: int
    dialog: dict[str, Any]  # SubscriptionDialog.to_json()
    edge_id: NotRequired[str]
    subscriber: NotRequired[str]
    entries: NotRequired[list[str]]
    watcher: NotRequired[str]


class SubscriptionDelete(TypedDict):
    op: Literal["delete"]
    subscription_id: str


class SubscriptionLoad(TypedDict):
    op: Literal["load_edge"]
    edge_id: str
    cursor: NotRequired[str]  # the `next` of the previous page
    # A list stored deflated in more than `inline_limit` bytes comes as `entry_keys_b64`
    # (entry_keys with `keys_key_hex`) instead of its entries: ~40 KB, not ~0.6 MB.
    inline_limit: NotRequired[int]
    keys_key_hex: NotRequired[str]


class StoredSubscription(TypedDict):
    subscription_id: str
    expires_at: int
    version: int
    dialog: dict[str, Any]
    entries: NotRequired[list[str]]
    entry_keys_b64: NotRequired[str]  # instead of entries, see SubscriptionLoad


class SubscriptionsAnswer(TypedDict, total=False):
    saved: bool
    found: bool
    deleted: bool
    subscriptions: list[StoredSubscription]
    next: str  # load_edge: the cursor of the next page, when there is one


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
    body_b64: str
    content_type: str
    content_encoding: str | None
    version: int
    full_state: bool
    resources: int
    users: int
    bytes: int
    plain_bytes: int


class ResourceAnswer(TypedDict):
    uri: str
    kind: Literal["phone", "account", "other"]
    user: str | None
    state: NotRequired[str]


class PresenceLookupAnswer(TypedDict):
    bodies: list[NotifyBody]
    version: int
    entries: list[str]
    resources: list[ResourceAnswer]
    region: str
    stats: dict[str, int]


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
    reason: str
    subscription_ids: list[str]
