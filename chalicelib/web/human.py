"""A browser's proof that someone is there, for the one page a script must not complete on
its own: the validation of an app's account-creation request. ALTCHA's proof of work (the
`altcha` library makes and checks the challenges): the page carries a challenge signed with
our key, the browser's script finds the number whose hash it is (about half of
`WEB_HUMAN_CHECK_MAX_NUMBER` SHA-256 hashes, a second or two on a phone), and the form posts
it back. No third party sees the visitor, nothing is stored, there is no puzzle to read or
hear; a challenge is bound to what it validates, so one proof serves once, and expires.

What it proves is cost, not humanity: a script pays the same hashes per request. Together with
the budgets per source address on the requests themselves, that keeps mass creation
expensive; an operator who needs more adds a captcha service here.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import altcha

from chalicelib import clock, settings
from chalicelib.digest import keyed_hash

#: Longest payload considered (a real one is about 300 bytes).
MAX_PAYLOAD = 2048


def _key() -> str:
    return keyed_hash(settings.get().code_hash_key, "web-human-check")


def _bound(subject: str) -> str:
    return keyed_hash(_key(), "for|" + subject, length=32)


def challenge(subject: str) -> dict[str, Any]:
    """A new challenge for the page validating `subject` (what the browser's script solves)."""
    s = settings.get()
    expires = datetime.fromtimestamp(clock.now(), UTC) + timedelta(seconds=s.web_human_check_ttl)
    made = altcha.create_challenge_v1(
        altcha.ChallengeOptionsV1(
            algorithm="SHA-256",
            max_number=s.web_human_check_max_number,
            hmac_key=_key(),
            expires=expires,
            params={"for": _bound(subject)},
        )
    )
    return made.to_dict()


def proven(payload: object, subject: str) -> bool:
    """Whether `payload` (the form's base64 JSON answer) solves a live challenge of ours made
    for `subject`."""
    if not isinstance(payload, str) or not payload or len(payload) > MAX_PAYLOAD:
        return False
    try:
        data = json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return False
    if not isinstance(data, dict) or not isinstance(data.get("salt"), str):
        return False
    ok, _ = altcha.verify_solution_v1(payload, _key(), check_expires=True)
    return bool(ok) and altcha.extract_params_v1(cast(Any, data)).get("for") == [_bound(subject)]
