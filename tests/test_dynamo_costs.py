"""What each operation of a subscription's life costs in DynamoDB calls and units (counted by
a botocore hook, see testkit/dynamo_costs.py), and docs/cost.md's table is that count."""

from __future__ import annotations

import pytest

from testkit import dynamo_costs


@pytest.fixture
def rows(aws):
    return dict(dynamo_costs.measure())


def test_a_refresh_rewrites_one_small_item(rows):
    for label in ("one user", f"list of {dynamo_costs.LIST_SIZE}"):
        for name in (
            f"refresh SUBSCRIBE ({label})",
            f"NOTIFY of a later change ({label}): record the version",
        ):
            used = rows[name]
            assert dict(used.calls) == {"UpdateItem": 1}, name
            assert used.wcu <= 1 and used.rcu == 0, name


def test_a_new_dialog_is_one_read_and_one_batch(rows):
    used = rows[f"SUBSCRIBE (list of {dynamo_costs.LIST_SIZE}): save the new dialog"]
    # 100 entries of which 30 users: 2 + 100 watcher items + pointer need 5 batches of 25.
    # The one read of the save fetches the watcher's pointer and the subscriber's account (its
    # number) together; the Queries (the watchers index: its account and its number) tell the
    # lists that watch this subscriber to look again, now that the mutual-contacts rule may
    # show it (baresip needs it).
    assert dict(used.calls) == {"BatchGetItem": 1, "Query": 2, "BatchWriteItem": 5}
    used = rows["SUBSCRIBE (one user): save the new dialog"]
    assert dict(used.calls) == {"BatchGetItem": 1, "Query": 2, "BatchWriteItem": 1}


def test_the_subscriber_account_is_read_once_per_lookup(rows):
    used = rows["SUBSCRIBE (one user): presence_lookup"]
    # The account (is it disabled? its number for the mutual-contacts keys) is one GetItem.
    assert dict(used.calls) == {"GetItem": 1, "BatchGetItem": 1, "Query": 2}


def test_no_user_in_the_list_means_no_mutual_contacts_lookup(rows):
    used = rows["SUBSCRIBE (one number, not a user): presence_lookup"]
    # No Query: the mutual-contacts lookup is skipped. One BatchGetItem reads the subscriber's
    # account (a disabled one is refused) with its discovery budget, which the PutItem charges
    # for the number never asked about before; the other is the phone index.
    assert dict(used.calls) == {"BatchGetItem": 2, "PutItem": 1}


def test_a_subscriber_with_no_account_tells_no_watcher(aws):
    """Nobody's list can show a subscriber that has no account as a user: its new dialog
    queries no watchers (the bench's SIPp watchers are such subscribers)."""
    import app
    from chalicelib import aws as chalice_aws
    from chalicelib import clock

    meter = dynamo_costs.CostMeter(
        [chalice_aws.client("dynamodb"), chalice_aws.resource("dynamodb").meta.client]
    )
    answer = app.sip_subscriptions(
        {"op": "save", "subscription_id": "s9", "expires_at": clock.now_int() + 3600,
         "version": 0, "dialog": dynamo_costs._dialog("s9"), "edge_id": "edge-1",
         "subscriber": "w1@example.org", "entries": ["sip:bob@example.org"], "watcher": "w1~x"},
        None,
    )  # fmt: skip
    assert answer == {"saved": True}
    assert dict(meter.reset().calls) == {"BatchGetItem": 1, "BatchWriteItem": 1}


def test_an_unsubscribe_is_one_call(rows):
    assert dict(rows["un-SUBSCRIBE (one user): delete"].calls) == {"BatchWriteItem": 1}


def test_the_cost_page_table_is_current(rows):
    table = dynamo_costs.render(list(rows.items()))
    assert dynamo_costs.cost_page_block() == table, (
        "docs/cost.md's DynamoDB table is stale: run `python -m testkit.dynamo_costs`"
    )


def test_item_sizes_follow_dynamodb_rules():
    assert dynamo_costs.item_size({"ab": {"S": "héllo"}}) == 2 + 6
    assert dynamo_costs.item_size({"n": {"N": "1800000000"}}) == 1 + 2
    assert dynamo_costs.item_size({"l": {"L": [{"BOOL": True}]}}) == 1 + 3 + 2
