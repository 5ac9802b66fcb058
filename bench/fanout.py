"""Fan-out: a number in thousands of address books signs up; how long until every phone knows?

The local stack as `make run` runs it, with two edges: moto in this process (in-process for the
functions, on a port for the edges' SQS queues), app.py's functions served to the edges on a
Unix socket (`devstack.function_host`), the stream replayer, and two `python -m sip_edge`
processes (`devstack.edge_process`). The phones are `bench.phones`, a farm of UDP phones in a
process of its own, subscribing list dialogs shaped like Linphone 5.1's (half on each edge).

1. One number in N address books (N = 1,000 and 10,000 list dialogs of 10 numbers each), its
   owner signs up (`signup.request_code` then `confirm`, the real path): from `confirm`
   returning to each phone's partial NOTIFY naming the new user, p50 / p99 / max; the
   function invocations (the edges' calls and the stream handlers' batches), the SQS messages
   to the edges, and the DynamoDB calls and units (the cost meter's rules, `testkit.dynamo_costs`,
   applied to each request and answer: `KeyTally`), with the units and items that land on the
   hottest partitions. Each book holds two such numbers: the first sign-up is counted, the
   second timed (nothing counting).
2. A burst: 1,000 phones whose 100-number books are drawn from 1,100 such numbers (each in ~90
   books); 1,000 of them sign up back to back: from each sign-up to each watching phone's
   partial NOTIFY, and from the first sign-up to the last phone's last one. The other 100 sign
   up first, counted, for the calls and units per sign-up in a burst.

Digest is skipped through trusted-proxy mode (it costs one round trip at subscribe only).
`--quick`: N = 1,000 only, and a burst of 200 sign-ups among 300 numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.live import ENV as LIVE_ENV
from bench.live import sign_up
from testkit.ports import free_port
from testkit.stats import percentile

DOMAIN = "example.org"
SIZES = (1000, 10000)
BOOK_SIZE = 10  # numbers per book in the single-number runs
BURST_BOOK = 100
BURST_POOL, BURST_SIGNUPS = 1100, 1000
QUICK_BURST_POOL, QUICK_BURST_SIGNUPS = 300, 200
#: SUBSCRIBEs in flight while the phones set up: each takes a lookup, then a save after its
#: answer, of an edge's 16 function slots; a save refused by a full bulkhead leaves a dialog
#: out of the watchers index (checked before each sign-up: `indexed`).
WINDOW = 8
ENV = {
    **LIVE_ENV,
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "EDGE_QUEUE_WAIT": "1",
    # Every phone's list holds numbers nobody answered before: the budget is not measured.
    "DISCOVERY_BUDGET": "1000000",
}


def number_uri(e164: str) -> str:
    return f"sip:{e164}@{DOMAIN};user=phone"


@dataclass
class Counts:
    """What one sign-up (or one burst) cost the stack."""

    invocations: Counter[str] = field(default_factory=Counter)
    stream_batches: int = 0
    stream_records: int = 0
    messages: int = 0
    dynamodb_calls: Counter[str] = field(default_factory=Counter)
    rcu: float = 0.0
    wcu: float = 0.0
    hot: list[tuple[str, str, float, float, int]] = field(default_factory=list)


class KeyTally:
    """Read and write units per partition key (table, hash key), by the cost meter's rules, from
    what each request names: which partitions a fan-out leans on."""

    def __init__(self) -> None:
        self.units: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
        self.calls: Counter[str] = Counter()
        self._local = threading.local()

    def hook(self, clients: list[Any]) -> Callable[[], None]:
        for c in clients:
            c.meta.events.register_first("before-call.dynamodb", self._before)
            c.meta.events.register_first("after-call.dynamodb", self._after)  # see CostMeter

        def unhook() -> None:
            for c in clients:
                c.meta.events.unregister("before-call.dynamodb", self._before)
                c.meta.events.unregister("after-call.dynamodb", self._after)

        return unhook

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self._local.__dict__.setdefault("stack", []).append(
            (model.name, json.loads(params["body"] or b"{}"))
        )

    @staticmethod
    def _hash_of(key: dict[str, Any]) -> str:
        first = next(iter(key.values()))
        return str(next(iter(first.values())))

    def _after(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        from testkit.dynamo_costs import item_size

        op, body = self._local.stack.pop()
        if op == "Query" and "IndexName" not in body:
            values = body.get("ExpressionAttributeValues") or {}
            key = next((str(next(iter(v.values()))) for v in values.values()), "?")
            size = sum(item_size(i) for i in parsed.get("Items", []))
            entry = self.units[(body["TableName"], key)]
            entry[0] += max(1, math.ceil(size / 4096)) * (1 if body.get("ConsistentRead") else 0.5)
            entry[2] = max(entry[2], len(parsed.get("Items", [])))
        elif op == "BatchGetItem":
            for table, items in (parsed.get("Responses") or {}).items():
                for item in items:
                    consistent = body["RequestItems"][table].get("ConsistentRead")
                    key = self._hash_of({k: v for k, v in item.items() if k in _KEYS})
                    units = max(1, math.ceil(item_size(item) / 4096)) * (1 if consistent else 0.5)
                    self.units[(table, key)][0] += units
        elif op == "GetItem" and parsed.get("Item"):
            key = self._hash_of(body["Key"])
            units = max(1, math.ceil(item_size(parsed["Item"]) / 4096))
            self.units[(body["TableName"], key)][0] += units * (
                1 if body.get("ConsistentRead") else 0.5
            )
        elif op == "BatchWriteItem":
            for table, requests in body["RequestItems"].items():
                for r in requests:
                    if "PutRequest" in r:
                        item = r["PutRequest"]["Item"]
                        key = self._hash_of({k: v for k, v in item.items() if k in _KEYS})
                        self.units[(table, key)][1] += max(1, math.ceil(item_size(item) / 1024))
                    else:
                        self.units[(table, self._hash_of(r["DeleteRequest"]["Key"]))][1] += 1
        elif op in ("PutItem", "UpdateItem", "DeleteItem"):
            key = self._hash_of(body.get("Key") or body.get("Item") or {"?": {"S": "?"}})
            # The item's size where the request or the answer shows it (a put's item, an
            # update's old image: the dialog item a version update rewrites), else 1 unit.
            item = body.get("Item") or parsed.get("Attributes")
            units = max(1, math.ceil(item_size(item) / 1024)) if item else 1
            self.units[(body["TableName"], key)][1] += units
        self.calls[op] += 1

    @property
    def rcu(self) -> float:
        return sum(u[0] for u in self.units.values())

    @property
    def wcu(self) -> float:
        return sum(u[1] for u in self.units.values())

    def hottest(self, top: int = 3) -> list[tuple[str, str, float, float, int]]:
        ranked = sorted(self.units.items(), key=lambda kv: -max(kv[1][0], kv[1][1]))
        return [(t, k, u[0], u[1], int(u[2])) for (t, k), u in ranked[:top]]


#: The hash key attribute of each table (a BatchGetItem answer names its items, not keys).
_KEYS = frozenset({"aor", "phone_hash", "subscription_id", "watched", "code_id", "bucket", "id"})


@dataclass
class Stack:
    edges: list[tuple[str, int]]
    host: Any
    replayer_counts: dict[str, int]
    clients: list[Any]


@contextlib.contextmanager
def stack(workdir: str) -> Iterator[Stack]:
    """moto, the function host, the stream replayer and two edge processes, as `make run`."""
    from chalicelib import aws, settings, tables
    from chalicelib.observability import metrics
    from devstack import moto_local
    from devstack.edge_process import EdgeProcess
    from devstack.function_host import FunctionHost
    from devstack.streams import StreamReplayer

    # Outside Lambda nothing flushes metrics but Powertools itself: EMF lines on stdout.
    metrics.add_metric = lambda **_: None  # type: ignore[method-assign]
    moto_port = free_port()
    stop_moto = moto_local.start("127.0.0.1", moto_port)
    settings.get.cache_clear()
    aws.reset()
    tables.create_all(aws.client("dynamodb"))
    host = FunctionHost(os.path.join(workdir, "functions.sock"))
    replayer = StreamReplayer()
    counts = {"batches": 0, "records": 0, "messages": 0}
    for logical, handler in list(replayer._handler_of.items()):
        replayer._handler_of[logical] = _counting(handler, counts)
    stop_replayer = replayer.start()
    edges: list[EdgeProcess] = []
    try:
        for name in ("a", "b"):
            env = {
                "SIP_HOST": "127.0.0.1",
                "SIP_PORT": str(free_port("udp+tcp")),
                "EDGE_ID": f"fanout-{name}",
                "SIP_FUNCTIONS": "socket",
                "SIP_FUNCTIONS_SOCKET": host.path,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            }
            quiet = None if os.environ.get("FANOUT_DEBUG") else io.StringIO()  # EMF lines
            edges.append(EdgeProcess(env, out=quiet))
        clients = [aws.client("dynamodb"), aws.resource("dynamodb").meta.client]
        yield Stack([("127.0.0.1", e.ports["udp"]) for e in edges], host, counts, clients)
    finally:
        for edge in edges:
            edge.stop()
        stop_replayer()
        host.stop()
        stop_moto()


def _counting(
    handler: Callable[[dict[str, Any], Any], Any], counts: dict[str, int]
) -> Callable[[dict[str, Any], Any], Any]:
    def counted(event: dict[str, Any], context: Any) -> Any:
        answer = handler(event, context)
        counts["batches"] += 1
        counts["records"] += len(event.get("Records", []))
        if isinstance(answer, dict):
            counts["messages"] += int(answer.get("messages", 0))
        return answer

    return counted


class Phones:
    """The phone farm (`bench.phones`) in its own process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.phones"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the phone farm stopped")
        return dict(json.loads(line))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask({"stop": True})
        self.proc.wait(10)


