"""XML-RPC parsing and faults: the SDK's captured calls parse; hostile or malformed bodies
(DOCTYPE, entities, oversized, not XML, wrong shapes, non-string params, unknown methods,
wrong argument counts) are answered with a fault over HTTP 200, never a 500."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.api import xmlrpc
from chalicelib.api.xmlrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    XmlRpcFault,
    parse_call,
)
from testkit.sms import sent_sms
from tests.xmlrpc_support import (
    capture,
    capture_names,
    method_call,
    parse_answer,
    post_xml,
)

MAX = 16384

EXPECTED_PARAMS = {
    "create_phone_account": 7,
    "activate_phone_account": 5,
    "is_phone_number_used": 2,
    "link_phone_number_with_account": 4,
    "activate_phone_number_link": 6,
    "get_phone_number_for_account": 2,
    "is_account_activated": 3,
    "recover_phone_account": 3,
    "recover_account_from_confirmation_key": 4,
}


@pytest.mark.parametrize("name", capture_names())
def test_every_capture_parses_to_its_method_and_string_params(name):
    cap = capture(name)
    assert (cap.method, cap.path, cap.headers["Content-Type"]) == (
        "POST",
        "/wizard.php",
        "text/xml",
    )
    call = parse_call(cap.body, max_bytes=MAX)
    assert call.name == name
    assert len(call.params) == EXPECTED_PARAMS[name]
    assert "example.org" in call.params


def test_captures_cover_every_method_of_the_readme_table():
    assert set(capture_names()) == set(EXPECTED_PARAMS)


def test_untyped_value_is_a_string_and_empty_string_is_kept():
    body = (
        b"<methodCall><methodName>m</methodName><params>"
        b"<param><value>plain</value></param><param><value><string/></value></param>"
        b"</params></methodCall>"
    )
    assert parse_call(body, max_bytes=MAX).params == ["plain", ""]


def test_no_params_element_means_no_params():
    assert (
        parse_call(b"<methodCall><methodName>m</methodName></methodCall>", max_bytes=MAX).params
        == []
    )


def test_escaped_characters_are_text_not_markup():
    body = method_call("m", "<a>&amp;</a>")
    assert parse_call(body, max_bytes=MAX).params == ["<a>&amp;</a>"]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<methodCall><methodName>is_phone_number_used</methodName><params>
<param><value><string>&lol3;</string></value></param>
<param><value><string>example.org</string></value></param></params></methodCall>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>is_phone_number_used</methodName><params>
<param><value><string>&xxe;</string></value></param>
<param><value><string>example.org</string></value></param></params></methodCall>"""

