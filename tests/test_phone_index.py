"""PhoneIndex lookups: chunked BatchGetItem, discoverable filter, unprocessed keys retried."""

from __future__ import annotations

from unittest import mock

from chalicelib import dynamo, tables
from chalicelib.accounts import phone, phone_index


def _put(e164: str, aor: str, discoverable: bool = True) -> None:
    tables.table(tables.PHONE_INDEX).put_item(
        Item={"phone_hash": phone.phone_hash(e164), "aor": aor, "discoverable": discoverable}
    )


def test_lookup_chunks_and_filters(aws):
    numbers = [f"+336{i:08d}" for i in range(1000)]
    for i, n in enumerate(numbers[:300]):
        _put(n, f"u{i}@example.org", discoverable=i % 10 != 0)
    counter = dynamo.CallCounter()
    found = phone_index.find(numbers, counter=counter)
    assert counter.calls == 10
    assert len(found) == 270
    assert found[numbers[1]].sip_uri == "sip:u1@example.org"
    assert numbers[0] not in found
    assert numbers[0] in phone_index.find(numbers[:1], only_discoverable=False)


def test_unprocessed_keys_are_retried(aws):
    _put("+33612345678", "bob@example.org")
    real = dynamo.client("dynamodb").batch_get_item
    calls = {"n": 0}

    def flaky(RequestItems):  # noqa: N803 - boto3's own argument name
        calls["n"] += 1
        if calls["n"] == 1:
            return {"Responses": {}, "UnprocessedKeys": RequestItems}
        return real(RequestItems=RequestItems)

    with mock.patch.object(dynamo.client("dynamodb"), "batch_get_item", side_effect=flaky):
        counter = dynamo.CallCounter()
        found = phone_index.find(["+33612345678"], counter=counter)
    assert counter.calls == 2 and counter.unprocessed_retries == 1
    assert found["+33612345678"].aor == "bob@example.org"
