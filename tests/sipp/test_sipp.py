"""SIPp (a real, independent SIP stack) as the phone against a real edge on loopback.

Each scenario in `scenarios/` checks what it receives with `<ereg check_it>`; a failed check, an
unexpected message or a timeout makes SIPp exit non-zero. The edge runs in a thread of this
process (functions in-process on moto); SIPp is a subprocess that only speaks SIP to it.
"""

from __future__ import annotations

import csv
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib import digest
from sip_edge.sip.transaction import Timers
from testkit.ports import free_port
from testkit.wait import wait_until
from tests.conftest import require_tool
from tests.edge.conftest import DOMAIN, PASSWORD, EdgeThread, make_account

pytestmark = pytest.mark.sipp

SCENARIOS = Path(__file__).parent / "scenarios"
# SIPp 3.6 answers only the first algorithm of the concatenated WWW-Authenticate headers and
# knows only MD5 (SHA-256 arrived in 3.7.3), so these edges offer MD5 first.
MD5_FIRST = ("MD5", "SHA-256")


@dataclass
class SippRun:
    returncode: int
    output: str
    workdir: Path

    def log(self, suffix: str) -> str:
        found = sorted(self.workdir.glob(f"*{suffix}"))
        return found[0].read_text(errors="replace") if found else ""

    def counts(self) -> dict[str, str]:
        """The last row of SIPp's -trace_counts CSV: per-message Recv/Retrans/... counters."""
        rows = list(csv.reader(self.log("_counts.csv").splitlines(), delimiter=";"))
        return dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}

    def explain(self) -> str:
        return (
            f"sipp exited {self.returncode}\n{self.output[-3000:]}\n"
            f"--- errors ---\n{self.log('_errors.log')[-3000:]}\n"
            f"--- messages ---\n{self.log('_messages.log')[-6000:]}"
        )


@pytest.fixture
def sipp() -> str:
    return require_tool("sipp", "sip-tester")


def sipp_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else (0, 0, 0)


def run_sipp(
    binary: str,
    scenario: str,
    edge: EdgeThread,
    workdir: Path,
    *,
    transport: str = "u1",
    user: str = "alice",
    keys: dict[str, str] | None = None,
    timeout: int = 20,
) -> SippRun:
    """One call of `scenario` against `edge`; traces land in `workdir`."""
    host, port = edge.address
    command = [
        binary, f"{host}:{port}", "-sf", str(SCENARIOS / scenario),
        "-m", "1", "-l", "1", "-i", "127.0.0.1", "-p", str(free_port("udp+tcp")), "-t", transport,
        "-s", user, "-au", user, "-ap", PASSWORD,
        "-nostdin", "-recv_timeout", "8000", "-timeout", f"{timeout}s", "-timeout_error",
        "-trace_err", "-trace_msg", "-trace_counts",
    ]  # fmt: skip
    for name, value in (keys or {}).items():
        command += ["-key", name, value]
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=timeout + 10
    )
    return SippRun(done.returncode, done.stdout + done.stderr, workdir)


@pytest.fixture
def users(aws) -> None:
    make_account("alice", "+33611111111")
    make_account("bob", "+33612345678")
    make_account("erin", "+33622222222")


@pytest.fixture
def edge(users) -> Iterator[EdgeThread]:
    running = EdgeThread(sip_digest_algorithms=MD5_FIRST)
    yield running
    running.stop()


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_list_subscribe_resolves_users(sipp, edge, tmp_path, transport):
    run = run_sipp(sipp, "list_subscribe.xml", edge, tmp_path, transport=transport)
    assert run.returncode == 0, run.explain()
    if transport == "u1":  # over TCP, SIPp's closing its connection ends the dialog (RFC 5626)
        assert len(edge.edge.subscriptions.dialogs) == 1


