"""The moto patches devstack, the benchmarks and the tests share: Query reads one partition,
moto keeps no copy of every item it ever made.

If moto itself starts reading one partition, the first test fails (drop the patch); if an
upgrade changes Query so that the patch answers differently or reads more, the others fail."""

from __future__ import annotations

import datetime
import gc
from typing import Any

import pytest
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

from chalicelib import tables
from devstack import moto_local


@pytest.fixture
def watchers(aws) -> Any:
    table = tables.table(tables.WATCHERS)
    with table.batch_writer() as batch:
        for key in range(20):
            for watcher in range(10):
                batch.put_item(
                    Item={"watched": f"p#{key}", "watcher": f"w{watcher:02d}", "uris": ["x"]}
                )
    return table


@pytest.fixture
def items_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items each call of moto's `all_items` handed to a Query."""
    seen: list[int] = []
    current = Table.all_items

    def counting(self: Table) -> list[Any]:
        items = current(self)
        seen.append(len(items))
        return items

    monkeypatch.setattr(Table, "all_items", counting)
    return seen


QUERIES: list[dict[str, Any]] = [
    {"KeyConditionExpression": "watched = :k", "ExpressionAttributeValues": {":k": "p#3"}},
    {"KeyConditionExpression": "watched = :k AND watcher > :w",
     "ExpressionAttributeValues": {":k": "p#3", ":w": "w04"}, "ScanIndexForward": False},
    {"KeyConditionExpression": "watched = :k AND begins_with(watcher, :w)",
     "ExpressionAttributeValues": {":k": "p#7", ":w": "w0"}, "Limit": 4},
    {"KeyConditionExpression": "watched = :k", "ExpressionAttributeValues": {":k": "nobody"}},
]  # fmt: skip


def _pages(table: Any, query: dict[str, Any]) -> list[list[dict[str, Any]]]:
    pages, kwargs = [], dict(query)
    while True:
        page = table.query(**kwargs)
        pages.append(page["Items"])
        if "LastEvaluatedKey" not in page:
            return pages
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_moto_alone_still_reads_the_whole_table(watchers, items_read, monkeypatch):
    monkeypatch.setattr(Table, "query", moto_local.original("query"))
    watchers.query(**QUERIES[0])
    assert max(items_read) == 200, (
        "moto's Query no longer reads the whole table: drop devstack.moto_local.keyed_queries"
    )


def test_the_patch_reads_one_partition_and_answers_as_moto_does(watchers, items_read, monkeypatch):
    patched = [_pages(watchers, q) for q in QUERIES]
    assert items_read and max(items_read) <= 10
    assert patched[0][0][0]["watcher"] == "w00" and len(patched[2]) == 3  # pages of 4, 4, 2
    monkeypatch.setattr(Table, "query", moto_local.original("query"))
    monkeypatch.setattr(Table, "all_items", moto_local.original("all_items"))
    assert [_pages(watchers, q) for q in QUERIES] == patched


def test_index_queries_are_left_to_moto(aws):
    from chalicelib.live import subscriptions

    subscriptions.save(
        "sub-1", edge_id="edge-a", subscriber="alice@example.org", expires_at=2_000_000_000,
        version=0, dialog={}, entries=[], watched=[],
    )  # fmt: skip
    assert [s["subscription_id"] for s in subscriptions.load_edge("edge-a")] == ["sub-1"]


# --- light_transactions -------------------------------------------------------------------


