"""What the presence core answers: the actions its driver carries out, and for a SUBSCRIBE the
response (`Reply`) or the lookup it needs first (`Opening`). An action with an outcome is handed
back to the core with it (`PresenceCore.looked_up`, `stored`, `notified`); the others are done
and forgotten. An action names the dialog and the piece of work it belongs to, so a late
outcome (its dialog ended meanwhile) is recognised and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib import edge_contract as contract
from sip_edge.dialog import SubscriptionDialog, Work
from sip_edge.sip.message import Request, Response


@dataclass(eq=False)
class Lookup:
    """Call `presence_lookup`; hand the answer to `looked_up`, a failure to `lookup_failed`."""

    dialog: SubscriptionDialog
    work: Work
    payload: contract.PresenceLookupRequest


@dataclass(eq=False)
class Store:
    """Call `sip_subscriptions` save or refresh; hand the outcome to `stored`."""

    dialog: SubscriptionDialog
    payload: contract.SubscriptionSave | contract.SubscriptionRefresh
    work: Work | None = None  # None: a write of its own (a clean stop's)


@dataclass(eq=False)
class Delete:
    """Call `sip_subscriptions` delete: the dialog is over (its outcome changes nothing)."""

    subscription_id: str


@dataclass(eq=False)
class SendNotify:
    """Send `request` in a client transaction to the dialog's peer; hand its final status to
    `notified`. At most one per dialog is out at a time."""

    dialog: SubscriptionDialog
    request: Request
    final: bool  # Subscription-State: terminated


@dataclass(eq=False)
class Ack:
    """Delete these queue messages: their change reached the phone, or has nowhere to go."""

    receipts: list[str] = field(default_factory=list)


@dataclass(eq=False)
class Release:
    """Hand these queue messages back at once (the edge stops): the next edge reads them."""

    receipts: list[str] = field(default_factory=list)


Action = Lookup | Store | Delete | SendNotify | Ack | Release


@dataclass
class Opening:
    """A new SUBSCRIBE accepted so far: its driver makes `lookup` within the request (a
    failure answers it), then hands the answer to `opened`."""

    request: Request
    dialog: SubscriptionDialog
    expires: int
    lookup: contract.PresenceLookupRequest


@dataclass
class Reply:
    """The answer to a SUBSCRIBE, and what follows once it is sent."""

    response: Response
    then: list[Action]
