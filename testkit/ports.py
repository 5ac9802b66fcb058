"""The one way tests and benchmarks pick a loopback port: ask the kernel for a free one.

Never a fixed port: several suites run at once on one machine.
"""

from __future__ import annotations

import socket

_KINDS = {"tcp": (socket.SOCK_STREAM,), "udp": (socket.SOCK_DGRAM,),
          "udp+tcp": (socket.SOCK_DGRAM, socket.SOCK_STREAM)}  # fmt: skip


def free_port(protocols: str = "tcp", *, span: int = 1, host: str = "127.0.0.1") -> int:
    """A port of `host` free for `protocols` ("tcp", "udp" or "udp+tcp"), with the `span - 1`
    ports after it free too (baresip, for one, also listens on port + 1). Free when asked: a
    process that binds it later may, rarely, find it taken, and should pick again."""
    kinds = _KINDS[protocols]
    while True:
        socks: list[socket.socket] = []
        try:
            first = socket.socket(socket.AF_INET, kinds[0])
            socks.append(first)
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            for offset in range(span):
                for kind in kinds[1:] if offset == 0 else kinds:
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind((host, port + offset))
            return port
        except OSError:
            continue  # one of the ports is taken: pick another
        finally:
            for s in socks:
                s.close()
