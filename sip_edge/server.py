"""Runs an edge: binds the transports, drives the timers, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
import ssl
import time
from dataclasses import dataclass

from chalicelib import settings
from chalicelib.observability import logger
from sip_edge.edge import Edge
from sip_edge.flood import FloodGuard
from sip_edge.functions import Functions, from_settings
from sip_edge.queue import EdgeQueue
from sip_edge.sip.parser import ParserLimits
from sip_edge.transport import Transports

TICK_SECONDS = 0.05  # timer resolution; T1 is 500 ms
GC_YOUNG_ALLOCATIONS = 5000  # CPython's default 700
GC_FULL_AFTER = 1000  # CPython's default 10


def tls_context(cfg: settings.Settings) -> ssl.SSLContext | None:
    if not cfg.sip_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cfg.sip_tls_cert, cfg.sip_tls_key or None)
    return context


@dataclass
class RunningEdge:
    edge: Edge
    transports: Transports
    ticker: asyncio.Task[None]

    def flush_metrics(self, force: bool = False) -> bool:
        return self.edge.metrics.flush(
            time.monotonic(),
            connections=len(self.transports.connections),
            dialogs=len(self.edge.subscriptions.dialogs),
            force=force,
        )

    async def stop(self) -> None:
        self.ticker.cancel()
        self.flush_metrics(force=True)
        await self.edge.shutdown()
        await self.transports.close()


async def start(
    cfg: settings.Settings | None = None,
    functions: Functions | None = None,
    *,
    with_queue: bool = True,
) -> RunningEdge:
    cfg = cfg or settings.get()
    queue = EdgeQueue(cfg) if with_queue else None
    edge = Edge(functions or from_settings(cfg), cfg=cfg, queue=queue)
    transports = Transports(
        edge,
        limits=ParserLimits(max_message_size=cfg.sip_max_message_bytes),
        max_connections=cfg.sip_max_connections,
        max_per_source=cfg.sip_max_connections_per_source,
        first_message_timeout=cfg.sip_first_message_timeout,
        idle_timeout=cfg.sip_idle_timeout,
        partial_timeout=cfg.sip_partial_timeout,
        flood=FloodGuard.from_settings(cfg),
    )
    context = tls_context(cfg)
    await transports.start(cfg.sip_host, cfg.sip_port, cfg.sip_tls_port, context)
    edge.attach(transports)
    await edge.start()

    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                edge.on_timer()
                running.flush_metrics()
            except Exception:
                logger.exception("timer processing failed")

    # What start-up built (modules, settings, clients) lives as long as the process: out of
    # the collector's sight, so its full collections only walk what requests leave behind
    # (they walked hundreds of thousands of start-up objects, pausing the loop for tens of ms).
    gc.freeze()
    # A UDP transaction lives 32 s past its response (Timer J), so every request promotes
    # objects to the oldest generation and full collections came every few seconds, each
    # pausing the loop for 0.1-0.5 s at a few hundred cycles/s (past T1: retransmissions)
    # while finding nothing to free. Young collections less often; a full one only after
    # GC_FULL_AFTER collections of the middle generation.
    gc.set_threshold(GC_YOUNG_ALLOCATIONS, 10, GC_FULL_AFTER)
    # tick() first runs after this function's next await: `running` is bound by then.
    running = RunningEdge(edge, transports, asyncio.create_task(tick()))
    logger.info("SIP edge listening", extra={"ports": transports.ports, "edge": edge.edge_id})
    return running


async def serve_forever(cfg: settings.Settings | None = None) -> None:
    running = await start(cfg)
    print(f"SIP edge           udp/tcp {running.transports.ports}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await running.stop()
