"""What each operation of a phone's life costs, measured: `bench.cost`'s input.

Each operation runs through app.py's functions as the edge calls them (digest check, REGISTER,
list SUBSCRIBE new / again / refresh, un-SUBSCRIBE, PUBLISH, a status change and a sign-up
reaching the lists that hold the user), in-process against moto with devstack's patches: the
function invocations and their CPU time (timed runs, no meter), the DynamoDB calls and units
(the project's cost meter, `testkit.dynamo_costs.CostMeter`, on one metered run), SQS
requests, SMS and the NOTIFY bytes sent; and the bytes each device and user keeps stored.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "example.org"
#: SIP headers of a NOTIFY or a response, on top of the body the function built.
SIP_HEADER_BYTES = 550
#: Timed runs per operation (the median CPU time is kept).
TIMED_RUNS = 5
#: Lists holding the changing user in the second measurement of a change (the first: one).
WATCHERS = 11


@dataclass
class Workload:
    """What a month of use looks like. Every figure is an option of `bench cost` (--name)."""

    users: int = 1_000_000
    devices_per_user: float = 1.3  # phones and tablets signed in to one account
    online_share: float = 0.6  # devices registered at a given time (push-mode apps drop off)
    book: int = 500  # numbers in a device's address book (its list subscription)
    user_share: float = 0.2  # of a book's numbers, the share that are users
    new_dialogs_per_day: float = 4.0  # per online device: app start, network change, a contact
    first_dialog_share: float = 0.02  # of new dialogs, a device's first (every watcher written)
    refresh_seconds: float = 3300.0  # REGISTER and SUBSCRIBE refresh (Expires 3600)
    status_changes_per_day: float = 10.0  # per user: online/offline, published status
    mutual_share: float = 0.5  # of the lists holding a user, those it holds back (detail)
    publishes_per_day: float = 4.0  # per user
    signups_per_day: float = 10_000.0
    sms_per_signup: float = 1.2  # resends included
    pushes_per_signup: float = 1.0  # the app's account-creation token (FlexiAPI)
    tcp_share: float = 0.5  # devices on TCP/TLS (a connection each) rather than UDP
    peak_to_mean: float = 2.5  # the busiest hour against the month's mean
    edge_connections_per_task: int = 10_000  # SIP_MAX_CONNECTIONS
    edge_task_vcpu: float = 1.0
    edge_task_gb: float = 2.0

    @property
    def devices(self) -> float:
        return self.users * self.devices_per_user

    @property
    def online(self) -> float:
        return self.devices * self.online_share

    @property
    def watchers_per_user(self) -> float:
        """Lists holding an average user's number: every device's book holds `book x
        user_share` users, spread over all users."""
        return self.online * self.book * self.user_share / max(1, self.users)


@dataclass
class Use:
    """What one operation (or one unit of it) costs: measured."""

    invocations: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # per function
    dynamodb_calls: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rcu: float = 0.0
    wcu: float = 0.0
    sqs_requests: float = 0.0
    sms: float = 0.0
    bytes_out: float = 0.0
    notifies: float = 0.0

    def scaled(self, k: float) -> Use:
        out = Use()
        for f in fields(Use):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                setattr(out, f.name, defaultdict(float, {n: v * k for n, v in value.items()}))
            else:
                setattr(out, f.name, value * k)
        return out

    def __sub__(self, other: Use) -> Use:
        return self + other.scaled(-1)

    def __add__(self, other: Use) -> Use:
        out = Use()
        for f in fields(Use):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict):
                summed = {n: a.get(n, 0) + b.get(n, 0) for n in a.keys() | b.keys()}
                setattr(out, f.name, defaultdict(float, summed))
            else:
                setattr(out, f.name, a + b)
        return out


# --- measuring ---------------------------------------------------------------------------------


def memory_mb() -> dict[str, int]:
    """Each function's memory, from .chalice/config.json (what both deployment paths use)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    default = int(config.get("lambda_memory_size", 128))
    per = config.get("lambda_functions", {})
    names = ["sip_auth", "sip_registrar", "sip_subscriptions", "sip_publish", "presence_lookup",
             "api_handler", "stream_handler"]  # fmt: skip
    return {n: int(per.get(n, {}).get("lambda_memory_size", default)) for n in names}


