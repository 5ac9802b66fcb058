"""boto3 clients shared by the domain modules, created once per process.

`AWS_ENDPOINT_URL` (honoured by boto3 itself) points them at moto in the local stack; tests reset
the cache when they swap moto instances.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, max_pool_connections=32)


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, region_name=region(), config=_CONFIG)


@cache
def resource(service: str) -> Any:
    return boto3.session.Session().resource(service, region_name=region(), config=_CONFIG)


def reset() -> None:
    """Forget every client (after the endpoint or credentials changed)."""
    client.cache_clear()
    resource.cache_clear()
