"""Live contact lists end to end: sign-up confirm to partial NOTIFY, and the throttle in a burst.

The local stack in one process: moto in-process, the stream replayer thread (`make run`'s),
an edge in a thread of its own with the default NOTIFY_MIN_INTERVAL, and a UDP phone shaped
like Linphone 5.1 (User-Agent, deflate) that answers every NOTIFY at once. Sign-ups go through
`chalicelib.accounts.signup` (request_code, the SMS read from moto, confirm), one at a time.

1. Burst: 1,000 sign-ups back to back, all in one phone's 1,000-number list; NOTIFYs per
   throttle interval. An update too big for the UDP body size limit spans several NOTIFYs sent
   back to back; those count as one update.
2. Latency: 100 sign-ups of numbers in another phone's 100-number list; time from `confirm`
   returning to the partial NOTIFY naming the new user arriving. Each sign-up waits until the
   previous NOTIFY's throttle window has closed: the first change after a quiet period goes
   out at once, a change inside the window waits for it (up to NOTIFY_MIN_INTERVAL more).

Digest is skipped through trusted-proxy mode: it costs one round trip at subscribe only.
`--quick` runs 20 and 200 sign-ups.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import statistics
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.bodies import ENV as BODIES_ENV
from testkit.stats import percentile

if TYPE_CHECKING:
    from devstack.edge_thread import EdgeThread

ENV = {
    **BODIES_ENV,
    # One source IP signs everybody up here; the per-IP hourly limit is not what is measured.
    "CODE_REQUESTS_PER_IP_HOURLY": "1000000",
    "SIP_TRUSTED_PROXIES": "127.0.0.1",
    "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT": "1000000",  # one account stands for every phone
}
DOMAIN = "example.org"
RLS = f"sip:rls@{DOMAIN}"
PASSWORD = "correct horse battery"
LATENCY_SIGNUPS = 100
BURST_SIGNUPS = 1000
#: NOTIFYs less than this apart belong to one update (the edge sends its parts back to back;
#: two updates are a whole throttle interval apart).
SAME_UPDATE_GAP_S = 0.5
#: What a gap between two updates may fall short of the interval before it counts as a
#: violation: the edge's 50 ms timer tick and this process's own timestamping under load.
GAP_TOLERANCE_S = 0.05
USER_RE = re.compile(r'<resource uri="([^"]+)"><instance ')


def number_uri(e164: str) -> str:
    return f"sip:{e164}@{DOMAIN};user=phone"


@dataclass
class Received:
    at: float  # perf_counter when the datagram was read
    users: set[str]  # resources the NOTIFY gives an instance (users)
    full_state: bool


@dataclass
class Phone:
    """A UDP subscriber: one list subscription; answers each NOTIFY 200 as it arrives."""

    edge: tuple[str, int]
    sock: socket.socket = field(init=False)
    notifies: list[Received] = field(default_factory=list)
    responses: list[int] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        from sip_edge.sip.message import Request, Response, make_response
        from sip_edge.sip.parser import parse_datagram

        while True:
            try:
                data, source = self.sock.recvfrom(262144)
            except OSError:
                return  # closed
            at = time.perf_counter()
            message = parse_datagram(data)
            if isinstance(message, Response):
                with self.changed:
                    self.responses.append(message.status)
                    self.changed.notify_all()
                continue
            if not isinstance(message, Request) or message.method != "NOTIFY":
                continue
            self.sock.sendto(make_response(message, 200).to_bytes(), source)
            body = message.body
            if "deflate" in (message.headers.get("Content-Encoding") or ""):
                body = zlib.decompress(body)
            text = body.decode(errors="replace")
            received = Received(at, set(USER_RE.findall(text)), 'fullState="true"' in text)
            with self.changed:
                self.notifies.append(received)
                self.changed.notify_all()

    def subscribe(self, entries: list[str]) -> int:
        """SUBSCRIBE to `entries` as Linphone does; the final status."""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns='
            '"urn:ietf:params:xml:ns:resource-lists"><list>\n'
            + "".join(f'<entry uri="{e}"/>\n' for e in entries)
            + "</list></resource-lists>\n"
        ).encode()
        body = zlib.compress(body)
        port = self.sock.getsockname()[1]
        head = "\r\n".join(
            [
                f"SUBSCRIBE {RLS} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)};rport",
                "Max-Forwards: 70",
                f"From: <sip:alice@{DOMAIN}>;tag={secrets.token_hex(4)}",
                f"To: <{RLS}>",
                f"Call-ID: {secrets.token_hex(8)}",
                "CSeq: 1 SUBSCRIBE",
                f"Contact: <sip:alice@127.0.0.1:{port}>",
                "User-Agent: LinphoneSDK/5.1 (bench)",
                "Event: presence",
                "Expires: 3600",
                "Supported: eventlist",
                "Require: recipient-list-subscribe",
                "Content-Disposition: recipient-list",
                "Accept: multipart/related, application/rlmi+xml, application/pidf+xml",
                "Accept-Encoding: deflate",
                "Content-Type: application/resource-lists+xml",
                "Content-Encoding: deflate",
                f"Content-Length: {len(body)}",
                "",
                "",
            ]
        )
        self.sock.sendto(head.encode() + body, self.edge)
        assert self.wait(lambda: bool(self.responses), 10), "no answer to SUBSCRIBE"
        return self.responses[-1]

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout)

    def naming(self, uri: str, timeout: float) -> Received | None:
        """The first NOTIFY that gives `uri` an instance, waiting for it up to `timeout`."""

        def found() -> Received | None:
            return next((n for n in self.notifies if uri in n.users), None)

        self.wait(lambda: found() is not None, timeout)
        return found()

    def quiet(self, seconds: float, limit: float = 60) -> None:
        """Wait until no NOTIFY has arrived for `seconds` (the end of a full-state series)."""
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            last = self.notifies[-1].at if self.notifies else 0.0
            if time.perf_counter() - last >= seconds:
                return
            time.sleep(0.1)

    def close(self) -> None:
        self.sock.close()


def sms_code(e164: str) -> str:
    """The code of the last SMS moto's SNS received for `e164`."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    from chalicelib.aws import region

    sent = sns_backends[DEFAULT_ACCOUNT_ID][region()].sms_messages.values()
    text = next(text for number, text in reversed(list(sent)) if number == e164)
    return re.findall(r"\d{4,10}", text)[-1]