def _tables_copied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables moto deep-copies while a transaction runs."""
    import copy

    copied: list[str] = []
    real = copy.deepcopy

    def counting(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            copied.append(value.name)
        return real(value, memo)

    monkeypatch.setattr(copy, "deepcopy", counting)
    return copied


def _claim(name: str, phone: str, *, phone_free: bool = True) -> list[dict[str, Any]]:
    """An account and its number, as accounts.create writes them (two conditional Puts)."""
    return [
        {"Put": {"TableName": tables.ACCOUNTS.name(), "Item": {"aor": {"S": name}},
                 "ConditionExpression": "attribute_not_exists(aor)"}},
        {"Put": {"TableName": tables.PHONE_INDEX.name(),
                 "Item": {"phone_hash": {"S": phone}, "aor": {"S": name}},
                 "ConditionExpression": "attribute_not_exists(phone_hash)"
                 if phone_free else "attribute_exists(phone_hash)"}},
    ]  # fmt: skip


def test_moto_alone_still_copies_whole_tables_for_a_transaction(aws, monkeypatch):
    from moto.dynamodb.models import DynamoDBBackend

    from chalicelib.aws import client

    monkeypatch.setattr(
        DynamoDBBackend, "transact_write_items", moto_local.original("transact_write_items")
    )
    copied = _tables_copied(monkeypatch)
    client("dynamodb").transact_write_items(TransactItems=_claim("a@x", "p1"))
    assert copied, "moto no longer copies whole tables: drop devstack.moto_local.light_transactions"


def test_a_light_transaction_copies_no_table_and_cancels_like_moto(aws, monkeypatch):
    from botocore.exceptions import ClientError

    from chalicelib.aws import client

    ddb = client("dynamodb")
    copied = _tables_copied(monkeypatch)
    ddb.transact_write_items(TransactItems=_claim("a@x", "p1"))
    assert copied == []
    accounts = tables.table(tables.ACCOUNTS)
    index = tables.table(tables.PHONE_INDEX)
    before = (accounts.scan()["Items"], index.scan()["Items"])
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    shard = (
        dynamodb_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"]
        .tables[tables.ACCOUNTS.name()]
        .stream_shard
    )
    records = len(shard.items)
    # The first Put would succeed; the second's condition fails: nothing of it may stay.
    with pytest.raises(ClientError) as cancelled:
        ddb.transact_write_items(TransactItems=_claim("b@x", "p2", phone_free=False))
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    assert (accounts.scan()["Items"], index.scan()["Items"]) == before
    assert len(shard.items) == records  # and no stream record of the cancelled Put
    # An item that existed is put back as it was, not dropped.
    with pytest.raises(ClientError):
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": tables.ACCOUNTS.name(), "Item": {"aor": {"S": "a@x"},
                                                                     "changed": {"S": "yes"}}}},
                _claim("c@x", "p1")[1],  # p1 is taken
            ]
        )  # fmt: skip
    assert (accounts.scan()["Items"], index.scan()["Items"]) == before


# --- cached_dispatch ----------------------------------------------------------------------


def test_moto_alone_lists_a_class_s_methods_on_every_request(monkeypatch):
    import inspect

    from moto.dynamodb.responses import DynamoHandler

    listing = moto_local.original("method_names_from_class")
    seen: list[object] = []
    real = inspect.getmembers
    monkeypatch.setattr(inspect, "getmembers", lambda *a, **k: seen.append(a[0]) or real(*a, **k))
    listing(DynamoHandler)
    listing(DynamoHandler)
    assert len(seen) == 2, (
        "moto no longer lists methods per request: drop devstack.moto_local.cached_dispatch"
    )


def test_cached_dispatch_serves_every_request_and_answers_as_moto_does(aws):
    from moto.core import responses
    from moto.dynamodb.responses import DynamoHandler

    cached = responses.method_names_from_class
    assert cached(DynamoHandler) == moto_local.original("method_names_from_class")(DynamoHandler)
    hits = cached.cache_info().hits
    moto_local.direct(False)  # the full path, as moto's server on MOTO_PORT serves other tools
    tables.table(tables.WATCHERS).get_item(Key={"watched": "p#1", "watcher": "w1"})
    assert cached.cache_info().hits > hits, "moto's dispatch no longer goes through the patch"


# --- bounded_memory: moto keeps nothing AWS would not -------------------------------------------


def _projected_reads(n: int) -> None:
    table = tables.table(tables.ACCOUNTS)
    table.put_item(Item={"aor": "a@example.org", "phone": "+33611111111", "disabled": False})
    for _ in range(n):
        table.get_item(Key={"aor": "a@example.org"}, ProjectionExpression="aor, disabled")


def _items_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Item))


def test_moto_alone_keeps_every_item_it_made(aws, monkeypatch):
    monkeypatch.setattr(Item, "instances_tracked", [])
    _projected_reads(50)
    assert len(Item.instances_tracked) >= 50, (  # type: ignore[attr-defined]
        "moto no longer lists every Item: drop devstack.moto_local.bounded_memory's untracking"
    )


def test_the_patch_leaves_no_item_behind_a_read(aws):
    _projected_reads(1)
    before = _items_alive()
    _projected_reads(300)
    assert _items_alive() - before < 10  # was +300: one projected copy kept per read


def test_stream_shard_iterators_are_bounded(aws, monkeypatch):
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    from chalicelib.aws import client

    monkeypatch.setattr(moto_local._RecentIterators, "limit", 20)
    arn = client("dynamodb").describe_table(TableName=tables.ACCOUNTS.name())["Table"][
        "LatestStreamArn"
    ]
    streams = client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    for _ in range(100):  # as the replayer polls: each answer names a new iterator
        iterator = streams.get_records(ShardIterator=iterator)["NextShardIterator"]
    backend = dynamodbstreams_backends[next(iter(dynamodbstreams_backends))]["eu-west-1"]
    assert len(backend.shard_iterators) <= 20


# --- direct_dynamodb: the functions' item calls answered in a lean _make_api_call --------------

_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("put_item", {"TableName": "T", "Item": {"k": {"S": "a"}, "n": {"N": "1"},
                  "b": {"B": b"\x00\xffbin"}, "ss": {"SS": ["x", "y"]}}}),
    ("put_item", {"TableName": "T", "Item": {"k": {"S": "a"}},
                  "ConditionExpression": "attribute_not_exists(k)"}),
    ("put_item", {"TableName": "T", "Item": {"k": {"S": ""}}}),
    ("get_item", {"TableName": "T", "Key": {"k": {"S": "a"}}, "ConsistentRead": True}),
    ("get_item", {"TableName": "T", "Key": {"k": {"S": "a"}}, "ProjectionExpression": "b, #n",
                  "ExpressionAttributeNames": {"#n": "n"}}),
    ("get_item", {"TableName": "T", "Key": {"k": {"S": "missing"}}}),
    ("update_item", {"TableName": "T", "Key": {"k": {"S": "a"}},
                     "UpdateExpression": "SET n = n + :one, m = :b",
                     "ExpressionAttributeValues": {":one": {"N": "1"}, ":b": {"B": b"\x01"}},
                     "ReturnValues": "ALL_OLD"}),
    ("update_item", {"TableName": "T", "Key": {"k": {"S": "gone"}},
                     "UpdateExpression": "SET n = :v",
                     "ConditionExpression": "attribute_exists(k)",
                     "ExpressionAttributeValues": {":v": {"N": "2"}}}),
    ("batch_write_item", {"RequestItems": {"T": [
        {"PutRequest": {"Item": {"k": {"S": f"i{i}"}, "p": {"S": "P"}, "n": {"N": str(i)}}}}
        for i in range(5)]}}),
    ("batch_get_item", {"RequestItems": {"T": {"Keys": [{"k": {"S": "i1"}}, {"k": {"S": "a"}},
                                                         {"k": {"S": "none"}}]}}}),
    ("query", {"TableName": "T", "IndexName": "by_p", "KeyConditionExpression": "p = :p",
               "ExpressionAttributeValues": {":p": {"S": "P"}}, "Limit": 2}),
    ("query", {"TableName": "T", "KeyConditionExpression": "k = :k",
               "ExpressionAttributeValues": {":k": {"S": "a"}}}),
    ("transact_write_items", {"TransactItems": [
        {"Put": {"TableName": "T", "Item": {"k": {"S": "t1"}}}},
        {"Put": {"TableName": "T", "Item": {"k": {"S": "a"}},
                 "ConditionExpression": "attribute_not_exists(k)"}}]}),
    ("transact_write_items", {"TransactItems": [
        {"Put": {"TableName": "T", "Item": {"k": {"S": "t1"}}}},
        {"Delete": {"TableName": "T", "Key": {"k": {"S": "i2"}}}}]}),
    ("transact_get_items",
     {"TransactItems": [{"Get": {"TableName": "T", "Key": {"k": {"S": "t1"}}}}]}),
    ("delete_item", {"TableName": "T", "Key": {"k": {"S": "a"}}, "ReturnValues": "ALL_OLD"}),
    ("get_item", {"TableName": "Nope", "Key": {"k": {"S": "a"}}}),
]  # fmt: skip


def _run_calls() -> list[Any]:
    import boto3
    from botocore.exceptions import ClientError

    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(
        TableName="T", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"},
                              {"AttributeName": "p", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by_p", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "p", "KeyType": "HASH"}]}],
    )  # fmt: skip
    answers: list[Any] = []
    for name, kwargs in _CALLS:
        try:
            answer = dict(getattr(ddb, name)(**kwargs))
        except ClientError as error:
            answer = {"error": dict(error.response)}
        meta = (answer.get("error") or answer).pop("ResponseMetadata")
        answers.append((name, answer, meta["HTTPStatusCode"]))
    return answers


def test_the_direct_route_answers_as_moto_full_path_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every operation the route takes, successes and errors, binary values included: the same
    parsed answer (and HTTP status) as the mock's full path; and the full path is not taken."""
    from moto import mock_aws
    from moto.core.models import botocore_stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    moto_local.apply_all()
    full_path: list[str] = []
    stub = botocore_stubber.process_request
    monkeypatch.setattr(
        botocore_stubber, "process_request", lambda r: full_path.append(r.url) or stub(r)
    )
    answers = {}
    for direct in (False, True):
        moto_local.direct(direct)
        with mock_aws():
            full_path.clear()
            answers[direct] = _run_calls()
            called = [u for u in full_path if "dynamodb" in u]
        assert len(called) == (len(_CALLS) + 1 if not direct else 1)  # + CreateTable
    moto_local.direct(True)
    for slow, fast in zip(answers[False], answers[True], strict=True):
        assert slow == fast
    statuses = {status for _, _, status in answers[True]}
    assert statuses == {200, 400}, "the script covers successes and errors"
    assert sum(1 for _, a, _ in answers[True] if "error" in a) >= 5


