"""Tokens for NOTIFY bodies (Content-IDs, boundaries) and stable XML ids, injectable in tests.

`IdSource` is any callable answering a token of lowercase letters; the default draws from the OS
CSPRNG in bulk (building a body needs hundreds of tokens, one `secrets` call per character would
cost milliseconds). Golden tests inject predictable ones.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable

IdSource = Callable[[int], str]

# 256 -> 26 letters: each byte maps to a letter; the slight bias is harmless for identifiers.
_LETTERS = bytes(ord("a") + i % 26 for i in range(256))


class RandomIds:
    """Random lowercase-letter tokens (valid XML NCNames and MIME tokens), thread-safe."""

    def __init__(self, pool_bytes: int = 8192) -> None:
        self._pool_bytes = pool_bytes
        self._pool = ""
        self._used = 0
        self._lock = threading.Lock()

    def __call__(self, length: int) -> str:
        with self._lock:
            if self._used + length > len(self._pool):
                size = max(self._pool_bytes, length)
                self._pool = os.urandom(size).translate(_LETTERS).decode("ascii")
                self._used = 0
            start = self._used
            self._used += length
        return self._pool[start : start + length]


random_ids = RandomIds()


def stable(text: str, length: int = 10) -> str:
    """A token derived from `text`: the same resource keeps the same instance/tuple ids across
    NOTIFYs, so a partial update replaces what an earlier one announced (RFC 4662 §5.2)."""
    digest = hashlib.blake2s(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return "x" + digest[: length - 1]