NETWORK_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE methodCall SYSTEM "http://127.0.0.1:9/evil.dtd">
<methodCall><methodName>m</methodName></methodCall>"""

UNDECLARED_ENTITY = b"<methodCall><methodName>m&foo;</methodName></methodCall>"

HOSTILE = {
    "billion laughs": (BILLION_LAUGHS, PARSE_ERROR),
    "external entity": (EXTERNAL_ENTITY, PARSE_ERROR),
    "network DTD": (NETWORK_DTD, PARSE_ERROR),
    "undeclared entity": (UNDECLARED_ENTITY, PARSE_ERROR),
    "not XML": (b"hello", PARSE_ERROR),
    "truncated": (method_call("m", "x")[:-10], PARSE_ERROR),
    "empty": (b"", PARSE_ERROR),
    "JSON": (b'{"methodName": "m"}', PARSE_ERROR),
    "wrong root": (b"<methodResponse/>", INVALID_REQUEST),
    "no methodName": (b"<methodCall><params/></methodCall>", INVALID_REQUEST),
    "two methodNames": (
        b"<methodCall><methodName>a</methodName><methodName>b</methodName></methodCall>",
        INVALID_REQUEST,
    ),
    "element in methodName": (
        b"<methodCall><methodName><b>x</b></methodName></methodCall>",
        INVALID_REQUEST,
    ),
    "namespace": (
        b'<methodCall xmlns="urn:x"><methodName>m</methodName></methodCall>',
        INVALID_REQUEST,
    ),
    "stray element": (
        b"<methodCall><methodName>m</methodName><evil/></methodCall>",
        INVALID_REQUEST,
    ),
    "int param": (
        b"<methodCall><methodName>m</methodName><params><param><value><int>4</int></value>"
        b"</param></params></methodCall>",
        INVALID_PARAMS,
    ),
    "struct param": (
        b"<methodCall><methodName>m</methodName><params><param><value><struct><member>"
        b"<name>a</name><value>b</value></member></struct></value></param></params></methodCall>",
        INVALID_REQUEST,
    ),
    "array param": (
        b"<methodCall><methodName>m</methodName><params><param><value><array><data/></array>"
        b"</value></param></params></methodCall>",
        INVALID_PARAMS,
    ),
    "nested element in string": (
        b"<methodCall><methodName>m</methodName><params><param><value><string><x/></string>"
        b"</value></param></params></methodCall>",
        INVALID_REQUEST,
    ),
    "two values": (
        b"<methodCall><methodName>m</methodName><params><param><value>a</value><value>b</value>"
        b"</param></params></methodCall>",
        INVALID_REQUEST,
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_or_malformed_bodies_are_refused_by_the_parser(name):
    body, code = HOSTILE[name]
    with pytest.raises(XmlRpcFault) as exc:
        parse_call(body, max_bytes=MAX)
    assert exc.value.code == code


def test_oversized_body_is_refused_before_parsing():
    body = method_call("m", "x" * MAX)
    with pytest.raises(XmlRpcFault) as exc:
        parse_call(body, max_bytes=MAX)
    assert exc.value.code == PARSE_ERROR and "larger" in exc.value.message


def test_deep_nesting_is_refused():
    body = (
        b"<methodCall><methodName>m</methodName>" + b"<a>" * 300 + b"</a>" * 300 + b"</methodCall>"
    )
    with pytest.raises(XmlRpcFault):
        parse_call(body, max_bytes=MAX)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_fault(data):
    try:
        parse_call(data, max_bytes=MAX)
    except XmlRpcFault:
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_survives_a_round_trip_through_responses(text):
    # Answers and fault messages may echo input: always well-formed XML.
    assert parse_answer(xmlrpc.string_response(text)).string is not None
    assert parse_answer(xmlrpc.fault_response(1, text)).fault[0] == 1


# --- Over HTTP: faults, never a 500 -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("path", ["/wizard.php", "/v1/xmlrpc"])
def test_hostile_bodies_get_a_fault_with_http_200(api, name, path):
    body, code = HOSTILE[name]
    answer = parse_answer(post_xml(api, body, path).body)
    assert answer.fault is not None and answer.fault[0] == code
    assert sent_sms() == []


def test_oversized_body_gets_a_fault_over_http(api):
    answer = parse_answer(
        post_xml(api, method_call("is_phone_number_used", "x" * 20000, "example.org")).body
    )
    assert answer.fault[0] == PARSE_ERROR


def test_entity_never_expands_into_a_lookup(api):
    answer = parse_answer(post_xml(api, EXTERNAL_ENTITY).body)
    assert answer.fault[0] == PARSE_ERROR
    assert "root:" not in str(answer.fault[1])


def test_unknown_method_is_a_fault(api):
    answer = parse_answer(post_xml(api, method_call("system.listMethods")).body)
    assert answer.fault[0] == METHOD_NOT_FOUND


@pytest.mark.parametrize("method", sorted(EXPECTED_PARAMS))
@pytest.mark.parametrize("delta", [-1, +1])
def test_wrong_argument_count_is_a_fault(api, method, delta):
    params = ["x"] * (EXPECTED_PARAMS[method] + delta)
    answer = parse_answer(post_xml(api, method_call(method, *params)).body)
    assert answer.fault[0] == INVALID_PARAMS
    assert sent_sms() == []


def test_non_string_params_are_a_fault(api):
    body = (
        b"<methodCall><methodName>is_phone_number_used</methodName><params>"
        b"<param><value><i4>33612345678</i4></value></param>"
        b"<param><value><string>example.org</string></value></param></params></methodCall>"
    )
    assert parse_answer(post_xml(api, body).body).fault[0] == INVALID_PARAMS


def test_wrong_content_type_is_a_fault_not_a_415(api):
    r = api.http.post(
        "/wizard.php",
        headers={"Content-Type": "application/json"},
        body=method_call("is_phone_number_used", "+33612345678", "example.org"),
    )
    assert r.status_code == 200
    assert parse_answer(r.body).fault[0] == INVALID_REQUEST


def test_application_xml_is_accepted(api):
    r = post_xml(api, method_call("is_phone_number_used", "+33612345678", "example.org"))
    r2 = api.http.post(
        "/v1/xmlrpc",
        headers={"Content-Type": "application/xml; charset=utf-8"},
        body=method_call("is_phone_number_used", "+33612345678", "example.org"),
    )
    assert parse_answer(r.body) == parse_answer(r2.body)


def test_an_unexpected_failure_is_a_fault_not_a_500(api, monkeypatch):
    from chalicelib.api import xmlrpc_api

    def boom(caller, phone_raw, domain):
        raise RuntimeError("boom")

    monkeypatch.setitem(xmlrpc_api.METHODS, "is_phone_number_used", boom)
    answer = parse_answer(post_xml(api, method_call("is_phone_number_used", "a", "b")).body)
    assert answer.fault == (xmlrpc.INTERNAL_ERROR, "internal error")
