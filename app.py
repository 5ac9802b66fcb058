"""Smart contact list back end: the table of contents of its routes, functions and handlers.

Each handler is a few lines that call `chalicelib`; all the logic lives there.
"""

from __future__ import annotations

from chalice import Chalice

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


# --- Event handlers -------------------------------------------------------------------------

__all__ = ["app", "logger"]
