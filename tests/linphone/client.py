"""Drive the real Linphone SDK from tests: build lpclient.c on demand and talk its line protocol."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "lpclient.c"
BUILD_DIR = HERE / "build"
BINARY = BUILD_DIR / "lpclient"
HEADER = Path("/usr/include/linphone/core.h")
PACKAGE = "liblinphone-dev"

Event = dict[str, Any]


class LinphoneClientError(AssertionError):
    """A command failed, an expected event did not come, or the client died."""


@dataclass(frozen=True)
class Presence:
    """What the SDK holds for one subscribed number or URI."""

    key: str
    basic: str  # "open", "closed", or "none" when the SDK has no presence model for it
    contact: str | None
    activity: str | None
    friend: str | None = None


def missing_requirement() -> str | None:
    """Why lpclient cannot be built here, or None."""
    if shutil.which("gcc") is None:
        return "gcc not found: install the Debian package gcc"
    if HEADER.exists():
        return None
    if shutil.which("pkg-config"):
        probe = subprocess.run(["pkg-config", "--exists", "linphone"], check=False)
        if probe.returncode == 0:
            return None
    return f"Linphone SDK headers not found: install the Debian package {PACKAGE}"


def _cflags() -> list[str]:
    if shutil.which("pkg-config") is None:
        return []
    out = subprocess.run(
        ["pkg-config", "--cflags", "linphone"], capture_output=True, text=True, check=False
    )
    return out.stdout.split() if out.returncode == 0 else []


def build_binary() -> Path:
    """Path of lpclient, compiled first when missing or older than its source."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Parallel test workers share the build dir: one compiles, the others wait and reuse it.
    with open(BUILD_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
            return BINARY
        tmp = BUILD_DIR / f"lpclient.{os.getpid()}.tmp"
        cmd = ["gcc", "-Wall", "-O1", "-g", *_cflags(), "-o", str(tmp), str(SOURCE)]
        cmd += ["-llinphone", "-lbctoolbox", "-lpthread"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise LinphoneClientError(f"building lpclient failed: {' '.join(cmd)}\n{result.stderr}")
        os.replace(tmp, BINARY)
        return BINARY


def _token(value: object) -> str:
    # lpclient splits on blanks and decodes %XX in each token.
    text = str(value)
    if text == "":
        return "-"
    return urllib.parse.quote(text, safe="!#$&'()*+,/:;<=>?@[]^_`{|}~-.")


class LinphoneClient:
    """One lpclient process: commands in, JSON events out, each event kept in `events`."""

    def __init__(
        self,
        work_dir: Path,
        config: Mapping[str, object] | None = None,
        binary: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._send_lock = threading.Lock()
        settings = [f"{key}={value}" for key, value in (config or {}).items()]
        self.stderr_path = self.work_dir / "lpclient.stderr"
        self.sdk_log_path = self.work_dir / "sdk.log"
        env = dict(os.environ, HOME=str(self.work_dir))  # nothing leaks into the real home
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [str(binary or build_binary()), str(self.work_dir), *settings],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=self.work_dir,
            )
        self._reader = threading.Thread(target=self._read, name="lpclient-reader", daemon=True)
        self._reader.start()
        self.ready = self.wait_for(lambda e: e["event"] == "ready", start_timeout)

    # ------------------------------------------------------------------ plumbing

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "garbage", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        returncode = self.proc.wait()
        with self._cond:
            self.events.append({"event": "exited", "returncode": returncode})
            self._cond.notify_all()

    def mark(self) -> int:
        """Index of the next event: pass it as `after` to wait only for newer events."""
        with self._cond:
            return len(self.events)

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = 10.0, after: int = 0
    ) -> Event:
        """First event at index >= after matching predicate; raises on timeout or exit."""
        deadline = time.monotonic() + timeout
        index = after
        with self._cond:
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if predicate(event):
                        return event
                    if event["event"] == "exited":
                        raise LinphoneClientError(f"lpclient exited while waiting{self._context()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinphoneClientError(f"timed out after {timeout} s{self._context()}")
                self._cond.wait(remaining)

    def _context(self) -> str:
        tail = "\n".join(json.dumps(e) for e in self.events[-25:] if e["event"] != "log")
        return f"\nlast events:\n{tail}\nSDK log: {self.sdk_log_path}\nstderr: {self.stderr_path}"

    def command(self, *words: object, timeout: float = 10.0) -> Event:
        """Send one command line and return its ok answer; raise on error."""
        with self._send_lock:
            self._seq += 1
            seq = self._seq
            line = " ".join(_token(w) for w in words) + "\n"
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(line.encode())
                self.proc.stdin.flush()
            except BrokenPipeError as exc:
                raise LinphoneClientError(f"lpclient is gone{self._context()}") from exc
        answer = self.wait_for(
            lambda e: e["event"] in ("ok", "error") and e.get("seq") == seq, timeout
        )
        if answer["event"] == "error":
            raise LinphoneClientError(f"{words[0]}: {answer.get('message')}")
        return answer

    # ------------------------------------------------------------------ commands

    def account(
        self,
        identity: str,
        password: str | None,
        proxy: str,
        register: bool = True,
        prefix: str | None = None,
        *,
        expires: int | None = None,
        userid: str | None = None,
        realm: str | None = None,
        outbound: bool = True,
    ) -> None:
        """The default account; proxy like sip:127.0.0.1:5060;transport=udp picks the transport."""
        words: list[object] = ["account", identity, password or "-", proxy, int(register)]
        words.append(prefix or "-")
        if expires is not None:
            words.append(f"expires={expires}")
        if userid:
            words.append(f"userid={userid}")
        if realm:
            words.append(f"realm={realm}")
        words.append(f"outbound={int(outbound)}")
        self.command(*words)

    def add_friend(self, name: str, *numbers_or_uris: str) -> None:
        """A contact; items starting with sip:/sips: are addresses, the rest phone numbers."""
        self.command("friend", name, *numbers_or_uris)

    def subscribe(self, rls_uri: str) -> None:
        self.command("subscribe", rls_uri)

    def unsubscribe(self) -> None:
        self.command("unsubscribe")

    def set_user_agent(self, name: str, version: str | None = None) -> None:
        self.command("user_agent", name, *([version] if version else []))

    def set_config(self, section: str, key: str, value: object) -> None:
        """Change a config entry at run time (only keys the SDK reads when used)."""
        self.command("config", section, key, value)

    def refresh_register(self) -> None:
        self.command("refresh_register")

    def set_network_reachable(self, reachable: bool) -> None:
        self.command("network", int(reachable))

    def iterate(self, ms: int) -> None:
        self.command("iterate", ms, timeout=ms / 1000 + 10)

    def account_creator(self, xmlrpc_url: str, **fields: str | tuple[str, str]) -> None:
        """A new LinphoneAccountCreator on `xmlrpc_url` (the apps' `[assistant] xmlrpc_url`),
        then `creator_set` for each field (phone=(number, country code))."""
        self.command("creator", xmlrpc_url)
        self.creator_set(**fields)

    def creator_set(self, **fields: str | tuple[str, str] | None) -> None:
        """Fields: username, phone=(number, country code), password, ha1, code, domain,
        algorithm, language; None clears one. The SDK's own checks run (an error if refused)."""
        for field, value in fields.items():
            values = value if isinstance(value, tuple) else (value,)
            self.command("creator_set", field, *["-" if v is None else v for v in values])

    def creator_request(
        self, op: str, timeout: float = 10.0, *, callback: str | None = None
    ) -> Event:
        """Send one account creator request and wait for its `creator` event (status, response,
        and the creator's username/phone/ha1/algorithm as the SDK left them). `callback`: the
        callback the SDK answers on when it is not the request's own (FlexiAPI backend:
        login_linphone_account answers on send_token, create_with_token on create_account,
        is_account_activated on activate_account)."""
        start = self.mark()
        self.command("creator_run", op)
        wanted = callback or op
        return self.wait_for(
            lambda e: e["event"] == "creator" and e["op"] == wanted, timeout, after=start
        )

    def creator_send(self, op: str) -> str:
        """Send a request whose success the SDK reports to no callback (FlexiAPI backend:
        activate_account, link_account, activate_alias, update_account, is_account_linked);
        answers its immediate status (5.1 says RequestFailed for some it did send)."""
        start = self.mark()
        self.command("creator_send", op)
        event = self.wait_for(lambda e: e["event"] == "creator_sent", 1, after=start)
        return str(event["status"])

    def creator_create_account(self) -> None:
        """The account the creator made, in the core as an app adds it: from the creator's
        fields and the provisioned `[proxy_default_values]`, the default account."""
        self.command("creator_create_account")

    def restart(self, timeout: float = 15.0) -> Event:
        """Stop and start the core, as an app does after a provisioning URI is set; answers
        the start's `configuring` event (provisioning fetched again)."""
        start = self.mark()
        self.command("restart", timeout=timeout)
        return self.wait_configuring(timeout, after=start)

    def wait_configuring(self, timeout: float = 15.0, after: int = 0) -> Event:
        return self.wait_for(lambda e: e["event"] == "configuring", timeout, after)

    def config_get(self, section: str, key: str) -> str | None:
        start = self.mark()
        self.command("config_get", section, key)
        event = self.wait_for(lambda e: e["event"] == "config", 1, after=start)
        return event["value"]

    def auth(
        self,
        username: str,
        domain: str,
        *,
        password: str | None = None,
        ha1: str | None = None,
        algorithm: str | None = None,
    ) -> None:
        """Replace the core's credentials: a clear password, or an HA1 of `algorithm`."""
        self.command("auth", username, password or "-", ha1 or "-", algorithm or "-", domain)

    def account_register(self, enabled: bool) -> None:
        self.command("account_register", int(enabled))

    def account_prefix(self, prefix: str) -> None:
        self.command("account_prefix", prefix)

    def presence_of(self, key: str) -> Presence:
        """The SDK's view of one number or URI, spelled as given to add_friend."""
        start = self.mark()
        self.command("presence", key)
        event = self.wait_for(lambda e: e["event"] == "presence", 1, after=start)
        entry = event["entry"]
        return Presence(
            key=entry["key"],
            basic=entry["basic"],
            contact=entry["contact"],
            activity=entry["activity"],
            friend=event["friend"],
        )

    def presence(self, key: str) -> tuple[str, str | None]:
        """(basic, contact) as the apps read it: basic is open, closed or none."""
        found = self.presence_of(key)
        return found.basic, found.contact

    # ------------------------------------------------------------------ waits

    def wait_registration(self, state: str = "Ok", timeout: float = 10.0, after: int = 0) -> Event:
        """Registration states: Progress, Ok, Cleared, Failed."""
        return self.wait_for(
            lambda e: e["event"] == "registration" and e["state"] == state, timeout, after
        )

    def wait_subscription(
        self, state: str = "Active", timeout: float = 10.0, after: int = 0
    ) -> Event:
        """List subscription states: OutgoingProgress, Pending, Active, Terminated, Error..."""
        return self.wait_for(
            lambda e: e["event"] == "subscription" and e["state"] == state, timeout, after
        )

    def wait_presence_received(self, timeout: float = 10.0, after: int = 0) -> Event:
        return self.wait_for(lambda e: e["event"] == "presence_received", timeout, after)

    def warnings(self) -> list[str]:
        """SDK warnings and errors seen so far."""
        with self._cond:
            return [e["message"] for e in self.events if e["event"] == "log"]

    # ------------------------------------------------------------------ end

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def close(self, clean: bool = False, timeout: float = 5.0) -> int:
        """Quit and reap (kill if it hangs); returns the exit status.

        clean=True lets the SDK un-SUBSCRIBE and un-REGISTER (it waits up to ~2 s for the
        answers); the default drops the network first and sends nothing.
        """
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n" if clean else b"quit now\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout)
        return self.proc.returncode

    def __enter__(self) -> LinphoneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
