"""Transactions with an injected clock: retransmissions, timers E/F/J/K/G/H/I, matching."""

from __future__ import annotations

from sip_edge.sip.headers import Headers
from sip_edge.sip.message import Request, make_response
from sip_edge.sip.parser import parse_datagram
from sip_edge.sip.transaction import (
    Deliver,
    ResponseReceived,
    Send,
    State,
    Terminated,
    TimedOut,
    TransactionLayer,
    TransportError,
    new_branch,
    server_key,
)
from tests.conftest import INTEROP

SUB = (INTEROP / "sip" / "subscribe-initial-udp-deflate.raw").read_bytes()
PEER = ("127.0.0.1", 45316)


def kinds(actions):
    return [type(a).__name__ for a in actions]


def notify(branch: str | None = None) -> Request:
    h = Headers()
    h.add("Via", f"SIP/2.0/UDP 192.0.2.9:5060;branch={branch or new_branch()}")
    h.add("From", "<sip:rls@example.org>;tag=a")
    h.add("To", "<sip:alice@example.org>;tag=b")
    h.add("Call-ID", "n1")
    h.add("CSeq", "2 NOTIFY")
    h.add("Event", "Presence")
    h.add("Subscription-State", "active;expires=3600")
    return Request("NOTIFY", "sip:alice@127.0.0.1:45316", h)


def answer(request: Request, status: int):
    return parse_datagram(make_response(request, status, to_tag="b").to_bytes())


# --- server side -------------------------------------------------------------------------------


def test_retransmitted_request_is_absorbed_and_last_response_resent():
    layer = TransactionLayer()
    req = parse_datagram(SUB)
    first = layer.receive_request(req, 0.0, reliable=False, dest=PEER)
    assert kinds(first) == ["Deliver"]
    deliver = first[0]
    assert isinstance(deliver, Deliver)
    assert deliver.request is req and deliver.dest == PEER
    # Retransmission before the application answered: nothing at all.
    assert layer.receive_request(parse_datagram(SUB), 0.4, reliable=False, dest=PEER) == []
    resp = make_response(req, 200, to_tag="t1")
    sent = layer.respond(deliver.transaction, resp, 0.5)
    assert kinds(sent) == ["Send"] and sent[0].dest == PEER
    assert sent[0].data == resp.to_bytes()
    # Retransmissions now get the same bytes again, and are never delivered twice.
    for t in (1.0, 2.0, 4.0):
        again = layer.receive_request(parse_datagram(SUB), t, reliable=False, dest=PEER)
        assert kinds(again) == ["Send"] and again[0].data == sent[0].data
    # A late second answer from the application is not sent.
    assert layer.respond(deliver.transaction, make_response(req, 500), 5.0) == []
    # Timer J = 64*T1 ends it; after that the request would be new.
    assert layer.next_deadline() == 0.5 + 32
    assert layer.on_timer(32.4) == []
    done = layer.on_timer(32.5)
    assert kinds(done) == ["Terminated"] and len(layer) == 0
    assert kinds(layer.receive_request(parse_datagram(SUB), 40, reliable=False, dest=PEER)) == [
        "Deliver"
    ]


def test_provisional_then_final_over_udp():
    layer = TransactionLayer()
    req = parse_datagram(SUB)
    tx = layer.receive_request(req, 0, reliable=False, dest=PEER)[0].transaction
    layer.respond(tx, make_response(req, 100), 0)
    assert tx.state is State.PROCEEDING
    assert kinds(layer.receive_request(req, 0.5, reliable=False, dest=PEER)) == ["Send"]
    layer.respond(tx, make_response(req, 202), 1)
    assert tx.state is State.COMPLETED


def test_timer_j_is_zero_on_reliable_transports():
    layer = TransactionLayer()
    req = parse_datagram(SUB)
    tx = layer.receive_request(req, 0, reliable=True, dest="conn")[0].transaction
    out = layer.respond(tx, make_response(req, 200), 0)
    assert kinds(out) == ["Send", "Terminated"]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_branch_and_sent_by_and_method_identify_the_transaction():
    req = parse_datagram(SUB)
    other_host = parse_datagram(SUB.replace(b"UDP 127.0.0.1:45316", b"UDP 127.0.0.2:45316"))
    assert server_key(req) != server_key(other_host)
    cancel = parse_datagram(
        SUB.replace(b"SUBSCRIBE sip:", b"CANCEL sip:").replace(b"20 SUBSCRIBE", b"20 CANCEL")
    )
    assert server_key(req) != server_key(cancel)
    layer = TransactionLayer()
    layer.receive_request(req, 0, reliable=False, dest=PEER)
    assert kinds(layer.receive_request(cancel, 0, reliable=False, dest=PEER)) == ["Deliver"]
    assert len(layer) == 2


def test_rfc2543_requests_without_branch_still_match():
    raw = SUB.replace(b";branch=z9hG4bK.Ziu2M3kQF", b"")
    layer = TransactionLayer()
    assert kinds(layer.receive_request(parse_datagram(raw), 0, reliable=False, dest=PEER)) == [
        "Deliver"
    ]
    assert layer.receive_request(parse_datagram(raw), 1, reliable=False, dest=PEER) == []
    assert server_key(parse_datagram(raw))[0] == "2543"


def invite() -> Request:
    from tests.conftest import RFC4475

    return parse_datagram((RFC4475 / "invut.dat").read_bytes())


