"""Running a SIP presence server under SIPp ladders: the side-by-side benchmarks' common part.

A `Server` (Kamailio, our `make run`, our edge alone) is driven by SIPp at offered rates
(`step`, `climb`); its CPU is read from /proc (its whole process tree, and apart the thread
of our edge's event loop). Kamailio runs from the project's copy of the presence anchor
(`bench/kamailio/`), `make run` as `python -m devstack`. `bench.kamailio` and
`bench.edge_alone` build their comparisons on these.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.edge import cpu_seconds, python_process
from testkit.ports import free_port
from testkit.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "kamailio"
SCENARIO = HERE / "scenarios" / "sub_presence.xml"
PUBLISH = HERE / "scenarios" / "pub_pidf.xml"
ANCHOR_PORT = 5090  # the port written in bench/kamailio/kamailio.cfg; replaced by a free one
FIRST_NOTIFY_RTD = "2"


@dataclass
class Step:
    """One SIPp run at one offered rate."""

    rate: int
    calls: int
    ok: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float
    loop_cpu_seconds: float | None = None

    @property
    def failed(self) -> int:
        return self.calls - self.ok

    def per_cycle_ms(self, seconds: float | None) -> float:
        return float("nan") if seconds is None else 1000 * seconds / max(1, self.ok)


@dataclass
class Server:
    """A server under test: how to read its CPU, and every step it ran."""

    name: str
    port: int
    pid: int
    loop_tid: int | None = None
    loop_pid: int | None = None  # the process of the edge's loop thread (default: `pid`)
    scenario: Path = SCENARIO
    rtd: str = FIRST_NOTIFY_RTD  # the SIPp RTD that ends at the first full NOTIFY
    service: str = "bob"
    extra: list[str] = field(default_factory=list)
    ladder: list[Step] = field(default_factory=list)
    repeats: list[Step] = field(default_factory=list)
    at_peer_rate: list[Step] = field(default_factory=list)

    def cpu(self) -> float:
        return tree_cpu_seconds(self.pid)

    def loop_cpu(self) -> float | None:
        return cpu_seconds(self.loop_pid or self.pid, self.loop_tid) if self.loop_tid else None

    @property
    def capacity(self) -> int:
        passed = [s.rate for s in self.ladder if s.failed == 0]
        return max(passed) if passed else 0


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of a process and all its descendants (Kamailio forks its workers)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def build_shims(build: Path) -> tuple[Path, Path]:
    """The sqlite busy-timeout shim for Kamailio and the fine-clock shim for SIPp."""
    built = []
    for name in ("sqlite_busy_shim", "sipp_fineclock"):
        out = build / f"{name}.so"
        source = HERE / "shim" / f"{name}.c"
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", str(out), str(source), "-ldl"],
            check=True,
        )
        built.append(out)
    return built[0], built[1]


def answers_options(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        s.sendto(
            (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKprobe{local}\r\n"
                f"From: <sip:probe@127.0.0.1>;tag=p{local}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: probe{local}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode(),
            ("127.0.0.1", port),
        )
        try:
            return s.recv(65535).startswith(b"SIP/2.0 200")
        except OSError:
            return False


@contextlib.contextmanager
def kamailio(binary: str, port: int, rundir: Path, shim: Path) -> Iterator[int]:
    """Kamailio on `port` with a fresh sqlite DB in `rundir`; yields its main pid."""
    subprocess.run([sys.executable, str(HERE / "make_db.py"), str(rundir), "100"], check=True)
    cfg = rundir / "kamailio.cfg"
    cfg.write_text((HERE / "kamailio.cfg").read_text().replace(str(ANCHOR_PORT), str(port)))
    args = [
        binary, "-f", str(cfg), "-DD", "-E", "-Y", str(rundir), "-m", "1024", "-M", "32",
        "-A", f'DBURL="sqlite://{rundir / "presence.sqlite"}"',
        "-A", f'DBTEXTURL="text://{rundir / "dbtext"}"',
        "-A", "NCHILDREN=4", "-A", "NTCPCHILDREN=4", "-A", "RLS_WAITN=1", "-A", "LOGLEVEL=1",
    ]  # fmt: skip
    env = {**os.environ, "LD_PRELOAD": str(shim), "KAM_SQLITE_BUSY_MS": "2000"}
    with (rundir / "kamailio.log").open("w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not answers_options(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (rundir / "kamailio.log").read_text()[-2000:]
                raise RuntimeError(f"kamailio did not start: {tail}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        workers = _descendants(proc.pid)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in workers:  # the main process takes its workers down; make sure, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


def _descendants(root: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == root:
                    out.append(int(entry))
    return out


@contextlib.contextmanager
def devstack(moto_port: int, sip_port: int) -> Iterator[tuple[int, int, int]]:
    """`python -m devstack` in trusted-proxy mode; yields (pid, the pid of the process holding
    the edge's loop, that loop's thread id): the edge's own process by default, the stack's
    with DEVSTACK_EDGE=thread (one process for everything)."""
    fresh = ("AWS_", "SIP_", "TABLE_", "STAGE")  # as `make run` on a newcomer's machine
    env = {k: v for k, v in os.environ.items() if not k.startswith(fresh)}
    env.update(
        {
            "MOTO_PORT": str(moto_port),
            "API_PORT": str(free_port()),
            "SIP_PORT": str(sip_port),
            "SIP_HOST": "127.0.0.1",
            "SIP_DOMAIN": "example.org",
            "SIP_TRUSTED_PROXIES": "127.0.0.1",
            "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT": "1000000",  # one account stands for every phone
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    with python_process("devstack", env, lambda line: line.startswith("Ctrl-C"), timeout=15) as (
        proc,
        lines,
    ):
        edge = [x for x in lines if x.startswith("SIP edge")]
        if edge and "process " in edge[0]:  # its loop is its main thread
            edge_pid = int(edge[0].rsplit("process ", 1)[1].rstrip(")\n"))
            yield proc.pid, edge_pid, edge_pid
        else:
            tid = int(edge[0].rsplit("thread ", 1)[1].rstrip(")\n")) if edge else 0
            yield proc.pid, proc.pid, tid


def seed_bob(moto_port: int) -> None:
    """bob's account in the devstack's moto (its :MOTO_PORT serves the same backend)."""
    for key in [k for k in os.environ if k.startswith(("AWS_", "TABLE_", "STAGE"))]:
        del os.environ[key]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_REGION": "eu-west-1",
            "STAGE": "local",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "SIP_DOMAIN": "example.org",
        }
    )
    from chalicelib import accounts, aws, settings

    settings.get.cache_clear()
    aws.reset()
    accounts.create(
        "bob", accounts.credentials_from_password("bob", "bench password", "example.org")
    )


def sipp(
    binary: str,
    scenario: Path,
    port: int,
    rate: int,
    calls: int,
    workdir: Path,
    clock_shim: Path,
    extra: list[str] | None = None,
    *,
    service: str = "bob",
    rtd: str = FIRST_NOTIFY_RTD,
) -> tuple[int, float, list[float]]:
    """(successful calls, wall seconds, ms from SUBSCRIBE to first NOTIFY) of one SIPp run."""
    for old in [*workdir.glob("*_rtt.csv"), *workdir.glob("*.stat.csv")]:
        old.unlink()
    stat = workdir / "step.stat.csv"
    command = [
        binary, f"127.0.0.1:{port}", "-sf", str(scenario), "-s", service, "-i", "127.0.0.1",
        "-p", str(free_port("udp+tcp")), "-r", str(rate), "-m", str(calls), "-nostdin",
        "-timeout", f"{calls / rate + 30:.0f}s", "-recv_timeout", "5000",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", str(stat), "-fd", "1",
        *(extra or []),
    ]  # fmt: skip
    env = {**os.environ, "LD_PRELOAD": str(clock_shim)}
    start = time.perf_counter()
    # Not text: SIPp echoes deflated NOTIFY bodies.
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1, 97, 99):
        error = done.stderr[-2000:].decode(errors="replace")
        raise RuntimeError(f"sipp failed ({done.returncode}): {error}")
    return _successful(stat), seconds, _rtd_ms(workdir, rtd)


def _successful(stat: Path) -> int:
    if not stat.exists():
        return 0
    lines = [line for line in stat.read_text().splitlines() if line.strip()]
    header, last = lines[0].split(";"), lines[-1].split(";")
    return int(last[header.index("SuccessfulCall(C)")])


def _rtd_ms(workdir: Path, rtd: str) -> list[float]:
    out = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 3 and parts[2].strip() == rtd:
                out.append(float(parts[1]))
    return out


def step(server: Server, binary: str, rate: int, seconds: float, workdir: Path, shim: Path) -> Step:
    rate = max(1, rate)
    calls = max(20, int(rate * seconds))
    cpu, loop = server.cpu(), server.loop_cpu()
    ok, wall, latencies = sipp(
        binary, server.scenario, server.port, rate, calls, workdir, shim, server.extra,
        service=server.service, rtd=server.rtd,
    )  # fmt: skip
    loop_after = server.loop_cpu()
    result = Step(
        rate,
        calls,
        ok,
        wall,
        latencies,
        server.cpu() - cpu,
        None if loop is None or loop_after is None else loop_after - loop,
    )
    loop_ms = result.per_cycle_ms(result.loop_cpu_seconds)
    print(
        f"  {server.name}: {rate}/s × {calls}: {result.failed} failed, "
        f"{result.per_cycle_ms(result.cpu_seconds):.2f} ms CPU/cycle"
        + ("" if math.isnan(loop_ms) else f" ({loop_ms:.2f} in the edge loop)")
        + (
            f", p50/p99 {percentile(latencies, 0.5):.1f}/{percentile(latencies, 0.99):.1f} ms"
            if latencies
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )
    time.sleep(1 if result.failed == 0 else 5)  # let a backlog drain before the next step
    return result


def climb(
    server: Server,
    binary: str,
    ladder: tuple[int, ...],
    seconds: float,
    workdir: Path,
    shim: Path,
    warm_up: bool = True,
) -> None:
    """Offered rates up the ladder until a call fails (down by halves if the first one does),
    then one step halfway between the last rate that passed and the first that failed."""
    if warm_up:  # not counted
        step(server, binary, max(5, ladder[0] // 4), 2, workdir, shim)
    for rate in ladder:
        server.ladder.append(step(server, binary, rate, seconds, workdir, shim))
        if server.ladder[-1].failed:
            break
    rate = ladder[0]
    while server.capacity == 0 and rate > max(1, ladder[0] // 16):
        rate //= 2
        server.ladder.append(step(server, binary, rate, seconds, workdir, shim))
    failed = [s.rate for s in server.ladder if s.failed and s.rate > server.capacity]
    if server.capacity and failed and min(failed) - server.capacity > 1:
        middle = (server.capacity + min(failed)) // 2
        server.ladder.append(step(server, binary, middle, seconds, workdir, shim))
    server.ladder.sort(key=lambda s: s.rate)


def summary(steps: list[Step]) -> dict[str, float]:
    def med(values: list[float]) -> float:
        clean = [v for v in values if v == v]
        return statistics.median(clean) if clean else float("nan")

    return {
        "rate": med([s.rate for s in steps]),
        "cpu_ms": med([s.per_cycle_ms(s.cpu_seconds) for s in steps]),
        "loop_ms": med([s.per_cycle_ms(s.loop_cpu_seconds) for s in steps]),
        "p50": med([percentile(s.latencies_ms, 0.5) for s in steps]),
        "p99": med([percentile(s.latencies_ms, 0.99) for s in steps]),
        "failed": sum(s.failed for s in steps),
    }


def missing_tools() -> list[str]:
    tools = {"kamailio": "kamailio", "sipp": "sip-tester", "gcc": "gcc"}
    missing = [f"{tool} (Debian {pkg})" for tool, pkg in tools.items() if not _which(tool)]
    modules = {
        "presence.so": "kamailio-presence-modules",
        "rls.so": "kamailio-presence-modules",
        "presence_xml.so": "kamailio-xml-modules",
        "db_sqlite.so": "kamailio-sqlite-modules",
    }
    for module, pkg in modules.items():
        if not any(Path("/usr/lib").glob(f"*/kamailio/modules/{module}")):
            missing.append(f"the Kamailio module {module} (Debian {pkg})")
    return missing


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def peer_tools(what: str) -> tuple[str, str] | None:
    """(kamailio, sipp) to run `what` with, or None once the skip line naming what is missing
    has been printed."""
    missing = missing_tools()
    if missing:
        print(f"skipped: {what} needs {', '.join(missing)}")
        return None
    kam_bin, sipp_bin = _which("kamailio"), _which("sipp")
    assert kam_bin and sipp_bin
    return kam_bin, sipp_bin


@contextlib.contextmanager
def peer_workdir(prefix: str) -> Iterator[tuple[Path, Path, Path]]:
    """A scratch directory for a run against Kamailio, with both shims built in it:
    (directory, sqlite busy-timeout shim, SIPp fine-clock shim)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        (work / "build").mkdir()
        yield (work, *build_shims(work / "build"))


def step_seconds(argv: list[str]) -> float:
    """How long each ladder step offers its rate (`--quick`: shorter)."""
    return 3.0 if "--quick" in argv else 5.0


def publish_bob(binary: str, port: int, workdir: Path, clock_shim: Path) -> None:
    """bob PUBLISHes a PIDF, so that each first NOTIFY carries one."""
    extra = ["-inf", str(HERE / "scenarios" / "users_bob.csv")]
    ok, _, _ = sipp(binary, PUBLISH, port, 10, 1, workdir, clock_shim, extra)
    if ok != 1:
        raise RuntimeError(f"bob's PUBLISH to 127.0.0.1:{port} failed")
