"""Side by side with Kamailio: the same SIPp presence cycle against Kamailio 5.6 and `make run`.

Both servers run in the same benchmark run, on the same cores, with the same scenario
(`bench/kamailio/scenarios/sub_presence.xml`: SUBSCRIBE, 200, NOTIFY with a PIDF, 200,
un-SUBSCRIBE, 200, NOTIFY terminated, 200; each call a new watcher of bob, who PUBLISHed a
PIDF first). Absolute figures move by a factor of 4 between days on a shared machine, so only
the ratios of this one run mean anything.

Kamailio: the project's copy of the presence anchor (`bench/kamailio/`: sqlite for presence,
4 UDP workers), on a free port. CPU is its whole process tree (every worker).
Ours: `python -m devstack` (what `make run` starts: moto, the REST API, the stream replayer and
the SIP edge with the functions in-process) in trusted-proxy mode, as `python -m bench edge`
runs it. CPU is the whole process, and apart the edge's event loop thread (SIP parsing,
transactions, dialogs, timers, sockets: what an ECS task pays when the functions are Lambdas).

Each server climbs a ladder of offered rates (a few seconds each) until a call fails, then one
step halfway back; the highest rate with no failed call is its capacity. The capacity step is
run again (3 runs, medians quoted) for CPU per cycle and latency; Kamailio also runs at our
capacity, for latency and CPU at the same load. Latency is SUBSCRIBE sent to the first NOTIFY
received (SIPp RTD 2), timed with a fine clock (SIPp's own clock ticks every 4 ms).
A plot of both ladders is written to `docs/bench_kamailio.png`. Skipped with one line when
kamailio, sipp or gcc is missing. `--quick` climbs shorter steps; `--soak=N` then offers N more
cycles to ours at 80% of its capacity, from 1,000 phones in turn, and reports, per 30 s chunk,
the completed rate, failures, CPU per cycle and RSS, with a verdict on whether rate and RSS
stay flat; `--soak-only` skips the rest (ours climbs its ladder for its capacity, then soaks;
no Kamailio).
"""

from __future__ import annotations

import contextlib
import json
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

from bench.edge import cpu_seconds, memory_kib, python_process
from testkit.ports import free_port
from testkit.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "kamailio"
SCENARIO = HERE / "scenarios" / "sub_presence.xml"
PUBLISH = HERE / "scenarios" / "pub_pidf.xml"
RLS = HERE / "scenarios" / "sub_rls.xml"
PLOT = ROOT / "docs" / "bench_kamailio.png"
LIST_LADDER = (1, 2, 4, 8, 16, 32)
LIST_SIZE = 100
KAMAILIO_LADDER = (200, 400, 800, 1600, 3200, 6400)
OURS_LADDER = (5, 10, 20, 40, 80, 160, 320, 640)
REPEATS = 3
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


def table(kam: Server, ours: Server) -> str:
    k, o = summary(kam.repeats), summary(ours.repeats)
    same = summary(kam.at_peer_rate)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:,.2f}" if b and a == a and b == b else "n/a"

    rows = [
        "| | Kamailio 5.6 | ours (`make run`) | ours / Kamailio |",
        "|---|---:|---:|---:|",
        f"| highest rate with no failed cycle (cycles/s) | {kam.capacity:,} | "
        f"{ours.capacity:,} | {ratio(ours.capacity, kam.capacity)} |",
        f"| server CPU ms per cycle, at its own highest rate | {k['cpu_ms']:.2f} | "
        f"{o['cpu_ms']:.2f} | {ratio(o['cpu_ms'], k['cpu_ms'])} |",
        f"| edge event-loop CPU ms per cycle (ours) vs Kamailio's whole server | "
        f"{k['cpu_ms']:.2f} | {o['loop_ms']:.2f} | {ratio(o['loop_ms'], k['cpu_ms'])} |",
        f"| p50 / p99 ms to first NOTIFY, at its own highest rate | "
        f"{k['p50']:.1f} / {k['p99']:.1f} | {o['p50']:.1f} / {o['p99']:.1f} | "
        f"{ratio(o['p50'], k['p50'])} / {ratio(o['p99'], k['p99'])} |",
        f"| p50 / p99 ms to first NOTIFY, both at {ours.capacity:,}/s | "
        f"{same['p50']:.1f} / {same['p99']:.1f} | {o['p50']:.1f} / {o['p99']:.1f} | "
        f"{ratio(o['p50'], same['p50'])} / {ratio(o['p99'], same['p99'])} |",
        f"| server CPU ms per cycle, both at {ours.capacity:,}/s | {same['cpu_ms']:.2f} | "
        f"{o['cpu_ms']:.2f} | {ratio(o['cpu_ms'], same['cpu_ms'])} |",
        f"| edge event-loop CPU ms per cycle (ours) vs Kamailio's whole server, both at "
        f"{ours.capacity:,}/s | {same['cpu_ms']:.2f} | {o['loop_ms']:.2f} | "
        f"{ratio(o['loop_ms'], same['cpu_ms'])} |",
        f"| failed cycles in the {REPEATS} runs at the capacity step | {k['failed']:,.0f} | "
        f"{o['failed']:,.0f} | |",
    ]
    return "\n".join(rows)


