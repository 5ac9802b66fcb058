"""Runs chalice's CLI with the Lambda runtime pinned (`python -m infra.chalice_pinned package ...`).

chalice takes the runtime from the Python that runs it and asks pip for that Python's wheels;
pinning both makes every machine package the same runtime with matching binary wheels (lxml),
whatever Python the machine itself has.
"""

from __future__ import annotations

import sys
from typing import Any

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


if __name__ == "__main__":
    from chalice.cli import main

    pin()
    sys.exit(main())
