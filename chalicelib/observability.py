"""Powertools logger and metrics, the same on Lambda and in the local stack."""

from __future__ import annotations

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