def _read_stream() -> list[Any]:
    """A streamed table's records as the stream replayer reads them: an iterator, then every
    record, then the empty read at the end (the replayer's usual answer)."""
    import boto3

    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    arn = ddb.create_table(
        TableName="S", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]  # fmt: skip
    ddb.put_item(TableName="S", Item={"k": {"S": "a"}, "b": {"B": b"\x00\xff"}})
    ddb.put_item(TableName="S", Item={"k": {"S": "a"}, "n": {"N": "2"}})
    streams = boto3.client("dynamodbstreams", region_name="eu-west-1")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    answers: list[Any] = []
    for _ in range(2):
        answer = dict(streams.get_records(ShardIterator=iterator))
        iterator = answer.pop("NextShardIterator")
        answer.pop("ResponseMetadata")
        for record in answer["Records"]:
            record.pop("eventID")  # random per record
            when = record["dynamodb"].pop("ApproximateCreationDateTime")  # differs per run
            assert isinstance(when, datetime.datetime)  # parsed, as botocore parses it
            record["dynamodb"].pop("SizeBytes")  # moto counts that time's digits in it
        answers.append(answer)
    return answers


def test_the_direct_route_reads_streams_as_moto_full_path_does(monkeypatch) -> None:
    """The stream replayer's reads (GetShardIterator, GetRecords) taken directly give the same
    records, binary images and times included, as the mock's full path."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    moto_local.apply_all()
    answers = {}
    for direct in (False, True):
        moto_local.direct(direct)
        with mock_aws():
            answers[direct] = _read_stream()
    moto_local.direct(True)
    assert answers[True] == answers[False]
    assert [len(a["Records"]) for a in answers[True]] == [2, 0]


def test_the_direct_route_keeps_the_deadline(aws) -> None:
    from chalicelib.resilience import DeadlineExceeded, deadline

    with deadline(0.0), pytest.raises(DeadlineExceeded):
        tables.table(tables.WATCHERS).get_item(Key={"watched": "p#1", "watcher": "w1"})


# --- cached_update_expressions: each UpdateExpression text parsed once ------------------------


def _tree_shape(node: Any) -> Any:
    """A parsed expression as plain data: each node's type, fields and children."""
    if isinstance(node, list | tuple):
        return [_tree_shape(n) for n in node]
    if not hasattr(node, "children"):
        return repr(node)
    fields = {k: repr(v) for k, v in vars(node).items() if k not in ("children", "parent")}
    return (type(node).__name__, fields, _tree_shape(node.children or []))


