"""Operator command: create, import, show, disable, enable and delete accounts; stats.

    python -m chalicelib.accounts.admin create alice [--password PW | --ha1 HEX [--algorithm MD5]]
                                            [--phone +33612345678] [--region FR] [--hidden]
    python -m chalicelib.accounts.admin import-csv accounts.csv [--region FR] [--check]
                                               [--workers 8]
    python -m chalicelib.accounts.admin show|disable|enable alice
    python -m chalicelib.accounts.admin delete alice --yes
    python -m chalicelib.accounts.admin stats
    python -m chalicelib.accounts.admin budget show alice
    python -m chalicelib.accounts.admin budget grant alice 1000

Every command takes `--json` (machine-readable output on stdout). It uses the same settings
(SIP_DOMAIN, TABLE_PREFIX, AWS_ENDPOINT_URL...) as the service. Operator imports accept
existing SIP usernames (A-Z, '+', '~' too), unlike sign-up. An import checks every line first
(format, duplicates within the file) and reports each bad one by line; each account is then
written in one transaction with its number, so none is ever half there.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import accounts, clock, tables
from chalicelib.accounts import discovery_budget, phone
from chalicelib.errors import DomainError

CSV_COLUMNS = ("username", "password", "ha1", "algorithm", "phone", "discoverable")


def _aor(name: str) -> str:
    # "alice" or "alice@domain": the operator may paste either.
    return name if "@" in name else accounts.aor_for(name)


@dataclass(frozen=True)
class NewAccount:
    """One account to create, checked and ready to write."""

    username: str
    credentials: accounts.Credentials
    e164: str | None
    discoverable: bool


def prepare_account(
    username: str,
    *,
    password: str | None = None,
    ha1: str | None = None,
    algorithm: str = "MD5",
    phone_raw: str | None = None,
    region: str | None = None,
    discoverable: bool = True,
) -> NewAccount:
    """Check one account's fields without writing anything."""
    username = accounts.validate_username(username, legacy=True)
    if (password is None) == (ha1 is None):
        raise DomainError("invalid_field", "give either a password or an HA1")
    credentials = (
        accounts.credentials_from_password(username, password)
        if password is not None
        else accounts.credentials_from_ha1(ha1, algorithm)
    )
    e164 = phone.parse(phone_raw, region) if phone_raw else None
    return NewAccount(username, credentials, e164, discoverable)


def write_account(new: NewAccount) -> accounts.Account:
    """Create it: the account and its number in one transaction (no SMS: the operator vouches
    for the number). A transaction that went through although its answer was lost (a timeout,
    then botocore's retry) finds its own account: that is success, not `username_taken`."""
    try:
        return accounts.create(
            new.username,
            new.credentials,
            phone_e164=new.e164,
            discoverable=new.discoverable,
            legacy=True,
        )
    except DomainError as exc:
        existing = accounts.get_by_username(new.username) if exc.code == "username_taken" else None
        if existing is not None and _is_this_row(existing, new):
            return existing
        raise


def _is_this_row(account: accounts.Account, new: NewAccount) -> bool:
    given = new.credentials
    return (
        account.username == new.username
        and account.phone == new.e164
        and (given.ha1_md5 is None or account.ha1_md5 == given.ha1_md5)
        and (given.ha1_sha256 is None or account.ha1_sha256 == given.ha1_sha256)
    )


def create_account(username: str, **fields: Any) -> accounts.Account:
    """Create one account (see prepare_account for the fields)."""
    return write_account(prepare_account(username, **fields))


def _truthy(value: str | None) -> bool:
    return (value or "true").strip().lower() not in {"0", "false", "no", "n"}


@dataclass
class LineError:
    line: int
    username: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.username!r}: {self.code}: {self.message}"


@dataclass
class ImportResult:
    rows: int = 0
    created: int = 0
    failed: int = 0
    checked_only: bool = False
    seconds: float = 0.0
    errors: list[LineError] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.created / self.seconds if self.seconds else 0.0
        verb = "would be created" if self.checked_only else "created"
        return (
            f"{self.rows} rows: {self.created} {verb}, {self.failed} failed, "
            f"in {self.seconds:.1f} s ({rate:.0f} accounts/s)"
        )


