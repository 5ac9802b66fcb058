"""Anti-abuse limits on SMS codes, read from settings (defaults: per number 60 s apart and 3 per
24 h, per source IP 10 per hour), country allow-list, global daily cap; each 429 with
Retry-After; an SNS failure burns nothing."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError

from chalicelib import settings, tables
from chalicelib.accounts import rate_limits, sms, verification
from chalicelib.accounts.rate_limits import DAY, HOUR
from chalicelib.errors import DomainError
from testkit.sms import last_code, sent_sms
from tests.accounts_support import pass_interval
from tests.conftest import NOON, advance_clock

A = "+33612345678"


@pytest.fixture(autouse=True)
def _frozen(frozen_clock):
    """Retry-After values are compared to the second."""


def send(e164: str = A, ip: str = "192.0.2.1") -> int:
    return verification.send(verification.SIGNUP, e164, e164, None, source_ip=ip)


def refused(e164: str = A, ip: str = "192.0.2.1") -> DomainError:
    with pytest.raises(DomainError) as e:
        send(e164, ip)
    assert e.value.code == "rate_limited" and e.value.http_status == 429
    return e.value


def test_one_sms_per_number_per_interval(aws):
    interval = settings.get().sms_per_number_interval
    send()
    advance_clock(20)
    err = refused()
    assert err.headers["Retry-After"] == str(interval - 20)
    assert "phone" in err.message
    advance_clock(interval - 20)
    send()


def test_daily_sms_per_number_per_24_hours(aws):
    daily = settings.get().sms_per_number_daily
    for _ in range(daily):
        send()
        advance_clock(HOUR)
    err = refused()
    # The oldest of them leaves the window 24 h after it was sent.
    assert err.headers["Retry-After"] == str(DAY - daily * HOUR)
    advance_clock(DAY - daily * HOUR)
    send()


def test_code_requests_per_source_ip_per_hour(aws):
    per_ip = settings.get().code_requests_per_ip_hourly
    step = 60  # seconds between requests, for distinct send times
    numbers = [f"+336123456{i:02d}" for i in range(per_ip + 1)]
    for i, n in enumerate(numbers[:per_ip]):
        send(n)
        advance_clock(step if i < per_ip - 1 else 0)
    err = refused(numbers[per_ip])
    assert "source address" in err.message
    assert err.headers["Retry-After"] == str(HOUR - (per_ip - 1) * step)
    send(numbers[per_ip], ip="198.51.100.7")  # another address has its own allowance


def test_global_daily_cap_until_utc_midnight(aws, monkeypatch):
    monkeypatch.setenv("SMS_GLOBAL_DAILY", "2")
    settings.get.cache_clear()
    send("+33612345601", ip="192.0.2.1")
    send("+33612345602", ip="192.0.2.2")
    err = refused("+33612345603", ip="192.0.2.3")
    until_midnight = DAY - NOON % DAY
    assert err.headers["Retry-After"] == str(until_midnight)
    assert "daily" in err.message
    advance_clock(until_midnight)
    send("+33612345603", ip="192.0.2.3")


def test_a_refusal_reserves_nothing(aws, monkeypatch):
    monkeypatch.setenv("SMS_GLOBAL_DAILY", "1")
    settings.get.cache_clear()
    send("+33612345601")
    for _ in range(settings.get().code_requests_per_ip_hourly + 2):
        refused("+33612345602")  # refused by the global cap: no IP or number quota taken
    monkeypatch.setenv("SMS_GLOBAL_DAILY", "100")
    settings.get.cache_clear()
    send("+33612345602")


@pytest.mark.parametrize("e164", ["+8613800138000", "+2348031234567", "+447700900123"])
def test_countries_outside_the_allow_list_get_403(aws, monkeypatch, e164):
    monkeypatch.setenv("SMS_ALLOWED_REGIONS", "FR,BE")
    settings.get.cache_clear()
    with pytest.raises(DomainError) as e:
        send(e164)
    assert e.value.code == "region_not_allowed" and e.value.http_status == 403
    assert sent_sms() == []


def test_sms_is_transactional_with_sender_id(aws, monkeypatch):
    calls = []
    real = sms.client

    def spy(service):
        c = real(service)
        if service == "sns":
            original = c.publish

            def publish(**kw):
                calls.append(kw)
                return original(**kw)

            monkeypatch.setattr(c, "publish", publish)
        return c

    monkeypatch.setattr(sms, "client", spy)
    send()
    attrs = calls[0]["MessageAttributes"]
    assert calls[0]["PhoneNumber"] == A
    assert attrs["AWS.SNS.SMS.SMSType"]["StringValue"] == "Transactional"
    assert attrs["AWS.SNS.SMS.SenderID"]["StringValue"] == "SmartList"


def sms_publish_error(monkeypatch):
    from chalicelib import aws

    sns = aws.client("sns")

    def publish(**kw):
        raise ClientError({"Error": {"Code": "Throttling", "Message": "rate"}}, "Publish")

    monkeypatch.setattr(sns, "publish", publish)


def test_sns_failure_is_503_and_burns_no_quota(aws, monkeypatch):
    send()
    first = last_code(A)
    pass_interval()
    with monkeypatch.context() as m:
        sms_publish_error(m)
        for _ in range(5):
            with pytest.raises(DomainError) as e:
                send()
            assert e.value.code == "sms_unavailable" and e.value.http_status == 503
            assert e.value.headers["Retry-After"]
    # The earlier code is still the valid one and the failed sends cost nothing: two more
    # SMS fit in the day (3 per number), and none waits for the per-number interval.
    claim = verification.consume(verification.SIGNUP, A, first, e164=A, fingerprint="f")
    assert claim.replay is None
    send()
    pass_interval()
    send()
    pass_interval()
    refused()


def test_a_code_that_could_not_be_stored_is_never_sent(aws, monkeypatch):
    from chalicelib import aws as aws_clients

    dynamodb = aws_clients.client("dynamodb")
    real_put = dynamodb.put_item

    def put_item(**kw):
        if kw["TableName"] == tables.VERIFICATION_CODES.name():
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "PutItem")
        return real_put(**kw)

    with monkeypatch.context() as m:
        m.setattr(dynamodb, "put_item", put_item)
        with pytest.raises(ClientError):
            send()  # the REST layer answers it 503 + Retry-After
    assert sent_sms() == []  # no SMS carries a code the service does not know
    send()  # the client's retry: one SMS, and its code works
    assert len(sent_sms()) == 1
    claim = verification.consume(verification.SIGNUP, A, last_code(A), e164=A, fingerprint="f")
    assert claim.replay is None


def test_released_log_entries_free_the_slot(aws):
    res = rate_limits.reserve_in_window("t", limit=1, window=60, what="test")
    with pytest.raises(DomainError):
        rate_limits.reserve_in_window("t", limit=1, window=60, what="test")
    rate_limits.release(res)
    rate_limits.reserve_in_window("t", limit=1, window=60, what="test")
    day = rate_limits.reserve_in_day("d", limit=1, what="test")
    rate_limits.release(day)
    rate_limits.release(day)  # never below zero
    rate_limits.reserve_in_day("d", limit=1, what="test")
    with pytest.raises(DomainError):
        rate_limits.reserve_in_day("d", limit=1, what="test")


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_requests_cannot_exceed_a_limit():
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        try:
            rate_limits.reserve_in_window("race", limit=3, window=3600, what="test")
            outcomes.append("ok")
        except DomainError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 3 and outcomes.count("rate_limited") == 5
