"""Shared helpers of the presence tests: fixture SUBSCRIBEs, seeded accounts, golden-file ids.
The NOTIFY body parser they check bodies with is `testkit.notify_body`."""

from __future__ import annotations

import re

from chalicelib import tables
from chalicelib.accounts import phone
from tests.conftest import INTEROP

#: The entries of the captured SUBSCRIBEs, in order.
FIXTURE_ENTRIES = [
    "sip:+33600000002@example.org;user=phone",
    "sip:+33612345678@example.org;user=phone",
    "sip:+33700000001@example.org;user=phone",
    "sip:carol@example.org",
    "sip:dave@example.org",
]
#: Who is a user in the accepted NOTIFY fixtures.
FIXTURE_USERS = {
    "sip:+33612345678@example.org;user=phone": "sip:bob@example.org",
    "sip:carol@example.org": "sip:carol@example.org",
}


def sip_message(name: str) -> tuple[dict[str, str], bytes]:
    """Headers (lower-case names, last wins) and body of a captured message."""
    raw = (INTEROP / "sip" / f"{name}.raw").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    headers: dict[str, str] = {}
    for line in head.decode().split("\r\n")[1:]:
        name_, _, value = line.partition(":")
        headers[name_.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return headers, body[:length]


def put_account(
    username: str,
    *,
    phone_number: str | None = None,
    discoverable: bool = True,
    disabled: bool = False,
    domain: str = "example.org",
) -> None:
    aor = f"{username}@{domain}"
    item: dict[str, object] = {
        "aor": aor,
        "username": username,
        "domain": domain,
        "discoverable": discoverable,
        "disabled": disabled,
    }
    if phone_number:
        item["phone"] = phone_number
        tables.table(tables.PHONE_INDEX).put_item(
            Item={
                "phone_hash": phone.phone_hash(phone_number),
                "aor": aor,
                "discoverable": discoverable and not disabled,
            }
        )
    tables.table(tables.ACCOUNTS).put_item(Item=item)


def seed_fixture_users() -> None:
    put_account("bob", phone_number="+33612345678")
    put_account("carol")


class SequentialIds:
    """Predictable tokens for golden files: "a0000001", "a0000002", ... padded to `length`."""

    def __init__(self) -> None:
        self._n = 0

    def __call__(self, length: int) -> str:
        self._n += 1
        digits = str(self._n)
        return "a" + digits.rjust(max(length - 1, len(digits)), "0")


UNQUOTED_LAST_BOUNDARY = re.compile(
    r'^multipart/related;type="application/rlmi\+xml";start="<[^<>"]+>";'
    r"boundary=[0-9A-Za-z'()+_,./:=?-]{1,70}$"
)
