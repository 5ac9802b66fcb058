"""The SIP edge in a process of its own beside the stack, as an ECS task beside Lambda.

`make run` starts `python -m sip_edge` here with the functions on the function host's socket
(`SIP_FUNCTIONS=socket`) and its SQS queue on moto's port: the edge and the functions each
get a core. Its output is relayed to the stack's console. It ends with the stack: stopped
first at Ctrl-C (its clean stop still calls the functions), and on Linux told by the kernel
(SIGTERM) if the stack dies without stopping it, so no edge outlives its stack on the port.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
from typing import TextIO

#: The edge's clean stop takes up to EDGE_STOP_WAIT; after this long it is killed.
STOP_SECONDS = 8.0
START_SECONDS = 30.0
READY_PREFIX = "SIP edge"


def _end_with_parent() -> None:
    """In the child, before it runs Python: SIGTERM when the stack's process ends."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class EdgeProcess:
    """`python -m sip_edge` with the environment plus `env`; raises if it did not start."""

    def __init__(self, env: dict[str, str], out: TextIO | None = None) -> None:
        self._out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sip_edge"],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_end_with_parent if sys.platform.startswith("linux") else None,
        )
        self.pid = self.proc.pid
        self.ports = self._wait_until_listening()
        threading.Thread(target=self._relay, name="edge-output", daemon=True).start()

    def _wait_until_listening(self) -> dict[str, int]:
        assert self.proc.stdout is not None
        timer = threading.Timer(START_SECONDS, self.proc.kill)
        timer.start()
        said: list[str] = []
        try:
            for line in self.proc.stdout:
                if line.startswith(READY_PREFIX):
                    # serve_forever's line: "SIP edge  udp/tcp {'udp': 5060, 'tcp': 5060}"
                    return dict(ast.literal_eval(line[line.index("{") :]))
                said.append(line)
        finally:
            timer.cancel()
        self.proc.wait()
        raise RuntimeError("the SIP edge did not start:\n" + "".join(said[-20:]))

    def _relay(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            out = self._out or sys.stdout
            out.write(line)
            out.flush()

    def stop(self) -> None:
        """A clean stop (SIGTERM), then SIGKILL after STOP_SECONDS."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print("SIP edge: still running after SIGTERM; killed", file=sys.stderr, flush=True)
            self.proc.kill()
            self.proc.wait()
