"""`python -m devstack`: start moto, create the tables, serve the REST API (and the SIP edge).

Everything runs on loopback. SMS that would be sent are printed to the console. Ctrl-C stops it.
Ports: MOTO_PORT (5000), API_PORT (8000), SIP_PORT (5060).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

HOST = os.environ.get("DEVSTACK_HOST", "127.0.0.1")
MOTO_PORT = int(os.environ.get("MOTO_PORT", "5000"))
API_PORT = int(os.environ.get("API_PORT", "8000"))

LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
    "STAGE": "local",
    "EDGE_QUEUE_WAIT": "2",  # Ctrl-C waits for the last long poll
}


def start_moto() -> Callable[[], None]:
    """moto in-process for the stack's own clients, and on MOTO_PORT for outside tools."""
    from devstack import moto_local

    return moto_local.start(HOST, MOTO_PORT)


def start_api() -> Callable[[], None]:
    from devstack.rest_thread import RestThread

    return RestThread(HOST, API_PORT).stop


def main() -> int:
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    from chalicelib import aws, settings, tables

    stops: list[Callable[[], None]] = [start_moto()]
    settings.get.cache_clear()
    aws.reset()
    tables.create_all(aws.client("dynamodb"))
    stops.append(start_api())
    from devstack import services

    stops.extend(services.start_all(HOST))
    print(f"moto (embedded AWS)  http://{HOST}:{MOTO_PORT}", flush=True)
    print(f"REST API             http://{HOST}:{API_PORT}/v1/health", flush=True)
    print("Ctrl-C stops everything.", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    for stop in reversed(stops):
        try:
            stop()
        except Exception as exc:  # keep stopping the rest
            print(f"stopping: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
