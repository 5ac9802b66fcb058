"""Every setting and limit of the service, read once from the environment.

This is the one place where a setting's name, default and meaning live: the local stack, the
tests, the SIP edge and the CloudFormation template (which sets the environment) all read it.
`docs/settings.md` is generated from `SETTINGS` by `python -m chalicelib.settings`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

#: The development key shipped for the local stack; a deployed stage refuses to start with it.
DEV_KEY = "local-development-key-do-not-deploy"
DEPLOYED_STAGES = frozenset({"dev", "prod"})


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All settings. Each field names its environment variable and documents its default."""

    stage: str = _setting("STAGE", "local", "Deployment stage: local, test, dev or prod.")
    sip_domain: str = _setting("SIP_DOMAIN", "sip.example.org", "Domain of the accounts.")
    extra_domains: tuple[str, ...] = _setting(
        "SIP_EXTRA_DOMAINS", (), "Other domains (comma-separated) treated as ours in lists."
    )
    default_region: str = _setting(
        "DEFAULT_REGION", "FR", "Region for national numbers when nothing better is known."
    )
    table_prefix: str = _setting("TABLE_PREFIX", "sc-local-", "Prefix of DynamoDB table names.")
    # Keys (HMAC-SHA256). Locally from the environment, deployed from Secrets Manager.
    phone_hash_key: str = _setting("PHONE_HASH_KEY", DEV_KEY, "HMAC key of the phone index.")
    code_hash_key: str = _setting("CODE_HASH_KEY", DEV_KEY, "HMAC key of stored codes.")
    nonce_key: str = _setting("NONCE_KEY", DEV_KEY, "HMAC key of stateless digest nonces.")
    secrets_arn: str = _setting(
        "SECRETS_ARN", "", "Secrets Manager secret (JSON with the three keys) used when deployed."
    )
    # Verification codes and SMS.
    code_length: int = _setting("CODE_LENGTH", 4, "Digits in an SMS code.")
    code_ttl_seconds: int = _setting("CODE_TTL_SECONDS", 600, "Lifetime of an SMS code.")
    code_max_attempts: int = _setting("CODE_MAX_ATTEMPTS", 5, "Wrong tries before a code dies.")
    code_failures_per_number: int = _setting(
        "CODE_FAILURES_PER_NUMBER",
        9,
        "Wrong code answers one number may take, across all its codes, per"
        " CODE_FAILURE_WINDOW; past it no code is sent to or checked for it (429).",
    )
    code_failure_window: int = _setting(
        "CODE_FAILURE_WINDOW",
        30 * 86400,
        "Sliding window (seconds) of CODE_FAILURES_PER_NUMBER.",
    )
    sms_template: str = _setting(
        "SMS_TEMPLATE", "Your verification code is {code}", "SMS text; {code} is replaced."
    )
    sms_sender_id: str = _setting("SMS_SENDER_ID", "SmartList", "SNS SenderID of the SMS.")
    sms_allowed_regions: tuple[str, ...] = _setting(
        "SMS_ALLOWED_REGIONS",
        ("FR", "BE", "CH", "DE", "GB", "US", "CA"),
        "Regions (ISO codes, comma-separated) that may receive an SMS; others get 403.",
    )
    sms_per_number_interval: int = _setting(
        "SMS_PER_NUMBER_INTERVAL", 60, "Seconds between two SMS to one number."
    )
    sms_per_number_daily: int = _setting(
        "SMS_PER_NUMBER_DAILY", 3, "Sign-up and recovery SMS per number per 24 h."
    )
    sms_number_types: tuple[str, ...] = _setting(
        "SMS_NUMBER_TYPES",
        ("MOBILE", "FIXED_LINE_OR_MOBILE"),
        "phonenumbers number types (comma-separated) that may receive a code; others get 403.",
    )
    sms_per_prefix_daily: int = _setting(
        "SMS_PER_PREFIX_DAILY",
        50,
        "SMS per 24 h to one destination prefix (the number without its last 4 digits).",
    )
    sms_per_ip_daily: int = _setting(
        "SMS_PER_IP_DAILY", 20, "Code requests per source IP per 24 h (with the hourly limit)."
    )
    link_sms_per_number_daily: int = _setting(
        "LINK_SMS_PER_NUMBER_DAILY",
        2,
        "Link SMS per number per 24 h, a budget of their own: link requests never use up"
        " the number's sign-up and recovery SMS.",
    )
    link_requests_per_account_daily: int = _setting(
        "LINK_REQUESTS_PER_ACCOUNT_DAILY", 3, "Link code requests per account per 24 h."
    )
    code_requests_per_ip_hourly: int = _setting(
        "CODE_REQUESTS_PER_IP_HOURLY", 10, "Code requests per source IP per hour."
    )
    sms_global_daily: int = _setting("SMS_GLOBAL_DAILY", 10000, "SMS sent per day, all numbers.")
    password_min_length: int = _setting(
        "PASSWORD_MIN_LENGTH", 8, "Shortest password accepted at sign-up and change."
    )
    # REST limits.
    max_body_bytes: int = _setting("MAX_BODY_BYTES", 256 * 1024, "Largest REST request body.")
    discover_max_phones: int = _setting(
        "DISCOVER_MAX_PHONES", 5000, "Numbers in one contacts/discover call."
    )
    # Web pages (docs/web.md): sessions and forms.
    web_session_idle: int = _setting(
        "WEB_SESSION_IDLE", 1800, "Seconds a web session lasts without a request; then sign in."
    )
    web_session_max_age: int = _setting(
        "WEB_SESSION_MAX_AGE", 43200, "Seconds a web session lasts at most, however active."
    )
    web_sessions_per_account: int = _setting(
        "WEB_SESSIONS_PER_ACCOUNT",
        20,
        "Web sessions one account keeps at once; signing in past it ends the oldest.",
    )
    web_max_form_bytes: int = _setting(
        "WEB_MAX_FORM_BYTES", 16384, "Largest web form body; larger gets a 413 page."
    )
    web_human_check_max_number: int = _setting(
        "WEB_HUMAN_CHECK_MAX_NUMBER",
        100000,
        "Proof of work of the account-request page: the browser hashes up to this many numbers.",
    )
    web_human_check_ttl: int = _setting(
        "WEB_HUMAN_CHECK_TTL", 600, "Seconds a proof-of-work challenge of a page stays valid."
    )
    # Abuse limits (README "Abuse limits"). Discovery: a token bucket per account, shared by
    # REST discover and SUBSCRIBEs; a number the account was answered about before is free.
    discovery_budget: int = _setting(
        "DISCOVERY_BUDGET",
        5000,
        "Tokens of an account's discovery bucket (numbers not seen before).",
    )
    discovery_refill_per_day: int = _setting(
        "DISCOVERY_REFILL_PER_DAY", 100, "Tokens added back to a discovery bucket per day."
    )
    discovery_known_max: int = _setting(
        "DISCOVERY_KNOWN_MAX",
        20000,
        "Numbers remembered per account as already answered (4 bytes each; oldest forgotten).",
    )
    discovery_recheck_seconds: int = _setting(
        "DISCOVERY_RECHECK_SECONDS",
        300,
        "How often a subscription asks again about numbers deferred for lack of tokens.",
    )
    # Password guessing: failure counters shared by REST, SIP digest and XML-RPC.
    auth_pair_failures: int = _setting(
        "AUTH_PAIR_FAILURES", 10, "Failed sign-ins of one account from one address per window."
    )
    auth_pair_window: int = _setting(
        "AUTH_PAIR_WINDOW",
        900,
        "Seconds of the account+address window (then blocked till it ends).",
    )
    auth_source_failures: int = _setting(
        "AUTH_SOURCE_FAILURES", 50, "Failed sign-ins from one address, any accounts, per window."
    )
    auth_source_window: int = _setting(
        "AUTH_SOURCE_WINDOW", 900, "Seconds of the per-address window."
    )
    auth_account_failures: int = _setting(
        "AUTH_ACCOUNT_FAILURES",
        100,
        "Failed sign-ins of one account, any addresses, per window; past it only addresses or"
        " SIP instances that signed in before may try.",
    )
    auth_account_window: int = _setting(
        "AUTH_ACCOUNT_WINDOW", 86400, "Seconds of the per-account window."
    )
    auth_known_days: int = _setting(
        "AUTH_KNOWN_DAYS", 30, "Days an address or SIP instance stays known after a sign-in."
    )
    auth_known_max: int = _setting(
        "AUTH_KNOWN_MAX", 20, "Known addresses and SIP instances kept per account (newest)."
    )
    http_trusted_proxies: tuple[str, ...] = _setting(
        "HTTP_TRUSTED_PROXIES",
        (),
        "Proxy IPs in front of the REST API (comma-sep): the client is then the last"
        " X-Forwarded-For address that is not one of them.",
    )
    # XML-RPC account assistant of the Linphone apps (POST /wizard.php, POST /v1/xmlrpc).
    xmlrpc_max_body_bytes: int = _setting(
        "XMLRPC_MAX_BODY_BYTES", 16384, "Largest XML-RPC request body; larger gets a fault."
    )
    xmlrpc_lookups_per_ip_hourly: int = _setting(
        "XMLRPC_LOOKUPS_PER_IP_HOURLY",
        30,
        "Calls per source IP per hour of the XML-RPC methods that send no SMS"
        " (is_phone_number_used, get_phone_number_for_account, is_account_activated).",
    )
    # Linphone apps: the FlexiAPI account API, push-delivered creation tokens, provisioning.
    public_url: str = _setting(
        "PUBLIC_URL",
        "",
        "Public base URL of the REST API (with API Gateway's stage path, if any), as phones"
        " reach it: provisioning links and the apps' assistant URL start with it. Empty = the"
        " request's own (Host, and the stage path API Gateway names).",
    )
    sip_proxy_uri: str = _setting(
        "SIP_PROXY_URI",
        "",
        "SIP URI provisioned apps send everything to (reg_proxy and reg_route). Empty ="
        " sip:<SIP_ADVERTISED_HOST or SIP_HOST>:<SIP_PORT>;transport=tcp.",
    )
    rls_uri: str = _setting(
        "RLS_URI",
        "",
        "List subscription URI provisioned in the apps; empty = sip:rls@<SIP_DOMAIN>.",
    )
    provisioning_ttl: int = _setting(
        "PROVISIONING_TTL", 900, "Seconds a provisioning link stays usable (once)."
    )
    provisioning_retry_seconds: int = _setting(
        "PROVISIONING_RETRY_SECONDS",
        30,
        "A used provisioning link fetched again from the same address and User-Agent within"
        " this many seconds answers again (an answer lost on the way); anyone else gets 404.",
    )
    provisioning_links_per_account_hourly: int = _setting(
        "PROVISIONING_LINKS_PER_ACCOUNT_HOURLY",
        10,
        "Provisioning links one account may ask for per hour.",
    )
    creation_token_ttl: int = _setting(
        "CREATION_TOKEN_TTL", 600, "Seconds an account-creation token stays usable."
    )
    creation_token_tries: int = _setting(
        "CREATION_TOKEN_TRIES",
        3,
        "Usernames a creation token may be refused (taken) before it is spent: a token is"
        " never an unlimited way to learn which names are taken.",
    )
    pending_account_ttl: int = _setting(
        "PENDING_ACCOUNT_TTL",
        86400,
        "Seconds an app-made account may wait for its phone number; then it is deleted and"
        " its username freed.",
    )
    push_tokens_per_device_daily: int = _setting(
        "PUSH_TOKENS_PER_DEVICE_DAILY", 5, "Creation tokens pushed to one device per 24 h."
    )
    push_tokens_per_device_interval: int = _setting(
        "PUSH_TOKENS_PER_DEVICE_INTERVAL", 10, "Seconds between two tokens pushed to one device."
    )
    push_tokens_per_ip_hourly: int = _setting(
        "PUSH_TOKENS_PER_IP_HOURLY", 10, "Creation tokens asked from one source address per hour."
    )
    push_tokens_global_daily: int = _setting(
        "PUSH_TOKENS_GLOBAL_DAILY", 10000, "Creation tokens pushed per day, all devices."
    )
    push_fcm_application_arn: str = _setting(
        "PUSH_FCM_APPLICATION_ARN",
        "",
        "SNS platform application (GCM/FCM) the fcm tokens go through; empty = fcm refused.",
    )
    push_apns_application_arn: str = _setting(
        "PUSH_APNS_APPLICATION_ARN",
        "",
        "SNS platform application (APNS) the apns tokens go through; empty = apns refused.",
    )
    push_apns_sandbox_application_arn: str = _setting(
        "PUSH_APNS_SANDBOX_APPLICATION_ARN",
        "",
        "SNS platform application (APNS_SANDBOX) for apns.dev (debug builds); empty = refused.",
    )
    request_token_ttl: int = _setting(
        "REQUEST_TOKEN_TTL",
        3600,
        "Seconds a creation request token (the desktop app's page to validate) stays usable.",
    )
    request_tokens_per_ip_hourly: int = _setting(
        "REQUEST_TOKENS_PER_IP_HOURLY", 10, "Creation request tokens per source address per hour."
    )
    # Resource lists and NOTIFY bodies.
    list_max_inflated_bytes: int = _setting(
        "LIST_MAX_INFLATED_BYTES", 1024 * 1024, "Largest resource list after inflate."
    )
    list_max_entries: int = _setting("LIST_MAX_ENTRIES", 5000, "Entries in one resource list.")
    notify_limit: int = _setting(
        "NOTIFY_LIMIT", 200, "Users in one NOTIFY body before splitting (Flexisip notify-limit)."
    )
    notify_max_bytes: int = _setting(
        "NOTIFY_MAX_BYTES", 12000, "Largest NOTIFY body sent when splitting (fits UDP)."
    )
    notify_min_interval: float = _setting(
        "NOTIFY_MIN_INTERVAL", 2.0, "Seconds between two NOTIFYs of one subscription."
    )
    # SIP registrar and subscriptions (RFC 3261 §10, RFC 6665).
    register_default_expires: int = _setting(
        "REGISTER_DEFAULT_EXPIRES", 3600, "Binding lifetime when REGISTER names none."
    )
    register_min_expires: int = _setting(
        "REGISTER_MIN_EXPIRES", 60, "Shortest binding; shorter gets 423 with Min-Expires."
    )
    register_max_expires: int = _setting(
        "REGISTER_MAX_EXPIRES", 86400, "Longest binding; longer requests are clamped."
    )
    register_max_bindings: int = _setting(
        "REGISTER_MAX_BINDINGS", 10, "Live contacts one account may register."
    )
    register_max_contact_bytes: int = _setting(
        "REGISTER_MAX_CONTACT_BYTES",
        1024,
        "Longest Contact URI plus parameters a binding stores (push tokens fit); longer is 400."
        " Over UDP a 200 lists the request's own bindings first, then others while within 3x"
        " the request's size.",
    )
    subscribe_default_expires: int = _setting(
        "SUBSCRIBE_DEFAULT_EXPIRES", 3600, "Subscription lifetime when SUBSCRIBE names none."
    )
    subscribe_min_expires: int = _setting(
        "SUBSCRIBE_MIN_EXPIRES", 60, "Shortest subscription; shorter gets 423."
    )
    subscribe_max_expires: int = _setting(
        "SUBSCRIBE_MAX_EXPIRES", 86400, "Longest subscription; longer requests are clamped."
    )
    subscribe_max_dialogs_per_account: int = _setting(
        "SUBSCRIBE_MAX_DIALOGS_PER_ACCOUNT",
        20,
        "Live subscription dialogs one account may hold on an edge (its phones and lists);"
        " a new SUBSCRIBE past it gets 403. Bounds what one account costs an edge's memory.",
    )
    edge_reload_wait: float = _setting(
        "EDGE_RELOAD_WAIT",
        10.0,
        "Seconds an edge waits for its stored dialogs at start before serving anyway; the"
        " reload goes on with backoff and resumes them when the backend answers.",
    )
    edge_stop_wait: float = _setting(
        "EDGE_STOP_WAIT",
        5.0,
        "Seconds a stopping edge spends storing which dialogs' phones now hold a full state"
        " (a new dialog is stored before its first NOTIFY), so the next edge owes them none;"
        " those left over get one from it. Within the ECS task's StopTimeout (30 s).",
    )
    edge_notify_concurrency: int = _setting(
        "EDGE_NOTIFY_CONCURRENCY",
        8,
        "Dialogs an edge brings up to date at once (live changes, and the full states owed"
        " after a reload or a failed refresh); the others wait their turn, leaving the rest"
        " of SIP_MAX_INFLIGHT_CALLS to phones' requests. Keep it below that.",
    )
    edge_dialog_inline_entries_bytes: int = _setting(
        "EDGE_DIALOG_INLINE_ENTRIES_BYTES",
        65_536,
        "Largest deflated list an edge keeps inline in a dialog (5,000 phone numbers take"
        " ~28 KB); a larger one is kept as 8-byte keys per entry and its full-state NOTIFYs"
        " read the stored list (one more DynamoDB read each).",
    )
    load_edge_page_bytes: int = _setting(
        "LOAD_EDGE_PAGE_BYTES",
        1_000_000,
        "Approximate size of one answer of the edge's dialog reload (load_edge is paged;"
        " Lambda answers are capped at 6 MB). A single larger dialog still comes alone.",
    )
    publish_default_expires: int = _setting(
        "PUBLISH_DEFAULT_EXPIRES", 3600, "Publication lifetime when PUBLISH names none."
    )
    publish_min_expires: int = _setting(
        "PUBLISH_MIN_EXPIRES", 60, "Shortest publication; shorter gets 423."
    )
    publish_max_expires: int = _setting(
        "PUBLISH_MAX_EXPIRES", 86400, "Longest publication; longer requests are clamped."
    )
    publish_max_body_bytes: int = _setting(
        "PUBLISH_MAX_BODY_BYTES", 16384, "Largest PIDF accepted in a PUBLISH."
    )
    # SIP edge (sip_edge/).
    sip_host: str = _setting("SIP_HOST", "127.0.0.1", "Address the edge listens on.")
    sip_port: int = _setting("SIP_PORT", 5060, "UDP and TCP port of the edge.")
    sip_tls_port: int = _setting("SIP_TLS_PORT", 5061, "TLS port, used when a certificate is set.")
    sip_tls_cert: str = _setting("SIP_TLS_CERT", "", "PEM certificate chain; empty = no TLS.")
    sip_tls_key: str = _setting("SIP_TLS_KEY", "", "PEM private key of the certificate.")
    sip_advertised_host: str = _setting(
        "SIP_ADVERTISED_HOST", "", "Host put in Via/Contact (the NLB name); empty = SIP_HOST."
    )
    sip_max_connections: int = _setting(
        "SIP_MAX_CONNECTIONS", 10000, "Open TCP/TLS connections; more are refused."
    )
    sip_max_connections_per_source: int = _setting(
        "SIP_MAX_CONNECTIONS_PER_SOURCE",
        1000,
        "Open TCP/TLS connections from one address; more are refused (generous: a carrier NAT"
        " puts many phones behind one).",
    )
    sip_first_message_timeout: float = _setting(
        "SIP_FIRST_MESSAGE_TIMEOUT",
        10.0,
        "Seconds a new TCP/TLS connection has to send a complete SIP message before it is"
        " closed; CRLF keep-alives do not count until one has.",
    )
    sip_idle_timeout: float = _setting(
        "SIP_IDLE_TIMEOUT", 900.0, "Seconds before an idle TCP/TLS connection is closed."
    )
    sip_partial_timeout: float = _setting(
        "SIP_PARTIAL_TIMEOUT", 30.0, "Seconds a half-sent message may wait before closing."
    )
    sip_max_message_bytes: int = _setting(
        "SIP_MAX_MESSAGE_BYTES", 294912, "Largest SIP message accepted (headers + body)."
    )
    sip_flood_requests: int = _setting(
        "SIP_FLOOD_REQUESTS", 200, "Requests one address may send per flood window; more = ban."
    )
    sip_flood_window: float = _setting(
        "SIP_FLOOD_WINDOW", 2.0, "Seconds of the per-address flood window."
    )
    sip_flood_ban: float = _setting(
        "SIP_FLOOD_BAN", 60.0, "Seconds a flooding address is ignored (UDP) or refused (TCP/TLS)."
    )
    sip_flood_max_sources: int = _setting(
        "SIP_FLOOD_MAX_SOURCES",
        20000,
        "Addresses one edge tracks for flooding (oldest forgotten): bounds memory under a"
        " spoofed-source flood.",
    )
    sip_functions: str = _setting(
        "SIP_FUNCTIONS",
        "inprocess",
        "How the edge calls the functions: inprocess, lambda, or socket (served by `make run`'s"
        " function host on SIP_FUNCTIONS_SOCKET).",
    )
    sip_functions_socket: str = _setting(
        "SIP_FUNCTIONS_SOCKET", "", "Unix socket of the function host in socket mode."
    )
    sip_function_prefix: str = _setting(
        "SIP_FUNCTION_PREFIX", "smart-contacts-dev-", "Lambda name prefix in lambda mode."
    )
    sip_trusted_proxies: tuple[str, ...] = _setting(
        "SIP_TRUSTED_PROXIES", (), "Upstream proxy IPs whose requests skip digest (comma-sep)."
    )
    sip_digest_algorithms: tuple[str, ...] = _setting(
        "SIP_DIGEST_ALGORITHMS",
        ("SHA-256", "MD5"),
        "Digest challenges the edge offers, in order (comma-sep SHA-256, MD5); others refused.",
    )
    sip_digest_md5_agents: tuple[str, ...] = _setting(
        "SIP_DIGEST_MD5_AGENTS",
        ("baresip",),
        "User-Agent substrings (comma-sep, any case) challenged with MD5 alone: their stack gives"
        " up at a first challenge it cannot answer (baresip 1.0). See docs/digest.md.",
    )
    sip_server_header: str = _setting(
        "SIP_SERVER_HEADER",
        "",
        "Server header of the edge's responses and User-Agent of its requests; empty = none"
        " (scanners such as svmap read it to pick targets).",
    )
    sip_profile: str = _setting(
        "SIP_PROFILE", "auto", "NOTIFY profile: auto (from User-Agent), linphone or rfc."
    )
    sip_linphone_agents: tuple[str, ...] = _setting(
        "SIP_LINPHONE_AGENTS",
        ("linphone", "belle-sip", "unknown"),
        "User-Agent substrings (lower-case) served the linphone profile in auto mode.",
    )
    edge_id: str = _setting("EDGE_ID", "", "This edge's id (its queue); empty = host:port.")
    edge_queue_prefix: str = _setting(
        "EDGE_QUEUE_PREFIX", "sc-local-edge-", "Name prefix of the edges' SQS queues."
    )
    edge_queue_wait: int = _setting(
        "EDGE_QUEUE_WAIT",
        20,
        "Long-poll seconds of the edge's queue (1-20); read timeout: this + AWS_READ_TIMEOUT.",
    )
    edge_queue_url: str = _setting(
        "EDGE_QUEUE_URL", "", "SQS queue of this edge; empty = created at start."
    )
    edge_metrics_interval: float = _setting(
        "EDGE_METRICS_INTERVAL", 60.0, "Seconds between two flushes of the edge's EMF metrics."
    )
    edge_queue_visibility: int = _setting(
        "EDGE_QUEUE_VISIBILITY",
        30,
        "Seconds before a change an edge read but did not notify (killed, say) is read again.",
    )
    notify_full_state_on_removal: str = _setting(
        "NOTIFY_FULL_STATE_ON_REMOVAL",
        "linphone",
        "When a number stops being a user, send full state: linphone (that profile only: "
        "Linphone 5.1 ignores a partial one), always, or never.",
    )
    # SIP digest.
    nonce_ttl_seconds: int = _setting("NONCE_TTL_SECONDS", 300, "Lifetime of a digest nonce.")
    # Failure behaviour: deadlines, fail-fast and retries (README "Failure behaviour").
    sip_request_deadline: float = _setting(
        "SIP_REQUEST_DEADLINE",
        2.0,
        "Seconds within which every SIP request gets its final "
        "response; a function slower than that gets the phone a 503.",
    )
    rest_deadline: float = _setting(
        "REST_DEADLINE",
        5.0,
        "Seconds of AWS calls one REST request may spend (API Gateway "
        "allows 29); past it the route answers 503.",
    )
    retry_after: int = _setting(
        "RETRY_AFTER", 3, "Retry-After seconds of a 503 (SIP and REST), before jitter."
    )
    retry_after_jitter: int = _setting(
        "RETRY_AFTER_JITTER", 3, "Up to this many seconds added at random to each Retry-After."
    )
    sip_max_inflight_calls: int = _setting(
        "SIP_MAX_INFLIGHT_CALLS",
        16,
        "Function calls one edge runs at once; a request needing one more gets 503 at once.",
    )
    sip_breaker_failures: int = _setting(
        "SIP_BREAKER_FAILURES",
        5,
        "Consecutive failures of one function that open its "
        "circuit breaker (503 at once, no call).",
    )
    sip_breaker_reset: float = _setting(
        "SIP_BREAKER_RESET", 5.0, "Seconds an open breaker waits before one probe call."
    )
    aws_connect_timeout: float = _setting(
        "AWS_CONNECT_TIMEOUT", 0.5, "boto3 connect timeout (seconds)."
    )
    aws_read_timeout: float = _setting(
        "AWS_READ_TIMEOUT", 1.5, "boto3 read timeout (seconds): a stalled AWS call ends here."
    )
    aws_max_attempts: int = _setting(
        "AWS_MAX_ATTEMPTS", 2, "boto3 attempts per call (standard retry mode, first included)."
    )

    def __post_init__(self) -> None:
        if self.stage in DEPLOYED_STAGES:
            for name in ("phone_hash_key", "code_hash_key", "nonce_key"):
                if getattr(self, name) == DEV_KEY:
                    raise RuntimeError(
                        f"refusing to start stage {self.stage!r} with the development {name}"
                    )

    @property
    def provisioned_proxy(self) -> str:
        host = self.sip_advertised_host or self.sip_host
        return self.sip_proxy_uri or f"sip:{host}:{self.sip_port};transport=tcp"

    @property
    def provisioned_rls_uri(self) -> str:
        return self.rls_uri or f"sip:rls@{self.sip_domain}"

    @property
    def domains(self) -> frozenset[str]:
        return frozenset({self.sip_domain.lower(), *(d.lower() for d in self.extra_domains)})


