"""The local stack's SMS console: what the service sends is printed and stays in moto."""

from __future__ import annotations

import io
import json
import threading
import urllib.request

from chalicelib import aws as aws_clients
from chalicelib.accounts import sms
from devstack import services


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        done.wait(0.05)
    return predicate()


def test_sms_are_printed_to_the_console(aws):
    out = io.StringIO()
    stop = services.start_sms_printer(out)
    try:
        sms.send_code("+33612345678", "4321")
        assert _wait_for(lambda: "4321" in out.getvalue())
    finally:
        stop()
    assert out.getvalue() == "SMS to +33612345678: Your verification code is 4321\n"


def test_sms_stay_readable_from_moto_data_json(moto_server):
    sms.send_code("+33612345678", "8765")
    with urllib.request.urlopen(f"{moto_server}/moto-api/data.json") as answer:
        data = json.load(answer)
    assert "8765" in json.dumps(data.get("sns", {}))
    assert aws_clients.client("sns").meta.endpoint_url == moto_server
