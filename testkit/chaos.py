"""Chaos: SIPp phones subscribed to lists and users signing up over the REST API while AWS
faults switch on and off and the edge is SIGKILLed and restarted once; then every phone's view,
rebuilt from the NOTIFYs SIPp received, must match the accounts that exist (zero lost updates),
no SIP or REST request may get a 500, a retried sign-up sends no second SMS, and the edge's RSS
stays bounded.

Everything real but AWS: a `python -m sip_edge` subprocess (killed with SIGKILL), SIPp phones
(testkit/scenarios/chaos_phone.xml), the REST API on chalice's local server, moto's server behind a
fault-injecting proxy (testkit/fault_proxy.py) that the edge, the REST API and the stream replayer
all go through. `python -m bench chaos [--seconds=300]`; the test suite runs a short version
(tests/faults/test_chaos.py).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testkit.fault_proxy import FaultProxy
from testkit.ports import free_port
from testkit.sip_client import SipClient
from testkit.sipp_trace import Sipp, cycle_outcomes, phone_views, received
from testkit.sms import last_code, sent_sms

DOMAIN = "example.org"
FAULTS = [("dynamodb", "throttle"), ("dynamodb", "refuse"), ("dynamodb", "stall"),
          ("sqs", "throttle"), ("sqs", "refuse"), ("sqs", "stall"),
          ("sns", "throttle"), ("sns", "stall")]  # fmt: skip
SCENARIO = Path(__file__).parent / "scenarios" / "chaos_phone.xml"
CYCLE = Path(__file__).parent / "scenarios" / "chaos_cycle.xml"
PASSWORD = "correct horse battery"


@dataclass
class Report:
    seconds: float
    phones: int
    numbers: int
    signups: int = 0
    signup_retries: int = 0
    rest_statuses: dict[int, int] = field(default_factory=dict)
    sms_sent: int = 0
    extra_sms: dict[str, int] = field(default_factory=dict)
    codes_lost: int = 0
    fault_windows: list[str] = field(default_factory=list)
    kills: int = 0
    sipp_exit: int | None = None
    sipp_errors: str = ""
    cycles: dict[str, int] = field(default_factory=dict)
    cycle_statuses: dict[int, int] = field(default_factory=dict)
    phone_statuses: dict[int, int] = field(default_factory=dict)
    notifies: int = 0
    terminated: int = 0
    probe_statuses: dict[int, int] = field(default_factory=dict)
    probe_slow: int = 0
    probe_latencies: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    quiet: float = 0.0
    converged_after: float | None = None
    mismatches: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return sum(len(v) for v in self.mismatches.values())

    def table(self) -> str:
        lat = sorted(self.probe_latencies) or [0.0]
        rows = [
            ("duration (s)", f"{self.seconds:.0f}"),
            ("SIPp phones (exit code)", f"{self.phones} ({self.sipp_exit})"),
            ("sign-ups done over REST / client retries (503, 429)",
             f"{self.signups} of {self.numbers} / {self.signup_retries}"),
            ("REST statuses", str(dict(sorted(self.rest_statuses.items())))),
            ("SMS sent / more than one per sign-up / codes lost",
             f"{self.sms_sent} / {sum(self.extra_sms.values())} / {self.codes_lost}"),
            ("fault windows", ", ".join(self.fault_windows)),
            ("edge SIGKILLs", str(self.kills)),
            ("SIPp phones' SUBSCRIBE statuses (503: retried)",
             str(dict(sorted(self.phone_statuses.items())))),
            ("NOTIFYs the SIPp phones received", str(self.notifies)),
            ("SIPp short cycles", ", ".join(f"{v} {k}" for k, v in self.cycles.items())),
            ("cycles' SUBSCRIBE statuses", str(dict(sorted(self.cycle_statuses.items())))),
            ("subscriptions terminated before the end", str(self.terminated)),
            ("probe REGISTER statuses", str(dict(sorted(self.probe_statuses.items())))),
            ("probe median / max latency (ms)",
             f"{statistics.median(lat) * 1000:.0f} / {lat[-1] * 1000:.0f}"),
            ("probe answers over 3 s", str(self.probe_slow)),
            ("edge RSS max (MB)", f"{max(self.rss_kb or [0]) / 1024:.0f}"),
            ("views right, after faults cleared and the last sign-up (s)",
             "never" if self.converged_after is None else f"{self.converged_after:.1f}"),
            ("quiet time, then every phone un-SUBSCRIBEs (s)", f"{self.quiet:.0f}"),
            ("lost updates", str(self.lost)),
        ]  # fmt: skip
        return "\n".join(["| chaos | |", "| --- | --- |", *[f"| {a} | {b} |" for a, b in rows]])


class SignupClient:
    """A user signing up as the app does: ask for a code, read the SMS, confirm; each step
    retried after 503 (or 429) + Retry-After, never past `until`."""

    def __init__(self, rest: tuple[str, int], report: Report, stop: threading.Event) -> None:
        self.rest, self.report, self.stop = rest, report, stop
        self.lock = threading.Lock()  # users sign up in threads of their own
        self.last_done = 0.0  # wall time of the last account made

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, float]:
        conn = http.client.HTTPConnection(*self.rest, timeout=30)
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            status = r.status
            retry_after = float(r.getheader("Retry-After") or 1)
        finally:
            conn.close()
        with self.lock:
            self.report.rest_statuses[status] = self.report.rest_statuses.get(status, 0) + 1
        return status, retry_after

    def _wait(self, seconds: float, until: float) -> bool:
        """Sleep before a retry; False when the run is over."""
        with self.lock:
            self.report.signup_retries += 1
        return not self.stop.wait(min(seconds, max(0.0, until - time.monotonic())))

    def sign_up(self, e164: str, username: str, until: float) -> bool:
        def sms_count() -> int:
            return sum(1 for number, _ in sent_sms() if number == e164)

        before = sms_count()
        while time.monotonic() < until:
            status, retry_after = self._post(
                "/v1/signup/phone", {"phone": e164, "username": username}
            )
            # A 429 after a lost answer: the first request's SMS went out; the app has it.
            if status == 202 or (status == 429 and sms_count() > before):
                break
            if status not in (429, 503) or not self._wait(retry_after, until):
                return False
        else:
            return False
        code = last_code(e164)
        body = {"phone": e164, "code": code, "password": PASSWORD}
        while time.monotonic() < until:
            status, retry_after = self._post("/v1/signup/phone/confirm", body)
            if status in (200, 201):
                sent = sms_count() - before
                with self.lock:
                    if sent > 1:
                        self.report.extra_sms[e164] = sent - 1
                    self.report.signups += 1
                    self.last_done = max(self.last_done, time.time())
                return True
            if status != 503:
                with self.lock:
                    self.report.codes_lost += status in (404, 410)
                return False
            if not self._wait(retry_after, until):
                return False
        return False


class EdgeProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sip_edge"], env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()  # type: ignore[union-attr]
        except (OSError, AttributeError):
            return 0
        line = next((x for x in text.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
        return int(line.split()[1])

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            try:
                self.proc.wait(10)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.kill()


def _wait_options(address: tuple[str, int], timeout: float) -> bool:
    probe = SipClient(address)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
            r = probe.response("OPTIONS", timeout=0.5)
            if r is not None and r.status == 200:
                return True
        return False
    finally:
        probe.close()


def run_chaos(
    moto_url: str,
    workdir: Path,
    *,
    seconds: float = 300.0,
    fault_period: float = 20.0,
    phones: int = 5,
    numbers: int = 8,
    quiet: float = 20.0,
    cycle_rate: float = 2.0,
    seed: int = 12,
) -> Report:
    """Run the chaos against moto at `moto_url`; the caller's AWS env is reused. The phones
    un-SUBSCRIBE `quiet` seconds after the last fault cleared; their views are read then.
    Meanwhile a second SIPp offers `cycle_rate` short subscription cycles a second."""

    from chalicelib import accounts, aws, settings, tables
    from chalicelib.aws import client
    from devstack.rest_thread import RestThread
    from devstack.streams import StreamReplayer

    faults = FAULTS[:]
    random.Random(seed).shuffle(faults)  # each fault once before any comes again
    proxy = FaultProxy(moto_url)
    # The REST API (in this process) reads these: every simulated user signs up from
    # loopback, where a real deployment sees one address per phone.
    overrides = {"AWS_ENDPOINT_URL": proxy.url, "CODE_REQUESTS_PER_IP_HOURLY": "100000",
                 "SMS_PER_IP_DAILY": "100000"}  # fmt: skip
    previous = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    settings.get.cache_clear()
    aws.reset()
    report = Report(seconds=seconds, phones=phones, numbers=numbers)
    port = free_port("udp+tcp")
    env = {**os.environ, "SIP_HOST": "127.0.0.1", "SIP_PORT": str(port),
           "EDGE_ID": "chaos-edge", "SIP_TRUSTED_PROXIES": "127.0.0.1", "SIP_DOMAIN": DOMAIN,
           # The cycles are all one account's, and the SIGKILL leaves some of them behind.
           "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT": "100000",
           "EDGE_QUEUE_WAIT": "1", "EDGE_QUEUE_VISIBILITY": "5", "NOTIFY_MIN_INTERVAL": "0.5",
           "POWERTOOLS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path.cwd())}  # fmt: skip
    edge = EdgeProcess(env, workdir / "edge.log")
    address = ("127.0.0.1", port)
    e164s = [f"+336{70000000 + i}" for i in range(numbers)]
    entries = [f"sip:{n}@{DOMAIN};user=phone" for n in e164s]
    stop = threading.Event()
    helpers: list[threading.Thread] = []
    stop_replay = None
    rest = None
    sipp = None
    cycles = None
    try:
        tables.create_all(client("dynamodb"))
        # phone0 is the probe's, phone1..N SIPp's phones, cycler the short cycles'.
        for name in [*(f"phone{i}" for i in range(phones + 1)), "cycler"]:
            accounts.create(name, accounts.credentials_from_password(name, PASSWORD, DOMAIN))
        rest_port = free_port()
        rest = RestThread("127.0.0.1", rest_port, name="chaos-rest")
        edge.start()
        assert _wait_options(address, 30), "the edge did not start"
        stop_replay = StreamReplayer().start()
        # SIPp's phones hang up at `end`: the run, the quiet time, and a few seconds for
        # them to subscribe.
        end = float(math.ceil(time.time() + 5 + seconds + quiet))  # SIPp reads whole seconds
        entry_xml = "".join(f'<entry uri="{e}"/>' for e in entries)
        sipp = Sipp("phones", SCENARIO, address, workdir, calls=phones, rate=10, limit=phones,
                    sets={"domain": DOMAIN, "entries": entry_xml, "end": f"{end:.0f}"},
                    timeout=end - time.time() + 60,
                    # SIPp takes a message arriving while a call runs its clock check (nop
                    # steps) as unexpected and kills the call; -aa answers such a NOTIFY 200
                    # instead, and it is in the trace like any other.
                    options=("-aa",))  # fmt: skip
        sipp.start()
        deadline = time.monotonic() + 45  # a phone refused (503) waits its Retry-After
        while not _subscribed(phones) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _subscribed(phones), f"the SIPp phones did not subscribe: {sipp.explain()}"

        cycles = Sipp("cycles", CYCLE, address, workdir, calls=max(1, int(seconds * cycle_rate)),
                      rate=cycle_rate, limit=20,
                      sets={"domain": DOMAIN, "entries": entry_xml, "user": "cycler"},
                      timeout=seconds + 60)  # fmt: skip
        cycles.start()
        started = time.monotonic()
        signups = SignupClient(("127.0.0.1", rest_port), report, stop)

        def sign_up(i: int, e164: str) -> None:
            # One begun late may finish in the quiet time, with the faults cleared.
            signups.sign_up(e164, f"user{i}", started + seconds + quiet / 2)

        def sign_ups() -> None:
            """Users sign up at a steady pace, each on their own (one waiting out a 503's
            Retry-After holds no one else up)."""
            pace = seconds / (numbers + 1)
            users = []
            for i, e164 in enumerate(e164s):
                if stop.wait(max(0.0, started + pace * (i + 1) - time.monotonic())):
                    break
                users.append(threading.Thread(target=sign_up, args=(i, e164), daemon=True))
                users[-1].start()
            for t in users:
                t.join(max(0.0, started + seconds + quiet - time.monotonic()))

        def probe() -> None:
            c = SipClient(address)
            while not stop.is_set():
                start = time.monotonic()
                c.request("REGISTER", f"sip:{DOMAIN}", from_uri=f"sip:phone0@{DOMAIN}",
                          headers=[("Expires", "600")])  # fmt: skip
                r = c.response("REGISTER", timeout=5)
                if r is not None:
                    elapsed = time.monotonic() - start
                    report.probe_statuses[r.status] = report.probe_statuses.get(r.status, 0) + 1
                    report.probe_latencies.append(elapsed)
                    report.probe_slow += elapsed > 3.0
                stop.wait(0.5)
            c.close()

        def watch_rss() -> None:
            while not stop.wait(1.0):
                if edge.alive():
                    report.rss_kb.append(edge.rss_kb())

        signer = threading.Thread(target=sign_ups, daemon=True)
        helpers = [threading.Thread(target=f, daemon=True) for f in (probe, watch_rss)]
        for t in (signer, *helpers):
            t.start()

        kill_at = seconds * 0.55
        killed = False
        window = 0
        while (now := time.monotonic() - started) < seconds:
            window_on = int(now // fault_period) % 2 == 1
            if window_on and window != int(now // fault_period):
                window = int(now // fault_period)
                service, mode = faults[len(report.fault_windows) % len(faults)]
                proxy.set(service, mode)
                report.fault_windows.append(f"{service} {mode}")
            elif not window_on and proxy.modes:
                proxy.clear()
            if not killed and now >= kill_at and not proxy.modes:
                edge.kill()  # SIGKILL: no shutdown, no queue hand-back
                report.kills += 1
                killed = True
                edge.start()
                assert _wait_options(address, 30), "the edge did not come back"
            if not edge.alive():  # e.g. started while DynamoDB was down: ECS would restart it
                edge.start()
                _wait_options(address, 30)
            time.sleep(0.2)
        proxy.clear()
        cleared = time.time()
        signer.join(quiet)
        cycles.wait(30)
        report.sipp_exit = sipp.wait(end - time.time() + 30)
        report.quiet = end - cleared
        stop.set()
        for t in helpers:
            t.join(10)
        if report.sipp_exit != 0:
            report.sipp_errors = sipp.explain()
        # The truth: the accounts that exist, each number to its account's address.
        expected = {}
        for uri, e164 in zip(entries, e164s, strict=True):
            account = accounts.find_by_phone(e164)
            expected[uri] = None if account is None else account.sip_uri
        report.sms_sent = sum(1 for number, _ in sent_sms() if number in e164s)
        views = phone_views(received(sipp.messages), entries, expected, end)
        report.cycles, report.cycle_statuses = cycle_outcomes(received(cycles.messages))
        report.phone_statuses = cycle_outcomes(received(sipp.messages))[1]
        report.notifies = sum(v.notifies for v in views.values())
        report.terminated = sum(v.terminated_early for v in views.values())
        for i in range(1, phones + 1):
            view = views.get(f"phone{i}")
            got = view.snapshot() if view else dict.fromkeys(entries)
            wrong = {u: (got[u], expected[u]) for u in entries if got[u] != expected[u]}
            if wrong:
                report.mismatches[f"phone{i}"] = wrong
        oks = [v.ok_since for v in views.values() if v.ok_since is not None]
        if len(oks) == phones:
            settled = max(cleared, signups.last_done)
            report.converged_after = max(0.0, max(oks) - settled)
        return report
    finally:
        stop.set()
        if stop_replay is not None:
            stop_replay()
        for process in (sipp, cycles):
            if process is not None:
                process.stop()
        if rest is not None:
            rest.stop()
        edge.stop()
        proxy.close()
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        settings.get.cache_clear()
        aws.reset()


def _subscribed(phones: int) -> bool:
    """Every SIPp phone's dialog is stored (the edge stores it before its first NOTIFY)."""
    from chalicelib.live import subscriptions

    return len(subscriptions.load_edge("chaos-edge")) >= phones
