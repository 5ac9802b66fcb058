"""Extra local services started beside moto and the REST API (SMS and push printers, SIP edge,
streams), and the SNS platform applications the local pushes go through.

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


def start_printer(
    lines: Callable[[], Iterator[tuple[str, str]]], name: str, out: TextIO | None = None
) -> Callable[[], None]:
    """Print each new line `lines` yields ((message id, text) pairs) to the console."""
    seen: set[str] = set()

    def poll() -> None:
        try:
            fresh = [m for m in lines() if m[0] not in seen]
        except RuntimeError:
            return  # moto appended while we read: read again next time
        for message_id, text in fresh:
            seen.add(message_id)
            stream = out or sys.stdout
            # One write per line: print() writes the newline separately, and the log
            # lines of the request threads would land in between.
            stream.write(text + "\n")
            stream.flush()

    return run_every(SMS_POLL_SECONDS, poll, name)


def start_sms_printer(out: TextIO | None = None) -> Callable[[], None]:
    """Print each SMS the service sends to the console: the local stand-in for a phone."""

    def lines() -> Iterator[tuple[str, str]]:
        for message_id, number, text in _sms_messages():
            yield message_id, f"SMS to {number}: {text}"

    return start_printer(lines, "sms-printer", out)


#: The environment variables naming the platform applications, and their SNS platforms.
PUSH_APPLICATIONS = (
    ("PUSH_FCM_APPLICATION_ARN", "GCM"),
    ("PUSH_APNS_APPLICATION_ARN", "APNS"),
    ("PUSH_APNS_SANDBOX_APPLICATION_ARN", "APNS_SANDBOX"),
)


def create_push_applications() -> None:
    """One SNS platform application per push provider, in moto (what is pushed is printed,
    never sent), named in the environment unless it names one already."""
    import os

    from chalicelib import aws, settings

    for variable, platform in PUSH_APPLICATIONS:
        if os.environ.get(variable):
            continue
        answer = aws.client("sns").create_platform_application(
            Name=f"local-{platform.lower()}",
            Platform=platform,
            Attributes={"PlatformCredential": "local-stack"},
        )
        os.environ[variable] = answer["PlatformApplicationArn"]
    settings.get.cache_clear()


def _pushes() -> Iterator[tuple[str, str, str, str]]:
    """(message id, platform, device token, message) of every push moto's SNS holds."""
    from moto.sns.models import sns_backends

    for _, regions in list(sns_backends.items()):
        for _, backend in list(regions.items()):
            for endpoint in list(backend.platform_endpoints.values()):
                for message_id, message in list(endpoint.messages.items()):
                    yield message_id, endpoint.application.platform, endpoint.token, message


def push_payload(platform: str, message: str) -> str:
    """What the app reads of a push: FCM's `custom-payload`, APNs' `customPayload`."""
    import json

    try:
        body = json.loads(json.loads(message)[platform])
        if platform == "GCM":
            return str(body["fcmV1Message"]["message"]["android"]["data"]["custom-payload"])
        return json.dumps(body["customPayload"], separators=(",", ":"))
    except (KeyError, TypeError, ValueError):
        return message


def start_push_printer(out: TextIO | None = None) -> Callable[[], None]:
    """Print each push the service sends (an app's creation token) to the console."""

    def lines() -> Iterator[tuple[str, str]]:
        for message_id, platform, token, message in _pushes():
            device = token if len(token) <= 24 else token[:24] + "..."
            yield (
                message_id,
                f"Push to {platform} device {device}: {push_payload(platform, message)}",
            )

    return start_printer(lines, "push-printer", out)


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

    started = [start_sms_printer(), start_push_printer(), start_stream_replayer()]
    if os.environ.get("DEVSTACK_EDGE", "process") == "thread":
        return [*started, start_sip_edge(host)]
    return [*started, *start_function_host_and_edge(host, moto_url)]
