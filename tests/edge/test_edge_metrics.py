"""The edge's EMF metrics: requests by method and response class, NOTIFYs, connections."""

from __future__ import annotations

import json

from sip_edge.metrics import EdgeMetrics
from tests.edge.conftest import DOMAIN


def emf_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if '"_aws"' in line]


def points(lines: list[dict]) -> dict[tuple, float]:
    """(metric, sorted non-service dimensions) -> value."""
    out = {}
    for doc in lines:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]:
            dims = tuple(sorted((d, doc[d]) for d in directive["Dimensions"][0] if d != "service"))
            value = doc[metric["Name"]]
            out[(metric["Name"], dims)] = sum(value) if isinstance(value, list) else value
            assert doc["service"] == "smart-contacts"
    return out


def test_requests_are_counted_by_method_and_class_and_flushed(edge, client, capsys):
    capsys.readouterr()
    client.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    assert client.response("OPTIONS").status == 200
    client.request("OPTIONS", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    client.response("OPTIONS")
    client.request("SUBSCRIBE", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    assert client.response("SUBSCRIBE").status == 400  # no Event header
    client.request("FROB", f"sip:{DOMAIN}", from_uri="sip:probe@example.net")
    assert client.response("FROB").status == 501
    assert edge.call(_flush(edge))
    got = points(emf_lines(capsys.readouterr().out))
    assert got[("SipRequests", (("Class", "2xx"), ("Method", "OPTIONS")))] == 2
    assert got[("SipRequests", (("Class", "4xx"), ("Method", "SUBSCRIBE")))] == 1
    # An invented method is "other": a scanner cannot mint a metric per method name.
    assert got[("SipRequests", (("Class", "5xx"), ("Method", "other")))] == 1
    assert got[("NotifiesSent", ())] == 0 and got[("OpenConnections", ())] == 0
    assert ("Dialogs", ()) in got


async def _flush(edge) -> bool:
    return edge.running.flush_metrics(force=True)


def test_flush_waits_for_the_interval_and_then_starts_over(capsys):
    metrics = EdgeMetrics(60.0, namespace="Test")
    assert not metrics.flush(1000.0, connections=3, dialogs=1)  # first call starts the clock
    metrics.notify(True)
    metrics.notify(False)
    assert not metrics.flush(1059.0, connections=3, dialogs=1)
    assert metrics.flush(1060.0, connections=3, dialogs=1)
    got = points(emf_lines(capsys.readouterr().out))
    assert got[("NotifiesSent", ())] == 2 and got[("NotifyFailures", ())] == 1
    assert got[("OpenConnections", ())] == 3
    assert metrics.flush(1120.0, connections=0, dialogs=0)
    assert points(emf_lines(capsys.readouterr().out))[("NotifiesSent", ())] == 0