def test_update_expressions_are_parsed_once_and_never_changed_by_an_update(aws) -> None:
    """The cache is only safe while moto validates a copy of the parsed tree: if an upgrade
    makes its validator work on the tree itself, the second update below changes it."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    table = tables.table(tables.SUBSCRIPTIONS)
    text = "SET expires_at = :e, version = :v"
    tree = UpdateExpressionParser.make(text)
    before = _tree_shape(tree)
    misses = UpdateExpressionParser.make.cache_info().misses  # type: ignore[attr-defined]
    for version in (1, 2):
        table.update_item(
            Key={"subscription_id": "s1"},
            UpdateExpression=text,
            ExpressionAttributeValues={":e": 10 * version, ":v": version},
        )
    assert UpdateExpressionParser.make(text) is tree
    assert UpdateExpressionParser.make.cache_info().misses == misses  # type: ignore[attr-defined]
    assert _tree_shape(tree) == before, "moto's validator changed the cached tree: drop the cache"
    item = table.get_item(Key={"subscription_id": "s1"})["Item"]
    assert (item["expires_at"], item["version"]) == (20, 2)
    with pytest.raises(Exception, match="Invalid UpdateExpression|Syntax"):
        table.update_item(Key={"subscription_id": "s1"}, UpdateExpression="SET = oops")


# --- fast_queue_clock: SQS reads time.time() ---------------------------------------------------


def test_sqs_reads_the_same_clock_and_a_message_comes_back_after_its_visibility(aws) -> None:
    import time

    from moto.sqs import models

    from chalicelib.aws import client

    assert abs(models.unix_time() - moto_local.original("sqs_unix_time")()) < 0.5
    assert abs(models.unix_time_millis() - moto_local.original("sqs_unix_time_millis")()) < 500
    sqs = client("sqs")
    url = sqs.create_queue(QueueName="clock", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    assert len(sqs.receive_message(QueueUrl=url).get("Messages", [])) == 1
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []  # in flight
    time.sleep(1.2)  # real time: the visibility timeout lapses on the clock moto now reads
    assert len(sqs.receive_message(QueueUrl=url).get("Messages", [])) == 1  # visible again


# --- light_queues: SQS sends, receives and deletes without walking the queue ------------------


def test_a_queue_of_thousands_still_counts_receives_and_deletes_as_moto_does(aws) -> None:
    from chalicelib.aws import client

    sqs = client("sqs")
    url = sqs.create_queue(QueueName="light", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    for start in range(0, 200, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 10
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "190"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "10"
    done = sqs.delete_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                               for i, m in enumerate(got)]
    )  # fmt: skip
    assert len(done["Successful"]) == 10 and not done.get("Failed")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])  # again: no error
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    visible, in_flight = "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
    assert (counts[visible], counts[in_flight]) == ("190", "0")