def _convert(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        items = tuple(p.strip() for p in raw.split(",") if p.strip())
        # Region codes are compared upper-case everywhere (phonenumbers' convention).
        return tuple(p.upper() for p in items) if name.endswith("regions") else items
    return raw


def aws_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"


def _secret_values(arn: str) -> dict[str, str]:
    # A client of its own: the shared factory (chalicelib.aws) reads its timeouts from here.
    import boto3

    secrets = boto3.session.Session().client("secretsmanager", region_name=aws_region())
    value = secrets.get_secret_value(SecretId=arn)["SecretString"]
    data = json.loads(value)
    return {k.lower(): v for k, v in data.items()}


def from_env(name: str) -> Any:
    """One setting from the environment, without `load()` (and its Secrets Manager call): for
    the AWS client factory, which `load()` itself needs."""
    f = next(f for f in fields(Settings) if f.name == name)
    raw = os.environ.get(f.metadata["env"])
    return f.default if raw is None else _convert(f.name, raw, f.default)


def load(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping (os.environ by default)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f.metadata["env"]
        if name in env:
            values[f.name] = _convert(f.name, env[name], f.default)
    if values.get("secrets_arn"):
        for key, secret in _secret_values(values["secrets_arn"]).items():
            if key in {"phone_hash_key", "code_hash_key", "nonce_key"}:
                values[key] = secret
    return Settings(**values)


@lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings (cached; tests call `get.cache_clear()` after changing env)."""
    return load()


def markdown() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        default = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        lines.append(f"| `{f.metadata['env']}` | `{default}` | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print("# Settings\n\nGenerated by `python -m chalicelib.settings`.\n\n" + markdown())
