"""The shared Powertools metrics and logger, used from many threads at once (the local stack's
function pool, REST threads and stream replayer): no exception, and no metric lost or doubled."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import threading

from chalicelib.observability import flush_metrics, logger, metrics

THREADS = 16
ROUNDS = 150


def test_metrics_and_logs_from_many_threads(capsys):
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                metrics.add_metric(name=f"Thread{(n + i) % 40}", unit="Count", value=1)
                logger.info("tick", extra={"worker": n, "round": i})
                flush_metrics()
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a thread raised
            errors.append(exc)

    out = io.StringIO()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, as a loaded machine does
    try:
        with contextlib.redirect_stdout(out):
            threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            flush_metrics()
    finally:
        sys.setswitchinterval(switch)
    assert errors == [], errors[:3]
    total = 0
    for line in out.getvalue().splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if "_aws" in doc:
                total += sum(
                    sum(v) if isinstance(v, list) else v
                    for k, v in doc.items()
                    if k.startswith("Thread")
                )
    assert total == THREADS * ROUNDS, "a metric was lost or emitted twice"
