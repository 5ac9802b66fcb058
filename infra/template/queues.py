"""The SQS queues: one per edge slot (live updates to its dialogs), one for failed stream
batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.template.cfn import arn, edge_slot_ids, sub

if TYPE_CHECKING:
    from infra.template.builder import Builder


def add(b: Builder) -> None:
    for k in edge_slot_ids(b.stage):
        b.resources[f"EdgeQueue{k}"] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub("${AWS::StackName}-edge-" + str(k)),
                # A partial NOTIFY older than this is stale: the next full state wins.
                "MessageRetentionPeriod": 900,
                "ReceiveMessageWaitTimeSeconds": 20,
                "VisibilityTimeout": 30,
                "SqsManagedSseEnabled": True,
            },
        }
    b.resources["StreamFailuresQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": sub("${AWS::StackName}-stream-failures"),
            "MessageRetentionPeriod": 1209600,
            "SqsManagedSseEnabled": True,
        },
    }
    b.outputs["StreamFailuresQueueArn"] = {"Value": arn("StreamFailuresQueue")}
