"""Chaos: phones subscribed to lists over UDP and sign-ups going on while AWS faults switch on
and off and the edge is SIGKILLed and restarted once; then every phone's view must match the
accounts that exist (zero lost updates), no SIP request may get a 500, and the edge's RSS stays
bounded.

Everything real but AWS: a `python -m sip_edge` subprocess (killed with SIGKILL), moto's server
behind a fault-injecting proxy (tests/faults/proxy.py) that the edge, the stream replayer and the
sign-ups all go through, phones on real sockets. `python -m bench chaos [--seconds=300]`; the
test suite runs a short version (tests/faults/test_chaos.py).
"""

from __future__ import annotations

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

from lxml import etree

DOMAIN = "example.org"
FAULTS = [("dynamodb", "throttle"), ("dynamodb", "refuse"), ("dynamodb", "stall"),
          ("sqs", "throttle"), ("sqs", "refuse"), ("sqs", "stall")]  # fmt: skip
RLMI = {"r": "urn:ietf:params:xml:ns:rlmi"}


@dataclass
class Report:
    seconds: float
    phones: int
    signups: int = 0
    signup_retries: int = 0
    fault_windows: list[str] = field(default_factory=list)
    kills: int = 0
    notifies: int = 0
    terminated: int = 0
    probe_statuses: dict[int, int] = field(default_factory=dict)
    probe_slow: int = 0
    probe_latencies: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    converged_after: float | None = None
    mismatches: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return sum(len(v) for v in self.mismatches.values())

    def table(self) -> str:
        lat = sorted(self.probe_latencies) or [0.0]
        rows = [
            ("duration (s)", f"{self.seconds:.0f}"),
            ("phones / sign-ups", f"{self.phones} / {self.signups}"),
            ("fault windows", ", ".join(self.fault_windows)),
            ("edge SIGKILLs", str(self.kills)),
            ("NOTIFYs received", str(self.notifies)),
            ("subscriptions terminated", str(self.terminated)),
            ("probe REGISTER statuses", str(dict(sorted(self.probe_statuses.items())))),
            ("probe median / max latency (ms)",
             f"{statistics.median(lat) * 1000:.0f} / {lat[-1] * 1000:.0f}"),
            ("probe answers over 3 s", str(self.probe_slow)),
            ("edge RSS max (MB)", f"{max(self.rss_kb or [0]) / 1024:.0f}"),
            ("views converged after faults cleared (s)",
             "never" if self.converged_after is None else f"{self.converged_after:.1f}"),
            ("lost updates", str(self.lost)),
        ]  # fmt: skip
        return "\n".join(["| chaos | |", "| --- | --- |", *[f"| {a} | {b} |" for a, b in rows]])


