"""The browser tests' tools: Debian's chromium driven by Playwright's Python package (never a
downloaded browser), a `make run` stack (`python -m devstack`) in a process of its own, SMS
codes read from that stack's moto, a SIP phone on its edge, and a look at each page: an axe-core
accessibility check (light and dark schemes) and screenshots at phone and desktop widths.

Screenshots go to a temporary folder, or to `$WEB_SCREENSHOTS` when set (`WEB_SCREENSHOTS=
docs/screenshots` regenerates the README's and docs/web.md's pictures).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.ports import free_port
from testkit.wait import wait_until
from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
DOMAIN = "sip.example.org"  # make run's default SIP_DOMAIN


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_browser() -> Any:
    """Playwright's sync API, once chromium and the package are here (else skip naming what
    to install; under CI=true, fail)."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        _missing("chromium not found: install the Debian package chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright not found: pip install -r requirements-dev.txt (Python playwright)")
    return sync_playwright


# --- The stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    """`python -m devstack` on free loopback ports, as a newcomer runs `make run`."""

    api_port: int
    moto_port: int
    sip_port: int
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.api_port}{path}"

    @property
    def moto(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def sms(self, e164: str) -> list[str]:
        """The texts sent to `e164` so far, as moto's SNS holds them."""
        with urllib.request.urlopen(f"{self.moto}/moto-api/data.json", timeout=10) as answer:
            data = json.load(answer)
        return [m["message"] for m in data["sns"]["SMS"] if m["phone_number"] == e164]

    def code(self, e164: str, *, after: int = 0, timeout: float = 10.0) -> str:
        """The code of the first SMS to `e164` past the `after` first ones."""
        if not wait_until(lambda: len(self.sms(e164)) > after, timeout, interval=0.1):
            raise AssertionError(f"no SMS to {e164} after {after}:\n" + "".join(self.lines[-30:]))
        return re.findall(r"\d{4,10}", self.sms(e164)[after])[-1]

    def dynamodb(self) -> Any:
        import boto3

        return boto3.client(
            "dynamodb",
            endpoint_url=self.moto,
            region_name="eu-west-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def registrations(self, aor: str) -> list[dict[str, Any]]:
        return self.dynamodb().query(
            TableName="sc-local-Registrations",
            KeyConditionExpression="aor = :a",
            ExpressionAttributeValues={":a": {"S": aor}},
        )["Items"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_stack(**settings: str) -> Stack:
    """A fresh stack; `settings` are environment variables for it (its limits)."""
    ports = {"MOTO_PORT": free_port(), "API_PORT": free_port(), "SIP_PORT": free_port("udp+tcp")}
    fresh = ("AWS_", "TABLE_", "STAGE", "SIP_", "EDGE_", "WEB_")  # as on a newcomer's machine
    env = {k: v for k, v in os.environ.items() if not k.startswith(fresh)}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stack = Stack(ports["API_PORT"], ports["MOTO_PORT"], ports["SIP_PORT"], proc)
    assert proc.stdout is not None
    threading.Thread(target=lambda: stack.lines.extend(proc.stdout or ()), daemon=True).start()
    started = wait_until(
        lambda: proc.poll() is not None or any("Ctrl-C stops" in x for x in stack.lines), 90
    )
    if not started or proc.poll() is not None:
        stack.stop()
        raise AssertionError("the stack did not start:\n" + "".join(stack.lines))
    return stack


# --- People with a browser -----------------------------------------------------------------------


class Browsers:
    """Chromium profiles, each new and empty (one per person), closed together."""

    def __init__(self, playwright: Any, shots: Path) -> None:
        self.playwright = playwright
        self.shots = shots
        self._open: list[Any] = []
        self._dirs: list[str] = []

    def person(self, *, javascript: bool = True) -> Any:
        """A page in a browser of its own (its own cookies), phone-sized."""
        profile = tempfile.mkdtemp(prefix="web-profile-")
        self._dirs.append(profile)
        context = self.playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=PHONE,
            java_script_enabled=javascript,
            locale="en-GB",
        )
        self._open.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(15000)
        violations: list[str] = []
        page.on(
            "console",
            lambda message: (
                violations.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        page.csp_violations = violations
        return page

    def close(self) -> None:
        for context in self._open:
            context.close()
        for profile in self._dirs:
            shutil.rmtree(profile, ignore_errors=True)


def shots_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("WEB_SCREENSHOTS")
    if chosen:
        folder = (ROOT / chosen).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


def look(page: Any, name: str, shots: Path) -> None:
    """Check the page as every visitor gets it, and keep its pictures: no axe-core violation
    (WCAG 2.x A and AA rules and best practices: labels, roles, names, contrast) in the light
    and the dark scheme, no CSP violation, then screenshots at phone and desktop widths."""
    from axe_playwright_python.sync_playwright import Axe

    page.wait_for_load_state("load")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        results = Axe().run(page)
        assert results.violations_count == 0, f"{name} ({scheme}):\n{results.generate_report()}"
    page.emulate_media(color_scheme="light")
    assert not page.csp_violations, page.csp_violations
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(shots / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(PHONE)


# --- A SIP phone on the stack's edge -------------------------------------------------------------


class Phone:
    """An account's phone on the stack's SIP edge: REGISTER and a list SUBSCRIBE, with a
    User-Agent (testkit.sip_client over UDP)."""

    def __init__(self, stack: Stack, username: str, password: str, agent: str) -> None:
        from testkit.sip_client import SipClient

        self.client = SipClient(("127.0.0.1", stack.sip_port))
        self.username = username
        self.password = password
        self.agent = agent
        self.aor = f"sip:{username}@{DOMAIN}"

    def _ask(self, method: str, uri: str, **kwargs: Any) -> Any:
        headers = [*kwargs.pop("headers", []), ("User-Agent", self.agent)]
        self.client.request(method, uri, from_uri=self.aor, headers=headers, **kwargs)
        challenge = self.client.response(method, timeout=10)
        assert challenge is not None, f"no answer to {method}"
        if challenge.status != 401:
            return challenge
        # SHA-256 first; the edge offers baresip MD5 only (SIP_DIGEST_MD5_AGENTS).
        offered = " ".join(challenge.headers.get_all("WWW-Authenticate"))
        self.client.authorized(
            method,
            uri,
            challenge,
            username=self.username,
            password=self.password,
            algorithm="SHA-256" if "SHA-256" in offered else "MD5",
            from_uri=self.aor,
            headers=headers,
            **kwargs,
        )
        return self.client.response(method, timeout=10)

    def register(self) -> int:
        return self._ask("REGISTER", f"sip:{DOMAIN}", headers=[("Expires", "600")]).status

    def subscribe(self, numbers: list[str]) -> int:
        from tests.edge.test_edge_subscribe import LIST_HEADERS, resource_list

        rls = f"sip:rls@{DOMAIN}"
        entries = [f"sip:{n}@{DOMAIN};user=phone" for n in numbers]
        answer = self._ask(
            "SUBSCRIBE", rls, to=f"<{rls}>", headers=LIST_HEADERS, body=resource_list(entries)
        )
        return answer.status

    def notify(self, timeout: float = 10.0) -> Any:
        return self.client.notify(timeout=timeout)

    def final_notify(self, timeout: float = 15.0) -> Any:
        """The NOTIFY that ends the subscription (partial ones may come first), or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            notify = self.client.notify(timeout=max(0.1, deadline - time.monotonic()))
            state = notify.headers.get("Subscription-State") or "" if notify else ""
            if state.startswith("terminated"):
                return notify
        return None

    def close(self) -> None:
        self.client.close()
