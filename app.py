"""Smart contact list back end: the table of contents of its routes, functions and handlers.

Each handler is a few lines that call `chalicelib`; all the logic lives there.
"""

from __future__ import annotations

from typing import Any

from chalice import Chalice

from chalicelib import registrar
from chalicelib import sip_auth as sip_auth_module
from chalicelib.http_api import rest
from chalicelib.observability import logger

app = Chalice(app_name="smart-contacts")


# --- Health -------------------------------------------------------------------------------


@app.route("/v1/health", methods=["GET"])
@rest
def health() -> dict[str, str]:
    return {"status": "ok"}


# --- Accounts and sign-up (issue: phone-number accounts) ----------------------------------


# --- Contact discovery ---------------------------------------------------------------------


# --- XML-RPC account assistant (Linphone) --------------------------------------------------


# --- Functions called by the SIP edge -------------------------------------------------------


@app.lambda_function(name="sip_auth")
def sip_auth(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return sip_auth_module.verify(event["method"], event["realm"], event["params"])


@app.lambda_function(name="sip_registrar")
def sip_registrar(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return registrar.handle(event)


# --- Event handlers -------------------------------------------------------------------------

__all__ = ["app", "logger"]
