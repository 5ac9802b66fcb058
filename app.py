"""Smart contact list back end: the table of contents of its routes, functions and handlers.

Each handler is a few lines that call `chalicelib`; all the logic lives there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from chalice import Chalice, Response
from chalice.app import Request

from chalicelib import edge_contract as contract
from chalicelib import tables
from chalicelib.api.http_api import ANY_CONTENT_TYPE, XMLRPC_ROUTE_CONTENT_TYPES, rest
from chalicelib.observability import logger
from chalicelib.resilience import within_time_left

# Each handler imports the modules it runs when it first runs (a Lambda function cold-starts
# with this file and its own path only: sip_auth loads no lxml, XML-RPC or NOTIFY bodies);
# tests/test_cold_start.py keeps them out of `import app`.

app = Chalice(app_name="smart-contacts")

Payload = TypeVar("Payload", bound=Mapping[str, object])
Answer = TypeVar("Answer", bound=Mapping[str, object])
#: A function the edge calls: the contract's payload in, its answer or a refusal out.
EdgeHandler = Callable[[Payload, Any], Answer | contract.ErrorAnswer]


def current_request() -> Request:
    """The request a route is serving (chalice sets it before calling the view)."""
    request = app.current_request
    assert request is not None, "only routes have a current request"
    return request


# --- Health -------------------------------------------------------------------------------


@app.route("/v1/health", methods=["GET"])
@rest
def health() -> dict[str, str]:
    return {"status": "ok"}


# --- Accounts and sign-up: phone-number accounts ------------------------------------------


@app.route("/v1/signup/phone", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@rest
def signup_phone() -> Response:
    from chalicelib.api import account_api

    return account_api.signup_request(current_request())


@app.route("/v1/signup/phone/confirm", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@rest
def signup_phone_confirm() -> Response:
    from chalicelib.api import account_api

    return account_api.signup_confirm(current_request())


@app.route("/v1/accounts/me", methods=["GET"])
@rest
def accounts_me() -> Response:
    from chalicelib.api import account_api

    return account_api.me_get(current_request())


@app.route("/v1/accounts/me", methods=["PATCH"], content_types=ANY_CONTENT_TYPE)
@rest
def accounts_me_patch() -> Response:
    from chalicelib.api import account_api

    return account_api.me_patch(current_request())


@app.route("/v1/accounts/me", methods=["DELETE"], content_types=ANY_CONTENT_TYPE)
@rest
def accounts_me_delete() -> Response:
    from chalicelib.api import account_api

    return account_api.me_delete(current_request())


@app.route("/v1/accounts/me/phone", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@rest
def accounts_me_phone() -> Response:
    from chalicelib.api import account_api

    return account_api.phone_link_request(current_request())


@app.route("/v1/accounts/me/phone/confirm", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@rest
def accounts_me_phone_confirm() -> Response:
    from chalicelib.api import account_api

    return account_api.phone_link_confirm(current_request())


@app.route("/v1/accounts/me/phone", methods=["DELETE"], content_types=ANY_CONTENT_TYPE)
@rest
def accounts_me_phone_delete() -> Response:
    from chalicelib.api import account_api

    return account_api.phone_unlink(current_request())


@app.route("/v1/accounts/me/provisioning", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@rest
def accounts_me_provisioning() -> Response:
    from chalicelib.api import account_api

    return account_api.provisioning_link(current_request())


# --- Contact discovery ---------------------------------------------------------------------


@app.route("/v1/contacts/discover", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@rest
def contacts_discover() -> Response:
    from chalicelib.api import account_api

    return account_api.contacts_discover(current_request())


# --- XML-RPC account assistant (Linphone) --------------------------------------------------


@app.route("/wizard.php", methods=["POST"], content_types=XMLRPC_ROUTE_CONTENT_TYPES)
def xmlrpc_wizard() -> Response:
    # The path the Linphone apps' public assistant used; some builds hard-code it.
    from chalicelib.api import xmlrpc_api

    return xmlrpc_api.handle(current_request())


@app.route("/v1/xmlrpc", methods=["POST"], content_types=XMLRPC_ROUTE_CONTENT_TYPES)
def xmlrpc_v1() -> Response:
    from chalicelib.api import xmlrpc_api

    return xmlrpc_api.handle(current_request())


# --- Web pages for people (chalicelib/web, docs/web.md) ------------------------------------

#: Every page answers GET and POST: chalicelib.web.pages.ROUTES says what each shows and does
#: (a GET of a page that only acts goes back to its form; a POST where nothing acts is 405).
WEB_PAGES = (
    "/",
    "/signup",
    "/signup/confirm",
    "/signin",
    "/signout",
    "/recover",
    "/recover/confirm",
    "/account",
    "/account/discoverable",
    "/account/password",
    "/account/number",
    "/account/number/confirm",
    "/account/number/remove",
    "/account/devices",
    "/account/delete",
    "/setup",
)


def _web_page(page: str) -> Any:
    def view() -> Response:
        from chalicelib.web import pages

        return pages.serve(page, current_request())

    return view


for _page in WEB_PAGES:
    app.route(
        _page,
        methods=["GET", "POST"],
        content_types=ANY_CONTENT_TYPE,
        name="web_" + (_page.strip("/").replace("/", "_") or "home"),
    )(_web_page(_page))


@app.route("/creation_token/check/{token}", methods=["GET", "POST"], content_types=ANY_CONTENT_TYPE)
def web_creation_request(token: str) -> Response:
    # The address FlexiAPI's account_creation_request_tokens answers (validation_url).
    from chalicelib.web import pages

    return pages.serve("/creation_token/check", current_request(), token=token)


@app.route("/static/{name}", methods=["GET"])
def web_static(name: str) -> Response:
    from chalicelib.web import pages

    return pages.static(name, current_request())


# --- Remote provisioning of the Linphone apps (XML config, QR codes) ------------------------


@app.route("/provisioning", methods=["GET"])
@rest
def provisioning_anonymous() -> Response:
    from chalicelib.api import provisioning_api

    return provisioning_api.anonymous(current_request())


@app.route("/provisioning/qrcode", methods=["GET"])
@rest
def provisioning_qrcode() -> Response:
    from chalicelib.api import provisioning_api

    return provisioning_api.qrcode(current_request())


@app.route("/provisioning/qrcode/{token}", methods=["GET"])
@rest
def provisioning_link_qrcode(token: str) -> Response:
    from chalicelib.api import provisioning_api

    return provisioning_api.qrcode(current_request(), token)


@app.route("/provisioning/{token}", methods=["GET"])
@rest
def provisioning_link(token: str) -> Response:
    from chalicelib.api import provisioning_api

    return provisioning_api.by_link(current_request(), token)


# --- The Linphone apps' account API (FlexiAPI): Linphone SDK 5.1 and Linphone 6 ----------
# Each view answers in FlexiAPI's shapes (chalicelib/api/flexiapi.py); which client calls
# which route: docs/linphone.md.


@app.route("/api/ping", methods=["GET"])
def flexiapi_ping() -> Response:
    from chalicelib.api import flexiapi

    return flexiapi.ping(current_request())


@app.route("/api/tokens", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_tokens() -> Response:  # 5.1
    from chalicelib.api import flexiapi

    return flexiapi.send_token_by_push(current_request())


@app.route(
    "/api/account_creation_tokens/send-by-push", methods=["POST"], content_types=ANY_CONTENT_TYPE
)
def flexiapi_send_by_push() -> Response:  # 6
    from chalicelib.api import flexiapi

    return flexiapi.send_token_by_push(current_request())


@app.route("/api/account_creation_request_tokens", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_request_tokens() -> Response:  # 6, desktop
    from chalicelib.api import flexiapi

    return flexiapi.request_token(current_request())


@app.route(
    "/api/account_creation_tokens/using-account-creation-request-token",
    methods=["POST"],
    content_types=ANY_CONTENT_TYPE,
)
def flexiapi_token_for_request() -> Response:  # 6, desktop
    from chalicelib.api import flexiapi

    return flexiapi.token_for_request(current_request())


@app.route("/api/accounts/with-token", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_with_token() -> Response:  # 5.1
    from chalicelib.api import flexiapi

    return flexiapi.create_with_token(current_request())


@app.route(
    "/api/accounts/with-account-creation-token", methods=["POST"], content_types=ANY_CONTENT_TYPE
)
def flexiapi_with_account_creation_token() -> Response:  # 6
    from chalicelib.api import flexiapi

    return flexiapi.create_with_account_creation_token(current_request())


@app.route("/api/accounts/{sip}/info", methods=["GET"], content_types=ANY_CONTENT_TYPE)
def flexiapi_info(sip: str) -> Response:  # 5.1
    from chalicelib.api import flexiapi

    return flexiapi.info(current_request(), sip)


@app.route("/api/accounts/{sip}/activate/email", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_activate_email(sip: str) -> Response:  # 5.1 (its phone flow too)
    from chalicelib.api import flexiapi

    return flexiapi.activate(current_request(), sip)


@app.route("/api/accounts/{sip}/activate/phone", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_activate_phone(sip: str) -> Response:
    from chalicelib.api import flexiapi

    return flexiapi.activate(current_request(), sip)


@app.route("/api/accounts/me", methods=["GET"], content_types=ANY_CONTENT_TYPE)
def flexiapi_me() -> Response:
    from chalicelib.api import flexiapi

    return flexiapi.me(current_request())


@app.route("/api/accounts/me", methods=["DELETE"], content_types=ANY_CONTENT_TYPE)
def flexiapi_delete_me() -> Response:
    from chalicelib.api import flexiapi

    return flexiapi.delete_me(current_request())


@app.route("/api/accounts/me/password", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_password() -> Response:  # 5.1
    from chalicelib.api import flexiapi

    return flexiapi.change_password(current_request())


@app.route("/api/accounts/me/phone/request", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_phone_request() -> Response:
    from chalicelib.api import flexiapi

    return flexiapi.phone_request(current_request())


@app.route("/api/accounts/me/phone", methods=["POST"], content_types=ANY_CONTENT_TYPE)
def flexiapi_phone() -> Response:
    from chalicelib.api import flexiapi

    return flexiapi.phone_confirm(current_request())


@app.route("/api/accounts/me/devices", methods=["GET"], content_types=ANY_CONTENT_TYPE)
def flexiapi_devices() -> Response:  # 6
    from chalicelib.api import flexiapi

    return flexiapi.devices_list(current_request())


@app.route("/api/accounts/me/devices/{device}", methods=["DELETE"], content_types=ANY_CONTENT_TYPE)
def flexiapi_device_delete(device: str) -> Response:  # 6
    from chalicelib.api import flexiapi

    return flexiapi.device_delete(current_request(), device)


@app.route("/api/accounts/me/provision", methods=["GET"], content_types=ANY_CONTENT_TYPE)
def flexiapi_provision() -> Response:
    from chalicelib.api import flexiapi

    return flexiapi.provision(current_request())


# --- Functions called by the SIP edge -------------------------------------------------------


# --- Functions called by the SIP edge: each takes and answers the contract's types --------


def edge_function(
    function: contract.Function[Payload, Answer],
) -> Callable[[EdgeHandler[Payload, Answer]], EdgeHandler[Payload, Answer]]:
    """Register a handler as the function the edge calls by that name (edge_contract)."""
    register: Callable[[EdgeHandler[Payload, Answer]], EdgeHandler[Payload, Answer]]
    register = app.lambda_function(name=function.name)
    return register


@edge_function(contract.SIP_AUTH)
def sip_auth(
    event: contract.SipAuthRequest, context: Any
) -> contract.SipAuthAnswer | contract.ErrorAnswer:
    from chalicelib.api import sip_auth as sip_auth_module

    with within_time_left(event, contract.TIME_LEFT):
        return sip_auth_module.verify(
            event["method"],
            event["realm"],
            event["params"],
            source=event.get("source"),
            instance=event.get("instance"),
        )


@edge_function(contract.SIP_REGISTRAR)
def sip_registrar(
    event: contract.RegisterRequest, context: Any
) -> contract.RegisterAnswer | contract.ErrorAnswer:
    from chalicelib.api.idempotency import once_per_sip_request
    from chalicelib.live import registrar

    with within_time_left(event, contract.TIME_LEFT):
        return once_per_sip_request(registrar.handle)(event, context)


@edge_function(contract.SIP_SUBSCRIPTIONS)
def sip_subscriptions(
    event: contract.SubscriptionsRequest, context: Any
) -> contract.SubscriptionsAnswer | contract.ErrorAnswer:
    from chalicelib.live import subscriptions
    from chalicelib.live import updates as live_updates

    with within_time_left(event, contract.TIME_LEFT):
        return subscriptions.handle(event, on_saved=live_updates.subscription_saved)


@edge_function(contract.PRESENCE_LOOKUP)
def presence_lookup(
    event: contract.PresenceLookupRequest, context: Any
) -> contract.PresenceLookupAnswer | contract.ErrorAnswer:
    from chalicelib.api import presence_lookup as presence_lookup_module

    with within_time_left(event, contract.TIME_LEFT):
        return presence_lookup_module.handle(event)


@edge_function(contract.SIP_PUBLISH)
def sip_publish(
    event: contract.PublishRequest, context: Any
) -> contract.PublishAnswer | contract.ErrorAnswer:
    from chalicelib.api.idempotency import once_per_sip_request
    from chalicelib.live import publications

    with within_time_left(event, contract.TIME_LEFT):
        return once_per_sip_request(publications.handle)(event, context)


# --- Event handlers: DynamoDB streams drive live contact lists ----------------------------


@app.on_dynamodb_record(stream_arn=tables.stream_arn(tables.ACCOUNTS), batch_size=100)
def accounts_changed(event: Any) -> dict[str, int]:
    from chalicelib.live import updates as live_updates

    return live_updates.handle_records(event.to_dict()["Records"])


@app.on_dynamodb_record(stream_arn=tables.stream_arn(tables.PHONE_INDEX), batch_size=100)
def phone_index_changed(event: Any) -> dict[str, int]:
    from chalicelib.live import updates as live_updates

    return live_updates.handle_records(event.to_dict()["Records"])


@app.on_dynamodb_record(stream_arn=tables.stream_arn(tables.REGISTRATIONS), batch_size=100)
def registrations_changed(event: Any) -> dict[str, int]:
    from chalicelib.live import updates as live_updates

    return live_updates.handle_records(event.to_dict()["Records"])


@app.on_dynamodb_record(stream_arn=tables.stream_arn(tables.PUBLICATIONS), batch_size=100)
def publications_changed(event: Any) -> dict[str, int]:
    from chalicelib.live import updates as live_updates

    return live_updates.handle_records(event.to_dict()["Records"])


__all__ = ["app", "logger"]
