"""Header fields: their names (compact forms, RFC spelling, which ones may appear only once)
and `Headers`, the ordered multi-map every message carries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from sip_edge.sip.grammar import TOKEN_FULL

T = TypeVar("T")

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-ID", "Content-Language",
    "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From",
    "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "Min-Expires", "MIME-Version",
    "Organization", "Path", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Reply-To",
    "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server", "Service-Route",
    "Session-Expires", "Subject", "Subscription-State", "Supported", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]  # fmt: skip
CANONICAL_NAMES: dict[str, str] = {n.lower(): n for n in _CANONICAL}
CANONICAL_NAMES.update({k: v for k, v in COMPACT_FORMS.items()})

#: Headers that must appear at most once (RFC 3261 7.3.1 / 20); a repeat is a 400.
SINGLE_HEADERS = frozenset(
    n.lower()
    for n in (
        "Call-ID", "Content-Length", "Content-Type", "CSeq", "Date", "Expires", "From",
        "Max-Forwards", "To", "Event", "Subscription-State", "Content-Disposition",
        "Min-Expires", "MIME-Version",
    )
)  # fmt: skip


def canonical_name(name: str) -> str:
    """Compact forms expanded, well-known names in their RFC spelling, others as given."""
    return CANONICAL_NAMES.get(name.lower(), name)


#: Well-known names as the code and most phones spell them (RFC spelling, lower case, compact):
#: their canonical name and lookup key, without lowering and validating them at every use.
KNOWN_SPELLINGS: dict[str, tuple[str, str]] = {
    spelling: (canon, canon.lower())
    for key, canon in CANONICAL_NAMES.items()
    for spelling in (key, canon)
}
#: Their lookup key alone: every read asks for it.
_KNOWN_KEYS: dict[str, str] = {spelling: key for spelling, (_, key) in KNOWN_SPELLINGS.items()}
_UNPARSED: Any = object()


def _name_key(name: str) -> tuple[str, str]:
    known = KNOWN_SPELLINGS.get(name)
    if known is not None:
        return known
    canon = canonical_name(name)
    return canon, canon.lower()


def _key(name: str) -> str:
    return _KNOWN_KEYS.get(name) or canonical_name(name).lower()


def split_commas(value: str) -> list[str]:
    """Split a list header value at commas outside quoted-strings and <...>."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return out


class Headers:
    """Ordered multi-map of header fields with case-insensitive, compact-expanded names.

    Each entry is one field line as received (after unfolding); `get_list` splits list
    headers at commas. Parsed values are cached per name until the name is modified.
    """

    __slots__ = ("_items", "_index", "_cache")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (lower-case key, name, value)
        self._index: dict[str, list[str]] | None = None
        self._cache: dict[str, Any] = {}
        for name, value in items:
            self.add(name, value)

    @staticmethod
    def _check(name: str, value: str) -> None:
        # A CR or LF inside a value would smuggle extra header lines into the serialization.
        if name not in KNOWN_SPELLINGS and not TOKEN_FULL.match(name):
            raise ValueError(f"bad header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"CR/LF in the value of {name}")

    def _changed(self, key: str) -> None:
        self._index = None
        self._cache.pop(key, None)

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, _, value in self._items:
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
            self._index = index
        return index

    def add(self, name: str, value: str, parsed: Any = _UNPARSED) -> None:
        """Append a field (after any existing ones of that name); `parsed`, when given, is
        what `parsed(name, ...)` would now return (saves parsing what was built here)."""
        self._check(name, value)
        canon, key = _name_key(name)
        self._items.append((key, canon, value))
        index = self._index
        if index is not None:  # kept up to date: a message being built is read as it grows
            if key in index:
                index[key].append(value)
            else:
                index[key] = [value]
        if parsed is _UNPARSED:
            self._cache.pop(key, None)
        else:
            self._cache[key] = parsed

    def add_copied(self, name: str, value: str) -> None:
        """`add` for a value taken from a parsed message under a name of KNOWN_SPELLINGS:
        the parser split it at its line ends and checked its name, so neither is checked
        again (a response copies five such fields from its request)."""
        canon, key = KNOWN_SPELLINGS[name]
        self._items.append((key, canon, value))
        index = self._index
        if index is not None:
            if key in index:
                index[key].append(value)
            else:
                index[key] = [value]
        self._cache.pop(key, None)

    def set(self, name: str, value: str, parsed: Any = _UNPARSED) -> None:
        """Replace every field of that name by one, at the first one's position (or the end);
        `parsed`, when given, is what `parsed(name, ...)` would now return (saves a parse)."""
        self._check(name, value)
        canon, key = _name_key(name)
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append((key, canon, value))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((key, canon, value))
        self._items = out
        self._changed(key)
        if parsed is not _UNPARSED:
            self._cache[key] = parsed

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field value of that name."""
        index = self._index
        values = (index if index is not None else self._lookup()).get(_key(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every field value of that name, in order (one per header line)."""
        index = self._index
        return list((index if index is not None else self._lookup()).get(_key(name), ()))

    def get_list(self, name: str) -> list[str]:
        """Every element of a list header across all its lines, in order."""
        out: list[str] = []
        for v in self.get_all(name):
            out.extend(split_commas(v))
        return out

    def parsed(self, name: str, parse: Callable[[Headers], T]) -> T:
        """`parse(self)` cached under `name` until a field of that name changes."""
        key = _key(name)
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = parse(self)
            return value

    def shed(self) -> None:
        """Forget the index and the parsed values (both rebuilt when next read): a message
        kept only to be matched or resent then holds a few objects, not dozens, for the
        garbage collector to walk (a UDP transaction lives 32 s after its response)."""
        self._index = None
        self._cache = {}

    def items(self) -> list[tuple[str, str]]:
        """(name, value) pairs in order, names as they will be serialized."""
        return [(n, v) for _, n, v in self._items]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._lookup()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self.items() == other.items()

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