def _prepare_rows(
    rows: Iterable[dict[str | None, Any]], region: str | None, errors: list[LineError]
) -> list[tuple[int, NewAccount]]:
    """Check every row, and the file as a whole (a username or number twice)."""
    ready: list[tuple[int, NewAccount]] = []
    first_line: dict[str, tuple[int, str]] = {}  # key -> (line, as written there)
    for line, raw in enumerate(rows, start=2):  # line 1 is the header
        if raw.get(None):  # csv.DictReader puts fields beyond the header under None
            errors.append(LineError(line, "", "invalid_line", "more fields than the header"))
            continue
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        username = row.get("username", "")
        try:
            new = prepare_account(
                username,
                password=row.get("password") or None,
                ha1=row.get("ha1") or None,
                algorithm=row.get("algorithm") or "MD5",
                phone_raw=row.get("phone") or None,
                region=region,
                discoverable=_truthy(row.get("discoverable")),
            )
        except DomainError as exc:
            errors.append(LineError(line, username, exc.code, exc.message))
            continue
        # Usernames are one identity whatever their case (accounts.fold): compare folded.
        keys = [("username", accounts.aor_for(new.username))]
        if new.e164:
            keys.append(("phone", new.e164))
        twice = [(kind, first_line[key]) for kind, key in keys if key in first_line]
        if twice:
            kind, (earlier, written) = twice[0]
            code = "username_taken" if kind == "username" else "duplicate_phone"
            errors.append(
                LineError(line, username, code, f"the same {kind} as line {earlier} ({written!r})")
            )
            continue
        for kind, key in keys:
            first_line[key] = (line, username if kind == "username" else row.get("phone", ""))
        ready.append((line, new))
    return ready


def import_csv(
    rows: Iterable[dict[str | None, Any]],
    *,
    region: str | None = None,
    out: TextIO | None = None,
    workers: int = 8,
    check_only: bool = False,
    progress: bool = False,
) -> ImportResult:
    """Create an account per row (columns CSV_COLUMNS; password or ha1). Every row is checked
    before any is written; each failure is reported with its line and the import goes on."""
    from tqdm import tqdm  # the operator's tool only: not packaged for Lambda

    started = time.monotonic()
    result = ImportResult(checked_only=check_only)
    checking = tqdm(rows, desc="checked", unit="row", disable=not progress, file=sys.stderr)
    ready = _prepare_rows(checking, region, result.errors)
    checking.close()
    result.rows = len(ready) + len(result.errors)
    if check_only:
        result.created = len(ready)
    else:
        with (
            tqdm(
                total=len(ready),
                desc="written",
                unit="account",
                disable=not progress,
                file=sys.stderr,
            ) as bar,
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        ):
            futures = {pool.submit(write_account, new): (line, new) for line, new in ready}
            for future in as_completed(futures):
                line, new = futures[future]
                try:
                    future.result()
                    result.created += 1
                except DomainError as exc:
                    message = exc.message
                    existing = (
                        accounts.get_by_username(new.username)
                        if exc.code == "username_taken"
                        else None
                    )
                    if existing is not None:  # say whom it collides with, case included
                        message += f" by the existing account {existing.username!r}"
                    result.errors.append(LineError(line, new.username, exc.code, message))
                except (ClientError, BotoCoreError) as exc:
                    # The account's transaction did not happen: nothing of it was written.
                    result.errors.append(LineError(line, new.username, "service_error", str(exc)))
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # a bug: stop writing, let it show
                    raise
                bar.update()
    result.errors.sort(key=lambda e: e.line)
    result.failed = len(result.errors)
    result.seconds = time.monotonic() - started
    if out is not None:
        for error in result.errors:
            print(error, file=out)
    return result


def _count(spec: tables.TableSpec, **scan: Any) -> int:
    table, total, start = tables.table(spec), 0, None
    while True:
        page = table.scan(Select="COUNT", **scan, **({"ExclusiveStartKey": start} if start else {}))
        total += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return total


