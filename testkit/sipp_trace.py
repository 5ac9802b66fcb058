"""SIPp as a crowd of phones: run a scenario, then read back what it received (its -trace_msg
log) as each phone saw it: the list each one holds, built from its NOTIFYs as a phone builds it,
and how each call ended."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

from testkit.notify_body import users_in
from testkit.ports import free_port

RLMI = {"r": "urn:ietf:params:xml:ns:rlmi"}


_TRACE = re.compile(
    rb"^-{47} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n\w+ message received \[(\d+)\] bytes :\n\n",
    re.MULTILINE,
)


def received(message_file: Path) -> list[tuple[float, bytes]]:
    """(wall time, message) of everything SIPp's -trace_msg log says it received, in order."""
    data = message_file.read_bytes() if message_file.exists() else b""
    out = []
    for m in _TRACE.finditer(data):
        # SIPp stamps its log in local time.
        when = datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append((when, data[m.end() : m.end() + int(m.group(2))]))
    return out


@dataclass
class PhoneView:
    """What one phone knows, built from the NOTIFYs it received, as a phone builds it."""

    entries: list[str]
    view: dict[str, str | None] = field(default_factory=dict)
    notifies: int = 0
    terminated_early: int = 0
    ok_since: float | None = None  # wall time the view last became right

    def apply(self, when: float, notify: Any, expected: dict[str, str | None], end: float) -> None:
        self.notifies += 1
        state = notify.headers.get("Subscription-State") or ""
        if state.startswith("terminated") and when < end:
            self.terminated_early += 1
        body = notify.body
        if body:  # the final NOTIFY of an un-SUBSCRIBE has none
            start = body.index(b"<?xml")
            rlmi = etree.fromstring(body[start : body.index(b"</list>", start) + 7])
            users = users_in(notify)
            if rlmi.get("fullState") == "true":
                self.view = {}
            for res in rlmi.findall("r:resource", RLMI):
                self.view[res.get("uri")] = users.get(res.get("uri"))
        right = self.snapshot() == expected
        if not right:
            self.ok_since = None
        elif self.ok_since is None:
            self.ok_since = when

    def snapshot(self) -> dict[str, str | None]:
        return {uri: self.view.get(uri) for uri in self.entries}


def phone_views(
    messages: list[tuple[float, bytes]],
    entries: list[str],
    expected: dict[str, str | None],
    end: float,
) -> dict[str, PhoneView]:
    """Each phone's view (by its SIP user) from SIPp's received messages."""
    from sip_edge.sip.message import Request
    from sip_edge.sip.parser import parse_datagram

    views: dict[str, PhoneView] = {}
    seen: set[bytes] = set()
    for when, raw in messages:
        msg = parse_datagram(raw)
        if not isinstance(msg, Request) or msg.method != "NOTIFY":
            continue
        digest = hashlib.sha256(raw).digest()
        if digest in seen:  # a retransmission (SIPp answered it again); it changes nothing
            continue
        seen.add(digest)
        phone = msg.to.uri.user or "?"
        views.setdefault(phone, PhoneView(entries)).apply(when, msg, expected, end)
    return views


def cycle_outcomes(messages: list[tuple[float, bytes]]) -> tuple[dict[str, int], dict[int, int]]:
    """How the short cycles ended, and the final statuses their SUBSCRIBEs got (each
    transaction once), from a SIPp's received messages."""
    from sip_edge.sip.message import Request, Response
    from sip_edge.sip.parser import parse_datagram

    finals: dict[tuple[str, int], int] = {}
    notifies: dict[str, list[str]] = {}
    for _, raw in messages:
        msg = parse_datagram(raw)
        if isinstance(msg, Response) and msg.status >= 200 and msg.cseq.method == "SUBSCRIBE":
            finals.setdefault((msg.call_id, msg.cseq.seq), msg.status)
        elif isinstance(msg, Request) and msg.method == "NOTIFY":
            state = msg.headers.get("Subscription-State") or ""
            notifies.setdefault(msg.call_id, []).append(state)
    outcomes = {"completed": 0, "refused (503)": 0, "cut by the SIGKILL": 0}
    for (call_id, seq), status in finals.items():
        if seq != 1:
            continue
        if status == 503:
            outcomes["refused (503)"] += 1
        elif status == 200 and any(x.startswith("terminated") for x in notifies.get(call_id, [])):
            outcomes["completed"] += 1
        else:
            outcomes["cut by the SIGKILL"] += 1
    statuses: dict[int, int] = {}
    for status in finals.values():
        statuses[status] = statuses.get(status, 0) + 1
    return outcomes, statuses


class Sipp:
    """One SIPp process running `scenario` against the edge: `calls` calls, `rate` a second,
    `limit` at once; `sets` are its -set globals. Traces land in workdir/<name>_*.log."""

    def __init__(
        self,
        name: str,
        scenario: Path,
        edge: tuple[str, int],
        workdir: Path,
        *,
        calls: int,
        rate: float,
        limit: int,
        sets: dict[str, str],
        timeout: float,
        options: tuple[str, ...] = (),
    ) -> None:
        binary = shutil.which("sipp")
        if binary is None:
            raise RuntimeError("sipp not found: install the Debian package sip-tester")
        self.messages = workdir / f"{name}_messages.log"
        self.errors = workdir / f"{name}_errors.log"
        self.output = workdir / f"{name}.out"
        self.command = [
            binary, f"{edge[0]}:{edge[1]}", "-sf", str(scenario), "-t", "u1",
            "-i", "127.0.0.1", "-p", str(free_port("udp")),
            "-m", str(calls), "-l", str(limit), "-r", str(rate),
            "-nostdin", "-timeout", f"{timeout:.0f}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.messages),
            "-trace_err", "-error_file", str(self.errors),
        ]  # fmt: skip
        for key, value in sets.items():
            self.command += ["-set", key, value]
        self.command += options
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def explain(self) -> str:
        """SIPp's error log, less the receive timeouts the phones' clock loop makes."""
        text = self.errors.read_text(errors="replace") if self.errors.exists() else ""
        events = re.split(r"(?=\d{4}-\d\d-\d\d\t)", text)
        return "\n".join(e for e in events if "receive timeout" not in e)[-3000:].strip()
