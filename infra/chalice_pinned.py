"""Runs chalice's CLI with the Lambda runtime pinned (`python -m infra.chalice_pinned package ...`).

chalice takes the runtime from the Python that runs it and asks pip for that Python's wheels;
pinning both makes every machine package the same runtime with matching binary wheels (lxml),
whatever Python the machine itself has.

In the offline rehearsal (`AWS_ENDPOINT_URL` set) the REST API's Swagger 2.0 document is handed
to moto as the equivalent OpenAPI 3.0 document: moto imports only OpenAPI 3 (API Gateway takes
both). Nothing else differs from a deploy to AWS.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import chalice.awsclient
import chalice.config
from chalice.deploy import packager

from infra.template import LAMBDA_RUNTIME

_PYTHON_VERSION = LAMBDA_RUNTIME.removeprefix("python").replace(".", "")


def _runtime(self: Any) -> str:
    return LAMBDA_RUNTIME


def pin() -> None:
    chalice.config.Config.lambda_python_version = property(_runtime)  # type: ignore[assignment]
    execute = packager.PipRunner._execute

    def _execute(self: Any, command: str, args: list[str], *rest: Any, **kw: Any) -> Any:
        # chalice passes --abi cpXY but not the Python version, so pip would look for the
        # running Python's wheels and find none for the target ABI.
        if command == "download" and "--abi" in args and "--python-version" not in args:
            args = ["--python-version", _PYTHON_VERSION, *args]
        return execute(self, command, args, *rest, **kw)

    packager.PipRunner._execute = _execute  # type: ignore[method-assign]


def openapi3(swagger: dict[str, Any], title: str) -> dict[str, Any]:
    """The same API as an OpenAPI 3.0 document (paths and integrations are written alike)."""
    doc = {k: v for k, v in swagger.items() if k not in ("swagger", "definitions", "schemes")}
    doc["openapi"] = "3.0.1"
    doc["info"] = {"description": title, **swagger["info"]}
    doc["components"] = {
        "schemas": swagger.get("definitions", {}),
        "securitySchemes": doc.pop("securityDefinitions", {}),
    }
    text = json.dumps(doc).replace('"#/definitions/', '"#/components/schemas/')
    return json.loads(text)


def pin_rehearsal() -> None:
    client = chalice.awsclient.TypedAWSClient
    import_api, update_api = client.import_rest_api, client.update_api_from_swagger

    def import_rest_api(self: Any, swagger_document: dict[str, Any], endpoint_type: str) -> str:
        return import_api(self, openapi3(swagger_document, "rehearsal"), endpoint_type)

    def update_api_from_swagger(
        self: Any, rest_api_id: str, swagger_document: dict[str, Any]
    ) -> None:
        update_api(self, rest_api_id, openapi3(swagger_document, "rehearsal"))

    client.import_rest_api = import_rest_api  # type: ignore[method-assign]
    client.update_api_from_swagger = update_api_from_swagger  # type: ignore[method-assign]


if __name__ == "__main__":
    from chalice.cli import main

    pin()
    if os.environ.get("AWS_ENDPOINT_URL"):
        pin_rehearsal()
    sys.exit(main())
