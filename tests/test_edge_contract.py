"""One contract between the edge and the functions, typed on both sides: mypy refuses a payload
or an answer that drifted from `chalicelib.edge_contract`, on the edge's side and on the
functions' side, and accepts the shapes the contract declares."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

from tests.conftest import ROOT

DRIFTED = """
    from typing import Any

    from chalicelib import edge_contract as c


    async def edge_side(caller: c.Caller) -> None:
        answer = await c.PRESENCE_LOOKUP.ask(caller, {"subscriber": "a@x", "entrys": []})
        if "error" not in answer:
            print(answer["resources"][0]["state"])


    def function_side(event: c.PresenceLookupRequest, context: Any) -> c.PresenceLookupAnswer:
        resource: c.ResourceAnswer = {
            "uri": "sip:a@x", "kind": "phone", "user": None, "state": "x", "recheck_at": None
        }
        return {"bodies": [], "version": 1, "entries": [], "resources": [resource],
                "region": "FR", "stats": {}}


    def queue_message() -> c.Revocation:
        return {"kind": "revoke", "subscriber": "a@x", "reason": "gone", "subscription_ids": []}
"""

AGREED = """
    from chalicelib import edge_contract as c


    async def edge_side(caller: c.Caller) -> str | None:
        answer = await c.PRESENCE_LOOKUP.ask(caller, {"subscriber": "a@x", "entries": []})
        if "error" in answer:
            return answer["error"]["code"]
        return answer["resources"][0]["status"]
"""


def mypy_errors(tmp_path: Path, source: str) -> list[str]:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(source))
    out, err, _ = api.run(
        [str(snippet), "--cache-dir", str(tmp_path / "cache"), "--follow-imports=silent",
         "--python-version=3.11", "--no-incremental"]
    )  # fmt: skip
    assert not err, err
    return [line.split(": error: ", 1)[1] for line in out.splitlines() if ": error: " in line]


def test_mypy_refuses_drift_on_either_side(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    errors = "\n".join(mypy_errors(tmp_path, DRIFTED))
    assert 'Extra key "entrys" for TypedDict "PresenceLookupRequest"' in errors  # edge payload
    assert 'TypedDict "ResourceAnswer" has no key "state"' in errors  # edge reads an answer
    assert 'Extra key "state" for TypedDict "ResourceAnswer"' in errors  # function answers
    assert 'Missing key "status" for TypedDict "ResourceAnswer"' in errors
    assert '"reason" has type "Literal' in errors  # a queue message


def test_mypy_accepts_the_shapes_the_contract_declares(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert mypy_errors(tmp_path, AGREED) == []