class Meter:
    """The cost meter on the functions' clients, switched on for one run at a time."""

    def __init__(self) -> None:
        from chalicelib import aws

        self.clients = [aws.client("dynamodb"), aws.resource("dynamodb").meta.client]
        self.sqs = 0
        aws.client("sqs").meta.events.register("before-call.sqs", self._sqs)

    def _sqs(self, **_: Any) -> None:
        self.sqs += 1

    @contextmanager
    def on(self) -> Iterator[Any]:
        from testkit.dynamo_costs import CostMeter

        meter = CostMeter(self.clients)
        try:
            yield meter
        finally:
            for c in self.clients:
                c.meta.events.unregister("before-call.dynamodb", meter._before)
                c.meta.events.unregister("after-call.dynamodb", meter._after)


class Driver:
    """Calls app.py's functions as the edge does, counting each call and its CPU time."""

    def __init__(self) -> None:
        import app

        self.app = app
        self.use = Use()

    def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        before = _dynamo_calls()
        started = time.process_time()
        answer = getattr(self.app, name)(json.loads(json.dumps(payload)), None)
        self.use.cpu_ms[name] += 1000 * (time.process_time() - started)
        self.use.invocations[name] += 1
        self.use.dynamodb_calls[name] += _dynamo_calls() - before
        assert isinstance(answer, dict) and "error" not in answer, (name, answer)
        return dict(answer)

    def stream(self, logical: str, replayer: Any) -> dict[str, Any]:
        """Deliver what a table's stream holds to its handler (one invocation per batch)."""
        before = _dynamo_calls()
        started = time.process_time()
        delivered = replayer.pump(discover=True)
        self.use.cpu_ms["stream_handler"] += 1000 * (time.process_time() - started)
        self.use.invocations["stream_handler"] += 1 if delivered else 0
        self.use.dynamodb_calls["stream_handler"] += _dynamo_calls() - before
        return {"delivered": delivered, "logical": logical}


_CALLS = {"n": 0}


def _count_call(**_: Any) -> None:
    _CALLS["n"] += 1


def _dynamo_calls() -> int:
    return _CALLS["n"]


def measure(w: Workload) -> tuple[dict[str, Use], dict[str, float]]:
    """Every operation's use, per occurrence, and the bytes each device and user stores."""
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
         "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "STAGE": "local",
         "SIP_DOMAIN": DOMAIN, "POWERTOOLS_LOG_LEVEL": "WARNING",
         "CODE_REQUESTS_PER_IP_HOURLY": "1000000", "DISCOVERY_BUDGET": "1000000"}
    )  # fmt: skip
    for key in [k for k in os.environ if k.startswith(("TABLE_", "AWS_ENDPOINT"))]:
        del os.environ[key]
    from moto import mock_aws

    from chalicelib import aws, settings, tables
    from chalicelib.observability import metrics
    from devstack.moto_local import apply_all

    metrics.add_metric = lambda **_: None  # type: ignore[method-assign]  # no EMF on stdout
    apply_all()
    settings.get.cache_clear()
    aws.reset()
    with mock_aws():
        settings.get.cache_clear()
        aws.reset()
        tables.create_all(aws.client("dynamodb"))
        for c in (aws.client("dynamodb"), aws.resource("dynamodb").meta.client):
            c.meta.events.register("before-call.dynamodb", _count_call)
        return _Operations(w).run()


