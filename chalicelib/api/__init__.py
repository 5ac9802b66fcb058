"""Adapters: the REST API, the XML-RPC account assistant, and the functions the SIP edge calls.

Owns HTTP plumbing and authentication (`http_api`, `http_auth`), the REST routes' logic
(`account_api`), XML-RPC (`xmlrpc` codec, `xmlrpc_api` methods), and the edge-facing function
contracts (`sip_auth`, `presence_lookup`, `idempotency`). May import every other package and
the shared core; nothing imports it but `app.py`, `devstack` and the tests.
"""
