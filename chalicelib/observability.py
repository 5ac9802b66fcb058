"""Powertools logger and metrics, the same on Lambda and in the local stack; log pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = "smart-contacts"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", SERVICE)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "SmartContacts")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ["POWERTOOLS_METRICS_NAMESPACE"], service=SERVICE)


def flush_metrics() -> None:
    """Emit the EMF metrics gathered by one request or one event batch (no-op when none)."""
    if metrics.metric_set:
        metrics.flush_metrics()


def pseudonym(value: str | None) -> str:
    """What logs carry instead of a phone number or an address of record: a short keyed hash,
    the same for the same value (so one user's events can be followed) and useless without
    the key (a 4-digit-wide number space is brute-forced in seconds from a plain hash)."""
    if not value:
        return "-"
    from chalicelib import settings

    key = ("log|" + settings.get().code_hash_key).encode()
    return hmac.new(key, value.lower().encode(), hashlib.sha256).hexdigest()[:16]
