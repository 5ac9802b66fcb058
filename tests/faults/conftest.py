"""The live-updates fixtures (stream replayer, edge with a hand-moved clock) for fault tests."""

from tests.edge.conftest import world
from tests.edge.test_live_updates import clock, live_edge

__all__ = ["clock", "live_edge", "world"]
