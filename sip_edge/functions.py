"""How the edge reaches the functions: Lambda invoke on AWS; locally the same handlers over a Unix
socket (`make run`: `sip_edge.function_socket`) or in-process (the tests).

The edge holds no state and no DynamoDB access; every lookup goes through the contract's
`Function.ask`, typed, over `Functions.call`, the JSON transport here. Handlers are blocking
(boto3), so both modes run them in a thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from chalicelib import edge_contract as contract
from chalicelib import settings
from chalicelib.resilience import deadline
from sip_edge.fail_fast import FunctionError, Guard, Refused, succeeded_answer, time_left

#: What the edge calls the functions through (a FunctionError when it cannot).
Functions = contract.Caller


class _PooledFunctions:
    """Runs a blocking `_invoke` in a thread pool behind the guard (bulkhead and breakers, see
    `sip_edge.fail_fast`) and wraps every failure in FunctionError."""

    def __init__(self, workers: int, cfg: settings.Settings | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fn")
        cfg = cfg or settings.get()
        self.guard = Guard(workers, cfg.sip_breaker_failures, cfg.sip_breaker_reset)

    def _invoke(
        self, name: str, payload: Mapping[str, Any], time_left: float | None
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def call(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            self.guard.admit(name)
        except Refused as exc:
            raise FunctionError(str(exc)) from exc
        left = time_left()
        running = self._pool.submit(self._invoke, name, payload, left)
        # The slot is the thread's, not the caller's: freed when the call really ends, even
        # after the request that made it gave up at its deadline.
        running.add_done_callback(lambda f: self.guard.release(name, succeeded(f)))
        try:
            return await asyncio.wrap_future(running)
        except FunctionError:
            raise
        except Exception as exc:
            raise FunctionError(f"{name} failed: {exc}") from exc


def succeeded(future: Future[dict[str, Any]]) -> bool:
    """The backend answered: no exception, and no `unavailable` error in the answer."""
    if future.cancelled() or future.exception() is not None:
        return False
    return succeeded_answer(future.result())


class InProcessFunctions(_PooledFunctions):
    """Calls the handlers declared in `app.py` directly (the local stack and the tests)."""

    def __init__(self, workers: int = 16, cfg: settings.Settings | None = None) -> None:
        import app

        super().__init__(workers, cfg)
        self._app = app

    def _invoke(
        self, name: str, payload: Mapping[str, Any], time_left: float | None
    ) -> dict[str, Any]:
        handler = getattr(self._app, name, None)
        if handler is None:
            raise FunctionError(f"no function {name!r}")
        # A JSON round trip, as Lambda does, so nothing works locally that would not on AWS.
        event = json.loads(json.dumps(payload))
        if time_left is None:
            answer = handler(event, None)
        else:
            with deadline(max(0.0, time_left)):  # the AWS calls stop where the request's time ends
                answer = handler(event, None)
        return json.loads(json.dumps(answer))


class LambdaFunctions(_PooledFunctions):
    """Calls the deployed functions with `lambda.invoke` (RequestResponse)."""

    def __init__(
        self, prefix: str, workers: int = 32, cfg: settings.Settings | None = None
    ) -> None:
        import boto3
        from botocore.config import Config

        from chalicelib.aws import region

        cfg = cfg or settings.get()
        super().__init__(workers, cfg)
        # An invoke's own client: past the request's deadline the answer is useless, and a
        # retried invoke would run the function twice (the edge's breaker does the backing off).
        self._client = boto3.session.Session().client(
            "lambda",
            region_name=region(),
            config=Config(
                connect_timeout=cfg.aws_connect_timeout,
                read_timeout=cfg.sip_request_deadline,
                retries={"total_max_attempts": 1},
                max_pool_connections=workers,
            ),
        )
        self._prefix = prefix

    def _invoke(
        self, name: str, payload: Mapping[str, Any], time_left: float | None
    ) -> dict[str, Any]:
        if time_left is not None:  # the function stops its AWS calls where our wait ends
            payload = {**payload, contract.TIME_LEFT: round(max(0.0, time_left), 3)}
        answer = self._client.invoke(
            FunctionName=self._prefix + name, Payload=json.dumps(payload).encode()
        )
        body = answer["Payload"].read()
        if answer.get("FunctionError"):
            raise FunctionError(f"{name}: {body[:200]!r}")
        return json.loads(body)


def from_settings(cfg: settings.Settings | None = None) -> Functions:
    cfg = cfg or settings.get()
    if cfg.sip_functions == "lambda":
        return LambdaFunctions(cfg.sip_function_prefix, cfg.sip_max_inflight_calls, cfg)
    if cfg.sip_functions == "inprocess":
        return InProcessFunctions(cfg.sip_max_inflight_calls, cfg)
    if cfg.sip_functions == "socket":
        from sip_edge.function_socket import SocketFunctions

        return SocketFunctions(cfg.sip_functions_socket, cfg.sip_max_inflight_calls, cfg)
    raise ValueError(
        f"SIP_FUNCTIONS must be inprocess, socket or lambda, not {cfg.sip_functions!r}"
    )
