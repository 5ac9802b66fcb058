"""The edge's dialogs by subscription id, with each account's count kept as they come and go."""

from __future__ import annotations

from typing import Any

from sip_edge.dialog import SubscriptionDialog


class DialogTable(dict[str, SubscriptionDialog]):
    """The edge's dialogs by subscription id, counting each account's as they come and go:
    the per-account cap is checked at every new SUBSCRIBE, and counting by a walk over
    every dialog made that cost grow with the edge's dialogs (it did, by tens of thousands,
    after an overload left dialogs open)."""

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[str, int] = {}

    def held_by(self, subscriber: str) -> int:
        return self._held.get(subscriber, 0)

    def _count(self, dialog: SubscriptionDialog, step: int) -> None:
        held = self._held.get(dialog.subscriber, 0) + step
        if held > 0:
            self._held[dialog.subscriber] = held
        else:
            self._held.pop(dialog.subscriber, None)

    def __setitem__(self, key: str, dialog: SubscriptionDialog) -> None:
        old = self.get(key)
        if old is not None:
            self._count(old, -1)
        super().__setitem__(key, dialog)
        self._count(dialog, 1)

    def __delitem__(self, key: str) -> None:
        self._count(self[key], -1)
        super().__delitem__(key)

    def setdefault(self, key: str, default: SubscriptionDialog) -> SubscriptionDialog:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            dialog = super().pop(key)
            self._count(dialog, -1)
            return dialog
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self._held.clear()

    def update(self, *args: Any, **kwargs: Any) -> None:  # dict's own would skip the counts
        for key, dialog in dict(*args, **kwargs).items():
            self[key] = dialog