def metered(s: Stack, work: Callable[[], None], settle: Callable[[], None]) -> Counts:
    """Run `work` with the key tally on the functions' clients, until `settle` says the
    fan-out is over: what it cost. The units are the cost meter's rules applied to what each
    request and answer shows (`KeyTally`), without its reads of every item before and after
    a write (which would slow a fan-out of thousands several times over)."""
    tally = KeyTally()
    unhook = tally.hook(s.clients)
    calls, before = Counter(s.host.calls), dict(s.replayer_counts)
    try:
        work()
        settle()
    finally:
        unhook()
    return Counts(
        invocations=Counter(s.host.calls) - calls,
        stream_batches=s.replayer_counts["batches"] - before["batches"],
        stream_records=s.replayer_counts["records"] - before["records"],
        messages=s.replayer_counts["messages"] - before["messages"],
        dynamodb_calls=tally.calls,
        rcu=tally.rcu,
        wcu=tally.wcu,
        hot=tally.hottest(),
    )


def _check_indexed(e164: str, expected: int) -> None:
    """Every phone's dialog made it into the watchers index (a failed save would leave one
    out, and its phone would never hear of the sign-up)."""
    from chalicelib.live import subscriptions
    from chalicelib.presence.watched import phone_key

    found = len(subscriptions.watchers([phone_key(e164)]))
    if found != expected:
        raise RuntimeError(f"{found} of {expected} dialogs in the watchers index")


