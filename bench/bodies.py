"""Presence lookup costs: list parsing, DynamoDB lookup and NOTIFY body building, measured apart.

Lists of 10, 100, 1,000 and 5,000 entries (90% numbers as Linphone sends them, 10% SIP URIs;
30% of entries are users) against in-process moto. Medians over several runs. Body building
excludes DynamoDB; lookup includes URI classification (phonenumbers, cold cache) and the
BatchGetItem calls. `--quick` runs fewer repetitions.
"""

from __future__ import annotations

import os
import statistics
import time
import zlib
from collections.abc import Callable

SIZES = (10, 100, 1000, 5000)
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
    "STAGE": "bench",
    "TABLE_PREFIX": "sc-bench-",
    "SIP_DOMAIN": "example.org",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def entry(i: int) -> str:
    if i % 10 == 9:
        return f"sip:user{i}@example.org"
    return f"sip:+336{i:08d}@example.org;user=phone"


def is_user(i: int) -> bool:
    return i % 10 in (0, 4, 9)  # 30%, numbers and SIP URIs alike


def list_body(n: int) -> bytes:
    entries = "".join(f' <entry uri="{entry(i)}"/>\n' for i in range(n))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns='
        f'"urn:ietf:params:xml:ns:resource-lists">\n <list>\n{entries} </list>\n</resource-lists>'
    ).encode()


def median_us(
    fn: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    samples = []
    for _ in range(runs):
        start = clock()
        fn()
        samples.append((clock() - start) * 1e6)
    return statistics.median(samples)


def seed(n: int) -> None:
    from chalicelib import tables
    from chalicelib.accounts import phone

    with tables.table(tables.PHONE_INDEX).batch_writer() as batch:
        for i in range(n):
            if is_user(i) and i % 10 != 9:
                e164 = f"+336{i:08d}"
                batch.put_item(
                    Item={
                        "phone_hash": phone.phone_hash(e164),
                        "aor": f"u{i}@example.org",
                        "discoverable": True,
                    }
                )
    with tables.table(tables.ACCOUNTS).batch_writer() as batch:
        for i in range(n):
            if is_user(i) and i % 10 == 9:
                batch.put_item(
                    Item={"aor": f"user{i}@example.org", "discoverable": True, "disabled": False}
                )


def run(argv: list[str]) -> None:
    os.environ.update(ENV)
    from moto import mock_aws

    from chalicelib import aws, settings

    settings.get.cache_clear()
    aws.reset()
    with mock_aws():
        from chalicelib import tables
        from chalicelib.aws import client

        tables.create_all(client("dynamodb"))
        seed(max(SIZES))
        _measure(quick="--quick" in argv)


HEADER = (
    "| entries | users | parse µs/entry | lookup µs/entry | DynamoDB calls | "
    "build µs/entry (plain) | build µs/entry (deflate) | build ms (deflate) | "
    "build CPU ms (deflate) | "
    "bodies | bytes plain | bytes deflated | deflated/plain |"
)


def _measure(quick: bool) -> None:
    print(HEADER)
    print("|" + "---:|" * (HEADER.count("|") - 1))
    for n in SIZES:
        runs = (3 if quick else 7) if n >= 1000 else (5 if quick else 21)
        print(_row(n, runs), flush=True)
    print(
        "\nBodies use the defaults (linphone profile, notify_limit 200, notify_max_bytes 12000:"
        " one full-state body, then partial ones); sizes are summed over the bodies."
    )


def _row(n: int, runs: int) -> str:
    from chalicelib import dynamo
    from chalicelib.presence import multipart, notify, resource_list
    from chalicelib.presence import resolve as presence

    body = zlib.compress(list_body(n))
    limits = resource_list.ListLimits(16 * 1024 * 1024, 100_000)
    parse_us = median_us(lambda: resource_list.parse(body, "deflate", limits), runs)
    entries = list(resource_list.parse(body, "deflate", limits).entries)

    counter = dynamo.CallCounter()
    presence.resolve(entries, subscriber="alice@example.org", counter=counter)

    def lookup() -> object:
        presence._e164.cache_clear()  # a cold Lambda: every number parsed again
        return presence.resolve(entries, subscriber="alice@example.org")

    lookup_us = median_us(lookup, runs)
    resolved, _ = presence.resolve(entries, subscriber="alice@example.org")
    states = presence.states(resolved)
    users = sum(r.is_user for r in resolved)

    plain_opts = notify.BodyOptions.from_settings(profile=multipart.LINPHONE, deflate=False)
    deflate_opts = notify.BodyOptions.from_settings(profile=multipart.LINPHONE, deflate=True)

    def build(opts: notify.BodyOptions) -> list[notify.NotifyBody]:
        return notify.build("sip:rls@example.org", states, version=0, options=opts)

    plain_us = median_us(lambda: build(plain_opts), runs)
    deflate_us = median_us(lambda: build(deflate_opts), runs)
    # Building is single-threaded: its CPU time is what a Lambda pays, whatever else runs here.
    deflate_cpu_us = median_us(lambda: build(deflate_opts), runs, time.thread_time)
    bodies = build(deflate_opts)
    plain_bytes = sum(b.plain_bytes for b in bodies)
    wire_bytes = sum(len(b.body) for b in bodies)
    return (
        f"| {n:,} | {users:,} | {parse_us / n:.1f} | {lookup_us / n:.1f} | {counter.calls} | "
        f"{plain_us / n:.1f} | {deflate_us / n:.1f} | {deflate_us / 1000:.1f} | "
        f"{deflate_cpu_us / 1000:.1f} | "
        f"{len(bodies)} | {plain_bytes:,} | {wire_bytes:,} | {wire_bytes / plain_bytes:.1%} |"
    )
