"""The parameters an operator sets per deployment, and the conditions derived from them.

Everything else is fixed by the stage (`infra.template.model.STAGES`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.template.cfn import any_of, edge_slot_ids, ref

if TYPE_CHECKING:
    from infra.template.builder import Builder


def add(b: Builder) -> None:
    st = b.stage
    p = b.parameters
    p["SipDomain"] = {"Type": "String", "Description": "Domain of the SIP accounts."}
    p["EdgeImageRepository"] = {
        "Type": "String",
        "Default": "smart-contacts-edge",
        "Description": "ECR repository (in this account and region) of the edge image.",
    }
    p["EdgeImageTag"] = {
        "Type": "String",
        "Description": "Tag of the edge image to run (an immutable tag: the git commit).",
    }
    p["EdgeCpuArchitecture"] = {
        "Type": "String",
        "Default": "ARM64",
        "AllowedValues": ["ARM64", "X86_64"],
        "Description": "Architecture the edge image was built for.",
    }
    p["EdgeCpu"] = {
        "Type": "String",
        "Default": "256",
        "AllowedValues": ["256", "512", "1024", "2048"],
    }
    p["EdgeMemory"] = {
        "Type": "String",
        "Default": "512",
        "AllowedValues": ["512", "1024", "2048", "4096"],
    }
    p["EdgeSlots"] = {
        "Type": "String",
        "Default": str(st.edge_default_slots),
        "AllowedValues": [str(n) for n in range(0, st.edge_max_slots + 1)],
        "Description": "Edge tasks running (each owns one queue and its dialogs).",
    }
    p["VpcId"] = {"Type": "AWS::EC2::VPC::Id"}
    p["NlbSubnetIds"] = {
        "Type": "List<AWS::EC2::Subnet::Id>",
        "Description": "Public subnets of the Network Load Balancer (one per AZ).",
    }
    p["EdgeSubnetIds"] = {
        "Type": "List<AWS::EC2::Subnet::Id>",
        "Description": "Subnets of the edge tasks (private with a NAT, or public).",
    }
    p["EdgeAssignPublicIp"] = {
        "Type": "String",
        "Default": "DISABLED",
        "AllowedValues": ["DISABLED", "ENABLED"],
        "Description": "ENABLED when EdgeSubnetIds are public subnets without a NAT.",
    }
    p["SipClientCidr"] = {
        "Type": "String",
        "Default": "0.0.0.0/0",
        "AllowedPattern": r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$",
        "Description": "Who may reach SIP on the load balancer.",
    }
    p["TlsCertificateArn"] = {
        "Type": "String",
        "Default": "",
        "Description": "ACM certificate for SIP over TLS on 5061; empty = no TLS listener.",
    }
    p["SipAdvertisedHost"] = {
        "Type": "String",
        "Default": "",
        "Description": "Host name the edge puts in Via/Contact; empty = the NLB's DNS name.",
    }
    p["SmsMonthlySpendLimitUsd"] = {
        "Type": "Number",
        "Default": st.sms_spend_limit_usd,
        "MinValue": 0,
        "Description": "SNS SMS MonthlySpendLimit (USD), set by a custom resource. "
        "Must not exceed the account's SMS quota (1 USD until raised by AWS support).",
    }
    p["SmsSpendAlarmUsd"] = {
        "Type": "Number",
        "Default": max(1, st.sms_spend_limit_usd * 8 // 10),
        "MinValue": 0,
        "Description": "Alarm when the month's SMS spend reaches this (USD).",
    }
    p["PublicUrl"] = {
        "Type": "String",
        "Default": "",
        "Description": "Public base URL of the REST API as phones reach it (a custom domain,"
        " with its base path); empty = the request's own. Provisioning links start with it.",
    }
    p["PushCredentialsSecret"] = {
        "Type": "String",
        "Default": "",
        "Description": "Name of a Secrets Manager secret with the push credentials (JSON:"
        " fcm, apns, apns.dev -> SNS platform application attributes); empty = no pushes,"
        " so the Linphone apps cannot get creation tokens by push.",
    }
    p["AlarmEmail"] = {
        "Type": "String",
        "Default": "",
        "Description": "Address subscribed to the alarm topic; empty = none.",
    }
    c = b.conditions
    c["HasTls"] = {"Fn::Not": [{"Fn::Equals": [ref("TlsCertificateArn"), ""]}]}
    c["HasAlarmEmail"] = {"Fn::Not": [{"Fn::Equals": [ref("AlarmEmail"), ""]}]}
    c["HasAdvertisedHost"] = {"Fn::Not": [{"Fn::Equals": [ref("SipAdvertisedHost"), ""]}]}
    for k in edge_slot_ids(st):
        equal = [
            {"Fn::Equals": [ref("EdgeSlots"), str(n)]} for n in range(k, st.edge_max_slots + 1)
        ]
        c[f"EdgeSlot{k}On"] = any_of(equal)
