"""Powertools idempotency for the functions the edge invokes with side effects.

`lambda.invoke` is retried by botocore on timeouts and throttles, so one REGISTER or PUBLISH
may reach its function twice. Keyed by the SIP request's identity (AOR, Call-ID, CSeq), the
second run answers what the first did instead of failing the CSeq check (500) or minting a
second entity tag.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from chalicelib import tables
from chalicelib.aws import client

#: Long enough to cover botocore's retries of one invocation, short enough to keep it cheap.
EXPIRES_AFTER_SECONDS = 300
SIP_REQUEST_KEY = "[aor, call_id, cseq, op]"


@cache
def _persistence(table_name: str, dynamodb: Any) -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb)


Payload = TypeVar("Payload", bound=Mapping[str, Any])
Answer = TypeVar("Answer")


def once_per_sip_request(
    handler: Callable[[Payload], Answer],
) -> Callable[[Payload, Any], Answer]:
    """Wrap a `handle(payload)` so a retried invocation of one SIP request runs it once.

    Payloads without a Call-ID (e.g. a bindings query) are not made idempotent.
    """
    config = IdempotencyConfig(
        event_key_jmespath=SIP_REQUEST_KEY, expires_after_seconds=EXPIRES_AFTER_SECONDS
    )

    def run(payload: Payload, context: Any = None) -> Answer:
        if not payload.get("call_id"):
            return handler(payload)
        if context is not None:
            config.register_lambda_context(context)
        # Built per call: the table name (and, in tests, the AWS stand-in) may change.
        guarded = idempotent_function(
            data_keyword_argument="payload",
            persistence_store=_persistence(tables.IDEMPOTENCY.name(), client("dynamodb")),
            config=config,
            key_prefix=handler.__module__ + "." + handler.__name__,
        )(lambda payload: handler(payload))
        with warnings.catch_warnings():
            # In-process (the local stack) there is no Lambda context to bound the lock by.
            warnings.filterwarnings("ignore", message="Couldn't determine the remaining time")
            return guarded(payload=payload)

    return run
