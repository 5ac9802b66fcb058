"""`python -m bench dialogs --reload=N [--long]`: a real edge restarts with N 5,000-entry dialogs.

Everything real but AWS: moto's server in this process (with the query patches of
devstack/moto_local.py), N list subscriptions of Linphone's shape (5,000 numbers each, a
different list per dialog) written with the store's own `subscriptions.save`, so the dialog
and list items are exactly those a live edge saves (the watchers index is left empty: a reload
never reads it, and 5 million watcher items would measure moto), then `python -m sip_edge`
with that EDGE_ID, functions in-process as `make run` has them. EDGE_RELOAD_WAIT=0, so the
edge listens at once and its RSS then is that of a fresh process; its paged `load_edge` goes on
in the background until its "dialogs reloaded" log line. The peer, measured in the same run:
the same edge started with an EDGE_ID that owns nothing. Then a queued change for one
reloaded dialog must reach a UDP socket at that dialog's peer address as a NOTIFY. `--long`:
lists of long random URIs instead, which the edge keeps as keys only (each still comes whole in
`load_edge`'s pages, ~0.6 MB a dialog, so moto holds N of them: keep N to a few hundred).

RSS counts the in-process functions too (boto3, the pages' JSON): on AWS they are Lambdas, so
the deployed edge holds less than this.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.bodies import ENV
from bench.dialogs import ENTRIES, entry_list, stored_dialog
from bench.edge import ROOT, memory_kib, moto_server
from devstack.moto_local import keyed_queries, light_transactions
from sip_edge.dialog import Peer
from testkit.ports import free_port

EDGE_ID = "bench-reload"
RELOAD_TIMEOUT_S = 900.0


@dataclass
class EdgeRun:
    """One `python -m sip_edge`, its stdout read line by line in a thread."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str]

    @classmethod
    def start(cls, env: dict[str, str]) -> EdgeRun:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sip_edge"], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        return cls(proc, lines)

    def wait_for(self, accept: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError("the edge exited") from None
                continue
            if accept(line):
                return line
        raise TimeoutError("the edge did not say it in time")

    def rss_mib(self) -> float:
        return memory_kib(self.proc.pid, "VmRSS") / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _reloaded(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if record.get("message") == "dialogs reloaded" else None


def _store(count: int, peer: Peer, kind: str) -> float:
    """Write `count` dialogs owned by EDGE_ID; the seconds it took."""
    from chalicelib import clock
    from chalicelib.live import subscriptions

    expires = clock.now_int() + 3600
    started = time.perf_counter()

    def save(i: int) -> None:
        subscriptions.save(
            f"sub-{i}", edge_id=EDGE_ID, subscriber="alice@example.org", expires_at=expires,
            version=1, dialog=stored_dialog(i, peer), entries=entry_list(kind, i),
            watched=[],
        )  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(count)))
    return time.perf_counter() - started


def _verify(phone: Any, kind: str) -> str:
    """A queued change for a reloaded dialog must come out as a NOTIFY to its peer."""
    from chalicelib.live import updates

    wanted = entry_list(kind, 0)[1234]
    stranger = "sip:+33100000000@example.org;user=phone"  # not in the list: ignored
    updates._send(EDGE_ID, [{"subscription_id": "sub-0", "uris": [wanted, stranger]}])
    notify = phone.notify(timeout=30)
    if notify is None:
        return "FAILED: no NOTIFY reached the reloaded dialog's peer"
    body = notify.body.decode(errors="replace")
    if "deflate" in (notify.headers.get("Content-Encoding") or ""):
        import zlib

        body = zlib.decompress(notify.body).decode()
    if wanted not in body or stranger in body or 'fullState="false"' not in body:
        return "FAILED: the NOTIFY does not carry exactly the queued entry"
    return "ok (a queued change reached dialog sub-0's peer as a partial NOTIFY)"


def run(count: int, kind: str = "numbers") -> None:
    os.environ.update(ENV)
    keyed_queries()
    light_transactions()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from chalicelib import aws, settings, tables
    from testkit.sip_client import SipClient

    port = free_port("udp+tcp")
    with moto_server() as url:
        os.environ["AWS_ENDPOINT_URL"] = url
        settings.get.cache_clear()
        aws.reset()
        tables.create_all(aws.client("dynamodb"))
        phone = SipClient(("127.0.0.1", port))
        try:
            store_s = _store(count, Peer("udp", "127.0.0.1", phone.port), kind)
            env = {
                **os.environ, "SIP_HOST": "127.0.0.1", "SIP_PORT": str(port),
                "EDGE_RELOAD_WAIT": "0", "POWERTOOLS_LOG_LEVEL": "INFO",
                "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT": "1000000",
                # Shorter than AWS_READ_TIMEOUT, as devstack and the tests have it: a longer
                # poll outlives the client's read timeout, and moto then answers late.
                "EDGE_QUEUE_WAIT": "1",
            }  # fmt: skip
            peers = []
            for _ in range(3):  # the peer: the same edge with nothing to reload
                empty = EdgeRun.start({**env, "EDGE_ID": "bench-empty"})
                try:
                    empty.wait_for(lambda line: _reloaded(line) is not None, 60)
                    peers.append(empty.rss_mib())
                finally:
                    empty.stop()
            edge = EdgeRun.start({**env, "EDGE_ID": EDGE_ID})
            try:
                started = time.monotonic()
                edge.wait_for(lambda line: line.startswith("SIP edge"), 60)
                fresh = edge.rss_mib()
                record = _reloaded(edge.wait_for(lambda x: _reloaded(x) is not None,
                                                 RELOAD_TIMEOUT_S))  # fmt: skip
                wall = time.monotonic() - started
                after = edge.rss_mib()
                verdict = _verify(phone, kind)
                if verdict.startswith("FAILED"):
                    time.sleep(1)
                    while not edge.lines.empty():
                        line = edge.lines.get()
                        if "CloudWatchMetrics" not in line:
                            print("edge:", line.strip()[:400])
                settled = edge.rss_mib()
                peak = memory_kib(edge.proc.pid, "VmHWM") / 1024
            finally:
                edge.stop()
        finally:
            phone.close()
    assert record is not None
    peer = statistics.median(peers)
    n = int(record["dialogs"])
    print(f"Restart of an edge holding {count:,} dialogs of {ENTRIES:,} {kind}"
          f" (stored in {store_s:,.0f} s):")  # fmt: skip
    print("| | value |\n|---|---:|")
    print(f"| dialogs reloaded | {n:,} |")
    pages, seconds = record["pages"], record["seconds"]
    print(f"| reload time (edge's own count, {pages} load_edge pages) | {seconds:.1f} s |")
    print(f"| start to reloaded (wall) | {wall:.1f} s |")
    print(f"| peer: RSS of the same edge owning nothing (median of 3) | {peer:,.0f} MB |")
    print(f"| RSS at start (listening, reload just begun) | {fresh:,.0f} MB |")
    print(f"| RSS once reloaded | {after:,.0f} MB |")
    print(f"| RSS after a queued change was notified | {settled:,.0f} MB (peak {peak:,.0f} MB) |")
    per = (after - peer) * 1024 / max(1, n)
    print(f"| RSS per reloaded dialog (once reloaded - peer) | {per:,.1f} KB |")
    print(f"| a reloaded dialog still works | {verdict} |")