def sign_up(e164: str) -> None:
    from moto.core.model_instances import reset_model_data

    from chalicelib.accounts import signup

    signup.request_code(e164, source_ip="127.0.0.1")
    signup.confirm(e164, sms_code(e164), password=PASSWORD)
    # moto keeps every model object it ever made for its dashboard, including the copy of each
    # table a transaction takes: gigabytes by the end of the burst. Only that list is dropped.
    reset_model_data()


def run(argv: list[str]) -> None:
    os.environ.update(ENV)
    from moto import mock_aws

    from chalicelib import aws, settings

    settings.get.cache_clear()
    aws.reset()
    quick = "--quick" in argv
    from chalicelib.observability import metrics

    # Outside Lambda nothing flushes metrics but Powertools itself, every 100 values, as EMF
    # lines on stdout amid the tables; this bench does not read them.
    metrics.add_metric = lambda **_: None  # type: ignore[method-assign]
    with mock_aws():
        from chalicelib import accounts, tables
        from chalicelib.aws import client
        from devstack.edge_thread import EdgeThread
        from devstack.streams import StreamReplayer

        tables.create_all(client("dynamodb"))
        accounts.create(
            "alice",
            accounts.credentials_from_password("alice", PASSWORD, DOMAIN),
            phone_e164="+33611111111",
        )
        stop_replayer = StreamReplayer().start()
        edge = EdgeThread(sip_host="127.0.0.1", sip_port=0, edge_id="bench-live")
        try:
            # The burst first, while the tables are small: each moto transaction copies the
            # tables it touches, so sign-ups slow down as they grow (not measured in latency).
            burst(edge, BURST_SIGNUPS // 5 if quick else BURST_SIGNUPS)
            latency(edge, LATENCY_SIGNUPS // 5 if quick else LATENCY_SIGNUPS)
        finally:
            edge.stop()
            stop_replayer()


def latency(edge: EdgeThread, count: int) -> None:
    numbers = [f"+336100{i:05d}" for i in range(count)]
    phone = Phone(edge.address)
    assert phone.subscribe([number_uri(n) for n in numbers]) == 200
    assert phone.wait(lambda: bool(phone.notifies), 10), "no full-state NOTIFY"
    phone.quiet(edge.cfg.notify_min_interval + 0.5)
    samples, confirms, missing = [], [], 0
    for e164 in numbers:
        uri = number_uri(e164)
        started = time.perf_counter()
        sign_up(e164)
        confirmed = time.perf_counter()
        confirms.append(confirmed - started)
        got = phone.naming(uri, 15)
        if got is None:
            missing += 1
            continue
        # The NOTIFY may even beat confirm's return (it writes the account, then the code).
        samples.append(max(0.0, got.at - confirmed))
        # Quiet period: the next sign-up starts once this update's throttle window closed.
        time.sleep(max(0.0, got.at + edge.cfg.notify_min_interval + 0.1 - time.perf_counter()))
    phone.close()
    print("\n### Sign-up confirm → partial NOTIFY (one subscribed phone, one sign-up at a time)\n")
    print("| sign-ups | NOTIFY received | p50 ms | p95 ms | max ms | confirm p50 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {count} | {len(samples)} | {percentile(samples, 0.5) * 1000:.0f} | "
        f"{percentile(samples, 0.95) * 1000:.0f} | {max(samples) * 1000:.0f} | "
        f"{statistics.median(confirms) * 1000:.0f} |"
    )
    interval = edge.cfg.notify_min_interval
    print(
        f"\nThrottle NOTIFY_MIN_INTERVAL = {interval:g} s; each sign-up waited for the "
        "previous update's window to close (the first change after a quiet period goes out at "
        f"once; a change inside the window would wait up to {interval:g} s more)."
        + (f" {missing} sign-up(s) got no NOTIFY within 15 s." if missing else ""),
        flush=True,
    )


def burst(edge: EdgeThread, count: int) -> None:
    numbers = [f"+336200{i:05d}" for i in range(count)]
    wanted = {number_uri(n) for n in numbers}
    phone = Phone(edge.address)
    assert phone.subscribe(sorted(wanted)) == 200
    assert phone.wait(lambda: bool(phone.notifies), 30), "no full-state NOTIFY"
    phone.quiet(edge.cfg.notify_min_interval + 0.5)
    first = len(phone.notifies)
    started = time.perf_counter()
    for e164 in numbers:
        sign_up(e164)
    signed = time.perf_counter() - started

    def all_seen() -> bool:
        seen: set[str] = set()
        for n in phone.notifies[first:]:
            seen |= n.users
        return wanted <= seen

    complete = phone.wait(all_seen, 120)
    phone.quiet(2 * edge.cfg.notify_min_interval + 0.5)
    phone.close()
    notifies = phone.notifies[first:]
    report_burst(edge.cfg.notify_min_interval, count, signed, notifies, complete)


def report_burst(
    interval: float, count: int, signed: float, notifies: list[Received], complete: bool
) -> None:
    updates: list[list[Received]] = []
    for n in notifies:
        if updates and n.at - updates[-1][-1].at < SAME_UPDATE_GAP_S:
            updates[-1].append(n)
        else:
            updates.append([n])
    starts = [u[0].at for u in updates]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    violations = sum(g < interval - GAP_TOLERANCE_S for g in gaps)
    origin = starts[0]
    bins = int((notifies[-1].at - origin) // interval) + 1
    per_bin = [0] * bins
    updates_per_bin = [0] * bins
    for n in notifies:
        per_bin[int((n.at - origin) // interval)] += 1
    for s in starts:
        updates_per_bin[int((s - origin) // interval)] += 1
    seen = set().union(*(n.users for n in notifies))
    print(f"### Burst: {count:,} sign-ups in one subscribed {count:,}-number list\n")
    print(
        "| sign-ups | sign-up rate /s | NOTIFYs | updates | NOTIFYs per interval: max | "
        "median | updates per interval: max | min gap between updates s | "
        "gaps under the interval | partial | users seen |"
    )
    print("|" + "---:|" * 11)
    print(
        f"| {count:,} | {count / signed:.0f} | {len(notifies)} | {len(updates)} | "
        f"{max(per_bin)} | {statistics.median(per_bin):g} | {max(updates_per_bin)} | "
        f"{min(gaps) if gaps else float('nan'):.2f} | {violations} | "
        f"{all(not n.full_state for n in notifies)} | {len(seen):,} |"
    )
    print(
        f"\nIntervals of {interval:g} s from the first NOTIFY of the burst, empty ones included. "
        f"NOTIFYs under {SAME_UPDATE_GAP_S} s apart are the parts of one update (an update "
        "over the UDP body size limit is split and sent back to back); a gap between updates "
        f"counts as under the interval below {interval - GAP_TOLERANCE_S:.2f} s (50 ms: the "
        "edge's timer tick and timestamping here)."
        + ("" if complete else " NOT every new user reached the phone within 120 s."),
        flush=True,
    )
    if violations or not complete:
        raise SystemExit("live bench: throttle violated or updates missing")