def stats() -> dict[str, Any]:
    """Accounts, linked numbers, the discoverable share and live subscriptions (table scans:
    an operator's occasional question, never the service's)."""
    from boto3.dynamodb.conditions import Attr

    total = _count(tables.ACCOUNTS)
    enabled = Attr("disabled").ne(True)
    discoverable = _count(tables.ACCOUNTS, FilterExpression=Attr("discoverable").eq(True) & enabled)
    disabled = _count(tables.ACCOUNTS, FilterExpression=Attr("disabled").eq(True))
    with_phone = _count(tables.ACCOUNTS, FilterExpression=Attr("phone").exists())
    linked = _count(tables.PHONE_INDEX)
    live = _count(
        tables.SUBSCRIPTIONS,
        # Pointer items (a phone's current list) have no edge: dialogs only.
        FilterExpression=Attr("edge_id").exists() & Attr("expires_at").gt(clock.now_int()),
    )
    return {
        "accounts": total,
        "disabled": disabled,
        "with_number": with_phone,
        "linked_numbers": linked,
        "discoverable": discoverable,
        "discoverable_share": round(discoverable / total, 4) if total else 0.0,
        "live_subscriptions": live,
    }


def _public(account: accounts.Account) -> dict[str, Any]:
    return {**account.public(), "disabled": account.disabled}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chalicelib.accounts.admin", description=__doc__.split("\n")[0]
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    create = command("create", help="create an account (asks the password if none given)")
    create.add_argument("username")
    secret = create.add_mutually_exclusive_group()
    secret.add_argument("--password")
    secret.add_argument("--ha1", help="H(username:domain:password), hex")
    create.add_argument("--algorithm", default="MD5", choices=["MD5", "SHA-256"])
    create.add_argument("--phone", help="number to link, E.164 or national with --region")
    create.add_argument("--region", help="region of national numbers, e.g. FR")
    create.add_argument("--hidden", action="store_true", help="not discoverable")
    imp = command("import-csv", help=f"import accounts; columns: {', '.join(CSV_COLUMNS)}")
    imp.add_argument("file", help="CSV file with a header line, or - for stdin")
    imp.add_argument("--region", help="region of national numbers, e.g. FR")
    imp.add_argument("--check", action="store_true", help="check every line, write nothing")
    imp.add_argument(
        "--workers", type=int, default=8, help="accounts written in parallel (default 8)"
    )
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    for name in ("show", "disable", "enable"):
        command(name, help=f"{name} an account").add_argument("username")
    delete = command("delete", help="delete an account, freeing its username and number")
    delete.add_argument("username")
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    command("stats", help="accounts, linked numbers, discoverable share, live subscriptions")
    budget = command("budget", help="show or grant an account's discovery tokens")
    budget.add_argument("action", choices=["show", "grant"])
    budget.add_argument("username")
    budget.add_argument("tokens", nargs="?", type=int, help="tokens to add (grant)")
    return parser


def _import(args: argparse.Namespace) -> int:
    with (
        open(args.file, newline="", encoding="utf-8-sig") if args.file != "-" else sys.stdin
    ) as handle:
        reader = csv.DictReader(handle)
        if "username" not in [(f or "").strip().lower() for f in reader.fieldnames or []]:
            raise DomainError("invalid_field", f"line 1: the header must name {CSV_COLUMNS}")
        result = import_csv(
            reader,
            region=args.region,
            out=None if args.json else sys.stderr,
            workers=args.workers,
            check_only=args.check,
            progress=not (args.quiet or args.json),
        )
    if args.json:
        print(json.dumps(asdict(result)))
    print(result.summary(), file=sys.stderr)
    return 1 if result.failed else 0


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
    # An operator's batch waits for AWS rather than fail fast like a phone's request does.
    os.environ.setdefault("AWS_READ_TIMEOUT", "30")
    os.environ.setdefault("AWS_MAX_ATTEMPTS", "5")

    def emit(data: dict[str, Any], text: str | None = None) -> None:
        print(json.dumps(data) if args.json else text or json.dumps(data, indent=2))

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
            emit(_public(account))
        elif args.command == "import-csv":
            return _import(args)
        elif args.command == "show":
            emit(_public(accounts.require(_aor(args.username))))
        elif args.command in {"disable", "enable"}:
            emit(_public(accounts.set_disabled(_aor(args.username), args.command == "disable")))
        elif args.command == "delete":
            if not args.yes:
                print("refusing to delete without --yes", file=sys.stderr)
                return 2
            accounts.delete(_aor(args.username))
            emit({"deleted": _aor(args.username)}, f"deleted {_aor(args.username)}")
        elif args.command == "stats":
            data = stats()
            emit(data, "\n".join(f"{k:20} {v}" for k, v in data.items()))
        elif args.command == "budget":
            return _budget(args.action, args.username, args.tokens)
    except DomainError as exc:
        if args.json:
            print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
