"""Canaries for infra/chalice_pinned.py, which patches private chalice code: each fails loudly,
naming what to re-check, when the installed chalice no longer does what the patch assumes.

The pin assumes chalice takes the Lambda runtime from the running Python
(`Config.lambda_python_version`) and downloads wheels with `--abi` but no `--python-version`
(`PipRunner.download_manylinux_wheels` through `PipRunner._execute`); the rehearsal assumes the
signatures of `TypedAWSClient.import_rest_api` and `update_api_from_swagger`. Behaviour is
checked where it can be, and the source of every patched or relied-on function is fingerprinted:
a new chalice that changes any of it stops here until someone has read the change.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from typing import Any

import chalice
import chalice.awsclient
import chalice.config
import pytest
from chalice.deploy import packager

from infra import chalice_pinned
from infra.template import LAMBDA_RUNTIME

#: sha256 (first 16 hex digits) of the source of each function the pin patches or relies on,
#: as read in chalice 1.34.0.
FINGERPRINTS = {
    "Config.lambda_python_version": "f13d1d5a123d8935",
    "PipRunner._execute": "0297ef61e6fe7708",
    "PipRunner.download_manylinux_wheels": "219237703020a2bd",
    "TypedAWSClient.import_rest_api": "16bfad484b585beb",
    "TypedAWSClient.update_api_from_swagger": "d91bc0a40341f114",
}


def _patched_code() -> dict[str, Any]:
    return {
        "Config.lambda_python_version": chalice.config.Config.lambda_python_version.fget,
        "PipRunner._execute": packager.PipRunner._execute,
        "PipRunner.download_manylinux_wheels": packager.PipRunner.download_manylinux_wheels,
        "TypedAWSClient.import_rest_api": chalice.awsclient.TypedAWSClient.import_rest_api,
        "TypedAWSClient.update_api_from_swagger": (
            chalice.awsclient.TypedAWSClient.update_api_from_swagger
        ),
    }


@pytest.fixture
def unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """chalice as installed, with whatever the test pins undone at its end."""
    monkeypatch.setattr(
        chalice.config.Config, "lambda_python_version", chalice.config.Config.lambda_python_version
    )
    monkeypatch.setattr(packager.PipRunner, "_execute", packager.PipRunner._execute)


class RecordingPip:
    """Stands in for chalice's SubprocessPip: records each pip command, runs none."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def main(
        self, args: list[str], env_vars: Any = None, shim: Any = None
    ) -> tuple[int, bytes, bytes]:
        self.calls.append(list(args))
        return 0, b"", b""


def _download_args() -> list[str]:
    pip = RecordingPip()
    packager.PipRunner(pip).download_manylinux_wheels("cp313", ["lxml"], "/nonexistent")
    (call,) = pip.calls
    return call


def test_the_patched_chalice_code_is_the_code_the_pin_was_written_for() -> None:
    changed = {
        name: digest
        for name, code in _patched_code().items()
        if (digest := hashlib.sha256(inspect.getsource(code).encode()).hexdigest()[:16])
        != FINGERPRINTS[name]
    }
    assert not changed, (
        f"chalice {chalice.__version__} changed code that infra/chalice_pinned.py patches or "
        f"relies on: {sorted(changed)}. Read the change, adapt the pin (or drop it if chalice "
        f"now does the right thing), then record the new fingerprints: {changed}"
    )


def test_chalice_alone_takes_the_runtime_from_the_running_python(unpinned: None) -> None:
    major, minor = sys.version_info[:2]
    assert chalice.config.Config().lambda_python_version == f"python{major}.{minor}", (
        "chalice no longer derives the runtime from the running Python: re-check the pin"
    )
    chalice_pinned.pin()
    assert chalice.config.Config().lambda_python_version == LAMBDA_RUNTIME


def test_chalice_alone_asks_pip_for_the_abi_without_the_python_version(unpinned: None) -> None:
    args = _download_args()
    assert args[0] == "download" and "--abi" in args, args
    assert "--python-version" not in args, (
        "chalice now passes --python-version itself: the pin's PipRunner._execute is redundant"
    )
    chalice_pinned.pin()
    args = _download_args()
    version = LAMBDA_RUNTIME.removeprefix("python").replace(".", "")
    assert args[:3] == ["download", "--python-version", version], args
    assert args.count("--python-version") == 1


def test_the_rehearsal_patches_keep_chalices_signatures() -> None:
    client = chalice.awsclient.TypedAWSClient
    for name, params in (
        ("import_rest_api", ["self", "swagger_document", "endpoint_type"]),
        ("update_api_from_swagger", ["self", "rest_api_id", "swagger_document"]),
    ):
        assert list(inspect.signature(getattr(client, name)).parameters) == params, (
            f"chalice changed TypedAWSClient.{name}: re-check infra/chalice_pinned.pin_rehearsal"
        )
