"""SIP flood control at the edge (pike-like): per source address, more than `SIP_FLOOD_REQUESTS`
requests in `SIP_FLOOD_WINDOW` seconds bans that address for `SIP_FLOOD_BAN` seconds.

I/O-free: the transports ask `admit(host, now)` for every request (and whether a connection
may open) and drop or close on False. Memory is bounded: at most `SIP_FLOOD_MAX_SOURCES`
addresses are tracked and as many banned, the oldest forgotten first, so a flood from spoofed
sources costs a fixed amount of memory (it then only weakens the per-address count, never
the edge). Per edge task and in memory, on purpose: a flood is answered where it lands, with
no call to anything.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chalicelib import settings
from chalicelib.observability import flush_metrics, logger, metrics


def report_ban(host: str, count: int) -> None:
    """Log and count one ban (the edge's EMF metrics go out with its logs)."""
    logger.warning("SIP source banned for flooding", extra={"source": host, "requests": count})
    metrics.add_metric(name="SipFloodBans", unit="Count", value=1)
    flush_metrics()


@dataclass
class FloodGuard:
    max_requests: int
    window: float
    ban: float
    max_sources: int
    exempt: frozenset[str] = frozenset()
    on_ban: Callable[[str, int], None] = lambda host, count: None
    # host -> [window start, requests in it]; insertion order = oldest window first
    _windows: OrderedDict[str, list[float]] = field(default_factory=OrderedDict)
    # host -> ban end; insertion order = oldest ban first
    _bans: OrderedDict[str, float] = field(default_factory=OrderedDict)
    stats: dict[str, int] = field(
        default_factory=lambda: {"banned": 0, "dropped": 0, "forgotten": 0}
    )

    @classmethod
    def from_settings(
        cls,
        cfg: settings.Settings,
        on_ban: Callable[[str, int], None] | None = None,
        exempt: Iterable[str] = (),
    ) -> FloodGuard:
        return cls(
            max_requests=cfg.sip_flood_requests,
            window=cfg.sip_flood_window,
            ban=cfg.sip_flood_ban,
            max_sources=cfg.sip_flood_max_sources,
            exempt=frozenset(cfg.sip_trusted_proxies) | frozenset(exempt),
            on_ban=on_ban or report_ban,
        )

    def banned(self, host: str, now: float) -> bool:
        """Whether `host` is banned now (a new connection from it is refused)."""
        until = self._bans.get(host)
        if until is None:
            return False
        if until > now:
            return True
        del self._bans[host]
        return False

    def admit(self, host: str, now: float) -> bool:
        """Count one request from `host`; False when it must be dropped (banned, or this
        request is the one past the limit, which bans the address)."""
        if host in self.exempt:
            return True
        if self.banned(host, now):
            self.stats["dropped"] += 1
            return False
        entry = self._windows.get(host)
        if entry is None or now - entry[0] >= self.window:
            if entry is not None:
                del self._windows[host]  # re-inserted last: its window is the newest
            self._track(host, [now, 1.0])
            return True
        entry[1] += 1
        if entry[1] <= self.max_requests:
            return True
        del self._windows[host]
        self._ban(host, now, int(entry[1]))
        self.stats["dropped"] += 1
        return False

    def _track(self, host: str, entry: list[float]) -> None:
        while len(self._windows) >= self.max_sources:
            self._windows.popitem(last=False)
            self.stats["forgotten"] += 1
        self._windows[host] = entry

    def _ban(self, host: str, now: float, count: int) -> None:
        self._bans.pop(host, None)
        while len(self._bans) >= self.max_sources:
            self._bans.popitem(last=False)
            self.stats["forgotten"] += 1
        self._bans[host] = now + self.ban
        self.stats["banned"] += 1
        self.on_ban(host, count)

    @property
    def tracked(self) -> int:
        return len(self._windows) + len(self._bans)