RESULTS = ROOT / "build" / "bench" / "kamailio.json"


def save_results(
    kam: Server, ours: Server, kam_list: Server, ours_list: Server, load: tuple[float, float]
) -> None:
    """This run's figures for the benchmarks that build on them (`bench cost` sizes a Kamailio
    deployment and our edge fleet from them): build/bench/kamailio.json."""
    k, o = summary(kam.repeats), summary(ours.repeats)
    kl = summary([s for s in kam_list.ladder if s.rate == kam_list.capacity])
    ol = summary([s for s in ours_list.ladder if s.rate == ours_list.capacity])
    found = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "load": list(load),
        "kamailio": {"capacity": kam.capacity, "cpu_ms_per_cycle": k["cpu_ms"]},
        "ours": {
            "capacity": ours.capacity,
            "cpu_ms_per_cycle": o["cpu_ms"],
            "edge_ms_per_cycle": o["loop_ms"],
        },  # fmt: skip
        "kamailio_lists": {"capacity": kam_list.capacity, "cpu_ms_per_list": kl["cpu_ms"]},
        "ours_lists": {"capacity": ours_list.capacity, "cpu_ms_per_list": ol["cpu_ms"]},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(found, indent=1))


def list_table(kam: Server, ours: Server) -> str:
    def at_capacity(server: Server) -> dict[str, float]:
        return summary([s for s in server.ladder if s.rate == server.capacity])

    k, o = at_capacity(kam), at_capacity(ours)
    # Ours at Kamailio's rate (the target: that rate, with p99 under 200 ms).
    near = [s for s in ours.ladder if s.rate >= kam.capacity]
    same_rate = []
    if near and kam.capacity:
        at = min(near, key=lambda s: s.rate)
        same_rate.append(
            f"| ours at {at.rate}/s (Kamailio's rate or the next step up): failed, p50 / p99 ms "
            f"| | {at.failed}, {percentile(at.latencies_ms, 0.5):,.0f} / "
            f"{percentile(at.latencies_ms, 0.99):,.0f} | |"
        )
    ratio = f"{ours.capacity / kam.capacity:,.2f}" if kam.capacity else "n/a"
    return "\n".join(
        [
            f"| lists of {LIST_SIZE} | Kamailio RLS (stored list) | ours (list in the SUBSCRIBE) "
            "| ours / Kamailio |",
            "|---|---:|---:|---:|",
            f"| highest rate with no failed list subscription (/s) | {kam.capacity:,} | "
            f"{ours.capacity:,} | {ratio} |",
            f"| p50 / p99 ms to the first NOTIFY with every resource's state, at that rate | "
            f"{k['p50']:,.0f} / {k['p99']:,.0f} | {o['p50']:,.0f} / {o['p99']:,.0f} | |",
            f"| server CPU ms per list subscription, at that rate | {k['cpu_ms']:,.1f} | "
            f"{o['cpu_ms']:,.1f} | |",
            *same_rate,
        ]
    )


