"""Names `vulture` (run by `make lint`/`make test`) cannot see used; each says who uses it.

Add a name here only with its reason: anything else vulture reports is dead code to remove.
"""

from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# chalicelib --------------------------------------------------------------------------------
_.user_agent  # an XML-RPC create_phone_account parameter: Linphone sends it, positionally
_.unprocessed_retries  # CallCounter: read by tests/test_phone_index.py (retries happen)
_.secrets_arn  # Settings field: read by name (values["secrets_arn"]) in settings.load
_.lambda_python_version  # infra.chalice_pinned: chalice reads the property it pins
# chalicelib.web.pages.Flow: read by the code step's template (templates/code.html).
_.resend
_.back
_.resend_fields
_.seen_iso  # chalicelib.web.pages._Shown: read by templates/devices.html
# edge_contract TypedDict keys written and read only by their string names.
_.body_b64
_.schema
_.deleted
_.list_b64
_.subscription_ids
_.credentials_replaced  # SignupResult: serialised by to_json (asdict) for the REST answer
_.sessions_ended  # SignupResult: likewise

# sip_edge ----------------------------------------------------------------------------------
# asyncio protocol callbacks, called by the event loop.
_.connection_made
_.datagram_received
_.error_received
_.data_received
_.connection_lost
_.final_response  # ClientTransaction state, read by tests/sip/test_transaction.py
_.get_list  # Headers: read by tests/sip (RFC 4475 list headers) and kept as the list accessor
_.opaque  # URI of a non-SIP scheme: read by tests/sip/test_rfc4475.py
_.token68  # DigestCredentials of a non-Digest scheme (e.g. Basic): read by tests/test_digest.py
_.charged  # discovery_budget.Charge: read by tests/test_discovery_budget.py (tokens taken)
_.tracked  # FloodGuard: read by tests/edge/test_flood.py (memory stays bounded)
_.signup_retries  # testkit.chaos Report field: printed with the others (dataclasses.fields)
_.aws_read_timeout  # Settings field: read by name (settings.from_env) in chalicelib.aws
_.aws_max_attempts  # Settings field: likewise
_.fmt  # BotoCoreError subclasses: botocore formats the message from `fmt`
_.is_open  # the edge's per-function breaker: read by tests/faults/test_edge_faults.py
_.original  # devstack.moto_local: moto's unpatched methods, read by tests/test_moto_local.py
_.load_edge  # subscriptions.load_edge: every page at once, read by tests (restart fixtures)
_.keys_key_hex  # edge_contract.SubscriptionLoad key: written and read by its string name
_.entry_keys_b64  # edge_contract.StoredSubscription key: likewise
_.sipp_errors  # testkit.chaos Report: SIPp's errors, shown by tests/faults/test_chaos.py
_.shard_iterators  # devstack.moto_local: moto's stream backend attribute, replaced by a bounded map
_.direct  # devstack.moto_local switch: turned off by tests/faults/botofaults.py, on by conftest
_.response_headers  # devstack.moto_local: a DynamoHandler attribute moto's own methods read
_.current_account  # devstack.moto_local: likewise (which account's backend moto answers from)
_.automated_parameter_parsing  # devstack.moto_local: a moto handler attribute (_get_param reads it)
_.daemon_threads  # devstack.function_host: socketserver's class attributes, read by socketserver
_.request_queue_size  # likewise

# testkit (helpers of the tests and benchmarks) ---------------------------------------------
_.raw_headers  # notify_body.ParsedPart: read by tests/test_bodies.py (spellings email normalises)
_.authorized  # sip_client.SipClient: digest-answered requests, sent by the edge tests
_.DM  # notify_body: the PIDF data-model namespace, read by tests/test_bodies.py
_.RPID  # notify_body: the RPID namespace, likewise
_.close_connection  # fault_proxy: http.server's BaseHTTPRequestHandler reads it (drop the peer)
# fault_proxy's request handler: http.server calls these by name and reads these attributes.
_.protocol_version
_.log_message
_.do_GET
_.do_PUT
_.do_DELETE
_.do_HEAD
_.wait_until  # wait: the tests' wait for an event (seconds_until when they report the time)
