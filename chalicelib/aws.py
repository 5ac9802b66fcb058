"""boto3 clients shared by the domain modules, created once per process.

`AWS_ENDPOINT_URL` (honoured by boto3 itself) points them at moto in the local stack; tests reset
the cache when they swap moto instances.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from chalicelib import settings
from chalicelib.resilience import check_deadline


def _config(wait: float = 0.0) -> Config:
    """Timeouts and bounded retries that fit a request's deadline (see chalicelib.resilience);
    `wait` is how long the server may rightly hold the answer (a long poll) on top of them."""
    return Config(
        connect_timeout=settings.from_env("aws_connect_timeout"),
        read_timeout=settings.from_env("aws_read_timeout") + wait,
        retries={"total_max_attempts": settings.from_env("aws_max_attempts"), "mode": "standard"},
        max_pool_connections=32,
    )


def region() -> str:
    return settings.aws_region()


@cache
def client(service: str) -> Any:
    made = boto3.session.Session().client(service, region_name=region(), config=_config())
    made.meta.events.register_first("before-send", check_deadline)
    return made


@cache
def long_poll_client(service: str, wait_seconds: int) -> Any:
    """A client for calls the server holds up to `wait_seconds` by design (SQS ReceiveMessage
    with WaitTimeSeconds): the short read timeout of `client` would end every empty poll."""
    made = boto3.session.Session().client(
        service, region_name=region(), config=_config(wait_seconds)
    )
    made.meta.events.register_first("before-send", check_deadline)
    return made


@cache
def resource(service: str) -> Any:
    made = boto3.session.Session().resource(service, region_name=region(), config=_config())
    made.meta.client.meta.events.register_first("before-send", check_deadline)
    return made


def reset() -> None:
    """Forget every client (after the endpoint or credentials changed)."""
    client.cache_clear()
    long_poll_client.cache_clear()
    resource.cache_clear()