def ack_for(inv: Request, response) -> Request:
    h = Headers()
    h.add("Via", inv.headers.get("Via"))
    h.add("From", inv.headers.get("From"))
    h.add("To", response.headers.get("To"))
    h.add("Call-ID", inv.call_id)
    h.add("CSeq", f"{inv.cseq.seq} ACK")
    h.add("Max-Forwards", "70")
    return parse_datagram(Request("ACK", inv.uri, h).to_bytes())


def test_invite_answered_405_is_retransmitted_until_ack():
    layer = TransactionLayer()
    inv = invite()
    tx = layer.receive_request(inv, 0, reliable=False, dest=PEER)[0].transaction
    resp = make_response(inv, 405, headers=[("Allow", "SUBSCRIBE, NOTIFY, OPTIONS")])
    assert kinds(layer.respond(tx, resp, 0)) == ["Send"]
    assert layer.next_deadline() == 0.5  # Timer G
    assert kinds(layer.on_timer(0.5)) == ["Send"]
    assert layer.next_deadline() == 1.5
    assert kinds(layer.receive_request(inv, 1.0, reliable=False, dest=PEER)) == ["Send"]
    ack = ack_for(inv, resp)
    assert layer.receive_request(ack, 1.2, reliable=False, dest=PEER) == []  # absorbed, no answer
    assert tx.state is State.CONFIRMED
    assert layer.on_timer(1.5) == []  # G stopped
    assert kinds(layer.on_timer(6.2)) == ["Terminated"]  # Timer I = T4


def test_invite_without_ack_times_out():
    layer = TransactionLayer()
    inv = invite()
    tx = layer.receive_request(inv, 0, reliable=True, dest="conn")[0].transaction
    layer.respond(tx, make_response(inv, 501), 0)
    assert layer.next_deadline() == 32  # no Timer G on TCP
    assert kinds(layer.on_timer(32)) == ["TimedOut", "Terminated"]


def test_ack_without_transaction_is_delivered_and_never_answered():
    inv = invite()
    ack = ack_for(inv, make_response(inv, 200))
    out = TransactionLayer().receive_request(ack, 0, reliable=False, dest=PEER)
    assert kinds(out) == ["Deliver"] and out[0].transaction is None


# --- client side -------------------------------------------------------------------------------


def test_timer_e_schedule_and_timer_f_over_udp():
    layer = TransactionLayer()
    tx, out = layer.send_request(notify(), 0.0, reliable=False, dest=PEER)
    assert kinds(out) == ["Send"]
    sends = [0.0]
    now = 0.0
    timed_out = False
    while (deadline := layer.next_deadline()) is not None:
        now = deadline
        for action in layer.on_timer(now):
            if isinstance(action, Send):
                sends.append(now)
            elif isinstance(action, TimedOut):
                timed_out = True
    intervals = [round(b - a, 6) for a, b in zip(sends, sends[1:], strict=False)]
    assert intervals[:5] == [0.5, 1, 2, 4, 4]
    assert set(intervals[3:]) == {4}
    assert sends[-1] == 31.5 and now == 32.0 and timed_out
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_no_retransmission_over_tcp():
    layer = TransactionLayer()
    layer.send_request(notify(), 0.0, reliable=True, dest="conn")
    assert layer.next_deadline() == 32.0
    out = layer.on_timer(32.0)
    assert kinds(out) == ["TimedOut", "Terminated"]


def test_proceeding_retransmits_at_t2():
    layer = TransactionLayer()
    req = notify()
    layer.send_request(req, 0.0, reliable=False, dest=PEER)
    layer.on_timer(0.5)
    assert kinds(layer.receive_response(answer(req, 100), 0.6)) == ["ResponseReceived"]
    assert layer.next_deadline() == 1.5  # the pending E fires as scheduled...
    layer.on_timer(1.5)
    assert layer.next_deadline() == 5.5  # ...then every T2


def test_481_is_delivered_and_timer_k_ends_it():
    layer = TransactionLayer()
    req = notify()
    tx, _ = layer.send_request(req, 0.0, reliable=False, dest=PEER)
    out = layer.receive_response(answer(req, 481), 0.2)
    (received,) = out
    assert isinstance(received, ResponseReceived)
    assert received.response.status == 481 and received.transaction is tx
    assert tx.final_response.status == 481
    assert layer.receive_response(answer(req, 481), 0.3) == []  # retransmission absorbed
    assert layer.next_deadline() == 5.2  # Timer K = T4
    assert kinds(layer.on_timer(5.2)) == ["Terminated"]


def test_final_over_tcp_terminates_at_once_and_strays_are_dropped():
    layer = TransactionLayer()
    req = notify()
    layer.send_request(req, 0.0, reliable=True, dest="conn")
    assert kinds(layer.receive_response(answer(req, 200), 0.1)) == [
        "ResponseReceived",
        "Terminated",
    ]
    assert layer.receive_response(answer(notify(), 200), 0.2) == []  # unknown branch


def test_transport_error_ends_a_client_transaction():
    layer = TransactionLayer()
    tx, _ = layer.send_request(notify(), 0.0, reliable=True, dest="conn")
    out = layer.transport_error(tx, 0.1)
    assert [type(a) for a in out] == [TransportError, Terminated]
    assert len(layer) == 0
