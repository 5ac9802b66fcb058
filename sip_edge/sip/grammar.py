"""RFC 3261 section 25 lexical grammar: the patterns every SIP parser shares, and quoting.

No pattern nests ambiguous quantifiers, so no input can make one backtrack for long.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from typing import TypeVar

T = TypeVar("T")

TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
QUOTED = r'"(?:[\t !#-\[\]-~\x80-\U0010ffff]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
ESC = r"%[0-9A-Fa-f]{2}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
IPV6REF = r"\[[0-9A-Fa-f:.]{2,45}\]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"(?:{_LABEL}\.)*{_LABEL}\.?"
HOST = rf"(?:{IPV6REF}|{_HOSTNAME})"

TOKEN_RE = re.compile(TOKEN)
TOKEN_FULL = re.compile(TOKEN + r"\Z")
HOST_FULL = re.compile(HOST + r"\Z")
IPV4_FULL = re.compile(_IPV4 + r"\Z")
PORT_RE = re.compile(r"[0-9]{1,5}\Z")
_UNQUOTE_RE = re.compile(r"\\(.)", re.S)


def unquote(value: str | None) -> str | None:
    """The content of a quoted-string (escapes resolved); anything else unchanged."""
    if value is not None and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return _UNQUOTE_RE.sub(r"\1", inner) if "\\" in inner else inner
    return value


def quote(value: str) -> str:
    """A quoted-string holding `value`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unescape(value: str) -> str:
    """Resolve %XX escapes of a URI component (UTF-8; invalid sequences kept as is)."""
    if "%" not in value:
        return value
    from urllib.parse import unquote as _url_unquote

    return _url_unquote(value, errors="surrogateescape")


#: Bounds of each memo of parsed values (`remember`): a flood of new values starts it over, and
#: a long value is parsed every time rather than kept.
MEMO_MAX_ENTRIES = 4096
MEMO_MAX_LENGTH = 256


def remember(memo: dict[str, T], text: str, value: T) -> T:
    """Keep `value`, what parsing `text` gave, in `memo`; answer it.

    The same header values come back in every message of a dialog (a phone's From, To and
    Contact, echoed by the responses to our NOTIFYs; the edge's own URIs in every request),
    so a value parsed once is not parsed again. Only what parsed is kept: a bad value is
    parsed, and refused, every time. What is kept is shared by every message holding that
    text, so it is never modified.
    """
    if len(text) <= MEMO_MAX_LENGTH:
        if len(memo) >= MEMO_MAX_ENTRIES:
            memo.clear()
        memo[text] = value
    return value


class _RandomPool:
    """The operating system's random bytes (os.urandom, as `secrets`), drawn 4 KiB at a time:
    every request the edge answers or sends takes a fresh tag or branch, and a system call
    for each of a few bytes was ~2% of the edge's CPU per presence cycle."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buffer):
                self._buffer, self._pos = os.urandom(max(self.SIZE, n)), 0
            out = self._buffer[self._pos : self._pos + n]
            self._pos += n
            return out


_RANDOM = _RandomPool()


def random_hex(nbytes: int) -> str:
    """`secrets.token_hex(nbytes)`, from the pool."""
    return _RANDOM.take(nbytes).hex()


def random_urlsafe(nbytes: int) -> str:
    """`secrets.token_urlsafe(nbytes)`, from the pool."""
    return base64.urlsafe_b64encode(_RANDOM.take(nbytes)).rstrip(b"=").decode("ascii")