class Phone:
    """A subscribed phone: answers every NOTIFY 200 and keeps the view they build."""

    def __init__(self, edge: tuple[str, int], name: str, entries: list[str]) -> None:
        from tests.edge.sipclient import SipClient

        self.client = SipClient(edge, "udp")
        self.name = name
        self.entries = entries
        self.view: dict[str, str | None] = {}
        self.notifies = 0
        self.terminated = False
        self._stop = False
        self._lock = threading.Lock()

    def subscribe(self) -> int:
        from tests.edge.test_edge_subscribe import LIST_HEADERS, RLS, resource_list

        c = self.client
        c.request("SUBSCRIBE", RLS, from_uri=f"sip:{self.name}@{DOMAIN}", to=f"<{RLS}>",
                  headers=LIST_HEADERS, body=resource_list(self.entries))  # fmt: skip
        r = c.response("SUBSCRIBE", timeout=5)
        return 0 if r is None else r.status

    def run(self) -> None:
        from sip_edge.sip.message import Request

        while not self._stop:
            msg = self.client.receive(lambda m: isinstance(m, Request), timeout=0.5)
            if msg is None or msg.method != "NOTIFY":
                continue
            self.client.answer(msg, 200)
            self._apply(msg)

    def _apply(self, notify: Any) -> None:
        import zlib

        from tests.edge.test_edge_subscribe import users_in

        body = notify.body
        if "deflate" in (notify.headers.get("Content-Encoding") or ""):
            body = zlib.decompress(body)
        with self._lock:
            self.notifies += 1
            if (notify.headers.get("Subscription-State") or "").startswith("terminated"):
                self.terminated = True
            if not body:
                return
            start = body.index(b"<?xml")
            rlmi = etree.fromstring(body[start : body.index(b"</list>", start) + 7])
            users = users_in(notify)
            if rlmi.get("fullState") == "true":
                self.view = {}
            for res in rlmi.findall("r:resource", RLMI):
                self.view[res.get("uri")] = users.get(res.get("uri"))

    def snapshot(self) -> dict[str, str | None]:
        with self._lock:
            return {uri: self.view.get(uri) for uri in self.entries}

    def stop(self, thread: threading.Thread | None = None) -> None:
        self._stop = True
        if thread is not None:
            thread.join(2)  # its receive ends within 0.5 s; then the socket can go
        self.client.close()


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
    from tests.edge.sipclient import SipClient

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
    seed: int = 12,
) -> Report:
    """Run the chaos against moto at `moto_url`; the caller's AWS env is reused."""
    from chalicelib import accounts, aws, settings, tables
    from chalicelib.aws import client
    from devstack.streams import StreamReplayer
    from tests.conftest import free_port
    from tests.edge.conftest import PASSWORD
    from tests.edge.sipclient import SipClient
    from tests.faults.proxy import FaultProxy

    rng = random.Random(seed)
    proxy = FaultProxy(moto_url)
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = proxy.url
    settings.get.cache_clear()
    aws.reset()
    report = Report(seconds=seconds, phones=phones)
    port = free_port()
    env = {**os.environ, "SIP_HOST": "127.0.0.1", "SIP_PORT": str(port),
           "EDGE_ID": "chaos-edge", "SIP_TRUSTED_PROXIES": "127.0.0.1", "SIP_DOMAIN": DOMAIN,
           "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT": "1000000",  # one account for every phone
           "EDGE_QUEUE_WAIT": "1", "EDGE_QUEUE_VISIBILITY": "5", "NOTIFY_MIN_INTERVAL": "0.5",
           "POWERTOOLS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(Path.cwd())}  # fmt: skip
    edge = EdgeProcess(env, workdir / "edge.log")
    address = ("127.0.0.1", port)
    numbers_uris = [f"sip:+336{70000000 + i}@{DOMAIN};user=phone" for i in range(numbers)]
    subscribers: list[Phone] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    stop_replay = None
    try:
        tables.create_all(client("dynamodb"))
        for i in range(phones):
            creds = accounts.credentials_from_password(f"phone{i}", PASSWORD, DOMAIN)
            accounts.create(f"phone{i}", creds)
        edge.start()
        assert _wait_options(address, 30), "the edge did not start"
        stop_replay = StreamReplayer().start()
        for i in range(phones):
            phone = Phone(address, f"phone{i}", numbers_uris)
            status = phone.subscribe()
            assert status == 200, f"phone{i} SUBSCRIBE: {status}"
            subscribers.append(phone)
            threads.append(threading.Thread(target=phone.run, daemon=True))
        for t in threads:
            t.start()

        signed_up: dict[str, str] = {}

        def sign_ups() -> None:
            pace = seconds / (numbers + 1)
            for i in range(numbers):
                if stop.wait(pace):
                    return
                while not stop.is_set():
                    try:  # a sign-up app retries until the service takes it
                        creds = accounts.credentials_from_password(f"user{i}", PASSWORD, DOMAIN)
                        accounts.create(f"user{i}", creds, phone_e164=f"+336{70000000 + i}")
                        break
                    except Exception as exc:
                        if (
                            getattr(exc, "code", "") == "username_taken"
                        ):  # a retry that had gone through
                            break
                        report.signup_retries += 1
                        stop.wait(0.5)
                signed_up[numbers_uris[i]] = f"sip:user{i}@{DOMAIN}"
                report.signups += 1

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

        helpers = [threading.Thread(target=f, daemon=True) for f in (sign_ups, probe, watch_rss)]
        for t in helpers:
            t.start()

        started = time.monotonic()
        kill_at = seconds * 0.55
        killed = False
        window = 0
        while (now := time.monotonic() - started) < seconds:
            window_on = int(now // fault_period) % 2 == 1
            if window_on and window != int(now // fault_period):
                window = int(now // fault_period)
                service, mode = rng.choice(FAULTS)
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
        stop.set()
        for t in helpers:
            t.join(10)
        report.signups = len(signed_up)
        cleared = time.monotonic()
        expected = {uri: signed_up.get(uri) for uri in numbers_uris}
        while time.monotonic() - cleared < 45:
            if all(p.snapshot() == expected for p in subscribers):
                report.converged_after = time.monotonic() - cleared
                break
            time.sleep(0.5)
        for p in subscribers:
            got = p.snapshot()
            wrong = {u: (got[u], expected[u]) for u in numbers_uris if got[u] != expected[u]}
            if wrong:
                report.mismatches[p.name] = wrong
            report.notifies += p.notifies
            report.terminated += p.terminated
        return report
    finally:
        stop.set()
        if stop_replay is not None:
            stop_replay()
        for i, p in enumerate(subscribers):
            p.stop(threads[i] if i < len(threads) else None)
        edge.stop()
        proxy.close()
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous
        settings.get.cache_clear()
        aws.reset()


def run(argv: list[str]) -> None:
    import tempfile

    from moto.server import ThreadedMotoServer

    from tests.conftest import TEST_ENV, free_port

    seconds = next((float(a.split("=")[1]) for a in argv if a.startswith("--seconds=")), 300.0)
    for k, v in TEST_ENV.items():
        os.environ.setdefault(k, v)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = run_chaos(f"http://127.0.0.1:{port}", Path(tmp), seconds=seconds)
    finally:
        server.stop()
    print(report.table())
