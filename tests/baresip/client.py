"""A real baresip 1.0 user agent driven from a test: its own config dir, SIP on a loopback port,
its `ctrl_tcp` control socket (netstring-framed JSON) for commands, and its SIP trace (`-s`).

Only the modules the test needs are loaded (account, contact, presence, ctrl_tcp): no audio
device, no console. Contacts are per-contact presence subscriptions (`;presence=p2p`).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from testkit.ports import free_port

MODULES = ("uuid.so", "account.so", "contact.so", "presence.so", "ctrl_tcp.so")
_STATUS = re.compile(r"(\w+)\s+\S*\s*<sip:([^>]+)>")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def missing_requirement() -> str | None:
    if shutil.which("baresip") is None:
        return "baresip not found: install the Debian package baresip-core"
    modules = Path("/usr/lib/baresip/modules")
    absent = [m for m in MODULES if not (modules / m).exists()]
    if absent:
        return f"baresip modules {absent} missing: install the Debian package baresip-core"
    return None


class Baresip:
    """One UA: `user@domain` with `password`, its contacts watched through the edge."""

    def __init__(
        self,
        home: Path,
        user: str,
        domain: str,
        password: str,
        edge: tuple[str, int],
        transport: str,
        contacts: Sequence[str],
    ) -> None:
        self.home = home
        self.user = user
        home.mkdir(parents=True)
        self.ctrl_port = free_port()
        # baresip listens on UDP and TCP, and on port + 1 for TLS even unused: all three free.
        sip_port = free_port("udp+tcp", span=2)
        config = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{sip_port}",
            "module_path /usr/lib/baresip/modules",
            *(f"module_tmp {m}" if m in ("uuid.so", "account.so") else f"module_app {m}"
              for m in MODULES),
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
        ]  # fmt: skip
        (home / "config").write_text("\n".join(config) + "\n")
        host, port = edge
        proxy = f"sip:{host}:{port};transport={transport}"
        # regint: 60 s is the edge's REGISTER_MIN_EXPIRES; the test never waits for a refresh.
        (home / "accounts").write_text(
            f"<sip:{user}@{domain};transport={transport}>;auth_pass={password};"
            f'outbound="{proxy}";regint=600;answermode=manual\n'
        )
        (home / "contacts").write_text(
            "".join(f'"{c}" <sip:{c}@{domain}>;presence=p2p\n' for c in contacts)
        )
        self.log = home / "trace.log"
        self._log_file = self.log.open("wb")
        # Line-buffered, so that the trace is whole even if the UA has to be killed.
        unbuffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        self.proc = subprocess.Popen(
            [*unbuffered, "baresip", "-4", "-s", "-f", str(home)],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def trace(self) -> str:
        return _ANSI.sub("", self.log.read_text(errors="replace"))

    def command(self, command: str, params: str = "", timeout: float = 2.0) -> str:
        """Run one baresip command over ctrl_tcp; the text it answered."""
        request = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=timeout) as s:
            s.sendall(b"%d:%s," % (len(request), request))
            data = b""
            while True:
                length, sep, rest = data.partition(b":")
                if sep and length.isdigit() and len(rest) > int(length):
                    message = json.loads(rest[: int(length)])
                    if message.get("response"):
                        return _ANSI.sub("", message.get("data", ""))
                    data = rest[int(length) + 1 :]  # an event: skip it
                    continue
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("baresip closed its control socket")
                data += chunk

    def ready(self) -> bool:
        try:
            self.command("contacts", timeout=0.5)
            return True
        except OSError:
            return False

    def statuses(self) -> dict[str, str]:
        """{contact address: presence as baresip shows it (Unknown, Online, Offline, Busy)};
        empty while its control socket is not up yet."""
        try:
            text = self.command("contacts")
        except OSError:
            return {}
        return {aor: status for status, aor in _STATUS.findall(text)}

    def quit(self) -> None:
        """Quit as a user does: baresip unregisters and ends its subscriptions first."""
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: baresip's own orderly shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
