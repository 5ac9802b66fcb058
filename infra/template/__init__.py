"""Builds the CloudFormation of both deployment paths from one set of definitions.

Everything is derived: the tables from `chalicelib.tables.ALL`, the functions and stream
handlers from the Chalice app in `app.py`, each function's permissions from `infra.access`.

- target "merge": what `chalice package --merge-template` folds into Chalice's own template;
  Chalice's template supplies the functions and the REST API.
- target "infra": the stack `chalice deploy` runs against (`infra/deploy.py`); the same
  resources minus the functions, with outputs (roles, environment, streams) that the deploy
  writes into the stage's Chalice config.

Both add the tables, the keys, the queues, the SIP edge (ECS Fargate behind an NLB), one IAM
role per function, alarms and the operator's dashboard. One module per resource family
(`builder` lists them); `model` holds what they are built from, `cfn` the shared helpers.
"""

from infra.template.builder import Builder, build
from infra.template.cfn import any_of, table_id
from infra.template.model import (
    LAMBDA_RUNTIME,
    ROOT,
    STAGES,
    STREAM_EVENT_SETTINGS,
    TARGETS,
    Function,
    Stage,
    chalice_config,
    env_output_id,
    functions_of,
    load_app,
    metrics_namespace,
    table_of_stream,
)

__all__ = [
    "LAMBDA_RUNTIME",
    "ROOT",
    "STAGES",
    "STREAM_EVENT_SETTINGS",
    "TARGETS",
    "Builder",
    "Function",
    "Stage",
    "any_of",
    "build",
    "chalice_config",
    "env_output_id",
    "functions_of",
    "load_app",
    "metrics_namespace",
    "table_id",
    "table_of_stream",
]
