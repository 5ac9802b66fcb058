"""The operator command: create, import from CSV, show, disable, enable, delete, stats."""

from __future__ import annotations

import io
import json
import time

from chalicelib import accounts, digest
from chalicelib.accounts import admin, phone_index

A = "+33612345678"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = admin.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_create_without_phone_then_with(aws, capsys):
    status, out, _ = run(capsys, "create", "Legacy.User", "--password", "correct horse")
    assert status == 0 and json.loads(out)["sip_uri"] == "sip:legacy.user@example.org"
    assert accounts.authenticate_password("Legacy.User", "correct horse")
    status, out, _ = run(
        capsys,
        "create",
        "bob",
        "--password",
        "correct horse",
        "--phone",
        "0612345678",
        "--region",
        "FR",
    )
    assert status == 0 and json.loads(out)["phone"] == A
    assert phone_index.find([A])[A].aor == "bob@example.org"


def test_create_asks_the_password_when_none_given(aws, capsys, monkeypatch):
    monkeypatch.setattr(admin.getpass, "getpass", lambda prompt: "typed password")
    assert run(capsys, "create", "carol")[0] == 0
    assert accounts.authenticate_password("carol", "typed password")


def test_create_from_ha1_and_errors(aws, capsys):
    ha1 = digest.ha1("SHA-256", "dave", "example.org", "pw-pw-pw-pw")
    assert run(capsys, "create", "dave", "--ha1", ha1, "--algorithm", "SHA-256")[0] == 0
    assert accounts.get_by_username("dave").ha1_sha256 == ha1
    status, _, err = run(capsys, "create", "dave", "--password", "correct horse")
    assert status == 1 and "username_taken" in err
    status, _, err = run(capsys, "create", "bad name", "--password", "correct horse")
    assert status == 1 and "invalid_username" in err
    status, _, err = run(capsys, "create", "erin", "--password", "correct horse", "--phone", "12")
    assert status == 1 and "invalid_phone" in err


def test_import_csv_reports_each_failure_and_goes_on(aws, tmp_path, capsys):
    md5 = digest.ha1("MD5", "imported2", "example.org", "secret!!")
    path = tmp_path / "accounts.csv"
    path.write_text(
        "username,password,ha1,algorithm,phone,discoverable\n"
        "imported1,correct horse,,,+33612345678,\n"
        f"imported2,,{md5},MD5,,false\n"
        "imported3,,,,,\n"
        "imported4,correct horse,,,+33612345678,\n"
        "imported1,correct horse,,,,\n",
        encoding="utf-8",
    )
    status, _, err = run(capsys, "import-csv", str(path))
    assert status == 1
    assert "line 4: 'imported3'" in err
    # Twice in one file: caught before anything is written, and named by its first line.
    assert "line 5: 'imported4': duplicate_phone: the same phone as line 2" in err
    assert "line 6: 'imported1': username_taken: the same username as line 2" in err
    assert "5 rows: 2 created, 3 failed" in err
    assert accounts.get_by_username("imported2").discoverable is False
    assert accounts.find_by_phone(A).username == "imported1"
    assert accounts.get_by_username("imported4") is None


def test_import_csv_reads_national_numbers_in_the_region(aws):
    rows = [{"Username ": "x.y", "Password": "correct horse", "phone": "0470 12 34 56"}]
    out = io.StringIO()
    result = admin.import_csv(rows, region="BE", out=out)
    assert (result.created, result.failed) == (1, 0)
    assert accounts.get_by_username("x.y").phone == "+32470123456" and out.getvalue() == ""


def test_disable_enable_delete(aws, capsys):
    run(capsys, "create", "alice", "--password", "correct horse", "--phone", A)
    status, out, _ = run(capsys, "disable", "alice")
    assert status == 0 and json.loads(out)["disabled"] is True
    assert phone_index.find([A]) == {}
    status, out, _ = run(capsys, "enable", "alice@example.org")
    assert json.loads(out)["disabled"] is False and phone_index.find([A])
    assert run(capsys, "delete", "alice")[0] == 2  # needs --yes
    assert run(capsys, "delete", "alice", "--yes")[0] == 0
    assert accounts.get_by_username("alice") is None
    status, _, err = run(capsys, "show", "alice")
    assert status == 1 and "not_found" in err


def test_import_never_leaves_half_an_account(aws, tmp_path, capsys):
    # The number is taken by an existing account: the new account must not exist without it.
    run(capsys, "create", "owner", "--password", "correct horse", "--phone", A)
    path = tmp_path / "a.csv"
    path.write_text(f"username,password,phone\nnewcomer,correct horse,{A}\n", encoding="utf-8")
    status, _, err = run(capsys, "import-csv", str(path))
    assert status == 1 and "line 2: 'newcomer': phone_taken" in err
    assert accounts.get_by_username("newcomer") is None
    assert accounts.find_by_phone(A).username == "owner"


