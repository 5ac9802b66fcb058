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

import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.edge import memory_kib
from bench.peer import (
    HERE,
    PUBLISH,
    ROOT,
    SCENARIO,
    Server,
    climb,
    devstack,
    kamailio,
    peer_tools,
    peer_workdir,
    publish_bob,
    seed_bob,
    sipp,
    step,
    step_seconds,
    summary,
)
from testkit.ports import free_port
from testkit.stats import percentile

RLS = HERE / "scenarios" / "sub_rls.xml"
PLOT = ROOT / "docs" / "bench_kamailio.png"
LIST_LADDER = (1, 2, 4, 8, 16, 32)
LIST_SIZE = 100
KAMAILIO_LADDER = (200, 400, 800, 1600, 3200, 6400)
OURS_LADDER = (5, 10, 20, 40, 80, 160, 320, 640)
REPEATS = 3


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