def list_scenario(workdir: Path) -> Path:
    """bench edge's list SUBSCRIBE (Linphone's shape: 100 entries, deflate), kept open."""
    from bench.bodies import list_body
    from bench.edge import LIST_SCENARIO, OK_TO_NOTIFY

    path = workdir / "list.xml"
    body = list_body(LIST_SIZE).decode()
    path.write_text(LIST_SCENARIO.replace("@BODY@", body).replace("@OK_TO_NOTIFY@", OK_TO_NOTIFY))
    return path


def seed_list_users() -> None:
    """30% of the list's entries are users (numbers and SIP URIs), as in bench edge."""
    from bench.bodies import seed

    seed(2 * LIST_SIZE)


def ladder_table(servers: list[Server]) -> str:
    rows = [
        "| server | offered/s | cycles | failed | CPU ms/cycle | edge loop ms/cycle | "
        "p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server in servers:
        for s in server.ladder:
            loop = s.per_cycle_ms(s.loop_cpu_seconds)
            rows.append(
                f"| {server.name} | {s.rate:,} | {s.calls:,} | {s.failed:,} | "
                f"{s.per_cycle_ms(s.cpu_seconds):.2f} | "
                f"{'' if loop != loop else f'{loop:.2f}'} | "
                f"{percentile(s.latencies_ms, 0.5):.1f} | {percentile(s.latencies_ms, 0.99):.1f} |"
            )
    return "\n".join(rows)


def plot(servers: list[Server], path: Path, note: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, colour in zip(servers, ("tab:blue", "tab:orange"), strict=False):
        steps = server.ladder
        rates = [s.rate for s in steps]
        done = [s.ok / s.seconds for s in steps]
        left.plot(rates, done, "o-", color=colour, label=server.name)
        for s in steps:
            if s.failed:
                left.plot([s.rate], [s.ok / s.seconds], "x", color="red", markersize=10)
        p50 = [percentile(s.latencies_ms, 0.5) for s in steps]
        p99 = [percentile(s.latencies_ms, 0.99) for s in steps]
        right.plot(rates, p50, "o-", color=colour, label=f"{server.name} p50")
        right.plot(rates, p99, "s--", color=colour, label=f"{server.name} p99")
    left.set(xscale="log", yscale="log", xlabel="offered cycles/s", ylabel="completed cycles/s")
    left.set_title("rate (red x: a step with failed cycles)")
    right.set(xscale="log", yscale="log", xlabel="offered cycles/s", ylabel="ms")
    right.set_title("SUBSCRIBE to first NOTIFY")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(f"Presence cycle, one run on one machine ({note})", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


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


def run(argv: list[str]) -> None:
    saved = dict(os.environ)
    try:
        _run(argv)
    finally:  # the other benchmarks set their own environment
        os.environ.clear()
        os.environ.update(saved)
        from chalicelib import aws, settings

        settings.get.cache_clear()
        aws.reset()


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


def _run(argv: list[str]) -> None:
    tools = peer_tools("Kamailio side-by-side")
    if tools is None:
        return
    kam_bin, sipp_bin = tools
    seconds = step_seconds(argv)
    list_seconds = 4.0 if "--quick" in argv else 6.0
    load_before = os.getloadavg()
    soak = _option(argv, "--soak")
    soak_text = ""
    with peer_workdir("bench-kam-") as (work, sqlite_shim, clock_shim):
        servers: list[Server] = []
        moto_port, sip_port = free_port(), free_port("udp+tcp")
        with devstack(moto_port, sip_port) as (pid, loop_pid, tid):
            ours = Server("ours (make run)", sip_port, pid, tid, loop_pid)
            seed_bob(moto_port)
            publish_bob(sipp_bin, sip_port, work, clock_shim)
            rss_start = memory_kib(pid, "VmRSS")
            climb(ours, sipp_bin, OURS_LADDER, seconds, work, clock_shim)
            if soak and "--soak-only" in argv:
                print(run_soak(ours, sipp_bin, int(soak), work, clock_shim))
                return
            ours.repeats = [
                step(ours, sipp_bin, ours.capacity, seconds, work, clock_shim)
                for _ in range(REPEATS)
            ]
            rss_end = memory_kib(pid, "VmRSS")
            ours_list = Server(
                f"ours, list of {LIST_SIZE}", sip_port, pid, tid, loop_pid, list_scenario(work),
                rtd="1", service="alice",
            )  # fmt: skip
            seed_list_users()
            climb(ours_list, sipp_bin, LIST_LADDER, list_seconds, work, clock_shim, False)
            if soak:
                soak_text = run_soak(ours, sipp_bin, int(soak), work, clock_shim)
        servers.append(ours)
        rundir = work / "kam"
        port = free_port("udp+tcp")
        with kamailio(kam_bin, port, rundir, sqlite_shim) as kpid:
            kam = Server("Kamailio 5.6", port, kpid)
            publish_bob(sipp_bin, port, work, clock_shim)
            climb(kam, sipp_bin, KAMAILIO_LADDER, seconds, work, clock_shim)
            kam.repeats = [
                step(kam, sipp_bin, kam.capacity, seconds, work, clock_shim) for _ in range(REPEATS)
            ]
            kam.at_peer_rate = [
                step(kam, sipp_bin, max(1, ours.capacity), seconds, work, clock_shim)
                for _ in range(REPEATS)
            ]
            users = ["-inf", str(HERE / "scenarios" / "users_list100.csv")]
            ok, _, _ = sipp(sipp_bin, PUBLISH, port, 50, LIST_SIZE, work, clock_shim, users)
            if ok != LIST_SIZE:
                raise RuntimeError(f"Kamailio took {ok} of the {LIST_SIZE} PUBLISHes")
            kam_list = Server(
                f"Kamailio RLS, stored list of {LIST_SIZE}", port, kpid, scenario=RLS, rtd="3",
                service=f"list{LIST_SIZE}", extra=["-t", "t1"],
            )  # fmt: skip
            climb(kam_list, sipp_bin, LIST_LADDER, list_seconds, work, clock_shim, False)
        servers.insert(0, kam)
    load_after = os.getloadavg()
    note = (
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after"
    )
    print(table(kam, ours))
    print()
    print(list_table(kam_list, ours_list))
    print(f"\nEach server's capacity step: {REPEATS} runs, medians. {note}.")
    print(
        f"Our process RSS {rss_start / 1024:,.0f} MiB before the ladder, "
        f"{rss_end / 1024:,.0f} MiB after.\n"
    )
    print(ladder_table([*servers, kam_list, ours_list]))
    save_results(kam, ours, kam_list, ours_list, (load_before[0], load_after[0]))
    if soak:
        print(f"\n{soak_text}")
    if "--no-plot" not in argv and plot(servers, PLOT, note):
        print(f"\nplot: {PLOT.relative_to(ROOT)}")


def _option(argv: list[str], name: str) -> str | None:
    for arg in argv:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


SOAK_CHUNK_SECONDS = 30
SOAK_RATE_TOLERANCE = 0.20  # the soak's target: the rate holds within 20%...
SOAK_RSS_GROWTH_MIB = 200  # ...and RSS within +200 MB over 100,000 cycles


SOAK_PHONES = 1000  # the soak's watchers, in turn (see _soak_population)


def run_soak(server: Server, binary: str, cycles: int, workdir: Path, shim: Path) -> str:
    """`--soak=N`: N more cycles at 80% of the capacity, in 30 s chunks; is the rate flat?

    Each chunk's completed rate, failures, CPU per cycle and RSS are printed as it ends, then
    a table and a verdict against the soak's targets: the median rate of the last three chunks
    within 20% of the first three's, and RSS at most 200 MiB above where the soak began."""
    rate = max(1, int(server.capacity * 0.8))
    chunk = rate * SOAK_CHUNK_SECONDS
    scenario, phones = _soak_population(workdir)
    rss_start = memory_kib(server.pid, "VmRSS") / 1024
    rows: list[tuple[int, int, float, int, float, float]] = []
    for index in range(max(1, cycles // chunk)):
        cpu = server.cpu()
        ok, wall, _ = sipp(binary, scenario, server.port, rate, chunk, workdir, shim, phones)
        cpu_ms = 1000 * (server.cpu() - cpu) / max(1, ok)
        rss = memory_kib(server.pid, "VmRSS") / 1024
        rows.append(((index + 1) * chunk, ok, ok / wall, chunk - ok, cpu_ms, rss))
        print(
            f"  soak chunk {index + 1}: {ok / wall:.1f} cycles/s completed, {chunk - ok} "
            f"failed, {cpu_ms:.2f} ms CPU/cycle, RSS {rss:,.0f} MiB",
            file=sys.stderr,
            flush=True,
        )
    return soak_report(rate, rss_start, rows)


def _soak_population(workdir: Path) -> tuple[Path, list[str]]:
    """The ladder's cycle, watched by SOAK_PHONES phones taking turns instead of a new watcher
    per call: a server meets the same phones again and again. A new watcher's pointer is kept
    two days by design (`subscriptions.WATCHER_TTL_MARGIN`: DynamoDB's storage in production,
    where TTL ends it); moto keeps every item in this process and never expires one, so
    100,000 strangers' items would show as our RSS."""
    scenario = workdir / "soak_presence.xml"
    # Each phone names itself as Linphone does (+sip.instance): SIPp's port changes with every
    # chunk's run, and a Contact without an instance would make each run's phones new devices.
    text = SCENARIO.read_text().replace("w[call_number]", "[field0]")
    text = text.replace(
        ";transport=[transport]>", ';transport=[transport]>;+sip.instance="<urn:uuid:[field0]>"'
    )
    scenario.write_text(text)
    phones = workdir / "soak_phones.csv"
    phones.write_text("SEQUENTIAL\n" + "".join(f"phone{i}\n" for i in range(SOAK_PHONES)))
    return scenario, ["-inf", str(phones)]


def soak_report(
    rate: int, rss_start: float, rows: list[tuple[int, int, float, int, float, float]]
) -> str:
    """The soak's table, one row per chunk, and its verdict against the targets."""
    lines = [
        f"soak at {rate}/s offered ({SOAK_CHUNK_SECONDS} s chunks), RSS {rss_start:,.0f} MiB "
        "before:",
        "",
        "| cycles offered so far | completed/s | failed | CPU ms/cycle | RSS MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    for offered, _, per_second, failed, cpu_ms, rss in rows:
        lines.append(f"| {offered:,} | {per_second:.1f} | {failed} | {cpu_ms:.2f} | {rss:,.0f} |")
    first = statistics.median(r[2] for r in rows[:3])
    last = statistics.median(r[2] for r in rows[-3:])
    growth = rows[-1][5] - rss_start
    failed = sum(r[3] for r in rows)
    rate_ok = last >= first * (1 - SOAK_RATE_TOLERANCE)
    rss_ok = growth <= SOAK_RSS_GROWTH_MIB
    lines += [
        "",
        f"verdict after {rows[-1][0]:,} cycles ({failed:,} failed): completed rate "
        f"{first:.1f}/s (median of the first chunks) -> {last:.1f}/s (of the last): "
        f"{'within' if rate_ok else 'NOT within'} {SOAK_RATE_TOLERANCE:.0%}; RSS "
        f"{growth:+,.0f} MiB: {'within' if rss_ok else 'NOT within'} "
        f"+{SOAK_RSS_GROWTH_MIB} MiB. {'FLAT' if rate_ok and rss_ok else 'NOT FLAT'}.",
    ]
    return "\n".join(lines)


def publish_bob(binary: str, port: int, workdir: Path, clock_shim: Path) -> None:
    """bob PUBLISHes a PIDF, so that each first NOTIFY carries one."""
    extra = ["-inf", str(HERE / "scenarios" / "users_bob.csv")]
    ok, _, _ = sipp(binary, PUBLISH, port, 10, 1, workdir, clock_shim, extra)
    if ok != 1:
        raise RuntimeError(f"bob's PUBLISH to 127.0.0.1:{port} failed")
