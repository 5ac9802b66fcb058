"""The operator command: create, import from CSV, show, disable, enable, delete."""

from __future__ import annotations

import io
import json

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
    assert "line 4: 'imported3'" in err and "line 5: 'imported4': phone_taken" in err
    assert "line 6: 'imported1': username_taken" in err and "2 created, 3 failed" in err
    assert accounts.get_by_username("imported2").discoverable is False
    assert accounts.find_by_phone(A).username == "imported1"


def test_import_csv_reads_national_numbers_in_the_region(aws):
    rows = [{"Username ": "x.y", "Password": "correct horse", "phone": "0470 12 34 56"}]
    out = io.StringIO()
    assert admin.import_csv(rows, region="BE", out=out) == (1, 0)
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
