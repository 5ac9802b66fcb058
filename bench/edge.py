"""SIP edge under load: SIPp subscribing through `python -m sip_edge` on loopback.

The edge runs as its own process (functions in-process, as `make run` does) against a moto
server in this process, so /proc gives the edge's own CPU time and memory; moto's and SIPp's
CPU are not counted. SIPp sends list SUBSCRIBEs of 100 entries (Linphone's shape: 90% numbers,
10% SIP URIs, 30% users; Linphone User-Agent and deflate, so one NOTIFY each) and
single-resource SUBSCRIBEs of one number (30% users), at a fixed concurrency. Digest is
skipped through trusted-proxy mode (`SIP_TRUSTED_PROXIES=127.0.0.1`): the challenge round trip
would measure SIPp, not the edge. Each call is another phone (From varies: watchers are stored
per phone) doing SUBSCRIBE, 200, NOTIFY, 200; the dialogs stay open, so the edge holds every
subscription made. Latency is SUBSCRIBE sent to first NOTIFY
received, per call (SIPp response-time 1, `-trace_rtt`). CPU is split by thread: the edge's
event loop (the main thread: SIP, transactions, dialogs; what an ECS task pays when the
functions are Lambdas) and the in-process functions' thread pool (boto3, lookup, bodies).
moto answers a Query by sorting its whole table, and each list subscription stores 100
watcher items, so the run would slow down quadratically; `keyed_queries` makes moto read one
partition, as DynamoDB does. `--quick` runs fewer calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.bodies import ENV, is_user, list_body, seed
from devstack.moto_local import apply_all
from testkit.ports import free_port
from testkit.stats import percentile

LIST_SIZE = 100
CONCURRENCY = (1, 20)  # one at a time: latency alone; 20: throughput, queueing included
REPEATS = 3
SIPP_TIMEOUT_S = 120
ROOT = Path(__file__).resolve().parent.parent

OK_TO_NOTIFY = """  <recv response="200"/>
  <recv request="NOTIFY" rtd="1"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]>
  </send>
"""

LIST_SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<scenario name="bench list subscribe">
  <send retrans="500" start_rtd="1">
    <![CDATA[
SUBSCRIBE sip:rls@example.org SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:[service][pid]x[call_number]@example.org>;tag=[pid]T[call_number]
To: <sip:rls@example.org>
Call-ID: [call_id]
CSeq: 1 SUBSCRIBE
Contact: <sip:[service]@[local_ip]:[local_port]>
User-Agent: LinphoneSDK/5.1 (SIPp bench)
Max-Forwards: 70
Event: presence
Expires: 3600
Supported: eventlist
Require: recipient-list-subscribe
Content-Disposition: recipient-list
Accept: multipart/related, application/rlmi+xml, application/pidf+xml
Accept-Encoding: deflate
Content-Type: application/resource-lists+xml
Content-Length: [len]

@BODY@
]]>
  </send>
@OK_TO_NOTIFY@</scenario>
"""

SINGLE_SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<scenario name="bench single subscribe">
  <send retrans="500" start_rtd="1">
    <![CDATA[
SUBSCRIBE sip:[field0]@example.org;user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:[service][pid]x[call_number]@example.org>;tag=[pid]T[call_number]
To: <sip:[field0]@example.org;user=phone>
Call-ID: [call_id]
CSeq: 1 SUBSCRIBE
Contact: <sip:[service]@[local_ip]:[local_port]>
User-Agent: LinphoneSDK/5.1 (SIPp bench)
Max-Forwards: 70
Event: presence
Expires: 3600
Accept: application/pidf+xml
Content-Length: 0

]]>
  </send>
