"""The SIP edge alone against Kamailio: the edge's own CPU per presence cycle, in one run.

The target: the edge's CPU per cycle, with functions answering instantly in-process so that
only SIP parsing, transactions, dialogs, timers and sockets count, at most 2x Kamailio's
whole-server CPU per cycle. `make run`'s stack cannot show it: its functions run boto3 and moto
in the same process and cap it far below Kamailio's rate. So this benchmark runs the edge in
a process of its own (`python -m bench.edge_alone`: `sip_edge.server.start`, as
`python -m sip_edge` runs it, on the main thread's asyncio loop) with a benchmark harness for
the functions, `ReplayFunctions`, and counts that whole process's CPU.

`ReplayFunctions` is a measuring device, never a stand-in for the functions in a test or in
production: the first call of each shape goes to the real handlers of `app.py`
(`InProcessFunctions`, on in-process moto with bob's account and his PUBLISHed PIDF), and its
answer is kept; later calls of that shape get the kept answer at once, with the fields that
follow the request (the NOTIFY version) set from the request. A shape is the function, and the
payload without the fields that vary per call and that the answers of this cycle do not depend
on (the watcher, the version, the time left, the dialog's ids). So the edge does all its own
work (parsing, transactions, dialogs, the NOTIFY with bob's real PIDF and its retransmission
timers, sockets) and only DynamoDB and moto are taken out. The warm-up step (not counted)
makes the real calls; no step counted makes one (the harness counts them, and the bench fails
if one did).

Kamailio and the edge climb the same SIPp ladder (`bench.kamailio`'s cycle and helpers), each
capacity step runs 3 more times (medians); then each runs at the other's capacity, so the
ratio is given at Kamailio's rate and at equal rates. `--quick` climbs shorter steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.edge import python_process
from bench.kamailio import KAMAILIO_LADDER, REPEATS
from bench.peer import (
    Server,
    Step,
    climb,
    kamailio,
    peer_tools,
    peer_workdir,
    publish_bob,
    step,
    step_seconds,
    summary,
)
from sip_edge.functions import Functions
from testkit.ports import free_port

#: bob's PUBLISH, the reload at start, the first cycle's lookup, save and delete, and a few
#: shapes only an overloaded step brings (an error answer is never kept): a dozen calls of
#: moto against thousands of cycles. More means a shape the harness does not replay.
MAX_REAL_CALLS = 16
EDGE_LADDER = (50, 100, 200, 400, 800, 1600, 3200)
#: Payload fields that vary per call and that the answers of the bench's cycle do not depend
#: on: left out of a call's shape. `version` is set back into the kept answer.
PER_CALL = frozenset(
    {"subscriber", "version", "time_left", "subscription_id", "expires_at", "dialog", "watcher",
     "call_id", "cseq"}
)  # fmt: skip


class ReplayFunctions:
    """Benchmark harness: the real functions once per call shape, then their answer replayed."""

    def __init__(self, real: Functions, count_file: Path | None = None) -> None:
        self._real = real
        self._count_file = count_file
        self._kept: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.real_calls = 0

    async def call(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        shape = _shape(name, payload)
        kept = self._kept.get(shape)
        if kept is None:
            self.real_calls += 1
            if self._count_file:
                self._count_file.write_text(str(self.real_calls))
            answer = await self._real.call(name, payload)
            if "error" in answer:  # an error is no answer to replay
                return answer
            self._kept[shape] = kept = answer
        if "version" in payload and "version" in kept:
            return {**kept, "version": payload["version"]}
        return dict(kept)


def _shape(name: str, payload: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the answer depends on: cheap, since the harness's CPU is counted as the edge's."""
    return (name, *((k, _frozen(v)) for k, v in sorted(payload.items()) if k not in PER_CALL))


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _frozen(v)) for k, v in sorted(value.items()))
    return value


def serve() -> None:
    """The child process: moto with bob's account, the edge on SIP_PORT with the harness."""
    from moto import mock_aws

    from chalicelib import accounts, aws, settings, tables
    from devstack.moto_local import keyed_queries, light_transactions
    from sip_edge import server
    from sip_edge.functions import InProcessFunctions

    keyed_queries()  # as devstack runs moto: only the warm-up's real calls use it
    light_transactions()
    with mock_aws():
        settings.get.cache_clear()
        aws.reset()
        tables.create_all(aws.client("dynamodb"))
        accounts.create(
            "bob", accounts.credentials_from_password("bob", "bench password", "example.org")
        )
        cfg = settings.get()
        real = InProcessFunctions(cfg.sip_max_inflight_calls, cfg)
        functions = ReplayFunctions(real, Path(os.environ["BENCH_REAL_CALLS"]))

        async def main() -> None:
            # No SQS queue: it only carries live updates, which this cycle has none of.
            running = await server.start(cfg, functions, with_queue=False)
            print(f"SIP edge alone udp {running.transports.ports['udp']}", flush=True)
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await stop.wait()
            await running.stop()

        asyncio.run(main())