def test_refresh_without_body_keeps_the_list(sipp, edge, tmp_path):
    run = run_sipp(sipp, "refresh.xml", edge, tmp_path)
    assert run.returncode == 0, run.explain()
    assert len(edge.edge.subscriptions.dialogs) == 1


def test_unsubscribe_terminates(sipp, edge, tmp_path):
    run = run_sipp(sipp, "unsubscribe.xml", edge, tmp_path)
    assert run.returncode == 0, run.explain()
    assert wait_until(lambda: not edge.edge.subscriptions.dialogs, 5)


def test_digest_challenge_wrong_password_and_retry(sipp, edge, tmp_path):
    run = run_sipp(sipp, "digest.xml", edge, tmp_path)
    assert run.returncode == 0, run.explain()


def test_sha256_first_challenge_and_sipp(sipp, users, tmp_path):
    """With the default SHA-256,MD5 order SIPp 3.6 gives up (fatal "must use MD5 or
    AKAv1-MD5") instead of falling back to the MD5 challenge; 3.7.3+ answers SHA-256."""
    running = EdgeThread()
    try:
        run = run_sipp(sipp, "list_subscribe.xml", running, tmp_path)
    finally:
        running.stop()
    if sipp_version(sipp) >= (3, 7, 3):
        assert run.returncode == 0, run.explain()
    else:
        assert run.returncode not in (0, 1), run.explain()  # a fatal error, not a failed call
        assert "authentication must use MD5" in run.output


def test_register_lists_the_binding(sipp, edge, tmp_path):
    run = run_sipp(sipp, "register.xml", edge, tmp_path)
    assert run.returncode == 0, run.explain()


def authorization(edge: EdgeThread, user: str, uri: str) -> str:
    """A valid MD5 Authorization for one SUBSCRIBE, computed here so that both copies of a
    retransmitted request are byte-identical (SIPp draws a new cnonce each time)."""
    nonce = edge.edge.digest_guard.make_nonce("127.0.0.1")
    ha1 = digest.h("MD5", f"{user}:{DOMAIN}:{PASSWORD}")
    ha2 = digest.h("MD5", f"SUBSCRIBE:{uri}")
    cnonce, nc = "0a4f113b", "00000001"
    response = digest.h("MD5", f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{DOMAIN}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


def test_retransmitted_subscribe_makes_one_dialog(sipp, edge, tmp_path):
    auth = authorization(edge, "alice", f"sip:rls@{DOMAIN}")
    run = run_sipp(sipp, "retransmit.xml", edge, tmp_path, keys={"auth": auth})
    assert run.returncode == 0, run.explain()
    assert len(edge.edge.subscriptions.dialogs) == 1
    assert edge.edge.stats["notifies"] == 1


def test_unanswered_notify_is_retransmitted_then_ends_the_subscription(sipp, edge, tmp_path):
    # T1 of 10 ms: Timer F (64*T1) fires after 0.64 s instead of 32 s.
    edge.edge.transactions.timers = Timers(t1=0.01, t2=0.08)
    run = run_sipp(sipp, "unanswered_notify.xml", edge, tmp_path)
    assert run.returncode == 0, run.explain()
    retransmissions = [int(v) for k, v in run.counts().items() if "NOTIFY_Retrans" in k]
    assert retransmissions and retransmissions[0] >= 2, run.counts()
    assert wait_until(lambda: not edge.edge.subscriptions.dialogs, 5)
    assert edge.edge.stats["notify_failures"] == 1


def test_the_checks_catch_a_missing_user(sipp, aws, tmp_path):
    """The scenario's <ereg check_it> really fails a call: erin's number is no user here."""
    make_account("alice", "+33611111111")
    make_account("bob", "+33612345678")
    running = EdgeThread(sip_digest_algorithms=MD5_FIRST)
    try:
        run = run_sipp(sipp, "list_subscribe.xml", running, tmp_path)
    finally:
        running.stop()
    assert run.returncode != 0
    assert "sip:erin@example" in run.log("_errors.log")
