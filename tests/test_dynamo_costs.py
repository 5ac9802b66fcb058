"""What each operation of a subscription's life costs in DynamoDB calls and units (counted by
a botocore hook, see tests/dynamo_costs.py), and README's cost table is that count."""

from __future__ import annotations

import pytest

from tests import dynamo_costs


@pytest.fixture
def rows(aws):
    return dict(dynamo_costs.measure())


def test_a_refresh_rewrites_one_small_item(rows):
    for label in ("one user", f"list of {dynamo_costs.LIST_SIZE}"):
        for name in (f"refresh SUBSCRIBE ({label})", f"NOTIFY sent ({label}): record the version"):
            used = rows[name]
            assert dict(used.calls) == {"UpdateItem": 1}, name
            assert used.wcu <= 1 and used.rcu == 0, name


def test_a_new_dialog_is_one_read_and_one_batch(rows):
    used = rows[f"SUBSCRIBE (list of {dynamo_costs.LIST_SIZE}): save the new dialog"]
    # 100 entries of which 30 users: 2 + 100 watcher items + pointer need 5 batches of 25.
    # The reads besides (2 GetItem, 1 Query) came with the abuse-resistance merge.
    assert dict(used.calls) == {"GetItem": 2, "Query": 1, "BatchWriteItem": 5}
    used = rows["SUBSCRIBE (one user): save the new dialog"]
    assert dict(used.calls) == {"GetItem": 2, "Query": 1, "BatchWriteItem": 1}


def test_no_user_in_the_list_means_no_mutual_contacts_lookup(rows):
    used = rows["SUBSCRIBE (one number, not a user): presence_lookup"]
    # No Query: the mutual-contacts lookup is skipped. GetItem/PutItem are the account's
    # discovery budget (a new number takes a token), merged after this table was made.
    assert dict(used.calls) == {"BatchGetItem": 1, "GetItem": 2, "PutItem": 1}


def test_an_unsubscribe_is_one_call(rows):
    assert dict(rows["un-SUBSCRIBE (one user): delete"].calls) == {"BatchWriteItem": 1}


def test_the_readme_cost_table_is_current(rows):
    table = dynamo_costs.render(list(rows.items()))
    assert dynamo_costs.readme_block() == table, (
        "README's DynamoDB cost table is stale: run `python -m tests.dynamo_costs`"
    )


def test_item_sizes_follow_dynamodb_rules():
    assert dynamo_costs.item_size({"ab": {"S": "héllo"}}) == 2 + 6
    assert dynamo_costs.item_size({"n": {"N": "1800000000"}}) == 1 + 2
    assert dynamo_costs.item_size({"l": {"L": [{"BOOL": True}]}}) == 1 + 3 + 2
