"""`python -m devstack`: start moto, create the tables, serve the REST API (and the SIP edge).

Everything runs on loopback. SMS that would be sent are printed to the console. Ctrl-C stops it.
Ports: MOTO_PORT (5000), API_PORT (8000), SIP_PORT (5060).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable

HOST = os.environ.get("DEVSTACK_HOST", "127.0.0.1")
MOTO_PORT = int(os.environ.get("MOTO_PORT", "5000"))
API_PORT = int(os.environ.get("API_PORT", "8000"))
STOP_SECONDS = 10  # each service's stop at Ctrl-C; the edge's own takes up to EDGE_STOP_WAIT

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
    from devstack import services

    services.create_push_applications()
    stops.append(start_api())
    stops.extend(services.start_all(HOST, f"http://{HOST}:{MOTO_PORT}"))
    quiet_collector()
    api = f"http://{HOST}:{API_PORT}"
    print(f"moto (embedded AWS)  http://{HOST}:{MOTO_PORT}", flush=True)
    print(f"REST API             {api}/v1/health", flush=True)
    print(f"Web pages            {api}/  (open it in a browser)", flush=True)
    # What a new phone scans (Linphone: remote provisioning): docs/linphone.md.
    print(f"Provisioning link    {api}/provisioning", flush=True)
    print(f"  as a QR code       {api}/provisioning/qrcode?format=svg", flush=True)
    print("Ctrl-C stops everything.", flush=True)
    done = threading.Event()
    # Both set explicitly: a shell starting the stack in the background has SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1):  # a timed wait: the handler runs between two waits
        pass
    stuck = [stop for stop in reversed(stops) if not _stopped(stop)]
    sys.stdout.flush()
    sys.stderr.flush()
    # Ctrl-C ends the stack even if a service hung in its stop (named above, with every
    # thread's stack): the interpreter's own exit would wait for its worker threads forever.
    os._exit(1 if stuck else 0)


def quiet_collector() -> None:
    """Keep the garbage collector's full passes rare, as the edge does (sip_edge.server): moto
    holds every item in this process, and each full pass walked them all, pausing the function
    host for tens of milliseconds (function calls piled up past the edge's bulkhead: 503s).
    What start-up built stays out of the collector's sight."""
    import gc

    from sip_edge.server import GC_FULL_AFTER, GC_YOUNG_ALLOCATIONS

    gc.freeze()
    gc.set_threshold(GC_YOUNG_ALLOCATIONS, 10, GC_FULL_AFTER)


def _stopped(stop: Callable[[], None]) -> bool:
    """Run one service's stop for at most STOP_SECONDS; False (and why, on stderr) if not."""
    name = getattr(stop, "__qualname__", repr(stop))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            stop()
        except Exception as exc:  # keep stopping the rest
            errors.append(exc)

    worker = threading.Thread(target=run, name=f"stop {name}", daemon=True)
    worker.start()
    worker.join(STOP_SECONDS)
    if worker.is_alive():
        print(f"stopping {name}: still busy after {STOP_SECONDS} s", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        return False
    if errors:
        print(f"stopping {name}: {errors[0]}", file=sys.stderr, flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
