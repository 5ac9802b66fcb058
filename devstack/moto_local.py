"""moto as the local stack's AWS: in-process for our own code, and on a port for outside tools
(the admin tool, curl, SIPp seeding, the edge's SQS queue), one backend behind both; plus
patches that keep moto as fast as DynamoDB and SQS are as tables and queues grow, that trim
the work per request, and that keep its memory flat over a long run.

Without them, moto answers every base-table Query by sorting the whole table (each list
subscription adds 100 watcher items), and backs up every table a TransactWriteItems touches by
deep-copying it whole, so sign-ups and imports slow down with the square of the accounts.
`keyed_queries` makes a Query read its partition; `light_transactions` backs up only the items
a transaction names, and puts them (and the stream) back when it is cancelled;
`cached_dispatch` lists a response class's methods once instead of per request;
`cached_update_expressions` parses each UpdateExpression text once; `direct_dynamodb` answers
our clients' DynamoDB (and DynamoDB Streams) calls from moto's handlers in a lean
`_make_api_call`, without the mock's signed HTTP round trip (together they more than halved
`make run`'s CPU per presence cycle); `fast_queue_clock` gives SQS a cheap clock and
`light_queues` stops it walking the whole queue per message sent, received or deleted (a
queue of thousands made each of them cost milliseconds);
`bounded_memory` stops moto keeping every item it ever made (its dashboard's instance lists)
and every stream iterator, which grew a long `make run` by ~13 KB a cycle. devstack, the
benchmarks and the tests all apply them (`apply_all`); tests/test_moto_local.py fails when a
moto upgrade makes one unnecessary or breaks it.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading
from collections.abc import Callable
from typing import Any

_local = threading.local()
_originals: dict[str, Callable[..., Any]] = {}


def keyed_queries() -> None:
    """Make moto's base-table Query read the one partition asked for (idempotent)."""
    from moto.dynamodb.models.table import Table

    if "query" in _originals:
        return
    all_items, query = Table.all_items, Table.query
    _originals.update(all_items=all_items, query=query)
    signature = inspect.signature(query)

    def partition_items(self: Table) -> list[Any]:
        key = getattr(_local, "partition", None)
        if key is None:
            return all_items(self)
        found = self.items.get(key)
        if found is None:
            return []
        if not self.range_key_attr:
            return [found]
        return sorted(found.values(), key=lambda item: item.range_key)

    def keyed_query(self: Table, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs).arguments
        if bound.get("index_name") or bound.get("hash_key") is None:
            return query(self, *args, **kwargs)
        _local.partition = bound["hash_key"]
        try:
            return query(self, *args, **kwargs)
        finally:
            _local.partition = None

    Table.all_items = partition_items  # type: ignore[method-assign]
    Table.query = keyed_query  # type: ignore[method-assign]


