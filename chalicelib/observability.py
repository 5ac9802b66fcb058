"""Powertools logger and metrics, the same on Lambda and in the local stack; log pseudonyms."""

from __future__ import annotations

import os
import threading
from typing import Any

from aws_lambda_powertools import Logger, Metrics

SERVICE = "smart-contacts"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", SERVICE)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "SmartContacts")

# Powertools keeps one metric set per process and is not thread-safe; the local stack runs the
# functions, REST routes and stream replay in threads of one process (Lambda never does).
_METRICS_LOCK = threading.RLock()


class _ThreadSafeMetrics(Metrics):
    """Metrics whose shared set is only touched under one lock, so a flush never serializes a
    set another thread is filling or has just emptied."""

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        with _METRICS_LOCK:
            super().add_metric(*args, **kwargs)

    def add_dimension(self, *args: Any, **kwargs: Any) -> None:
        with _METRICS_LOCK:
            super().add_dimension(*args, **kwargs)

    def add_metadata(self, *args: Any, **kwargs: Any) -> None:
        with _METRICS_LOCK:
            super().add_metadata(*args, **kwargs)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with _METRICS_LOCK:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


logger = Logger(service=SERVICE)
metrics = _ThreadSafeMetrics(namespace=os.environ["POWERTOOLS_METRICS_NAMESPACE"], service=SERVICE)


def flush_metrics() -> None:
    """Emit the EMF metrics gathered by one request or one event batch (no-op when none)."""
    with _METRICS_LOCK:
        if metrics.metric_set:
            metrics.flush_metrics()


def pseudonym(value: str | None) -> str:
    """What logs carry instead of a phone number or an address of record: a short keyed hash,
    the same for the same value (so one user's events can be followed) and useless without
    the key (a 4-digit-wide number space is brute-forced in seconds from a plain hash)."""
    if not value:
        return "-"
    from chalicelib import digest, settings

    return digest.keyed_hash("log|" + settings.get().code_hash_key, value.lower(), length=16)