def test_import_reports_bad_lines_and_a_bad_header(aws, tmp_path, capsys):
    path = tmp_path / "a.csv"
    path.write_text(
        "username,password\nok1,correct horse\nextra,correct horse,surplus\n,correct horse\n",
        encoding="utf-8",
    )
    status, _, err = run(capsys, "import-csv", str(path))
    assert status == 1
    assert "line 3: '': invalid_line: more fields than the header" in err
    assert "line 4: ''" in err and accounts.get_by_username("ok1")
    path.write_text("name,password\nx,correct horse\n", encoding="utf-8")
    status, _, err = run(capsys, "import-csv", str(path))
    assert status == 1 and "line 1: the header must name" in err


def test_import_check_writes_nothing(aws, tmp_path, capsys):
    path = tmp_path / "a.csv"
    path.write_text("username,password\nc1,correct horse\nbad name,x\n", encoding="utf-8")
    status, out, err = run(capsys, "import-csv", str(path), "--check", "--json")
    report = json.loads(out)
    assert status == 1 and report["created"] == 1 and report["checked_only"]
    assert [e["line"] for e in report["errors"]] == [3]
    assert accounts.get_by_username("c1") is None


def test_import_of_many_rows_shows_progress_and_a_summary(aws, tmp_path, capsys):
    # In-process moto is not thread-safe: one writer here (DynamoDB itself takes --workers 8).
    # moto copies the whole table on every transaction, so a big file is for a manual run.
    rows = 200
    path = tmp_path / "many.csv"
    lines = ["username,password,phone"] + [
        f"user{i},correct horse,+336{10000000 + i}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, _, err = run(capsys, "import-csv", str(path), "--workers", "1")
    assert status == 0, err[-2000:]
    assert f"{rows}/{rows}" in err  # tqdm's bar reached the end
    assert f"{rows} rows: {rows} created, 0 failed" in err
    status, out, _ = run(capsys, "stats", "--json")
    got = json.loads(out)
    assert got["accounts"] == rows and got["linked_numbers"] == rows


def test_stats_counts_accounts_numbers_discoverable_and_live_subscriptions(aws, capsys):
    from chalicelib.live import subscriptions

    run(capsys, "create", "s1", "--password", "correct horse", "--phone", A)
    run(capsys, "create", "s2", "--password", "correct horse", "--hidden")
    run(capsys, "create", "s3", "--password", "correct horse")
    run(capsys, "disable", "s3")
    now = int(time.time())
    for sub_id, expires in (("live", now + 600), ("gone", now - 10)):
        subscriptions.save(
            sub_id,
            edge_id="e1",
            subscriber="s1@example.org",
            expires_at=expires,
            version=1,
            dialog={},
            entries=[],
            watched=[],
        )
    status, out, _ = run(capsys, "stats", "--json")
    assert status == 0
    assert json.loads(out) == {
        "accounts": 3,
        "disabled": 1,
        "with_number": 1,
        "linked_numbers": 1,
        "discoverable": 1,
        "discoverable_share": round(1 / 3, 4),
        "live_subscriptions": 1,
    }
    status, out, _ = run(capsys, "stats")
    assert "live_subscriptions   1" in out


def test_json_output_for_scripts(aws, capsys):
    status, out, _ = run(capsys, "create", "j1", "--password", "correct horse", "--json")
    assert status == 0 and json.loads(out)["sip_uri"] == "sip:j1@example.org"
    status, out, _ = run(capsys, "show", "nobody", "--json")
    assert status == 1 and json.loads(out)["error"]["code"] == "not_found"
    status, out, _ = run(capsys, "delete", "j1", "--yes", "--json")
    assert json.loads(out) == {"deleted": "j1@example.org"}


def test_a_row_whose_write_went_through_unanswered_counts_as_created(aws):
    """botocore retries a timed-out TransactWriteItems that had in fact been applied: the
    retry meets the row's own account, which is success; another row's account is not."""
    import pytest

    from chalicelib.errors import DomainError

    row = admin.prepare_account("imported1", password="correct horse", phone_raw="+33612345678")
    first = admin.write_account(row)
    assert admin.write_account(row) == first  # the same row again: already done
    other = admin.prepare_account("imported1", password="another one", phone_raw="+33612345678")
    with pytest.raises(DomainError) as e:
        admin.write_account(other)
    assert e.value.code == "username_taken"
