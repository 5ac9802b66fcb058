"""How the edge reaches the functions: Lambda invoke on AWS, the same handlers in-process locally.

The edge holds no state and no DynamoDB access; every lookup goes through `Functions.call`.
Handlers are blocking (boto3), so both modes run them in a thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from chalicelib import settings


class FunctionError(RuntimeError):
    """A function could not be called or failed; the edge answers 500/503 and carries on."""


class Functions(Protocol):
    async def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]: ...


class _PooledFunctions:
    """Runs a blocking `_invoke` in a thread pool and wraps every failure in FunctionError."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fn")

    def _invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def call(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._invoke, name, payload)
        except FunctionError:
            raise
        except Exception as exc:
            raise FunctionError(f"{name} failed: {exc}") from exc


class InProcessFunctions(_PooledFunctions):
    """Calls the handlers declared in `app.py` directly (the local stack and the tests)."""

    def __init__(self, workers: int = 16) -> None:
        import app

        super().__init__(workers)
        self._app = app

    def _invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self._app, name, None)
        if handler is None:
            raise FunctionError(f"no function {name!r}")
        # A JSON round trip, as Lambda does, so nothing works locally that would not on AWS.
        answer = handler(json.loads(json.dumps(payload)), None)
        return json.loads(json.dumps(answer))


class LambdaFunctions(_PooledFunctions):
    """Calls the deployed functions with `lambda.invoke` (RequestResponse)."""

    def __init__(self, prefix: str, workers: int = 32) -> None:
        from chalicelib.aws import client

        super().__init__(workers)
        self._client = client("lambda")
        self._prefix = prefix

    def _invoke(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
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
        return LambdaFunctions(cfg.sip_function_prefix)
    if cfg.sip_functions == "inprocess":
        return InProcessFunctions()
    raise ValueError(f"SIP_FUNCTIONS must be inprocess or lambda, not {cfg.sip_functions!r}")
