"""What the templates are built from: the stages, the app's functions, fixed names and ports.

The functions come from the Chalice app in `app.py` (`functions_of`); a stage says what differs
between dev and prod beyond `.chalice/config.json`.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalice.utils import to_cfn_resource_name

from chalicelib import tables
from chalicelib.observability import SERVICE
from infra import access

ROOT = Path(__file__).resolve().parent.parent.parent
SIP_PORT = 5060
TLS_PORT = 5061
CONTAINER = "edge"
#: Marks the HMAC keys the edge must never hold (it only needs NONCE_KEY); any use shows.
EDGE_WITHHELD_KEY = "withheld-from-the-edge"
#: The Lambda runtime of every function: supported by Lambda, chalice 1.34 and lxml/powertools
#: wheels. The edge image uses the same Python (sip_edge/Dockerfile).
LAMBDA_RUNTIME = "python3.13"
CUSTOM_RUNTIME = LAMBDA_RUNTIME


@dataclass(frozen=True)
class Stage:
    """What differs between dev and prod beyond `.chalice/config.json`."""

    name: str
    edge_max_slots: int  # queues, task definitions and services generated
    edge_default_slots: int  # of which running by default (parameter EdgeSlots)
    log_retention_days: int
    container_insights: bool
    sms_spend_limit_usd: int
    lambda_errors_threshold: int  # errors per 5 minutes that page someone


TARGETS = ("merge", "infra")
#: The dimension Powertools puts on every EMF metric.
SERVICE_DIMENSION = SERVICE
#: How a stream handler's event source mapping retries (both paths; failures go to a queue).
STREAM_EVENT_SETTINGS: dict[str, Any] = {
    "MaximumRetryAttempts": 5,
    "BisectBatchOnFunctionError": True,
    "MaximumRecordAgeInSeconds": 3600,
    # The handlers answer `batchItemFailures` when SQS refuses part of an update: retry then.
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
}
#: The edge's per-request metric, with dimensions Method and Class (sip_edge/metrics.py).
EDGE_REQUESTS_METRIC = "SipRequests"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"


def chalice_config() -> dict[str, Any]:
    return json.loads(CHALICE_CONFIG.read_text())


def metrics_namespace() -> str:
    """The EMF namespace of the functions (and the edge): the Chalice config sets it."""
    return chalice_config()["environment_variables"]["POWERTOOLS_METRICS_NAMESPACE"]


def env_output_id(name: str) -> str:
    """Output id of one function environment variable (ids are alphanumeric only)."""
    return "Env" + "".join(part.capitalize() for part in name.split("_"))


STAGES: dict[str, Stage] = {
    "dev": Stage("dev", 2, 1, 14, False, 1, 1),
    "prod": Stage("prod", 8, 2, 90, True, 100, 5),
}


@dataclass(frozen=True)
class Function:
    """One Lambda function of the Chalice app, as the packaged template names it."""

    name: str  # Chalice's name: the suffix of the deployed name "<stack>-<name>"
    cfn: str  # logical id in Chalice's template
    kind: str  # "api" (REST handler), "edge" (invoked by the SIP edge) or "stream"
    streams: tuple[tuple[str, tables.TableSpec], ...] = ()  # (event logical id, table)

    @property
    def access(self) -> access.Access:
        return access.for_function(self.name, stream_handler=self.kind == "stream")


def table_of_stream(stream_arn: str) -> tables.TableSpec:
    """The table a handler's `stream_arn` names (by the table name's suffix, any prefix)."""
    match = re.search(r":table/([^/]+)/stream/", stream_arn)
    name = match.group(1) if match else stream_arn
    found = sorted(
        (s for s in tables.ALL if name.endswith(s.logical) or name == s.env_var),
        key=lambda s: -len(s.logical),
    )
    if not found or not found[0].stream:
        raise ValueError(f"stream {stream_arn!r} is not the stream of a table with streams on")
    return found[0]


def functions_of(app: Any) -> list[Function]:
    """Every Lambda function `chalice package` will emit for this app."""
    out: list[Function] = []
    if app.routes:
        out.append(Function("api_handler", "APIHandler", "api"))
    for fn in app.pure_lambda_functions:
        out.append(Function(fn.name, to_cfn_resource_name(fn.name), "edge"))
    streams: dict[str, list[tuple[str, tables.TableSpec]]] = {}
    for source in app.event_sources:
        if type(source).__name__ != "DynamoDBEventConfig":
            raise NotImplementedError(
                f"{source.name}: infra/template wires DynamoDB stream handlers only"
            )
        event_id = to_cfn_resource_name(source.name + "-dynamodb-event-source")
        streams.setdefault(source.name, []).append((event_id, table_of_stream(source.stream_arn)))
    for name, wired in streams.items():
        out.append(Function(name, to_cfn_resource_name(name), "stream", tuple(wired)))
    return out


def load_app() -> Any:
    return importlib.import_module("app").app
