"""Status codes: the standard reason phrases, and `ParseError`, which carries the status that
answers a message breaking the grammar.
"""

from __future__ import annotations

from typing import Any

from sip_edge.sip.headers import Headers


class ParseError(ValueError):
    """A message or header value that breaks RFC 3261 grammar.

    `status`/`reason` say what a server should answer (400 mostly, 505, 413, 513).
    When the parser got far enough, `is_request`, `method` and `headers` describe the
    message so `error_response()` can build the answer (Via, From, To, Call-ID, CSeq).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.is_request: bool | None = None
        self.method: str | None = None
        self.headers: Headers | None = None
        # StreamParser.feed: the events completed before the error, in the same chunk.
        self.preceding: list[Any] = []

    @property
    def reason_phrase(self) -> str:
        """The standard phrase for `status`, for the status line (`reason` is the detail)."""
        return REASON_PHRASES.get(self.status, "Bad Request")


REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip
