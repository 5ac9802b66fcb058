"""The edge's SQS queue: where the stream handler says which resources to look at again.

Each edge has its own queue (`EDGE_QUEUE_PREFIX` + edge id), created at start unless one is
given (`EDGE_QUEUE_URL`). boto3 blocks, so calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from chalicelib import edge_contract, settings
from chalicelib.aws import client, long_poll_client
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
            Attributes={
                "MessageRetentionPeriod": "3600",
                "VisibilityTimeout": str(self.cfg.edge_queue_visibility),
            },
        )
        self.url = answer["QueueUrl"]

    def _receive(self) -> list[tuple[dict[str, Any], str]]:
        """Up to ten changes with their receipt handles; nothing is deleted here (see `ack`)."""
        wait = max(1, min(20, self.cfg.edge_queue_wait))
        answer = long_poll_client("sqs", wait).receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        )
        messages = answer.get("Messages", [])
        if messages and self.closed:
            # The edge stopped while this poll ran (its thread outlives the cancelled task):
            # visible again, the next edge reads them at once.
            self._release([m["ReceiptHandle"] for m in messages])
            return []
        out, junk = [], []
        for message in messages:
            try:
                body = json.loads(message["Body"])
            except ValueError:
                body = None
            if isinstance(body, dict):
                out.append((body, message["ReceiptHandle"]))
            else:
                junk.append(message["ReceiptHandle"])  # not ours; dropping it is all we can do
        if junk:
            self._delete(junk)
        return out

    def _delete(self, receipts: list[str]) -> None:
        for start in range(0, len(receipts), 10):
            chunk = receipts[start : start + 10]
            self._batch(
                client("sqs").delete_message_batch,
                [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)],
            )

    def _release(self, receipts: list[str]) -> None:
        for start in range(0, len(receipts), 10):
            chunk = receipts[start : start + 10]
            self._batch(
                client("sqs").change_message_visibility_batch,
                [
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0}
                    for i, r in enumerate(chunk)
                ],
            )

    async def ack(self, receipts: list[str]) -> None:
        """Delete messages whose change reached the phone (or whose dialog is gone). A failure
        only means the change is seen again after the visibility timeout: harmless."""
        if receipts:
            try:
                await asyncio.to_thread(self._delete, receipts)
            except Exception as exc:
                logger.warning("queue delete failed (%s); the changes will be seen again", exc)

    async def release(self, receipts: list[str]) -> None:
        """Hand messages back at once (the edge is stopping before their NOTIFY went out)."""
        if receipts:
            try:
                await asyncio.to_thread(self._release, receipts)
            except Exception as exc:
                logger.warning("queue release failed (%s); seen again after the timeout", exc)

    def _batch(self, call: Any, entries: list[dict[str, Any]], attempts: int = 3) -> None:
        """A batch call whose refused entries (`Failed`, e.g. throttled) are tried again; what
        still fails comes back after the visibility timeout, a harmless repeat for the edge."""
        for _ in range(attempts):
            failed = {f["Id"] for f in call(QueueUrl=self.url, Entries=entries).get("Failed", [])}
            entries = [e for e in entries if e["Id"] in failed]
            if not entries:
                return
        logger.warning("SQS refused %d queue entries; they will be seen again", len(entries))

    async def receive(self) -> list[tuple[dict[str, Any], str]]:
        return await asyncio.to_thread(self._receive)
