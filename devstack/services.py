"""Extra local services started beside moto and the REST API (SMS printer, SIP edge, streams).

Each starter returns a stop function; `start_all` is the list `make run` starts.
"""

from __future__ import annotations

from collections.abc import Callable


def start_all(host: str) -> list[Callable[[], None]]:
    return []
