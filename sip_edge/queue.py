"""The edge's SQS queue: where the stream handler says which resources to look at again.

Each edge has its own queue (`EDGE_QUEUE_PREFIX` + edge id), created at start unless one is
given (`EDGE_QUEUE_URL`). boto3 blocks, so calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from chalicelib import edge_contract, settings
from chalicelib.aws import client
from chalicelib.observability import logger


class EdgeQueue:
    def __init__(self, cfg: settings.Settings) -> None:
        self.cfg = cfg
        self.url = cfg.edge_queue_url
        self.closed = False

    def close(self) -> None:
        """Stop taking messages: a long poll still running hands what it gets back."""
        self.closed = True

    async def open(self, edge_id: str) -> None:
        if self.url:
            return
        name = edge_contract.queue_name(edge_id)
        answer = await asyncio.to_thread(
            client("sqs").create_queue,
            QueueName=name,
            Attributes={"MessageRetentionPeriod": "3600", "VisibilityTimeout": "30"},
        )
        self.url = answer["QueueUrl"]

    def _receive(self) -> list[dict[str, Any]]:
        sqs = client("sqs")
        answer = sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=max(1, min(20, self.cfg.edge_queue_wait)),
        )
        messages = answer.get("Messages", [])
        if messages and self.closed:
            # The edge stopped while this poll ran (its thread outlives the cancelled task):
            # deleting would lose the changes; visible again, the next edge reads them at once.
            self._batch(
                sqs.change_message_visibility_batch,
                [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(messages)
                ],
            )
            return []
        if messages:
            self._batch(
                sqs.delete_message_batch,
                [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        out = []
        for message in messages:
            try:
                out.append(json.loads(message["Body"]))
            except ValueError:
                continue  # not ours; dropping it is all we can do
        return out

    def _batch(self, call: Any, entries: list[dict[str, Any]], attempts: int = 3) -> None:
        """A batch call whose refused entries (`Failed`, e.g. throttled) are tried again; what
        still fails comes back after the visibility timeout, a harmless repeat for the edge."""
        for _ in range(attempts):
            failed = {f["Id"] for f in call(QueueUrl=self.url, Entries=entries).get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                return
        logger.warning("SQS refused %d queue entries; they will be seen again", len(entries))

    async def receive(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._receive)