def light_transactions() -> None:
    """Make moto's TransactWriteItems back up the items it names, not whole tables (idempotent)."""
    import copy as stdlib_copy

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    backend = models.DynamoDBBackend
    if "transact_write_items" in _originals:
        return
    transact = backend.transact_write_items
    _originals["transact_write_items"] = transact

    class _TablesNotCopied:
        """moto's `copy` while a light transaction runs: tables pass through uncopied."""

        def __getattr__(self, name: str) -> Any:
            return getattr(stdlib_copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            if getattr(_local, "light", False) and isinstance(value, Table):
                return value
            return stdlib_copy.deepcopy(value, memo)

    def key_of(table: Table, op: dict[str, Any]) -> tuple[Any, Any] | None:
        key = op.get("Key") or op.get("Item")
        if not key or table.hash_key_attr not in key:
            return None
        range_value = None
        if table.range_key_attr:
            if table.range_key_attr not in key:
                return None
            range_value = DynamoType(key[table.range_key_attr])
        return DynamoType(key[table.hash_key_attr]), range_value

    def stored(table: Table, hash_value: Any, range_value: Any) -> Any:
        if range_value is None:
            return table.items.get(hash_value)
        return table.items.get(hash_value, {}).get(range_value)

    def put_back(table: Table, hash_value: Any, range_value: Any, item: Any) -> None:
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
            return
        partition = table.items.setdefault(hash_value, {})
        if item is None:
            partition.pop(range_value, None)
            if not partition:
                table.items.pop(hash_value, None)
        else:
            partition[range_value] = item

    def light_transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups: list[tuple[Table, Any, Any, Any]] = []
        streams: dict[int, tuple[Any, int]] = {}
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            found = key_of(table, op) if table is not None else None
            if table is None or found is None:
                continue
            item = stored(table, *found)
            backups.append((table, *found, stdlib_copy.deepcopy(item)))
            if table.stream_shard is not None:
                streams[id(table)] = (table.stream_shard, len(table.stream_shard.items))
        _local.light = True
        try:
            return transact(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(backups):
                put_back(table, hash_value, range_value, item)
            for shard, length in streams.values():
                del shard.items[length:]  # a cancelled transaction leaves no stream record
            raise
        finally:
            _local.light = False

    models.copy = _TablesNotCopied()  # type: ignore[assignment]
    backend.transact_write_items = light_transact  # type: ignore[method-assign]


def cached_dispatch() -> None:
    """Make moto look up a response class's method names once, not on every request
    (idempotent): it lists them with `inspect.getmembers`, ~5% of an in-process call's CPU."""
    from moto.core import responses

    if "method_names_from_class" in _originals:
        return
    listing = responses.method_names_from_class
    _originals["method_names_from_class"] = listing
    responses.method_names_from_class = functools.cache(listing)  # classes do not change


def cached_update_expressions() -> None:
    """Parse each UpdateExpression text once (idempotent): moto parses it twice per UpdateItem
    (its handler, then its backend), ~20% of the call. Safe because moto's validator works on
    a deep copy of the tree it is given, never on the parsed tree itself (a test checks)."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    if "update_expression_make" in _originals:
        return
    make = UpdateExpressionParser.make
    _originals["update_expression_make"] = make
    cached = functools.lru_cache(maxsize=512)(make)  # our code sends a few dozen texts
    UpdateExpressionParser.make = cached


class _Untracked(list[Any]):
    """A model's `instances_tracked` that keeps nothing: moto lists every instance of a model
    for its dashboard (`/moto-api/data.json`), so every item ever written, projected or read
    from a stream stays in memory for the life of the process."""

    def append(self, _instance: Any) -> None:
        pass


class _RecentIterators(dict[str, Any]):
    """The stream backend's shard iterators, the newest `limit` only: AWS ends an iterator
    after 15 minutes, moto keeps every one (the replayer makes five a second)."""

    limit = 10_000

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > self.limit:
            del self[next(iter(self))]


def bounded_memory() -> None:
    """Make moto forget what AWS would (idempotent): no dashboard list of every item, stream
    record, iterator and queue message; shard iterators bounded as AWS expires them."""
    from moto.core import models as core_models
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import StreamRecord
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator
    from moto.sqs.models import Message

    if "streams_init" in _originals:
        return

    def untrack() -> None:
        for model in (Item, StreamRecord, ShardIterator, Message):
            setattr(model, "instances_tracked", _Untracked())  # noqa: B010 (moto's own attribute)

    reset = core_models.reset_model_data
    _originals["reset_model_data"] = reset

    def reset_untracked() -> None:  # a mock's stop resets the lists to plain ones
        reset()
        untrack()

    untrack()
    core_models.reset_model_data = reset_untracked
    init = DynamoDBStreamsBackend.__init__
    _originals["streams_init"] = init

    def bounded_init(self: DynamoDBStreamsBackend, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.shard_iterators = _RecentIterators()

    DynamoDBStreamsBackend.__init__ = bounded_init  # type: ignore[method-assign]


def fast_queue_clock() -> None:
    """Give moto's SQS the clock from `time.time()` (idempotent). It reads the time through
    datetime arithmetic (now, the epoch, their difference) for every message it looks at,
    several times per send and per receive (visibility, retention, and the queue's message
    counts, which it computes for every message sent or received): ~70% of this process's
    CPU while a popular number's sign-up sent thousands of messages. Same epoch seconds."""
    import time

    from moto.sqs import models

    if "sqs_unix_time" in _originals:
        return
    unix_time, unix_time_millis = models.unix_time, models.unix_time_millis
    _originals.update(sqs_unix_time=unix_time, sqs_unix_time_millis=unix_time_millis)

    def fast_unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(unix_time(dt))

    def fast_unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(unix_time_millis(dt))

    models.unix_time = fast_unix_time
    models.unix_time_millis = fast_unix_time_millis


def light_queues() -> None:
    """Keep moto's SQS from walking a whole queue per message (idempotent). It computes the
    queue's message counts (every message's visibility) for each message sent and, through
    its retention check, three times for each message received; and a delete scans the queue
    twice, building a list per message. With thousands of messages in flight (a popular
    number's sign-up reaching thousands of dialogs) each send, receive and delete cost
    milliseconds. Here sends and receives skip the counts (no attribute they read depends on
    them: content-based deduplication, the retention period), and a delete finds its message
    in one pass. GetQueueAttributes still counts."""
    from moto.sqs import models
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if "sqs_send_message" in _originals:
        return
    backend, queue = models.SQSBackend, models.Queue
    counts = ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
              "approximate_number_of_messages_not_visible")  # fmt: skip
    for name in counts:
        counted = getattr(queue, name)
        _originals[f"sqs_{name}"] = counted.fget

        def skipped(self: Any, _count: Any = counted.fget) -> int:
            return 0 if getattr(_local, "no_counts", False) else int(_count(self))

        setattr(queue, name, property(skipped))

    def without_counts(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def run(*args: Any, **kwargs: Any) -> Any:
            before = getattr(_local, "no_counts", False)
            _local.no_counts = True
            try:
                return method(*args, **kwargs)
            finally:
                _local.no_counts = before

        return run

    for name in ("send_message", "receive_message"):
        _originals[f"sqs_{name}"] = getattr(backend, name)
        setattr(backend, name, without_counts(getattr(backend, name)))
    _originals["sqs_delete_message"] = queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # deleted already: moto answers it gracefully
        kept: list[Any] = []
        gone: list[Any] = []
        for message in self._messages:
            had = (
                message.receipt_handle == receipt_handle
                or receipt_handle in message._old_receipt_handles
            )
            (gone if had else kept).append(message)
        if not gone:
            raise ReceiptHandleIsInvalid()
        for message in gone:
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)
        self._messages = kept

    queue.delete_message = delete_message  # type: ignore[method-assign]


#: Operations answered by `direct_dynamodb`, per service: the functions' item calls and the
#: stream replayer's reads (others take botocore's whole path: table creation, anything rare).
DIRECT_OPERATIONS: dict[str, frozenset[str]] = {
    "dynamodb": frozenset(
        {
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "BatchGetItem",
            "BatchWriteItem",
            "TransactWriteItems",
            "TransactGetItems",
        }
    ),  # fmt: skip
    "dynamodbstreams": frozenset({"GetRecords", "GetShardIterator"}),
}
_direct = {"enabled": True}


def direct_dynamodb() -> None:
    """Answer our clients' DynamoDB and DynamoDB Streams calls from moto's backend, in a lean
    `_make_api_call` (idempotent), instead of the full round trip of the in-process mock.

    The mock signs each request, builds an HTTP request, has moto rebuild it as a werkzeug
    request, parse it again through the service model and serialize the answer through it:
    ~60% of a presence cycle's CPU in `make run`, for nothing a local stack needs; and before
    the request is built botocore resolves the endpoint's rule set and writes its User-Agent
    (~15% of what was left). Here a call runs botocore's parameter events (boto3's
    Table and condition transformations), its validation and its serializer, so that moto
    gets the wire format; moto's own handler method (`DynamoHandler`, `DynamoDBStreamsHandler`)
    answers; botocore's parser reads the answer and the `after-call` event runs (boto3's
    output transformation), errors raised as botocore raises them. So the caller gets what the
    full path gives (tests/test_moto_local.py compares both, operation by operation). Only
    while moto's mock is on and the client points at AWS's own endpoint (a client given an
    endpoint URL, such as the chaos bench's fault proxy, keeps HTTP). The request's deadline
    is checked as the `before-send` hook does. `direct(False)` turns it off (the
    fault-injection tests answer at `before-send`, with botocore's retries)."""
    from botocore.client import BaseClient

    if "make_api_call" in _originals:
        return
    full = BaseClient._make_api_call
    _originals["make_api_call"] = full

    def make_api_call(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        if not _takes_direct(self, operation_name):
            return full(self, operation_name, api_params)
        return _call_directly(self, operation_name, api_params)

    BaseClient._make_api_call = make_api_call


def direct(enabled: bool) -> None:
    """Turn `direct_dynamodb` on or off for every client (a switch, not a patch)."""
    _direct["enabled"] = enabled


@functools.cache
def _json_parser() -> Any:
    from botocore.parsers import create_parser

    return create_parser("json")


def _takes_direct(client: Any, operation_name: str) -> bool:
    from moto.core.models import botocore_stubber

    meta = client.meta
    operations = DIRECT_OPERATIONS.get(meta.service_model.service_name)
    if operations is None or operation_name not in operations:
        return False
    url = str(meta.endpoint_url)
    return (
        _direct["enabled"]
        and botocore_stubber.enabled
        and url.endswith(".amazonaws.com")
        and url.startswith(("https://dynamodb.", "https://streams.dynamodb."))
    )


def _call_directly(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
    """botocore's `_make_api_call` with moto in place of the endpoint, and without what only
    a request on the wire needs (endpoint rules, User-Agent, checksums, signing)."""
    from chalicelib.resilience import check_deadline

    meta = client.meta
    operation = meta.service_model.operation_model(operation_name)
    context = {
        "client_region": meta.region_name,
        "client_config": meta.config,
        "has_streaming_input": operation.has_streaming_input,
        "auth_type": operation.resolved_auth_type,
    }
    api_params = client._emit_api_params(
        api_params=api_params, operation_model=operation, context=context
    )
    request = client._serializer.serialize_to_request(api_params, operation)  # validates
    service_id = meta.service_model.service_id.hyphenize()
    # As botocore: a `before-call` handler may answer instead (the tests' cost meter counts
    # every call there).
    _, answered = meta.events.emit_until_response(
        f"before-call.{service_id}.{operation_name}",
        model=operation,
        params=request,
        request_signer=client._request_signer,
        context=context,
    )
    if answered is not None:
        http, parsed = answered
    else:
        check_deadline()
        http, parsed = _moto_answer(
            operation, request["body"], meta.region_name, _account(client._request_signer)
        )
    meta.events.emit(
        f"after-call.{service_id}.{operation_name}",
        http_response=http,
        parsed=parsed,
        model=operation,
        context=context,
    )
    if http.status_code >= 300:
        code = parsed.get("Error", {}).get("Code")
        raise client.exceptions.from_code(code)(parsed, operation_name)
    return parsed


@functools.cache
def _handler_class(service: str) -> Any:
    if service == "dynamodbstreams":
        from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

        return DynamoDBStreamsHandler
    from moto.dynamodb.responses import DynamoHandler

    return DynamoHandler


def _moto_answer(
    model: Any, body: bytes | str, region: str, account: str
) -> tuple[Any, dict[str, Any]]:
    """moto's answer to one JSON-protocol request, as botocore's response and parsed dict."""
    from botocore.awsrequest import AWSResponse
    from moto.core.utils import camelcase_to_underscores
    from werkzeug.exceptions import HTTPException

    service = model.service_model
    handler = _handler_class(service.service_name)()
    handler.params = json.loads(body)
    handler.body = handler.params
    handler.automated_parameter_parsing = True  # _get_param reads `params`
    handler.region = region
    handler.headers = {
        "X-Amz-Target": f"{service.metadata['targetPrefix']}.{model.name}",
        "Content-Type": "application/x-amz-json-1.0",
    }
    handler.response_headers = {}
    handler.current_account = account
    answer: str | bytes | None
    try:
        result = getattr(handler, camelcase_to_underscores(model.name))()
        status, headers, answer = 200, {}, json.dumps(result.result, default=_wire_value)
    except HTTPException as error:  # moto's DynamoDB errors (JsonRESTError)
        status, headers, answer = (
            error.code or 400,
            dict(error.get_headers() or []),
            error.description,
        )
    except Exception as error:
        from moto.core.exceptions import ServiceException
        from moto.core.responses import ActionResult

        if not isinstance(error, ServiceException):
            raise
        status, headers, answer = handler.serialized(ActionResult(error))
    headers = {k.lower(): str(v) for k, v in headers.items()}
    headers.setdefault("x-amzn-requestid", "local")
    raw = {
        "status_code": status,
        "headers": headers,
        "body": answer.encode() if isinstance(answer, str) else answer or b"",
    }
    parsed = _json_parser().parse(raw, model.output_shape)
    if status >= 300:  # an error's own fields (CancellationReasons...), as botocore adds them
        code = parsed.get("Error", {}).get("Code")
        shape = service.shape_for_error_code(code) if code else None
        if shape is not None:
            parsed.update(_json_parser().parse(raw, shape))
    url = f"https://{service.endpoint_prefix}.{region}.amazonaws.com/"
    return AWSResponse(url, status, headers, None), parsed


def _wire_value(value: Any) -> Any:
    """JSON for what moto's answers hold besides JSON's own types, as its serializer writes
    them: binary attributes (raw bytes, base64 on the wire) and times (epoch seconds)."""
    import base64
    from datetime import datetime

    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"{type(value).__name__} in a DynamoDB answer")


def _account(request_signer: Any) -> str:
    """The moto account of a request, as moto finds it: MOTO_ACCOUNT_ID, else the access key."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    from moto.iam.models import get_account_id_from

    credentials = getattr(request_signer, "_credentials", None)
    return str(get_account_id_from(getattr(credentials, "access_key", None) or ""))


def apply_all() -> None:
    """Every patch here, as devstack, the benchmarks and the tests run moto."""
    keyed_queries()
    light_transactions()
    cached_dispatch()
    cached_update_expressions()
    bounded_memory()
    fast_queue_clock()
    light_queues()
    direct_dynamodb()


def original(name: str) -> Callable[..., Any]:
    """moto's own `Table.all_items`, `Table.query`, `transact_write_items`,
    `method_names_from_class` or SQS's `sqs_unix_time(_millis)`, from before the patches."""
    from moto.core import responses
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    if name == "method_names_from_class":
        return _originals.get(name) or responses.method_names_from_class
    if name.startswith("sqs_"):
        from moto.sqs import models

        return _originals.get(name) or getattr(models, name.removeprefix("sqs_"))
    owner = DynamoDBBackend if name == "transact_write_items" else Table
    return _originals.get(name) or getattr(owner, name)


def start(host: str, port: int) -> Callable[[], None]:
    """moto in this process for our clients (no HTTP hop) and on host:port for the others."""
    import logging

    from moto import mock_aws
    from moto.server import ThreadedMotoServer

    apply_all()
    mock = mock_aws()
    mock.start()  # first: starting it resets the backends the server then shares
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    os.environ.pop("AWS_ENDPOINT_URL", None)  # our own clients go to the in-process backend

    def stop() -> None:
        server.stop()
        mock.stop()

    return stop