def other_numbers(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"+3367{rng.randrange(10**7):07d}" for _ in range(count)]


@dataclass
class FanOut:
    watchers: int
    setup_seconds: float
    retries: int
    latencies: list[float]
    missing: int
    confirm_ms: float
    counts: Counts
    metered_latencies: list[float]


def fan_out(watchers: int) -> FanOut:
    """One number in `watchers` books; its owner signs up (metered first: another number)."""
    metered_number, timed_number = "+33699000001", "+33699000002"
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as work, stack(work) as s:
        phones = Phones()
        try:
            specs = [
                {
                    "edge": list(s.edges[i % 2]),
                    "entries": [number_uri(metered_number), number_uri(timed_number)]
                    + [number_uri(n) for n in other_numbers(BOOK_SIZE - 2, i)],
                }
                for i in range(watchers)
            ]
            setup = phones.ask({"subscribe": specs, "window": WINDOW})
            print(f"  {watchers:,} phones subscribed: {setup}", file=sys.stderr, flush=True)
            _check_indexed(metered_number, watchers)
            time.sleep(3)  # every dialog out of its NOTIFY throttle window
            marks: list[float] = []

            def sign_metered() -> None:
                sign_up(metered_number)
                marks.append(time.monotonic())

            def settle_metered() -> None:
                got = phones.ask({"named": [number_uri(metered_number)], "timeout": 600})
                marks.extend(got["times"][number_uri(metered_number)])
                time.sleep(2)  # the edges' last acknowledgements and deletions

            counts = metered(s, sign_metered, settle_metered)
            metered_latencies = [t - marks[0] for t in marks[1:]]
            time.sleep(3)
            started = time.monotonic()
            sign_up(timed_number)
            confirmed = time.monotonic()
            got = phones.ask({"named": [number_uri(timed_number)], "timeout": 600})
            times = got["times"][number_uri(timed_number)]
            return FanOut(
                watchers,
                setup["seconds"],
                setup["retries"],
                [t - confirmed for t in times],
                got["missing"],
                (confirmed - started) * 1000,
                counts,
                metered_latencies,
            )
        finally:
            phones.close()


