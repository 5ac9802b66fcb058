"""The edge's CloudWatch metrics: counted per interval, written as EMF lines to stdout.

On ECS the awslogs driver ships stdout to CloudWatch Logs, which turns each EMF line into
metric points; the operator's dashboard (infra/template/dashboard.py) draws them. One line per
metric and dimension set per interval, so the cost does not grow with traffic.
"""

from __future__ import annotations

import os
from collections import Counter

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from chalicelib.observability import SERVICE
from sip_edge.sip.message import Response

#: Methods counted by name; any other (a typo, an extension) is counted as "other" so that a
#: scanner cannot create metrics by inventing methods.
COUNTED_METHODS = frozenset(
    {"REGISTER", "SUBSCRIBE", "PUBLISH", "OPTIONS", "NOTIFY", "INVITE", "MESSAGE", "BYE",
     "CANCEL", "ACK", "INFO", "REFER", "UPDATE", "PRACK"}
)  # fmt: skip


def response_class(status: int) -> str:
    return f"{status // 100}xx"


class EdgeMetrics:
    """Counters of one edge between two flushes."""

    def __init__(self, interval: float, namespace: str | None = None) -> None:
        self.interval = interval
        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "")
        self.requests: Counter[tuple[str, str]] = Counter()
        self.notifies = 0
        self.notify_failures = 0
        self._next_flush: float | None = None

    def response(self, method: str, response: Response) -> None:
        """A final response the edge sent to a request."""
        if response.status >= 200:
            name = method if method in COUNTED_METHODS else "other"
            self.requests[(name, response_class(response.status))] += 1

    def notify(self, ok: bool) -> None:
        self.notifies += 1
        self.notify_failures += 0 if ok else 1

    def _emit(self, name: str, value: float, **dimensions: str) -> None:
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=value,
            namespace=self.namespace,
            default_dimensions={"service": SERVICE},
        ) as metric:
            for key, dim in dimensions.items():
                metric.add_dimension(name=key, value=dim)

    def flush(self, now: float, *, connections: int, dialogs: int, force: bool = False) -> bool:
        """Write the interval's metrics when it is over (or `force`); answers whether it did."""
        if self._next_flush is None:
            self._next_flush = now + self.interval
        if not force and now < self._next_flush:
            return False
        self._next_flush = now + self.interval
        for (method, klass), count in sorted(self.requests.items()):
            self._emit("SipRequests", count, Method=method, Class=klass)
        self._emit("NotifiesSent", self.notifies)
        self._emit("NotifyFailures", self.notify_failures)
        self._emit("OpenConnections", connections)
        self._emit("Dialogs", dialogs)
        self.requests.clear()
        self.notifies = self.notify_failures = 0
        return True