@OK_TO_NOTIFY@</scenario>
"""


@dataclass
class Result:
    concurrency: int
    calls: int
    failed: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float
    loop_cpu_seconds: float

    @property
    def rate(self) -> float:
        return (self.calls - self.failed) / self.seconds


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def python_process(
    module: str, env: dict[str, str], ready: Callable[[str], bool], timeout: float = 10
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`python -m module` with `env`; yields it and its output lines up to the one `ready`
    accepts, then drains the rest (a full pipe must never block it) and stops it at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if ready(line):
                break
        else:
            raise RuntimeError(f"{module} exited before it was ready")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc, lines
    finally:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def edge_process(env: dict[str, str]) -> Iterator[int]:
    """`python -m sip_edge` on SIP_PORT; yields its pid once it listens."""
    with python_process("sip_edge", env, lambda line: line.startswith("SIP edge")) as (proc, _):
        yield proc.pid


def run_sipp(
    sipp: str,
    scenario: Path,
    port: int,
    calls: int,
    workdir: Path,
    extra: list[str],
    concurrency: int = 20,
) -> tuple[int, float, list[float]]:
    """(failed calls, wall seconds, SUBSCRIBE-to-NOTIFY ms per call) of one SIPp run."""
    for old in workdir.glob("*_rtt.csv"):
        old.unlink()
    command = [
        sipp, f"127.0.0.1:{port}", "-sf", str(scenario), "-i", "127.0.0.1",
        "-p", str(free_port("udp")), "-s", "alice", "-m", str(calls), "-l", str(concurrency),
        "-r", "10000", "-nostdin", "-timeout", f"{SIPP_TIMEOUT_S}s", "-recv_timeout", "10000",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    latencies = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2 and parts[1].strip():
                latencies.append(float(parts[1]))
    failed = calls - len(latencies)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"sipp failed ({done.returncode}): {done.stderr[-2000:]}")
    return failed, seconds, latencies


def measure(
    sipp: str,
    scenario: Path,
    port: int,
    pid: int,
    calls: int,
    workdir: Path,
    extra: list[str],
    concurrency: int,
) -> Result:
    cpu_before, loop_before = cpu_seconds(pid), cpu_seconds(pid, pid)
    failed, seconds, latencies = run_sipp(sipp, scenario, port, calls, workdir, extra, concurrency)
    return Result(
        concurrency,
        calls,
        failed,
        seconds,
        latencies,
        cpu_seconds(pid) - cpu_before,
        cpu_seconds(pid, pid) - loop_before,
    )


def single_targets() -> list[str]:
    """100 numbers of which 30 are users (seeded by `seed`), interleaved."""
    users = [f"+336{i:08d}" for i in range(200) if is_user(i) and i % 10 != 9][:30]
    others = [f"+336{i:08d}" for i in range(200) if not is_user(i) and i % 10 != 9][:70]
    return [t for pair in zip(users * 3, others, strict=False) for t in pair][:100]


def row(kind: str, results: list[Result]) -> str:
    def per_call(seconds: float, r: Result) -> float:
        return 1000 * seconds / max(1, r.calls - r.failed)

    rate = statistics.median(r.rate for r in results)
    p50 = statistics.median(percentile(r.latencies_ms, 0.5) for r in results)
    p99 = statistics.median(percentile(r.latencies_ms, 0.99) for r in results)
    loop_ms = statistics.median(per_call(r.loop_cpu_seconds, r) for r in results)
    fn_ms = statistics.median(per_call(r.cpu_seconds - r.loop_cpu_seconds, r) for r in results)
    share = statistics.median(100 * r.cpu_seconds / r.seconds for r in results)
    failed = sum(r.failed for r in results)
    return (
        f"| {kind} | {results[0].concurrency} | {len(results)}×{results[0].calls} | {failed} | "
        f"{rate:,.0f} | {p50:,.0f} | {p99:,.0f} | {loop_ms:,.2f} | {fn_ms:,.2f} | {share:,.0f}% |"
    )


HEADER = (
    "| SUBSCRIBEs | concurrent | runs×calls | failed | subscriptions/s | p50 ms to NOTIFY | "
    "p99 ms to NOTIFY | edge loop CPU ms/sub | functions CPU ms/sub | edge process CPU |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def run(argv: list[str]) -> None:
    sipp = shutil.which("sipp")
    if not sipp:
        print("skipped: sipp not found (Debian package sip-tester)")
        return
    quick = "--quick" in argv
    list_calls, single_calls = (100, 200) if quick else (300, 600)
    os.environ.update(ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    apply_all()
    from chalicelib import accounts, aws, settings, tables

    with moto_server() as url, tempfile.TemporaryDirectory() as tmp:
        os.environ["AWS_ENDPOINT_URL"] = url
        settings.get.cache_clear()
        aws.reset()
        tables.create_all(aws.client("dynamodb"))
        seed(200)
        accounts.create(
            "alice",
            accounts.credentials_from_password("alice", "bench password", "example.org"),
        )
        workdir = Path(tmp)
        list_xml = workdir / "list.xml"
        body = list_body(LIST_SIZE).decode()
        list_xml.write_text(
            LIST_SCENARIO.replace("@BODY@", body).replace("@OK_TO_NOTIFY@", OK_TO_NOTIFY)
        )
        single_xml = workdir / "single.xml"
        single_xml.write_text(SINGLE_SCENARIO.replace("@OK_TO_NOTIFY@", OK_TO_NOTIFY))
        targets = workdir / "targets.csv"
        targets.write_text("SEQUENTIAL\n" + "".join(f"{t};\n" for t in single_targets()))
        port = free_port("udp+tcp")
        env = {
            **os.environ,
            "SIP_HOST": "127.0.0.1",
            "SIP_PORT": str(port),
            "SIP_TRUSTED_PROXIES": "127.0.0.1",
            "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT": "1000000",  # one account stands for every phone
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        rows = []
        with edge_process(env) as pid:
            # Warm-up: imports, boto3 clients, phonenumbers metadata, thread pool.
            run_sipp(sipp, list_xml, port, 20, workdir, [])
            run_sipp(sipp, single_xml, port, 20, workdir, ["-inf", str(targets)])
            rss_start, held = memory_kib(pid, "VmRSS"), 40
            for kind, scenario, extra, calls in (
                (f"list of {LIST_SIZE} (30% users)", list_xml, [], list_calls),
                ("single resource (30% users)", single_xml, ["-inf", str(targets)], single_calls),
            ):
                for concurrency in CONCURRENCY:
                    n = calls if concurrency > 1 else calls // 10
                    results = [
                        measure(sipp, scenario, port, pid, n, workdir, extra, concurrency)
                        for _ in range(REPEATS)
                    ]
                    held += sum(r.calls - r.failed for r in results)
                    rows.append(row(kind, results))
            rss_end = memory_kib(pid, "VmRSS")
            peak = memory_kib(pid, "VmHWM")
    print(HEADER)
    for line in rows:
        print(line)
    print(
        # RSS, not a per-dialog figure: the allocator's reuse hides a few KiB per dialog.
        f"\nedge RSS {rss_start / 1024:,.0f} MiB after warm-up, {rss_end / 1024:,.0f} MiB "
        f"holding {held:,} dialogs, peak {peak / 1024:,.0f} MiB; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
