"""The one hardened lxml parser configuration every XML body from the network is read with.

Bodies come from phones and the Internet: no DTD is loaded or validated, no entity is resolved,
nothing is fetched, trees stay within libxml2's default limits (no `huge_tree`), and comments,
processing instructions and `xml:id` bookkeeping are dropped. lxml parsers are not thread-safe
(chalice local and the functions' thread pool are threaded), so each parse gets a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lxml import etree

_STRICT: dict[str, Any] = {
    "resolve_entities": False,
    "load_dtd": False,
    "dtd_validation": False,
    "no_network": True,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    "collect_ids": False,
}


def parser() -> etree.XMLParser:
    """A new strict parser for `etree.fromstring(body, parser())`."""
    return etree.XMLParser(**_STRICT)


def pull_parser(events: Iterable[str], *, encoding: str | None = None) -> etree.XMLPullParser:
    """A new strict parser fed chunk by chunk (bodies inflated incrementally)."""
    return etree.XMLPullParser(events=tuple(events), encoding=encoding, **_STRICT)
