"""Accounts: creation with unique username and number, credentials, link/unlink/move, delete,
disable, discoverability kept in step with the phone index, password authentication."""

from __future__ import annotations

import threading

import pytest

from chalicelib import accounts, digest, tables
from chalicelib.accounts import phone, phone_index
from chalicelib.errors import DomainError

A = "+33612345678"
B = "+33698765432"


def creds(username: str, password: str = "correct horse") -> accounts.Credentials:
    return accounts.credentials_from_password(username, password)


def index_item(e164: str) -> dict | None:
    key = {"phone_hash": phone.phone_hash(e164)}
    return tables.table(tables.PHONE_INDEX).get_item(Key=key, ConsistentRead=True).get("Item")


def test_create_stores_ha1s_never_the_password(aws):
    acc = accounts.create("alice", creds("alice"), phone_e164=A)
    item = tables.table(tables.ACCOUNTS).get_item(Key={"aor": "alice@example.org"})["Item"]
    assert item["ha1_md5"] == digest.ha1("MD5", "alice", "example.org", "correct horse")
    assert item["ha1_sha256"] == digest.ha1("SHA-256", "alice", "example.org", "correct horse")
    assert "correct horse" not in repr(item)
    assert item["phone"] == A and item["discoverable"] is True and item["disabled"] is False
    assert isinstance(item["created_at"], type(item["updated_at"]))
    assert acc.aor == "alice@example.org" and acc.sip_uri == "sip:alice@example.org"
    entry = index_item(A)
    assert entry["aor"] == "alice@example.org" and entry["discoverable"] is True
    assert A not in repr(entry)  # the index holds no plain number


def test_get_exposes_ha1s_for_the_sip_edge(aws):
    accounts.create("alice", creds("alice"))
    acc = accounts.get("alice@example.org")
    assert set(acc.ha1s()) == {"MD5", "SHA-256"}
    assert accounts.get("nobody@example.org") is None
    with pytest.raises(DomainError) as e:
        accounts.require("nobody@example.org")
    assert e.value.code == "not_found"


def test_username_and_phone_are_unique(aws):
    accounts.create("alice", creds("alice"), phone_e164=A)
    with pytest.raises(DomainError) as e:
        accounts.create("alice", creds("alice"), phone_e164=B)
    assert e.value.code == "username_taken" and e.value.http_status == 409
    with pytest.raises(DomainError) as e:
        accounts.create("bob", creds("bob"), phone_e164=A)
    assert e.value.code == "phone_taken" and e.value.http_status == 409
    # A failed transaction leaves nothing behind.
    assert accounts.get_by_username("bob") is None and index_item(B) is None


@pytest.mark.parametrize(
    "name", ["ab", "a" * 65, "Alice", "al ice", "al@ce", "1234567", "+33612345678", "", "é" * 4]
)
def test_username_rules(name):
    with pytest.raises(DomainError) as e:
        accounts.validate_username(name)
    assert e.value.code == "invalid_username" and "username" in e.value.message


@pytest.mark.parametrize("name", ["abc", "a.b-c_d", "a" * 64, "007bond", "x1"[:2] + "y"])
def test_usernames_accepted(name):
    assert accounts.validate_username(name) == name


def test_username_wrong_type():
    with pytest.raises(DomainError) as e:
        accounts.validate_username(42)
    assert e.value.code == "invalid_username"


def test_legacy_usernames_for_operator_imports():
    assert accounts.validate_username("John.Doe", legacy=True) == "John.Doe"
    assert accounts.validate_username("+33612345678", legacy=True) == "+33612345678"
    with pytest.raises(DomainError):
        accounts.validate_username("a b", legacy=True)


@pytest.mark.parametrize("password", ["short", "x" * 257, "tab\there!", 12345678, None])
def test_password_rules(password):
    with pytest.raises(DomainError) as e:
        accounts.validate_password(password)
    assert e.value.code == "invalid_field" and "password" in e.value.message


def test_credentials_from_ha1():
    md5 = digest.ha1("MD5", "alice", "example.org", "pw")
    assert accounts.credentials_from_ha1(md5.upper(), "md5") == accounts.Credentials(md5, None)
    sha = digest.ha1("SHA-256", "alice", "example.org", "pw")
    assert accounts.credentials_from_ha1(sha, "SHA-256") == accounts.Credentials(None, sha)
    for bad, alg in [(md5, "SHA-256"), ("z" * 32, "MD5"), (md5, "SHA-512"), (None, "MD5")]:
        with pytest.raises(DomainError):
            accounts.credentials_from_ha1(bad, alg)


def test_authenticate_password_and_backfill_of_missing_ha1(aws):
    md5 = digest.ha1("MD5", "alice", "example.org", "correct horse")
    accounts.create("alice", accounts.Credentials(ha1_md5=md5))
    assert accounts.get_by_username("alice").ha1_sha256 is None
    assert accounts.authenticate_password("alice", "wrong password") is None
    assert accounts.authenticate_password("nobody", "correct horse") is None
    acc = accounts.authenticate_password("alice", "correct horse")
    assert acc is not None
    stored = accounts.get_by_username("alice")
    assert stored.ha1_sha256 == digest.ha1("SHA-256", "alice", "example.org", "correct horse")
    assert stored.ha1_md5 == md5


def test_link_moves_a_number_from_another_account(aws):
    accounts.create("alice", creds("alice"), phone_e164=A)
    accounts.create("bob", creds("bob"), phone_e164=B)
    bob, moved_from = accounts.link_phone("bob@example.org", A)
    assert bob.phone == A and moved_from == "alice@example.org"
    assert accounts.get_by_username("alice").phone is None
    assert index_item(A)["aor"] == "bob@example.org"
    assert index_item(B) is None  # bob's previous number is freed
    assert accounts.find_by_phone(A).username == "bob"


def test_link_a_free_number_and_relink_is_a_no_op(aws):
    accounts.create("bob", creds("bob"))
    bob, moved_from = accounts.link_phone("bob@example.org", A)
    assert moved_from is None and bob.phone == A
    again, moved_from = accounts.link_phone("bob@example.org", A)
    assert again == bob and moved_from is None


def test_unlink_frees_the_number(aws):
    accounts.create("alice", creds("alice"), phone_e164=A)
    acc = accounts.unlink_phone("alice@example.org")
    assert acc.phone is None and index_item(A) is None
    with pytest.raises(DomainError) as e:
        accounts.unlink_phone("alice@example.org")
    assert e.value.code == "no_phone" and e.value.http_status == 404
    accounts.create("carol", creds("carol"), phone_e164=A)


def test_delete_frees_username_and_number(aws):
    accounts.create("alice", creds("alice"), phone_e164=A)
    accounts.delete("alice@example.org")
    assert accounts.get_by_username("alice") is None and index_item(A) is None
    accounts.create("alice", creds("alice"), phone_e164=A)
    with pytest.raises(DomainError) as e:
        accounts.delete("nobody@example.org")
    assert e.value.code == "not_found"


def test_discoverable_follows_in_the_index(aws):
    accounts.create("alice", creds("alice"), phone_e164=A)
    acc = accounts.update("alice@example.org", discoverable=False)
    assert acc.discoverable is False and index_item(A)["discoverable"] is False
    assert phone_index.find([A]) == {}
    accounts.update("alice@example.org", discoverable=True)
    assert index_item(A)["discoverable"] is True
    assert phone_index.find([A])[A].aor == "alice@example.org"


def test_disabled_accounts_are_hidden_but_keep_their_choice(aws):
    accounts.create("alice", creds("alice"), phone_e164=A)
    acc = accounts.set_disabled("alice@example.org", True)
    assert acc.disabled and acc.discoverable
    assert index_item(A)["discoverable"] is False
    accounts.set_disabled("alice@example.org", False)
    assert index_item(A)["discoverable"] is True


def test_update_credentials_changes_the_ha1s(aws):
    accounts.create("alice", creds("alice"))
    accounts.update("alice@example.org", credentials=creds("alice", "new password"))
    assert accounts.authenticate_password("alice", "new password")
    assert accounts.authenticate_password("alice", "correct horse") is None


def test_every_write_bumps_the_version(aws):
    first = accounts.create("alice", creds("alice"))
    second = accounts.update("alice@example.org", discoverable=False)
    third = accounts.update("alice@example.org", discoverable=True)
    assert (first.version, second.version, third.version) == (1, 2, 3)
    assert first.updated_at <= second.updated_at <= third.updated_at
    assert third.created_at == first.created_at
    assert accounts.get("alice@example.org") == third


def test_writes_keep_attributes_other_modules_store(aws):
    accounts.create("alice", creds("alice"), phone_e164=A)
    table = tables.table(tables.ACCOUNTS)
    table.update_item(
        Key={"aor": "alice@example.org"},
        UpdateExpression="SET presence_note = :n",
        ExpressionAttributeValues={":n": "kept"},
    )
    accounts.update("alice@example.org", discoverable=False)
    accounts.unlink_phone("alice@example.org")
    item = table.get_item(Key={"aor": "alice@example.org"})["Item"]
    assert item["presence_note"] == "kept" and "phone" not in item


def test_accounts_written_without_a_version_can_still_change(aws):
    tables.table(tables.ACCOUNTS).put_item(
        Item={
            "aor": "old@example.org",
            "username": "old",
            "domain": "example.org",
            "ha1_md5": digest.ha1("MD5", "old", "example.org", "pw"),
        }
    )
    assert accounts.update("old@example.org", discoverable=False).version == 1
    accounts.delete("old@example.org")
    tables.table(tables.ACCOUNTS).put_item(
        Item={"aor": "old@example.org", "username": "old", "domain": "example.org"}
    )
    accounts.delete("old@example.org")
    assert accounts.get("old@example.org") is None


def _race(n: int, target) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except DomainError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_creates_of_one_number_leave_one_winner():
    results = _race(6, lambda i: accounts.create(f"user{i}", creds(f"user{i}"), phone_e164=A))
    winners = [r for r in results if isinstance(r, accounts.Account)]
    losers = [r for r in results if isinstance(r, DomainError)]
    assert len(winners) == 1 and len(losers) == 5
    assert {e.code for e in losers} == {"phone_taken"}
    assert index_item(A)["aor"] == winners[0].aor


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_creates_of_one_username_leave_one_winner():
    numbers = [f"+336123456{i:02d}" for i in range(6)]
    results = _race(6, lambda i: accounts.create("alice", creds("alice"), phone_e164=numbers[i]))
    winners = [r for r in results if isinstance(r, accounts.Account)]
    assert len(winners) == 1
    assert {r.code for r in results if isinstance(r, DomainError)} == {"username_taken"}
    # The losers' numbers were not claimed.
    assert [n for n in numbers if index_item(n)] == [winners[0].phone]


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_links_of_one_number_end_consistent():
    for i in range(4):
        accounts.create(f"user{i}", creds(f"user{i}"))
    _race(4, lambda i: accounts.link_phone(f"user{i}@example.org", A))
    owner = index_item(A)["aor"]
    holders = [i for i in range(4) if accounts.get(f"user{i}@example.org").phone == A]
    assert len(holders) == 1 and owner == f"user{holders[0]}@example.org"
