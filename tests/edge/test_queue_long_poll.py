"""The edge's queue long poll outlasts the AWS read timeout meant for short calls: an empty poll
of EDGE_QUEUE_WAIT seconds is an answer, not a timeout, and a change sent during it arrives."""

from __future__ import annotations

import json
import threading

from chalicelib import settings
from chalicelib.aws import client
from sip_edge.queue import EdgeQueue


def test_an_empty_long_poll_longer_than_the_read_timeout_is_an_answer(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_READ_TIMEOUT", "1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("EDGE_QUEUE_WAIT", "3")
    settings.get.cache_clear()
    queue = EdgeQueue(settings.get())
    import asyncio

    asyncio.run(queue.open("long-poll-edge"))
    assert queue._receive() == []  # waited the 3 s of the poll, past the 1 s read timeout

    change = {"subscription_id": "s1", "uris": ["sip:+33611111111@example.org;user=phone"]}
    later = threading.Timer(
        1.5,
        lambda: client("sqs").send_message(QueueUrl=queue.url, MessageBody=json.dumps(change)),
    )
    later.start()
    try:
        got = queue._receive()
    finally:
        later.join()
    assert [body for body, _ in got] == [change]
