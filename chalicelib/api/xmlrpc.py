"""XML-RPC on the wire: parse a `methodCall` safely and write `methodResponse`s and faults.

Requests come from the Internet, so the parser refuses what XML-RPC never needs: a DOCTYPE
(hence entity declarations, internal or external), entity references, processing instructions
and network access, and bodies over a size cap. Every refusal is an `XmlRpcFault`, answered
as an XML-RPC fault, never an HTTP error. Only string parameters are accepted: the Linphone
assistant sends nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from chalicelib import safe_xml

#: Fault codes of the "specification for fault code interoperability" (xmlrpc-epi).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

#: Deepest element nesting a methodCall of strings can need (methodCall/params/param/value/x).
_MAX_DEPTH = 6
_MAX_METHOD_NAME = 128


class XmlRpcFault(Exception):
    """A call this server cannot run; answered as `<fault>` with `code` and `message`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class MethodCall:
    name: str
    params: list[str]


def _text_only(element: etree._Element, what: str) -> str:
    if len(element):
        raise XmlRpcFault(INVALID_REQUEST, f"{what}: expected text, found an element")
    return element.text or ""


def _param_value(param: etree._Element, index: int) -> str:
    values = [child for child in param if child.tag == "value"]
    if len(values) != 1 or len(param) != 1:
        raise XmlRpcFault(INVALID_REQUEST, f"param {index}: expected one <value>")
    value = values[0]
    if len(value) == 0:
        # XML-RPC: a value without a type element is a string.
        return value.text or ""
    if len(value) != 1 or value[0].tag != "string":
        kind = value[0].tag if isinstance(value[0].tag, str) else "non-element"
        raise XmlRpcFault(INVALID_PARAMS, f"param {index}: expected a string, got <{kind}>")
    if (value.text or "").strip() or (value[0].tail or "").strip():
        raise XmlRpcFault(INVALID_REQUEST, f"param {index}: text beside <string>")
    return _text_only(value[0], f"param {index}")


def parse_call(body: bytes, *, max_bytes: int) -> MethodCall:
    """The method name and string parameters of an XML-RPC `methodCall` body."""
    if len(body) > max_bytes:
        raise XmlRpcFault(PARSE_ERROR, f"body larger than {max_bytes} bytes")
    if not body.strip():
        raise XmlRpcFault(PARSE_ERROR, "empty body")
    try:
        root = etree.fromstring(body, parser=safe_xml.parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRpcFault(PARSE_ERROR, f"not well-formed XML: {exc.msg}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRpcFault(PARSE_ERROR, "DOCTYPE is not allowed")
    for node in root.iter():
        if not isinstance(node.tag, str):
            # An entity reference left unresolved (resolve_entities=False) or similar.
            raise XmlRpcFault(PARSE_ERROR, "entities are not allowed")
        if node.nsmap or (node.tag and node.tag.startswith("{")):
            raise XmlRpcFault(INVALID_REQUEST, "namespaces are not used by XML-RPC")
    if _depth(root) > _MAX_DEPTH:
        raise XmlRpcFault(INVALID_REQUEST, "nested too deeply for a call with string params")
    if root.tag != "methodCall":
        raise XmlRpcFault(INVALID_REQUEST, f"root element is <{root.tag}>, not <methodCall>")
    names = [child for child in root if child.tag == "methodName"]
    params_elements = [child for child in root if child.tag == "params"]
    others = [child for child in root if child.tag not in {"methodName", "params"}]
    if len(names) != 1 or len(params_elements) > 1 or others:
        raise XmlRpcFault(INVALID_REQUEST, "expected <methodName> and at most one <params>")
    name = _text_only(names[0], "methodName").strip()
    if not name or len(name) > _MAX_METHOD_NAME:
        raise XmlRpcFault(INVALID_REQUEST, "methodName: empty or too long")
    params: list[str] = []
    if params_elements:
        for index, param in enumerate(params_elements[0], start=1):
            if param.tag != "param":
                raise XmlRpcFault(INVALID_REQUEST, f"<params> holds a <{param.tag}>")
            params.append(_param_value(param, index))
    return MethodCall(name, params)


def _depth(root: etree._Element) -> int:
    deepest = 0
    for node in root.iter():
        depth = 1
        parent = node.getparent()
        while parent is not None:
            depth += 1
            parent = parent.getparent()
        deepest = max(deepest, depth)
    return deepest


_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    # Characters XML 1.0 cannot carry (an echo of hostile input in a fault message).
    return _XML_INVALID.sub("\ufffd", text)


def _document(params_or_fault: etree._Element) -> str:
    root = etree.Element("methodResponse")
    root.append(params_or_fault)
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return body.decode("utf-8")


def _value(text: str) -> etree._Element:
    value = etree.Element("value")
    etree.SubElement(value, "string").text = _clean(text)
    return value


def string_response(text: str) -> str:
    """`methodResponse/params/param/value/string`: what the SDK reads for most methods."""
    params = etree.Element("params")
    etree.SubElement(params, "param").append(_value(text))
    return _document(params)


def struct_response(members: list[tuple[str, str]]) -> str:
    """A struct of string members, in the given order (the SDK 5.1 reads them by position)."""
    params = etree.Element("params")
    value = etree.SubElement(etree.SubElement(params, "param"), "value")
    struct = etree.SubElement(value, "struct")
    for name, text in members:
        member = etree.SubElement(struct, "member")
        etree.SubElement(member, "name").text = name
        member.append(_value(text))
    return _document(params)


def fault_response(code: int, message: str) -> str:
    """`<fault>` with the standard faultCode/faultString struct."""
    fault = etree.Element("fault")
    struct = etree.SubElement(etree.SubElement(fault, "value"), "struct")
    for name, child in (("faultCode", "int"), ("faultString", "string")):
        member = etree.SubElement(struct, "member")
        etree.SubElement(member, "name").text = name
        typed = etree.SubElement(etree.SubElement(member, "value"), child)
        typed.text = str(code) if child == "int" else _clean(message)
    return _document(fault)
