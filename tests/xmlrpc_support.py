"""Helpers of the XML-RPC assistant tests: the captured SDK requests, calls, answer parsing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from lxml import etree

from tests.conftest import INTEROP

CAPTURES = INTEROP / "xmlrpc"
DOMAIN = "example.org"
PHONE = "+33612345678"
#: The HA1 in the captures: the SHA-256 HA1 the SDK computed for bob@example.org.
CAPTURED_HA1 = "f7dfffb9ffe954f5567e6ce036fab05b75b1960bdfc919625263ab08b9f5e8e4"
#: The code in the captures (tests make the SMS code generator answer it).
CAPTURED_CODE = "1234"


@dataclass(frozen=True)
class Capture:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def capture(name: str, domain: str = DOMAIN) -> Capture:
    """One captured HTTP request of the SDK (`xmlrpc/<name>.txt`): request line, headers,
    blank line, body. Its SIP domain is replaced by `domain` if the capture used another."""
    raw = (CAPTURES / f"{name}.txt").read_bytes()
    lines = raw.split(b"\n")
    blank = next(i for i, line in enumerate(lines) if not line.strip())
    method, path, _ = lines[0].decode().strip().split(" ", 2)
    headers = {}
    for line in lines[1:blank]:
        key, _, value = line.decode().partition(":")
        headers[key.strip()] = value.strip()
    body = b"\n".join(lines[blank + 1 :])
    assert int(headers["Content-Length"]) == len(body), name
    body = body.replace(b"<string>example.org</string>", f"<string>{domain}</string>".encode())
    return Capture(method, path, headers, body)


def capture_names() -> list[str]:
    return sorted(p.stem for p in CAPTURES.glob("*.txt"))


def method_call(method: str, *params: str) -> bytes:
    """A methodCall as the SDK writes it (all params strings)."""
    root = etree.Element("methodCall")
    etree.SubElement(root, "methodName").text = method
    ps = etree.SubElement(root, "params")
    for value in params:
        etree.SubElement(
            etree.SubElement(etree.SubElement(ps, "param"), "value"), "string"
        ).text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclass(frozen=True)
class Answer:
    """A parsed methodResponse: `string`, `struct` (name -> value, in order) or `fault`."""

    string: str | None = None
    struct: list[tuple[str, str]] | None = None
    fault: tuple[int, str] | None = None


def parse_answer(body: bytes | str) -> Answer:
    """Read the answer the way SDK 5.1's xmlrpc.c does (XPath on methodResponse)."""
    data = body.encode() if isinstance(body, str) else body
    root = etree.fromstring(data)
    assert root.tag == "methodResponse"
    fault = root.find("fault")
    if fault is not None:
        members = {
            m.findtext("name"): m.find("value")[0].text
            for m in fault.iterfind("value/struct/member")
        }
        return Answer(fault=(int(members["faultCode"]), members["faultString"]))
    string = root.find("params/param/value/string")
    if string is not None:
        return Answer(string=string.text or "")
    members = root.findall("params/param/value/struct/member")
    assert members, data
    return Answer(struct=[(m.findtext("name"), m.findtext("value/string")) for m in members])


def post_xml(client: Any, body: bytes, path: str = "/wizard.php", **headers: str) -> Any:
    """POST through chalice.test.Client; asserts the transport contract (200, text/xml)."""
    sent = {"Content-Type": "text/xml", **headers}
    response = client.http.post(path, headers=sent, body=body)
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"].startswith("text/xml")
    return response


def call(client: Any, method: str, *params: str, path: str = "/wizard.php") -> Answer:
    return parse_answer(post_xml(client, method_call(method, *params), path).body)


def ha1(algorithm: str, username: str, password: str, domain: str = DOMAIN) -> str:
    fn = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
    return fn(f"{username}:{domain}:{password}".encode()).hexdigest()
