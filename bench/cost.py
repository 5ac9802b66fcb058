"""`python -m bench cost --users 1000000`: a month of the service priced per component, from
measured calls, against a Kamailio deployment sized from measured rates.

1. Measured (`bench.cost_measure`): each operation of a phone's life through app.py's
   functions as the edge calls them, in-process against moto: invocations and CPU time,
   DynamoDB calls and units (the project's cost meter), SQS requests, SMS, NOTIFY bytes, and
   what each device and user keeps stored.
2. A stated workload (`Workload`, every figure an option) turns them into a month.
3. Prices (`bench.prices`, one place, with their source and date) turn that into dollars per
   component: Lambda (requests, and GB-s from the measured durations: CPU time scaled to the
   function's share of a vCPU plus an assumed latency per DynamoDB call), DynamoDB on-demand and
   provisioned, SQS, SNS SMS and push, Fargate (edge tasks sized by connections and by the edge's
   measured CPU per SIP transaction), NLB, data transfer.
4. The same traffic on a Kamailio presence server (the anchor measured beside ours in
   `python -m bench kamailio`: CPU per presence cycle, per list subscription) on EC2, with a
   database, a web/API tier and a cache, as a Flexisip-style deployment needs.

The figures of `bench kamailio` come from its last run (build/bench/kamailio.json, written by
it: `make bench` runs it first); without one, this runs Kamailio's short ladder itself.
`--write-docs` rewrites the table in docs/cost.md and the plot docs/cost_model.png.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench import prices as P
from bench.cost_measure import Use, Workload, measure, memory_mb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "build" / "bench"
COST_PAGE = ROOT / "docs" / "cost.md"
PLOT = ROOT / "docs" / "cost_model.png"
START, END = "<!-- bench-cost:start -->", "<!-- bench-cost:end -->"
#: Assumed wall time of one DynamoDB call from Lambda (same region), added to each function's
#: CPU time for its duration; batch reads in parallel chunks count once per call.
DYNAMODB_CALL_MS = 5.0


# --- a month ------------------------------------------------------------------------------------


def monthly_events(w: Workload) -> dict[str, float]:
    """How often each measured operation happens in a month of `w`."""
    days = P.DAYS_PER_MONTH
    refreshes = w.online * 86400 / w.refresh_seconds * days
    new = w.online * w.new_dialogs_per_day * days
    changes = w.users * w.status_changes_per_day * days
    signups = w.signups_per_day * days
    reach = w.watchers_per_user
    return {
        "REGISTER": refreshes,
        "PUBLISH": w.users * w.publishes_per_day * days,
        "list SUBSCRIBE, a device's first": new * w.first_dialog_share,
        "list SUBSCRIBE, a later dialog": new * (1 - w.first_dialog_share),
        "list SUBSCRIBE refresh": refreshes,
        "un-SUBSCRIBE": new,
        # Every list holding the user looks again; mutual contacts get a NOTIFY.
        "a change, per watching dialog (no NOTIFY)": changes * reach * (1 - w.mutual_share),
        "a change, per watching dialog (NOTIFY)": changes * reach * w.mutual_share
        + signups * reach,  # a sign-up is news to every list holding the number
        "a status change: stream handler": changes,
        "a sign-up: REST and stream handler": signups,
        "a change: stream handler, per watching dialog": (changes + signups) * reach,
    }


@dataclass
class Bill:
    lines: dict[str, float]
    detail: dict[str, str]

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def month_use(ops: dict[str, Use], w: Workload) -> Use:
    total = Use()
    for name, count in monthly_events(w).items():
        total = total + ops[name].scaled(count)
    return total


def lambda_cost(use: Use) -> tuple[float, float, float]:
    """(requests $, duration $, GB-s) from the invocations and their measured durations."""
    memory = memory_mb()
    gb_s = 0.0
    for name, count in use.invocations.items():
        mb = memory.get(name, 512)
        share = min(1.0, mb / P.LAMBDA_MB_PER_VCPU)
        per_call_ms = (use.cpu_ms[name] / max(count, 1e-9)) / share + DYNAMODB_CALL_MS * (
            use.dynamodb_calls[name] / max(count, 1e-9)
        )
        gb_s += count * per_call_ms / 1000 * mb / 1024
    requests = sum(use.invocations.values()) / 1e6 * P.LAMBDA_PER_MILLION_REQUESTS
    return requests, gb_s * P.LAMBDA_PER_GB_SECOND_ARM, gb_s


def sip_transactions_per_s(w: Workload, ops: dict[str, Use]) -> float:
    """Mean SIP transactions the edges serve per second (requests and the NOTIFYs sent)."""
    per_month = 0.0
    for name, count in monthly_events(w).items():
        requests = 1 if name in ("REGISTER", "PUBLISH", "un-SUBSCRIBE") else 0
        if name.startswith("list SUBSCRIBE"):
            requests = 1
        per_month += count * (requests + ops[name].notifies)
    return per_month / (P.DAYS_PER_MONTH * 86400)


def ours(ops: dict[str, Use], storage: dict[str, float], w: Workload, rates: dict[str, float],
         *, provisioned: bool) -> Bill:  # fmt: skip
    use = month_use(ops, w)
    seconds = P.DAYS_PER_MONTH * 86400
    requests, duration, gb_s = lambda_cost(use)
    stored_gb = (storage["per_device"] * w.devices + storage["per_user"] * w.users) / 1e9
    storage_cost = stored_gb * (P.DYNAMODB_PER_GB_MONTH + P.DYNAMODB_PITR_PER_GB_MONTH)
    if provisioned:  # auto scaling at 70% utilisation of a capacity that follows the day
        rcu = use.rcu / seconds / 0.7 * 1.3
        wcu = use.wcu / seconds / 0.7 * 1.3
        dynamo = P.HOURS_PER_MONTH * (rcu * P.DYNAMODB_PER_RCU_HOUR + wcu * P.DYNAMODB_PER_WCU_HOUR)
        dynamo_detail = f"{rcu:,.0f} RCU + {wcu:,.0f} WCU provisioned on average"
    else:
        dynamo = use.rcu / 1e6 * P.DYNAMODB_PER_MILLION_RRU + use.wcu / 1e6 * (
            P.DYNAMODB_PER_MILLION_WRU
        )
        dynamo_detail = f"{use.rcu / 1e9:,.2f} G RRU + {use.wcu / 1e9:,.2f} G WRU"
    tx = sip_transactions_per_s(w, ops)
    peak_tx = tx * w.peak_to_mean
    edge_ms = rates["edge_ms_per_transaction"]
    by_cpu = peak_tx * edge_ms / 1000 / (0.6 * w.edge_task_vcpu)
    by_connections = w.online * w.tcp_share / w.edge_connections_per_task
    tasks = max(2, math.ceil(max(by_cpu, by_connections) * 1.2))
    fargate = (
        tasks
        * P.HOURS_PER_MONTH
        * (
            w.edge_task_vcpu * P.FARGATE_ARM_PER_VCPU_HOUR
            + w.edge_task_gb * P.FARGATE_ARM_PER_GB_HOUR
        )
    )
    gb_out = use.bytes_out / 1e9
    nlb = P.HOURS_PER_MONTH * (P.NLB_PER_HOUR + P.NLB_PER_LCU_HOUR * _lcus(w, gb_out))
    sqs_requests = use.sqs_requests + tasks * seconds / 20  # + each edge's empty long polls
    lines = {
        "Lambda requests": requests,
        "Lambda duration": duration,
        "DynamoDB throughput": dynamo,
        "DynamoDB storage + backups": storage_cost,
        "SQS": sqs_requests / 1e6 * P.SQS_PER_MILLION_REQUESTS,
        "SMS": use.sms * w.sms_per_signup * P.SMS_PER_MESSAGE,
        "push (SNS)": w.signups_per_day * P.DAYS_PER_MONTH * w.pushes_per_signup / 1e6
        * P.SNS_MOBILE_PUSH_PER_MILLION,
        "Fargate (edge tasks)": fargate,
        "NLB": nlb,
        "data transfer out": gb_out * P.TRANSFER_OUT_PER_GB,
    }  # fmt: skip
    detail = {
        "Lambda requests": f"{sum(use.invocations.values()) / 1e6:,.0f} M invocations",
        "Lambda duration": f"{gb_s / 1e6:,.2f} M GB-s",
        "DynamoDB throughput": dynamo_detail,
        "DynamoDB storage + backups": f"{stored_gb:,.0f} GB",
        "SQS": f"{sqs_requests / 1e6:,.0f} M requests",
        "SMS": f"{use.sms * w.sms_per_signup:,.0f} SMS",
        "Fargate (edge tasks)": f"{tasks} tasks of {w.edge_task_vcpu:g} vCPU / "
        f"{w.edge_task_gb:g} GB (peak {peak_tx:,.0f} SIP transactions/s)",
        "NLB": f"{_lcus(w, gb_out):,.1f} LCU",
        "data transfer out": f"{gb_out:,.0f} GB",
    }
    return Bill(lines, detail)


def _lcus(w: Workload, gb_out: float) -> float:
    """NLB capacity units at the peak: the largest of active flows, new flows (a UDP phone's
    refreshes, minutes apart, each open a flow: the NLB forgets one after 120 s idle; TCP
    phones reconnect about once a day) and bytes."""
    active = (
        w.online * w.tcp_share / P.NLB_LCU_ACTIVE_CONNECTIONS
        + w.online * (1 - w.tcp_share) / P.NLB_LCU_ACTIVE_UDP_FLOWS
    )
    new_udp = w.online * (1 - w.tcp_share) * 2 / w.refresh_seconds * w.peak_to_mean
    new_tcp = w.online * w.tcp_share / 86400 * w.peak_to_mean
    new = new_udp / P.NLB_LCU_NEW_UDP_FLOWS_PER_S + new_tcp / P.NLB_LCU_NEW_CONNECTIONS_PER_S
    traffic = gb_out / P.HOURS_PER_MONTH / P.NLB_LCU_GB_PER_HOUR * w.peak_to_mean
    return max(active, new, traffic)


def kamailio(ops: dict[str, Use], storage: dict[str, float], w: Workload,
             rates: dict[str, float]) -> Bill:  # fmt: skip
    """The same traffic on Kamailio (presence, RLS) on EC2, with a MySQL database, a web/API
    tier for sign-up and discovery (what FlexiAPI does beside Flexisip) and a Redis cache."""
    use = month_use(ops, w)
    events = monthly_events(w)
    seconds = P.DAYS_PER_MONTH * 86400
    tx = sip_transactions_per_s(w, ops) * w.peak_to_mean
    # New list dialogs at the cost measured for Kamailio's RLS (a list of 100, scaled to the
    # book); a refresh counts as one transaction (its full-state NOTIFY of the whole list is
    # not measured: in Kamailio's favour).
    lists = (
        events["list SUBSCRIBE, a device's first"] + events["list SUBSCRIBE, a later dialog"]
    ) / seconds * w.peak_to_mean  # fmt: skip
    list_ms = rates["kamailio_ms_per_list100"] * w.book / 100
    vcpus = (tx * rates["kamailio_ms_per_transaction"] + lists * list_ms) / 1000 / 0.6
    servers = max(2, math.ceil(vcpus / P.EC2_C7G_LARGE_VCPUS * 1.2))
    stored_gb = (storage["per_device"] * w.devices + storage["per_user"] * w.users) / 1e9
    databases = max(1, math.ceil(stored_gb / 500))
    gb_out = use.bytes_out / 1e9
    lines = {
        "SIP servers (EC2)": servers * P.HOURS_PER_MONTH * P.EC2_C7G_LARGE_PER_HOUR,
        "database (RDS MySQL, Multi-AZ)": databases * P.HOURS_PER_MONTH
        * P.RDS_R6G_LARGE_MULTI_AZ_PER_HOUR + 2 * stored_gb * P.RDS_GP3_MULTI_AZ_PER_GB_MONTH,
        "web/API tier (EC2)": 2 * P.HOURS_PER_MONTH * P.EC2_T4G_MEDIUM_PER_HOUR,
        "cache (ElastiCache Redis, 2 nodes)": 2 * P.HOURS_PER_MONTH
        * P.ELASTICACHE_T4G_MEDIUM_PER_HOUR,
        "SMS": use.sms * w.sms_per_signup * P.SMS_PER_MESSAGE,
        "push (SNS)": w.signups_per_day * P.DAYS_PER_MONTH * w.pushes_per_signup / 1e6
        * P.SNS_MOBILE_PUSH_PER_MILLION,
        "NLB": P.HOURS_PER_MONTH * (P.NLB_PER_HOUR + P.NLB_PER_LCU_HOUR * _lcus(w, gb_out)),
        "data transfer out": gb_out * P.TRANSFER_OUT_PER_GB,
    }  # fmt: skip
    detail = {
        "SIP servers (EC2)": f"{servers} x c7g.large ({vcpus:,.1f} vCPU at the peak, 60% busy; "
        f"{tx:,.0f} SIP transactions/s and {lists:,.1f} new list dialogs/s of {w.book})",
        "database (RDS MySQL, Multi-AZ)": f"{databases} x db.r6g.large, {stored_gb:,.0f} GB",
    }
    return Bill(lines, detail)


# --- the measured rates of Kamailio and of our edge ---------------------------------------------


def measured_rates() -> dict[str, Any]:
    """CPU per SIP transaction of Kamailio and of our edge, and Kamailio's per list of 100:
    from the last `bench kamailio` run (build/bench/kamailio.json), else measured now."""
    path = RESULTS / "kamailio.json"
    if not path.exists():
        print("no build/bench/kamailio.json: running `bench kamailio --quick` for the rates")
        from bench import kamailio as kam

        kam.run(["--quick", "--no-plot"])
    if not path.exists():
        raise SystemExit("bench cost needs Kamailio's measured rates (bench kamailio skipped)")
    found = json.loads(path.read_text())
    return {
        # A presence cycle is four SIP transactions: SUBSCRIBE, NOTIFY, un-SUBSCRIBE, NOTIFY.
        "kamailio_ms_per_transaction": found["kamailio"]["cpu_ms_per_cycle"] / 4,
        "edge_ms_per_transaction": found["ours"]["edge_ms_per_cycle"] / 4,
        "kamailio_ms_per_list100": found["kamailio_lists"]["cpu_ms_per_list"],
        "load": found.get("load", [0, 0]),
        "when": found.get("when", ""),
    }


# --- output -------------------------------------------------------------------------------------


def table(bills: dict[str, Bill], users: int) -> str:
    components: list[str] = []
    for bill in bills.values():
        components += [c for c in bill.lines if c not in components]
    names = list(bills)
    rows = ["| monthly, US$ | " + " | ".join(names) + " |", "|---" + "|---:" * len(names) + "|"]
    for c in components:
        cells = [f"{bills[n].lines[c]:,.0f}" if c in bills[n].lines else "" for n in names]
        rows.append(f"| {c} | " + " | ".join(cells) + " |")
    rows.append("| **total** | " + " | ".join(f"**{bills[n].total:,.0f}**" for n in names) + " |")
    rows.append(
        "| per user and month | "
        + " | ".join(f"{100 * bills[n].total / users:,.2f} ¢" for n in names) + " |"
    )  # fmt: skip
    return "\n".join(rows)


def ops_table(ops: dict[str, Use]) -> str:
    rows = [
        "| operation (measured) | function invocations | CPU ms | DynamoDB calls | RRU | WRU "
        "| SQS requests | NOTIFY bytes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, u in ops.items():
        calls = ", ".join(f"{n} {v:g}" for n, v in sorted(u.invocations.items()))
        rows.append(
            f"| {name} | {calls} | {sum(u.cpu_ms.values()):,.1f} | "
            f"{sum(u.dynamodb_calls.values()):g} | {u.rcu:g} | {u.wcu:g} | {u.sqs_requests:g} | "
            f"{u.bytes_out:,.0f} |"
        )
    return "\n".join(rows)


def plot(ops: dict[str, Use], storage: dict[str, float], w: Workload, rates: dict[str, float],
         bills: dict[str, Bill]) -> bool:  # fmt: skip
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from dataclasses import replace

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    names = list(bills)
    bottoms = [0.0] * len(names)
    components: list[str] = []
    for bill in bills.values():
        components += [c for c in bill.lines if c not in components]
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, c in enumerate(components):
        heights = [bills[n].lines.get(c, 0.0) for n in names]
        left.bar(names, heights, bottom=bottoms, label=c, color=colours[i % len(colours)])
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    left.set_ylabel("US$ per month")
    left.set_title(f"{w.users:,} users, by component")
    left.tick_params(axis="x", labelsize=8)
    left.legend(fontsize=7, loc="upper left")
    sizes = [10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]
    for label, make in (
        ("ours, DynamoDB on-demand", lambda v: ours(ops, storage, v, rates, provisioned=False)),
        ("ours, DynamoDB provisioned", lambda v: ours(ops, storage, v, rates, provisioned=True)),
        ("Kamailio on EC2", lambda v: kamailio(ops, storage, v, rates)),
    ):
        totals = []
        for n in sizes:
            scaled = replace(w, users=n, signups_per_day=w.signups_per_day * n / w.users)
            totals.append(make(scaled).total)
        right.plot(sizes, totals, "o-", label=label)
    right.set(xscale="log", yscale="log", xlabel="users", ylabel="US$ per month")
    right.set_title("total, as the service grows (sign-ups in proportion)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    title = f"Monthly cost from measured calls ({P.REGION} list prices, {P.AS_OF})"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=90)
    plt.close(fig)
    return True


def _options(argv: list[str]) -> Workload:
    w = Workload()
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg and arg not in ("--users",):
            continue
        name, _, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if hasattr(w, name) and value:
            kind = type(getattr(w, name))
            setattr(w, name, kind(float(value)) if kind is int else kind(value))
    if "--users" in argv:  # `--users 1000000`
        w.users = int(argv[argv.index("--users") + 1])
    return w


def run(argv: list[str]) -> None:
    w = _options(argv)
    saved = dict(os.environ)
    try:
        rates = measured_rates()
        started = time.monotonic()
        load_before = os.getloadavg()[0]
        ops, storage = measure(w)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from chalicelib import aws, settings

        settings.get.cache_clear()
        aws.reset()
    bills = {
        "ours, DynamoDB on-demand": ours(ops, storage, w, rates, provisioned=False),
        "ours, DynamoDB provisioned": ours(ops, storage, w, rates, provisioned=True),
        "Kamailio on EC2": kamailio(ops, storage, w, rates),
    }
    load = rates["load"]
    text = "\n".join(
        [
            f"Workload: {', '.join(f'{f.name}={getattr(w, f.name):,}' for f in fields(w))}; "
            f"each user's number sits in ~{w.watchers_per_user:,.0f} lists.",
            "",
            table(bills, w.users),
            "",
            "What each line holds:",
            "",
            *[f"- {k} (ours): {v}" for k, v in bills["ours, DynamoDB on-demand"].detail.items()],
            *[f"- {k} (Kamailio): {v}" for k, v in bills["Kamailio on EC2"].detail.items()],
            "",
            f"Measured, per operation (CPU on this machine, load average {load_before:.1f}; "
            f"{time.monotonic() - started:,.0f} s):",
            "",
            ops_table(ops),
            "",
            f"Rates from `python -m bench kamailio` ({rates['when']}, load average "
            f"{load[0]:.1f} before, {load[1]:.1f} after): Kamailio "
            f"{rates['kamailio_ms_per_transaction']:.3f} ms of CPU per SIP transaction and "
            f"{rates['kamailio_ms_per_list100']:.1f} ms per list subscription of 100; our edge "
            f"{rates['edge_ms_per_transaction']:.3f} ms per SIP transaction. Storage: "
            f"{storage['per_device'] / 1000:,.1f} KB per device, {storage['per_user']:,.0f} B per "
            "user.",
        ]
    )
    print(text)
    if "--write-docs" in argv:
        page = COST_PAGE.read_text()
        block = f"{START}\n{text}\n{END}"
        if START in page:
            page = page[: page.index(START)] + block + page[page.index(END) + len(END) :]
        else:
            page += "\n" + block + "\n"
        COST_PAGE.write_text(page)
        if plot(ops, storage, w, rates, bills):
            print(f"\nplot: {PLOT.relative_to(ROOT)}; table: {COST_PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    run(sys.argv[1:])