@dataclass
class Burst:
    phones: int
    signups: int
    signup_seconds: float
    latencies: list[float]
    last_seconds: float
    missing: int
    counts: Counts
    metered_signups: int


def burst(pool_size: int, signups: int, phones_count: int = 1000) -> Burst:
    """`phones_count` books of BURST_BOOK numbers drawn from `pool_size`; `pool_size -
    signups` of them sign up metered first, then `signups` back to back, timed."""
    rng = random.Random(7)
    pool = [f"+33698{i:06d}" for i in range(pool_size)]
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as work, stack(work) as s:
        phones = Phones()
        try:
            specs = [
                {
                    "edge": list(s.edges[i % 2]),
                    "entries": [number_uri(n) for n in rng.sample(pool, BURST_BOOK)],
                }
                for i in range(phones_count)
            ]
            setup = phones.ask({"subscribe": specs, "window": WINDOW})
            print(f"  burst: {phones_count:,} phones subscribed: {setup}", file=sys.stderr)
            time.sleep(3)
            first, timed = pool[: pool_size - signups], pool[pool_size - signups :]

            def sign_first() -> None:
                for e164 in first:
                    sign_up(e164)

            def settle_first() -> None:
                phones.ask({"named": [number_uri(n) for n in first], "timeout": 600})
                time.sleep(2)

            counts = metered(s, sign_first, settle_first)
            time.sleep(3)
            confirmed: dict[str, float] = {}
            started = time.monotonic()
            for e164 in timed:
                sign_up(e164)
                confirmed[number_uri(e164)] = time.monotonic()
            signed = time.monotonic() - started
            got = phones.ask({"named": list(confirmed), "timeout": 900})
            latencies = [t - confirmed[u] for u, ts in got["times"].items() for t in ts]
            last = max((t for ts in got["times"].values() for t in ts), default=started)
            return Burst(
                phones_count, len(timed), signed, latencies, last - started, got["missing"],
                counts, len(first),
            )  # fmt: skip
        finally:
            phones.close()


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:,.0f}" if values else "n/a"


