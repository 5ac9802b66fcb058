"""Accounts: who the users are, how they prove it, and the phone numbers they own.

Owns the account store (`model`, `credentials`, `store`; this package's namespace re-exports
their public names so callers write `accounts.get(...)`), sign-up and number linking proven by
SMS codes (`signup`, `linking`, `verification`, `sms`, `rate_limits`), phone numbers (`phone`,
`phone_index`) and the operator's tool (`admin`). May import only the shared core
(`chalicelib.settings`, `tables`, `dynamo`, `aws`, `clock`, `ids`, `errors`, `digest`,
`observability`, ...), never `presence`, `live` or `api`.
"""

from chalicelib.accounts.credentials import (
    HA1_LENGTHS,
    Credentials,
    check_password,
    credentials_from_ha1,
    credentials_from_password,
)
from chalicelib.accounts.model import (
    LEGACY_USERNAME_RE,
    USERNAME_RE,
    Account,
    aor_for,
    domain,
    fold,
    validate_password,
    validate_username,
)
from chalicelib.accounts.store import (
    authenticate_password,
    create,
    delete,
    find_by_phone,
    get,
    get_by_username,
    link_phone,
    require,
    set_disabled,
    unlink_phone,
    update,
)

__all__ = [
    "HA1_LENGTHS",
    "LEGACY_USERNAME_RE",
    "USERNAME_RE",
    "Account",
    "Credentials",
    "aor_for",
    "authenticate_password",
    "check_password",
    "create",
    "credentials_from_ha1",
    "credentials_from_password",
    "delete",
    "domain",
    "find_by_phone",
    "fold",
    "get",
    "get_by_username",
    "link_phone",
    "require",
    "set_disabled",
    "unlink_phone",
    "update",
    "validate_password",
    "validate_username",
]
