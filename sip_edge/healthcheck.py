"""Container health check: send one SIP OPTIONS over UDP to the local edge, exit 0 on an answer.

Runs as a plain script (`python /app/sip_edge/healthcheck.py`, standard library only) so it
starts fast and does not import the edge. Healthy = any SIP response below 500 within the
timeout: the edge is up and parsing; 5xx (overload) and silence are unhealthy.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys


def options_request(host: str, port: int, local_port: int, call_id: str, branch: str) -> bytes:
    lines = [
        f"OPTIONS sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:healthcheck@{host}>;tag={branch[:10]}",
        f"To: <sip:{host}:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        "Accept: application/sdp",
        "User-Agent: smart-contacts-healthcheck",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def probe(host: str, port: int, timeout: float = 3.0) -> int | None:
    """The status code of the edge's answer, or None when nothing came back in time."""
    call_id = secrets.token_hex(8) + "@healthcheck"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind(("127.0.0.1", 0))
        request = options_request(host, port, sock.getsockname()[1], call_id, secrets.token_hex(8))
        sock.sendto(request, (host, port))
        try:
            while True:
                data, _ = sock.recvfrom(65535)
                head = data.decode("utf-8", "replace")
                if head.startswith("SIP/2.0 ") and call_id in head:
                    return int(head[8:11])
        except (TimeoutError, ValueError):
            return None


def main() -> int:
    bind = os.environ.get("SIP_HOST", "127.0.0.1")
    # An edge bound to every address answers on loopback too.
    host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
    status = probe(host, int(os.environ.get("SIP_PORT", "5060")))
    print(f"OPTIONS -> {status}")
    return 0 if status is not None and status < 500 else 1


if __name__ == "__main__":
    sys.exit(main())
