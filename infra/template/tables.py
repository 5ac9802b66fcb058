"""The DynamoDB tables, one per `chalicelib.tables.ALL` entry; their names and streams are
outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib import tables
from infra.template.cfn import ref, sub, table_id

if TYPE_CHECKING:
    from infra.template.builder import Builder


def add(b: Builder) -> None:
    for spec in tables.ALL:
        b.resources[table_id(spec)] = spec.cloudformation(sub("${AWS::StackName}-" + spec.logical))
        b.outputs[table_id(spec) + "Name"] = {"Value": ref(table_id(spec))}
        if spec.stream:
            b.outputs[table_id(spec) + "StreamArn"] = {
                "Value": {"Fn::GetAtt": [table_id(spec), "StreamArn"]}
            }