@contextlib.contextmanager
def edge_alone(sip_port: int, real_calls: Path) -> Iterator[int]:
    """`python -m bench.edge_alone` on `sip_port` (trusted-proxy mode, as bench edge); its pid."""
    fresh = ("AWS_", "SIP_", "TABLE_", "STAGE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(fresh)}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_REGION": "eu-west-1",
            "STAGE": "local",
            "SIP_PORT": str(sip_port),
            "SIP_HOST": "127.0.0.1",
            "SIP_DOMAIN": "example.org",
            "SIP_TRUSTED_PROXIES": "127.0.0.1",
            "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT": "1000000",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "BENCH_REAL_CALLS": str(real_calls),
        }
    )
    ready = "SIP edge alone"
    with python_process("bench.edge_alone", env, lambda s: s.startswith(ready), 15) as (proc, _):
        yield proc.pid


def run(argv: list[str]) -> None:
    tools = peer_tools("the edge alone against Kamailio")
    if tools is None:
        return
    kam_bin, sipp_bin = tools
    seconds = step_seconds(argv)
    load_before = os.getloadavg()
    with peer_workdir("bench-alone-") as (work, sqlite_shim, clock_shim):
        kam_port, edge_port = free_port("udp+tcp"), free_port("udp+tcp")
        with (
            kamailio(kam_bin, kam_port, work / "kam", sqlite_shim) as kpid,
            edge_alone(edge_port, work / "real_calls") as epid,
        ):
            kam = Server("Kamailio 5.6", kam_port, kpid)
            ours = Server("edge alone", edge_port, epid)
            publish_bob(sipp_bin, kam_port, work, clock_shim)
            publish_bob(sipp_bin, edge_port, work, clock_shim)
            for server, ladder in ((kam, KAMAILIO_LADDER), (ours, EDGE_LADDER)):
                climb(server, sipp_bin, ladder, seconds, work, clock_shim)
                server.repeats = [
                    step(server, sipp_bin, server.capacity, seconds, work, clock_shim)
                    for _ in range(REPEATS)
                ]
            for server, peer in ((kam, ours), (ours, kam)):
                server.at_peer_rate = [
                    step(server, sipp_bin, peer.capacity, seconds, work, clock_shim)
                    for _ in range(REPEATS)
                ]
        load_after = os.getloadavg()
        real_calls = int((work / "real_calls").read_text())
    if real_calls > MAX_REAL_CALLS:  # a shape the warm-up did not see: moto ran in a step
        raise RuntimeError(f"the edge alone called the real functions {real_calls} times")
    print(report(kam, ours))
    print(
        f"\nEach row: {REPEATS} runs, medians. {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.\n"
    )
    print(f"Real function calls in the whole run (the rest replayed): {real_calls}.\n")
    print(steps_table([kam, ours]))


def report(kam: Server, ours: Server) -> str:
    k, o = summary(kam.repeats), summary(ours.repeats)
    k_at_o, o_at_k = summary(kam.at_peer_rate), summary(ours.at_peer_rate)
    o_at_k_failed = int(o_at_k["failed"])

    def ratio(a: float, b: float) -> str:
        return f"{a / b:,.2f}" if b and a == a and b == b else "n/a"

    return "\n".join(
        [
            "| | Kamailio 5.6 | edge alone | edge / Kamailio |",
            "|---|---:|---:|---:|",
            f"| highest rate with no failed cycle (cycles/s) | {kam.capacity:,} | "
            f"{ours.capacity:,} | {ratio(ours.capacity, kam.capacity)} |",
            f"| CPU ms per cycle, each at its own highest rate | {k['cpu_ms']:.2f} | "
            f"{o['cpu_ms']:.2f} | {ratio(o['cpu_ms'], k['cpu_ms'])} |",
            f"| CPU ms per cycle, both at Kamailio's {kam.capacity:,}/s (edge: "
            f"{o_at_k_failed:,} failed) | {k['cpu_ms']:.2f} | {o_at_k['cpu_ms']:.2f} | "
            f"{ratio(o_at_k['cpu_ms'], k['cpu_ms'])} |",
            f"| CPU ms per cycle, both at the edge's {ours.capacity:,}/s | "
            f"{k_at_o['cpu_ms']:.2f} | {o['cpu_ms']:.2f} | "
            f"{ratio(o['cpu_ms'], k_at_o['cpu_ms'])} |",
            f"| failed cycles in the {REPEATS} runs at each one's highest rate | "
            f"{k['failed']:,.0f} | {o['failed']:,.0f} | |",
            f"| p50 / p99 ms to first NOTIFY, both at the edge's {ours.capacity:,}/s | "
            f"{k_at_o['p50']:.1f} / {k_at_o['p99']:.1f} | {o['p50']:.1f} / {o['p99']:.1f} | |",
        ]
    )


def steps_table(servers: list[Server]) -> str:
    rows = [
        "| server | run | offered/s | cycles | failed | CPU ms/cycle |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for server in servers:
        runs: list[tuple[str, list[Step]]] = [
            ("ladder", server.ladder),
            ("repeat", server.repeats),
            ("at the other's rate", server.at_peer_rate),
        ]
        for label, steps in runs:
            rows.extend(
                f"| {server.name} | {label} | {s.rate:,} | {s.calls:,} | {s.failed:,} | "
                f"{s.per_cycle_ms(s.cpu_seconds):.2f} |"
                for s in steps
            )
    return "\n".join(rows)


if __name__ == "__main__":
    serve()
