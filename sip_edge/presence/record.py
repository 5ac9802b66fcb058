"""The stored dialog: a versioned record, and one migration per older version.

An edge stores each UDP dialog through `sip_subscriptions` (`edge_contract.DialogRecord`) so
that the edge that replaces it after a deploy or a crash can go on notifying; that edge may run
newer code than the one that wrote the record. So the record carries its `schema`, and `read`
brings a record of any version this code ever wrote up to the current one, one step at a time.
Changing the record means a new `SCHEMA`, the migration from the version before, and a test
reading the old shape (tests/presence_core/test_dialog_record.py).

Versions (records before version 2 carry no `schema`; `synced` tells 0 from 1):

- 0: the dialog's fields as its dataclass had them, `terminated` included (the first edges);
  `device` came later within it, so it may be missing (the dialog's own id stood for its phone).
- 1: `synced` added: the phone answered a full-state NOTIFY before this write; `user_agent`
  came later within it, so it may be missing.
- 2: `schema` added, `terminated` left out (a dialog that ended is deleted, never stored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from chalicelib.edge_contract import DialogRecord

SCHEMA = 2

#: The fields of the current record, in the order it is written.
FIELDS = tuple(DialogRecord.__annotations__)


def schema_of(data: Mapping[str, Any]) -> int:
    """The version of a stored record (those before version 2 say it by their fields)."""
    if "schema" in data:
        return int(data["schema"])
    return 1 if "synced" in data else 0


def _from_0(data: dict[str, Any]) -> dict[str, Any] | None:
    # A record of version 0 was written again once its first NOTIFY went, with that
    # NOTIFY's version: above 0, its phone had a full state.
    data["synced"] = int(data.get("version", 0)) > 0
    data.setdefault("device", "")
    data.pop("entries", None)  # lists stored inside the dialog, before they had their own item
    return data


def _from_1(data: dict[str, Any]) -> dict[str, Any] | None:
    if data.pop("terminated", False):
        return None  # stored by a write that raced the dialog's end: nothing to resume
    data.setdefault("user_agent", "")
    data["schema"] = 2
    return data


#: `MIGRATIONS[n]` turns a record of version n into one of version n + 1 (None: a dialog that
#: is over).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any] | None]] = {0: _from_0, 1: _from_1}


def read(stored: Mapping[str, Any]) -> DialogRecord | None:
    """A stored record of any version as the current one; None when it holds a dialog that
    is over. ValueError for a record newer than this code (an edge rolled back past it)."""
    version = schema_of(stored)
    if version > SCHEMA:
        raise ValueError(f"dialog record of schema {version}, newer than {SCHEMA}")
    data: dict[str, Any] | None = dict(stored)
    while data is not None and version < SCHEMA:
        data = MIGRATIONS[version](data)
        version += 1
    if data is None:
        return None
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise ValueError(f"dialog record without {', '.join(missing)}")
    return cast(DialogRecord, {name: data[name] for name in FIELDS})
