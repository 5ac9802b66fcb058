"""Extra local services started beside moto and the REST API (SMS printer, SIP edge, streams).

Each starter returns a stop function; `start_all` is the list `make run` starts.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

SMS_POLL_SECONDS = 0.3


def _sms_messages() -> Iterator[tuple[str, str, str]]:
    """(message id, E.164, text) of every SMS moto's SNS holds, in every account and region.

    moto runs in this process (ThreadedMotoServer), so its backend is read directly; the same
    messages stay readable from moto's /moto-api/data.json."""
    from moto.sns.models import sns_backends

    for _, regions in list(sns_backends.items()):
        for _, backend in list(regions.items()):
            for message_id, (number, text) in list(backend.sms_messages.items()):
                yield message_id, number, text


def run_every(seconds: float, work: Callable[[], None], name: str) -> Callable[[], None]:
    """Run `work` every `seconds` in a daemon thread until the returned stop is called."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            work()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def stop_loop() -> None:
        stop.set()
        thread.join(timeout=2)

    return stop_loop


def start_sms_printer(out: TextIO | None = None) -> Callable[[], None]:
    """Print each SMS the service sends to the console: the local stand-in for a phone."""
    seen: set[str] = set()

    def poll() -> None:
        try:
            fresh = [m for m in _sms_messages() if m[0] not in seen]
        except RuntimeError:
            return  # moto appended while we read: read again next time
        for message_id, number, text in fresh:
            seen.add(message_id)
            stream = out or sys.stdout
            # One write per line: print() writes the newline separately, and the log
            # lines of the request threads would land in between.
            stream.write(f"SMS to {number}: {text}\n")
            stream.flush()

    return run_every(SMS_POLL_SECONDS, poll, "sms-printer")


def start_sip_edge(host: str) -> Callable[[], None]:
    """The SIP edge on SIP_PORT (UDP and TCP) in a thread, calling the functions in-process
    (`DEVSTACK_EDGE=thread`: one process for everything)."""
    import os

    from devstack.edge_thread import EdgeThread

    os.environ.setdefault("SIP_HOST", host)
    try:
        edge = EdgeThread(sip_host=os.environ["SIP_HOST"])
    except OSError as exc:
        print(f"SIP edge could not start: {exc}", file=sys.stderr, flush=True)
        return lambda: None
    # The thread id lets a benchmark read the event loop's own CPU time from /proc.
    print(
        f"SIP edge             sip:{host}:{edge.ports['udp']} (UDP and TCP, thread "
        f"{edge.thread.native_id})",
        flush=True,
    )
    return edge.stop


def start_stream_replayer() -> Callable[[], None]:
    """moto's DynamoDB streams into the live-update handlers, as Lambda does on AWS."""
    from devstack.streams import StreamReplayer

    return StreamReplayer().start()


def start_function_host_and_edge(host: str, moto_url: str) -> list[Callable[[], None]]:
    """The functions served on a Unix socket in this process (beside moto) and the SIP edge on
    SIP_PORT in a process of its own calling them, as an ECS task invokes Lambda: two cores."""
    import os
    import shutil
    import tempfile

    from devstack.edge_process import EdgeProcess
    from devstack.function_host import FunctionHost

    workdir = tempfile.mkdtemp(prefix="devstack-")
    functions = FunctionHost(os.path.join(workdir, "functions.sock"))

    def stop_function_host() -> None:
        functions.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    env = {
        "SIP_HOST": os.environ.setdefault("SIP_HOST", host),
        "SIP_FUNCTIONS": "socket",
        "SIP_FUNCTIONS_SOCKET": functions.path,
        "AWS_ENDPOINT_URL": moto_url,  # its SQS queue
    }
    try:
        edge = EdgeProcess(env)
    except (OSError, RuntimeError) as exc:
        print(f"SIP edge could not start: {exc}", file=sys.stderr, flush=True)
        return [stop_function_host]
    # The pid lets a benchmark read the edge's own CPU time from /proc.
    print(
        f"SIP edge             sip:{host}:{edge.ports['udp']} (UDP and TCP, process {edge.pid})",
        flush=True,
    )
    return [stop_function_host, edge.stop]


def start_all(host: str, moto_url: str) -> list[Callable[[], None]]:
    """What `make run` starts beside moto and the REST API; DEVSTACK_EDGE=thread runs the edge
    in a thread of this process instead of a process of its own."""
    import os

    started = [start_sms_printer(), start_stream_replayer()]
    if os.environ.get("DEVSTACK_EDGE", "process") == "thread":
        return [*started, start_sip_edge(host)]
    return [*started, *start_function_host_and_edge(host, moto_url)]
