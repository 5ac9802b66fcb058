"""Replays moto's DynamoDB streams into the app's own stream handlers, as Lambda would.

The local stack runs it in a thread; tests call `pump()` to deliver what is pending, in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.aws import client
from chalicelib.live import updates as live_updates
from chalicelib.observability import logger

POLL_SECONDS = 0.2
#: The replayer thread looks for new shards every this many polls (moto makes a table's shard
#: when its stream is enabled; describing four streams at every poll was ~6% of `make run`'s
#: CPU under load).
DISCOVER_EVERY = 25


def _handlers() -> dict[str, Callable[[dict[str, Any], Any], Any]]:
    import app

    return {
        "Accounts": app.accounts_changed,
        "PhoneIndex": app.phone_index_changed,
        "Registrations": app.registrations_changed,
        "Publications": app.publications_changed,
    }


class StreamReplayer:
    """Reads every streamed table from where it stood at creation, shard by shard."""

    def __init__(self) -> None:
        self._iterators: dict[tuple[str, str], str] = {}
        self._arns: dict[str, str] = {}
        self._handler_of = _handlers()
        for spec in live_updates.STREAMED:
            arn = client("dynamodb").describe_table(TableName=spec.name())["Table"][
                "LatestStreamArn"
            ]
            self._arns[spec.logical] = arn
        self._discover("LATEST")

    def _discover(self, position: str) -> None:
        streams = client("dynamodbstreams")
        for logical, arn in self._arns.items():
            shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
            for shard in shards:
                key = (logical, shard["ShardId"])
                if key not in self._iterators:
                    self._iterators[key] = streams.get_shard_iterator(
                        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType=position
                    )["ShardIterator"]

    def pump(self, discover: bool = True) -> int:
        """Deliver every pending record to its handler; the number delivered. `discover`: look
        for shards born since the last pump first (and read them whole)."""
        if discover:
            self._discover("TRIM_HORIZON")
        streams = client("dynamodbstreams")
        delivered = 0
        for (logical, shard), iterator in list(self._iterators.items()):
            answer = streams.get_records(ShardIterator=iterator)
            records = [self._lambda_record(r, self._arns[logical]) for r in answer["Records"]]
            next_iterator = answer.get("NextShardIterator") or iterator
            if records:
                # As Lambda does: a batch that raised, or reported failures, is read again
                # from the failed record at the next pump.
                retry_at = records[0]["dynamodb"]["SequenceNumber"]
                try:
                    result = self._handler_of[logical]({"Records": records}, None)
                except Exception:
                    self._rewind(logical, shard, retry_at)
                    raise
                failures = result.get("batchItemFailures") if isinstance(result, dict) else None
                if failures:
                    next_iterator = self._iterator_at(logical, shard, failures[0]["itemIdentifier"])
                else:
                    delivered += len(records)
            self._iterators[(logical, shard)] = next_iterator
        return delivered

    def _iterator_at(self, logical: str, shard: str, sequence_number: str) -> str:
        return client("dynamodbstreams").get_shard_iterator(
            StreamArn=self._arns[logical],
            ShardId=shard,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=sequence_number,
        )["ShardIterator"]

    def _rewind(self, logical: str, shard: str, sequence_number: str) -> None:
        self._iterators[(logical, shard)] = self._iterator_at(logical, shard, sequence_number)

    @staticmethod
    def _lambda_record(record: dict[str, Any], arn: str) -> dict[str, Any]:
        out = {**record, "eventSourceARN": arn, "dynamodb": dict(record["dynamodb"])}
        when = out["dynamodb"].get("ApproximateCreationDateTime")
        if isinstance(when, datetime):
            out["dynamodb"]["ApproximateCreationDateTime"] = when.timestamp()
        return out

    def start(self) -> Callable[[], None]:
        """Replay in a thread, as the local stack does; returns the stop."""
        from devstack.services import run_every

        polls = itertools.count()

        def pump_safely() -> None:
            try:
                self.pump(discover=next(polls) % DISCOVER_EVERY == 0)
            except Exception:
                logger.exception("stream replay failed; retrying")

        return run_every(POLL_SECONDS, pump_safely, "stream-replayer")