class _Operations:
    def __init__(self, w: Workload) -> None:
        from chalicelib import accounts
        from chalicelib.aws import client
        from chalicelib.edge_contract import queue_name
        from devstack.streams import StreamReplayer

        self.w = w
        self.users_in_book = max(1, round(w.book * w.user_share))
        self.book = [self.uri(self.number(i)) for i in range(w.book)]
        self.password = "correct horse battery"
        for i in range(self.users_in_book):  # the book's users
            name = f"user{i}"
            accounts.create(name, self.credentials(name), phone_e164=self.number(i))
        accounts.create("alice", self.credentials("alice"), phone_e164="+33600000001")
        client("sqs").create_queue(QueueName=queue_name("edge-1"))
        self.replayer = StreamReplayer()
        self.replayer.pump()
        self.meter = Meter()
        self.driver = Driver()
        self.sub_seq = 0

    @staticmethod
    def number(i: int) -> str:
        return f"+3361{i:07d}"

    def uri(self, e164: str) -> str:
        return f"sip:{e164}@{DOMAIN};user=phone"

    def credentials(self, name: str) -> Any:
        from chalicelib import accounts

        return accounts.credentials_from_password(name, self.password, DOMAIN)

    # --- the operations, as the edge calls the functions -------------------------------------

    def auth(self, user: str, method: str) -> None:
        from chalicelib import digest

        uri, nonce, cnonce = f"sip:{DOMAIN}", "n" * 32, "c0ffee"
        ha1 = digest.ha1("SHA-256", user, DOMAIN, self.password)
        params = {"username": user, "realm": DOMAIN, "nonce": nonce, "uri": uri,
                  "algorithm": "SHA-256", "qop": "auth", "nc": "00000001", "cnonce": cnonce,
                  "response": digest.expected_response("SHA-256", ha1, method, uri, nonce,
                                                       qop="auth", nc="00000001",
                                                       cnonce=cnonce)}  # fmt: skip
        answer = self.driver.call(
            "sip_auth", {"method": method, "realm": DOMAIN, "params": params,
                         "source": "198.51.100.7", "instance": "urn:uuid:dev-1"}
        )  # fmt: skip
        assert answer["result"] == "ok", answer

    def register(self, expires: int = 3600) -> None:
        self.auth("alice", "REGISTER")
        self.driver.call(
            "sip_registrar",
            {"op": "register", "aor": f"alice@{DOMAIN}", "call_id": "reg-1",
             "cseq": 1 + self.sub_seq, "expires_header": expires, "source": "198.51.100.7",
             "edge_id": "edge-1", "contacts": [{"uri": "sip:alice@198.51.100.7:5060",
                                                "expires": None, "instance": "urn:uuid:dev-1",
                                                "params": ""}]},
        )  # fmt: skip
        self.sub_seq += 1

    def lookup(self, **extra: Any) -> dict[str, Any]:
        payload = {
            "subscriber": f"alice@{DOMAIN}",
            "profile": "linphone",
            "version": 0,
            "accept_encoding": ["deflate"],
            "list_uri": f"sip:rls@{DOMAIN}",
            **extra,
        }
        answer = self.driver.call("presence_lookup", payload)
        self.driver.use.bytes_out += sum(
            b["bytes"] + SIP_HEADER_BYTES for b in answer["bodies"]
        )  # fmt: skip
        self.driver.use.notifies += len(answer["bodies"])
        return answer

    def subscribe(self, entries: list[str], device: str) -> str:
        """A new list dialog: digest, lookup of the list in the body, save."""
        from chalicelib.edge_contract import watcher_id

        self.auth("alice", "SUBSCRIBE")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:'
            'ns:resource-lists"><list>' + "".join(f'<entry uri="{e}"/>' for e in entries)
            + "</list></resource-lists>"
        ).encode()  # fmt: skip
        found = self.lookup(
            list_b64=base64.b64encode(zlib.compress(body)).decode(), content_encoding="deflate"
        )
        self.sub_seq += 1
        sub = f"sub{self.sub_seq:028d}"
        self.driver.call(
            "sip_subscriptions",
            {"op": "save", "subscription_id": sub, "expires_at": int(time.time()) + 3600,
             "version": found["version"], "dialog": self.dialog(sub, device),
             "edge_id": "edge-1", "subscriber": f"alice@{DOMAIN}", "entries": found["entries"],
             "watcher": watcher_id(f"alice@{DOMAIN}", device)},
        )  # fmt: skip
        self.driver.use.bytes_out += SIP_HEADER_BYTES  # the 200
        return sub

    def refresh(self, sub: str, entries: list[str]) -> None:
        self.auth("alice", "SUBSCRIBE")
        found = self.lookup(entries=entries, full_state=True)
        self.driver.call(
            "sip_subscriptions",
            {"op": "refresh", "subscription_id": sub, "expires_at": int(time.time()) + 3600,
             "version": found["version"], "dialog": self.dialog(sub, "dev-1")},
        )  # fmt: skip
        self.driver.use.bytes_out += SIP_HEADER_BYTES

    def unsubscribe(self, sub: str) -> None:
        self.auth("alice", "SUBSCRIBE")
        self.driver.call("sip_subscriptions", {"op": "delete", "subscription_id": sub})
        self.driver.use.bytes_out += 2 * SIP_HEADER_BYTES  # the 200 and the final NOTIFY
        self.driver.use.notifies += 1

    def publish(self) -> None:
        self.auth("alice", "PUBLISH")
        pidf = (
            '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:'
            f'alice@{DOMAIN}"><tuple id="t1"><status><basic>open</basic></status><note>at work'
            "</note></tuple></presence>"
        ).encode()
        self.driver.call(
            "sip_publish",
            {"op": "publish", "aor": f"alice@{DOMAIN}", "call_id": f"pub{self.sub_seq}",
             "cseq": 1, "if_match": None, "expires": 3600,
             "body_b64": base64.b64encode(pidf).decode()},
        )  # fmt: skip
        self.sub_seq += 1
        self.driver.use.bytes_out += SIP_HEADER_BYTES

    def look_again(self, sub: str, uri: str, notify: bool) -> None:
        """One watching dialog's share of a change: the lookup of the changed entry, and,
        when it shows the phone something new, the NOTIFY and its recorded version."""
        found = self.lookup(entries=[uri], full_state=False, version=1)
        if not notify:  # nothing new for this watcher: no NOTIFY went out
            self.driver.use.bytes_out -= sum(b["bytes"] + SIP_HEADER_BYTES for b in found["bodies"])
            self.driver.use.notifies -= len(found["bodies"])
            return
        self.driver.call(
            "sip_subscriptions",
            {"op": "refresh", "subscription_id": sub, "expires_at": int(time.time()) + 3600,
             "version": found["version"], "dialog": self.dialog(sub, "dev-1")},
        )  # fmt: skip

    @staticmethod
    def dialog(sub: str, device: str) -> dict[str, Any]:
        from testkit.dynamo_costs import _dialog

        return {**_dialog(sub), "subscription_id": sub, "device": f'"<urn:uuid:{device}>"'}

    # --- measuring each -----------------------------------------------------------------------

    def once(self, work: Callable[[], None], *, metered: bool) -> Use:
        self.driver.use = Use()
        sqs_before = self.meter.sqs
        if metered:
            with self.meter.on() as meter:
                work()
            used = meter.usage
            self.driver.use.rcu, self.driver.use.wcu = used.rcu, used.wcu
        else:
            work()
        self.driver.use.sqs_requests = self.meter.sqs - sqs_before
        return self.driver.use

    def op(self, work_of: Callable[[int], Callable[[], None]]) -> Use:
        """Units and counts from one metered run; CPU time: the median of TIMED_RUNS."""
        metered = self.once(work_of(0), metered=True)
        timed = [self.once(work_of(k + 1), metered=False) for k in range(TIMED_RUNS)]
        for name in metered.cpu_ms:
            metered.cpu_ms[name] = statistics.median(t.cpu_ms[name] for t in timed)
        return metered

    def run(self) -> tuple[dict[str, Use], dict[str, float]]:
        ops: dict[str, Use] = {}
        ops["REGISTER"] = self.op(lambda k: self.register)
        ops["PUBLISH"] = self.op(lambda k: self.publish)

        # A device's first list dialog (every watcher item written), then later ones of the
        # same device (Linphone starts one, whole list, at each start or added contact).
        def first(k: int) -> Callable[[], None]:
            return lambda: None if self.subscribe(self.book, f"first-{k}") else None

        ops["list SUBSCRIBE, a device's first"] = self.op(first)
        subs: list[str] = []

        def again(k: int) -> Callable[[], None]:
            def work() -> None:
                subs.append(self.subscribe(self.book + [self.uri(f"+3369{k:07d}")], "dev-1"))

            return work

        self.subscribe(self.book, "dev-1")
        ops["list SUBSCRIBE, a later dialog"] = self.op(again)
        ops["list SUBSCRIBE refresh"] = self.op(lambda k: lambda: self.refresh(subs[k], self.book))
        ops["un-SUBSCRIBE"] = self.op(lambda k: lambda: self.unsubscribe(subs[k]))
        # A change reaching one watching dialog: the lookup, and for a mutual contact (or a
        # new user, for everyone) the NOTIFY and its recorded version.
        sub = self.subscribe(self.book, "dev-2")
        watched = self.uri(self.number(0))
        ops["a change, per watching dialog (no NOTIFY)"] = self.op(
            lambda k: lambda: self.look_again(sub, watched, notify=False)
        )
        ops["a change, per watching dialog (NOTIFY)"] = self.op(
            lambda k: lambda: self.look_again(sub, watched, notify=True)
        )
        # The stream handlers' share (the watchers index read, the messages to the edges), for
        # changes watched by one dialog and by WATCHERS: a fixed part and a part per dialog.
        from chalicelib import accounts

        handler: dict[int, Use] = {}
        signed: dict[int, Use] = {}
        for watchers in (1, WATCHERS):
            people = [f"w{watchers}x{i}" for i in range(TIMED_RUNS + 1)]
            numbers = [self.number(7_000_000 + 100 * watchers + i) for i in range(TIMED_RUNS + 1)]
            for i, (person, e164) in enumerate(zip(people, numbers, strict=True)):
                accounts.create(person, self.credentials(person), phone_e164=e164)
                for d in range(watchers):
                    self.subscribe([self.uri(e164), self.uri(self.new_number(i, d, watchers))],
                                   f"w-{watchers}-{i}-{d}")  # fmt: skip
            self.replayer.pump()
            handler[watchers] = self.op(self.status_changes(people))
            for person in people:  # gone, so that their numbers can sign up
                accounts.delete(f"{person}@{DOMAIN}")
            self.replayer.pump()
            signed[watchers] = self.op(self.signups(numbers))
        per_dialog = (handler[WATCHERS] - handler[1]).scaled(1 / (WATCHERS - 1))
        ops["a status change: stream handler"] = handler[1] - per_dialog
        ops["a sign-up: REST and stream handler"] = signed[1] - per_dialog
        # Each message an edge reads: a share of a ReceiveMessage and of a DeleteMessageBatch.
        ops["a change: stream handler, per watching dialog"] = per_dialog + Use(sqs_requests=0.2)
        return ops, self.storage()

    def new_number(self, i: int, d: int, w: int) -> str:
        """A number no one uses, other than the watched one, in each watcher's small list."""
        return self.number(8_000_000 + 10_000 * w + 100 * i + d)

    def storage(self) -> dict[str, float]:
        """Bytes one device's list dialog keeps (its items, its list, its pointer, one watcher
        item per entry of its book) and one user's account (account, number, budget)."""
        from chalicelib import tables
        from chalicelib.aws import client
        from chalicelib.edge_contract import watcher_id
        from testkit.dynamo_costs import item_size

        def of(spec: Any, **condition: str) -> float:
            scanned = client("dynamodb").scan(TableName=spec.name())["Items"]
            return sum(
                item_size(i) + 100  # DynamoDB counts ~100 bytes of overhead per item
                for i in scanned
                if all(str(next(iter(i.get(k, {"S": ""}).values()))).startswith(v)
                       for k, v in condition.items())
            )  # fmt: skip

        watcher = watcher_id(f"alice@{DOMAIN}", "first-0")
        device = of(tables.WATCHERS, watcher=watcher) + 3 * 1200  # + dialog, list, pointer
        user = (
            sum(
                of(spec, **{spec.hash_key: key})
                for spec, key in (
                    (tables.ACCOUNTS, f"alice@{DOMAIN}"),
                    (tables.DISCOVERY_BUDGETS, f"alice@{DOMAIN}"),
                )
            )
            + 150
        )  # its PhoneIndex item
        return {"per_device": device, "per_user": user}

    def status_change(self, person: str) -> None:
        """A user comes online (a new binding): its stream record, through its handler."""
        from chalicelib.live import registrar

        registrar.register(
            f"{person}@{DOMAIN}",
            [registrar.ContactRequest(f"sip:{person}@198.51.100.9", None, f"urn:uuid:{person}")],
            call_id=f"on-{person}", cseq=1, expires_header=3600, source="198.51.100.9",
            edge_id="edge-9", user_agent="",
        )  # fmt: skip
        self.driver.stream("Registrations", self.replayer)

    def status_changes(self, people: list[str]) -> Callable[[int], Callable[[], None]]:
        return lambda k: lambda: self.status_change(people[k])

    def signups(self, numbers: list[str]) -> Callable[[int], Callable[[], None]]:
        return lambda k: self.signup(k, numbers)

    def signup(self, k: int, numbers: list[str]) -> Callable[[], None]:
        """The owner of a number in the lists signs up: REST request and confirm, the SMS, and
        the PhoneIndex record through its handler."""

        def work() -> None:
            from bench.live import sms_code
            from chalicelib.accounts import signup

            e164 = numbers[k]
            before = _dynamo_calls()
            started = time.process_time()
            signup.request_code(e164, source_ip="198.51.100.20")
            code = sms_code(e164)
            signup.confirm(e164, code, password=self.password)
            self.driver.use.cpu_ms["api_handler"] += 1000 * (time.process_time() - started)
            self.driver.use.invocations["api_handler"] += 2
            self.driver.use.dynamodb_calls["api_handler"] += _dynamo_calls() - before
            self.driver.use.sms += 1
            self.driver.stream("signup", self.replayer)

        return work
