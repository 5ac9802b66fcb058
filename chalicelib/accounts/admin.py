"""Operator command: create, import, show, disable, enable and delete accounts.

    python -m chalicelib.accounts.admin create alice [--password PW | --ha1 HEX [--algorithm MD5]]
                                            [--phone +33612345678] [--region FR] [--hidden]
    python -m chalicelib.accounts.admin import-csv accounts.csv [--region FR]
    python -m chalicelib.accounts.admin show|disable|enable alice
    python -m chalicelib.accounts.admin delete alice --yes
    python -m chalicelib.accounts.admin budget show alice
    python -m chalicelib.accounts.admin budget grant alice 1000

It uses the same settings (SIP_DOMAIN, TABLE_PREFIX, AWS_ENDPOINT_URL...) as the service.
Operator imports accept existing SIP usernames (A-Z, '+', '~' too), unlike sign-up.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from chalicelib import accounts
from chalicelib.accounts import discovery_budget, phone
from chalicelib.errors import DomainError

CSV_COLUMNS = ("username", "password", "ha1", "algorithm", "phone", "discoverable")


def _aor(name: str) -> str:
    # "alice" or "alice@domain": the operator may paste either.
    return name if "@" in name else accounts.aor_of(name)


def create_account(
    username: str,
    *,
    password: str | None = None,
    ha1: str | None = None,
    algorithm: str = "MD5",
    phone_raw: str | None = None,
    region: str | None = None,
    discoverable: bool = True,
) -> accounts.Account:
    """Create one account (no SMS: the operator vouches for the number, if any)."""
    username = accounts.validate_username(username, legacy=True)
    if (password is None) == (ha1 is None):
        raise DomainError("invalid_field", "give either a password or an HA1")
    credentials = (
        accounts.credentials_from_password(username, password)
        if password is not None
        else accounts.credentials_from_ha1(ha1, algorithm)
    )
    e164 = phone.parse(phone_raw, region) if phone_raw else None
    return accounts.create(
        username, credentials, phone_e164=e164, discoverable=discoverable, legacy=True
    )


def _truthy(value: str | None) -> bool:
    return (value or "true").strip().lower() not in {"0", "false", "no", "n"}


def import_csv(
    rows: Iterable[dict[str, str]], *, region: str | None = None, out: TextIO | None = None
) -> tuple[int, int]:
    """Create an account per row (columns CSV_COLUMNS; password or ha1); report each failure
    with its line and go on. Answers (created, failed)."""
    out = out or sys.stderr
    created = failed = 0
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        try:
            create_account(
                row.get("username", ""),
                password=row.get("password") or None,
                ha1=row.get("ha1") or None,
                algorithm=row.get("algorithm") or "MD5",
                phone_raw=row.get("phone") or None,
                region=region,
                discoverable=_truthy(row.get("discoverable")),
            )
            created += 1
        except DomainError as exc:
            failed += 1
            print(f"line {line}: {row.get('username', '')!r}: {exc.code}: {exc.message}", file=out)
    return created, failed


def _show(account: accounts.Account) -> str:
    return json.dumps({**account.public(), "disabled": account.disabled}, indent=2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chalicelib.accounts.admin", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create an account (asks the password if none given)")
    create.add_argument("username")
    secret = create.add_mutually_exclusive_group()
    secret.add_argument("--password")
    secret.add_argument("--ha1", help="H(username:domain:password), hex")
    create.add_argument("--algorithm", default="MD5", choices=["MD5", "SHA-256"])
    create.add_argument("--phone", help="number to link, E.164 or national with --region")
    create.add_argument("--region", help="region of national numbers, e.g. FR")
    create.add_argument("--hidden", action="store_true", help="not discoverable")
    imp = sub.add_parser("import-csv", help=f"import accounts; columns: {', '.join(CSV_COLUMNS)}")
    imp.add_argument("file", help="CSV file with a header line, or - for stdin")
    imp.add_argument("--region", help="region of national numbers, e.g. FR")
    for name in ("show", "disable", "enable"):
        sub.add_parser(name, help=f"{name} an account").add_argument("username")
    delete = sub.add_parser("delete", help="delete an account, freeing its username and number")
    delete.add_argument("username")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    budget = sub.add_parser("budget", help="show or grant an account's discovery tokens")
    budget.add_argument("action", choices=["show", "grant"])
    budget.add_argument("username")
    budget.add_argument("tokens", nargs="?", type=int, help="tokens to add (grant)")
    return parser


def _budget(action: str, username: str, tokens: int | None) -> int:
    aor = accounts.require(_aor(username)).aor
    if action == "show":
        print(json.dumps(discovery_budget.show(aor), indent=2))
        return 0
    if tokens is None or tokens <= 0:
        print("error: grant takes a positive number of tokens", file=sys.stderr)
        return 1
    print(json.dumps(discovery_budget.grant(aor, tokens), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "create":
            password = args.password
            if password is None and args.ha1 is None:
                password = getpass.getpass(f"password for {args.username}: ")
            account = create_account(
                args.username,
                password=password,
                ha1=args.ha1,
                algorithm=args.algorithm,
                phone_raw=args.phone,
                region=args.region,
                discoverable=not args.hidden,
            )
            print(_show(account))
        elif args.command == "import-csv":
            with (
                open(args.file, newline="", encoding="utf-8-sig") if args.file != "-" else sys.stdin
            ) as handle:
                created, failed = import_csv(csv.DictReader(handle), region=args.region)
            print(f"{created} created, {failed} failed", file=sys.stderr)
            return 1 if failed else 0
        elif args.command == "show":
            print(_show(accounts.require(_aor(args.username))))
        elif args.command in {"disable", "enable"}:
            account = accounts.set_disabled(_aor(args.username), args.command == "disable")
            print(_show(account))
        elif args.command == "delete":
            if not args.yes:
                print("refusing to delete without --yes", file=sys.stderr)
                return 2
            accounts.delete(_aor(args.username))
            print(f"deleted {_aor(args.username)}")
        elif args.command == "budget":
            return _budget(args.action, args.username, args.tokens)
    except DomainError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