def report(runs: list[FanOut], bursts: list[Burst], note: str) -> str:
    lines = [
        "| phones watching the number (list dialogs, two edges) | partial NOTIFY received | "
        "p50 ms | p99 ms | max ms | confirm ms | phones subscribed in s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r.watchers:,} | {len(r.latencies):,} | {_ms(r.latencies, 0.5)} | "
            f"{_ms(r.latencies, 0.99)} | {max(r.latencies) * 1000:,.0f} | {r.confirm_ms:,.0f} | "
            f"{r.setup_seconds:,.0f} |"
        )
    lines += [
        "",
        "| phones | function invocations (edges' calls; stream batches) | SQS messages | "
        "DynamoDB calls | read units | write units |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for r in runs:
        lines.append(_cost_row(f"{r.watchers:,}", r.counts))
    lines += ["", "Hottest partitions during the metered sign-up (read / write units; items):", ""]
    for r in runs:
        hot = "; ".join(
            f"{t.split('-')[-1]} `{k[:14]}…`: {rd:,.1f} / {wr:,.0f}"
            + (f" ({n:,} items)" if n else "")
            for t, k, rd, wr, n in r.counts.hot
        )
        lines.append(f"- {r.watchers:,} phones: {hot}")
    for b in bursts:
        lines += [
            "",
            f"Burst: {b.signups:,} sign-ups back to back ({b.signups / b.signup_seconds:,.0f}/s), "
            f"{b.phones:,} phones whose {BURST_BOOK}-number books hold them (each number in "
            f"~{b.phones * BURST_BOOK // (b.signups + b.metered_signups)} books):",
            "",
            "| (phone, new user) pairs | p50 ms | p99 ms | max ms | first sign-up to the last "
            "NOTIFY s | not received |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {len(b.latencies):,} | {_ms(b.latencies, 0.5)} | {_ms(b.latencies, 0.99)} | "
            f"{max(b.latencies, default=0) * 1000:,.0f} | {b.last_seconds:,.1f} | {b.missing:,} |",
            "",
            f"Cost of the {b.metered_signups} metered sign-ups before it, per sign-up:",
            "",
            "| per sign-up | function invocations | SQS messages | DynamoDB calls | read units "
            "| write units |",
            "|---|---|---:|---|---:|---:|",
            _cost_row("burst", b.counts, per=b.metered_signups),
        ]
    lines += ["", note]
    return "\n".join(lines)


def _cost_row(label: str, c: Counts, per: int = 1) -> str:
    invocations = ", ".join(f"{n} {v / per:,.1f}" for n, v in sorted(c.invocations.items()))
    calls = sum(c.dynamodb_calls.values()) / per
    ops = ", ".join(f"{op} {v / per:,.1f}" for op, v in c.dynamodb_calls.most_common(4))
    return (
        f"| {label} | {invocations}; stream {c.stream_batches / per:,.1f} batches "
        f"({c.stream_records / per:,.1f} records) | {c.messages / per:,.1f} | "
        f"{calls:,.1f} ({ops}) | {c.rcu / per:,.1f} | {c.wcu / per:,.1f} |"
    )


def run(argv: list[str]) -> None:
    if shutil.which("python3") is None:  # pragma: no cover - the farm is this interpreter
        print("skipped: fan-out needs a Python interpreter for the phone farm")
        return
    saved = dict(os.environ)
    fresh = ("AWS_", "SIP_", "TABLE_", "STAGE", "EDGE_")
    for key in [k for k in os.environ if k.startswith(fresh)]:
        del os.environ[key]
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
         "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1", "STAGE": "local", **ENV}
    )  # fmt: skip
    quick = "--quick" in argv
    load_before = os.getloadavg()[0]
    try:
        runs = [fan_out(n) for n in (SIZES[:1] if quick else SIZES)]
        pool, signups = (
            (QUICK_BURST_POOL, QUICK_BURST_SIGNUPS) if quick else (BURST_POOL, BURST_SIGNUPS)
        )
        bursts = [burst(pool, signups)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from chalicelib import aws, settings

        settings.get.cache_clear()
        aws.reset()
    note = (
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after. Latency: from `confirm` returning to the partial "
        "NOTIFY naming the new user reaching the phone (timed sign-up, no meter); costs: the "
        "metered sign-up of another number in the same books."
    )
    print(report(runs, bursts, note))
