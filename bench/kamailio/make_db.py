#!/usr/bin/env python3
"""Create the databases used by kamailio.cfg and seed the integrated-XCAP docs.

usage: make_db.py RUNDIR [N]

RUNDIR/presence.sqlite  (sqlite, WAL)   presence module: presentity,
                        active_watchers, watchers (+ the other tables of
                        presence-create.sql). Only used by the sqlite profile.
RUNDIR/dbtext/          (db_text)       rls + pua: version, xcap,
                        rls_presentity, rls_watchers, pua.

Why two back ends: Kamailio 5.6's rls calls db.replace / db.affected_rows
without checking that the DB driver provides them; db_sqlite provides
neither, so the first back-end NOTIFY with a body crashes the worker
(SIGSEGV in rls_handle_notify). db_text provides both.

The xcap table gets, for watcher sip:alice@example.org, an rls-services
document (doc_type 8 = RLS_SERVICE) defining sip:list<N>@example.org with N
entries sip:u001@example.org..., plus the equivalent resource-lists document
(doc_type 4) for reference. Kamailio's rls looks the rls-services document up
by the *watcher's* user/domain (From URI), so the RLS scenario subscribes as
alice.
"""

from __future__ import annotations

import os
import sqlite3
import sys

SQLITE_SCHEMA_DIR = "/usr/share/kamailio/db_sqlite"
SQLITE_SCHEMAS = ["standard-create.sql", "presence-create.sql"]
DBTEXT_DIR = "/usr/share/kamailio/dbtext/kamailio"
DBTEXT_TABLES = ["xcap", "rls_presentity", "rls_watchers", "pua"]

RLS_SERVICE = 8  # xcap_client/xcap_callbacks.h: 1<<3
RESOURCE_LIST = 4  # 1<<2


def entries(n: int) -> list[str]:
    return [f"sip:u{i:03d}@example.org" for i in range(1, n + 1)]


def rls_services_doc(n: int) -> str:
    ents = "\n".join(
        f'      <entry uri="{u}"><display-name>{u[4:8]}</display-name></entry>' for u in entries(n)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"
              xmlns:rl="urn:ietf:params:xml:ns:resource-lists">
  <service uri="sip:list{n}@example.org">
    <list name="list{n}">
{ents}
    </list>
    <packages>
      <package>presence</package>
    </packages>
  </service>
</rls-services>
"""


def resource_lists_doc(n: int) -> str:
    ents = "\n".join(f'    <entry uri="{u}"/>' for u in entries(n))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="list{n}">
{ents}
  </list>
</resource-lists>
"""


def dbt_escape(v: int | str) -> str:
    if isinstance(v, int):
        return str(v)
    return (
        v.replace("\\", "\\\\")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace(":", "\\:")
    )


def main() -> None:
    rundir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    os.makedirs(rundir, exist_ok=True)

    # ---- sqlite for presence ----
    db = os.path.join(rundir, "presence.sqlite")
    if os.path.exists(db):
        os.unlink(db)
    con = sqlite3.connect(db)
    # WAL is persistent in the file: readers do not block on the writer.
    # (db_sqlite sets no busy timeout; see shim/sqlite_busy_shim.c)
    con.execute("PRAGMA journal_mode=WAL")
    for f in SQLITE_SCHEMAS:
        with open(os.path.join(SQLITE_SCHEMA_DIR, f)) as fh:
            con.executescript(fh.read())
    con.commit()
    con.close()

    # ---- db_text for rls / pua / xcap ----
    tdir = os.path.join(rundir, "dbtext")
    os.makedirs(tdir, exist_ok=True)
    for t in DBTEXT_TABLES:
        with open(os.path.join(DBTEXT_DIR, t)) as fh:
            header = fh.readline()
        with open(os.path.join(tdir, t), "w") as out:
            out.write(header)
    with open(os.path.join(DBTEXT_DIR, "version")) as fh:
        lines = fh.readlines()
    with open(os.path.join(tdir, "version"), "w") as out:
        out.write(lines[0])
        for ln in lines[1:]:
            if ln.split(":")[1] in DBTEXT_TABLES + ["version"]:
                out.write(ln)
    rows = [
        (
            1,
            "alice",
            "example.org",
            rls_services_doc(n),
            RLS_SERVICE,
            "rls-1",
            0,
            "/xcap-root/rls-services/users/sip:alice@example.org/index",
            0,
        ),
        (
            2,
            "alice",
            "example.org",
            resource_lists_doc(n),
            RESOURCE_LIST,
            "rl-1",
            0,
            "/xcap-root/resource-lists/users/sip:alice@example.org/index",
            0,
        ),
    ]
    with open(os.path.join(tdir, "xcap"), "a") as out:
        for r in rows:
            out.write(":".join(dbt_escape(v) for v in r) + "\n")
    print(
        f"created {db} and {tdir}/ with list sip:list{n}@example.org "
        f"({n} entries) for watcher alice"
    )


if __name__ == "__main__":
    main()
