"""The SIP edge: ECS Fargate tasks behind a Network Load Balancer, one service per slot.

A slot owns an identity (EDGE_ID), a queue and the dialogs stored under it; the task running the
slot can be replaced and its successor reloads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.template.cfn import arn, edge_slot_ids, ref, role, sub, trust
from infra.template.model import CONTAINER, EDGE_WITHHELD_KEY, SIP_PORT, TLS_PORT, Function

if TYPE_CHECKING:
    from infra.template.builder import Builder


def edge_environment(b: Builder, k: int) -> dict[str, Any]:
    return {
        "STAGE": b.stage.name,
        "SIP_DOMAIN": ref("SipDomain"),
        "SIP_HOST": "0.0.0.0",
        "SIP_PORT": str(SIP_PORT),
        "SIP_FUNCTIONS": "lambda",
        "SIP_FUNCTION_PREFIX": sub("${AWS::StackName}-"),
        "SIP_ADVERTISED_HOST": {
            "Fn::If": [
                "HasAdvertisedHost",
                ref("SipAdvertisedHost"),
                {"Fn::GetAtt": ["SipLoadBalancer", "DNSName"]},
            ]
        },
        # The slot number: its queue is EDGE_QUEUE_PREFIX + EDGE_ID, its dialogs are
        # reloaded by whichever task runs the slot next.
        "EDGE_ID": str(k),
        "EDGE_QUEUE_PREFIX": sub("${AWS::StackName}-edge-"),
        "EDGE_QUEUE_URL": ref(f"EdgeQueue{k}"),
        "AWS_REGION": ref("AWS::Region"),
        "AWS_DEFAULT_REGION": ref("AWS::Region"),
        "POWERTOOLS_SERVICE_NAME": "smart-contacts-edge",
        "PHONE_HASH_KEY": EDGE_WITHHELD_KEY,
        "CODE_HASH_KEY": EDGE_WITHHELD_KEY,
    }


def add(b: Builder) -> None:
    r = b.resources
    st = b.stage
    r["EdgeCluster"] = {
        "Type": "AWS::ECS::Cluster",
        "Properties": {
            "ClusterName": sub("${AWS::StackName}-edge"),
            "ClusterSettings": [
                {
                    "Name": "containerInsights",
                    "Value": "enabled" if st.container_insights else "disabled",
                }
            ],
        },
    }
    r["EdgeLogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": sub("/ecs/${AWS::StackName}/edge"),
            "RetentionInDays": st.log_retention_days,
        },
    }
    r["EdgeExecutionRole"] = role(
        trust("ecs-tasks.amazonaws.com"),
        [
            {
                # GetAuthorizationToken has no resource type; the pull itself is scoped.
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
            {
                "Sid": "PullEdgeImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage",
                ],
                "Resource": sub(
                    "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:"
                    "repository/${EdgeImageRepository}"
                ),
            },
            {
                "Sid": "EdgeLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": arn("EdgeLogGroup"),
            },
            {
                # Injects NONCE_KEY into the container; the task itself cannot read it.
                "Sid": "NonceKey",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": ref("HmacKeysSecret"),
            },
        ],
        "ECS pulls the edge image, writes its logs and injects NONCE_KEY.",
    )
    r["NlbSecurityGroup"] = {
        "Type": "AWS::EC2::SecurityGroup",
        "Properties": {
            "GroupDescription": "SIP from phones to the load balancer",
            "VpcId": ref("VpcId"),
            "SecurityGroupIngress": [
                {
                    "IpProtocol": proto,
                    "FromPort": port,
                    "ToPort": port,
                    "CidrIp": ref("SipClientCidr"),
                    "Description": f"SIP {proto.upper()} {port}",
                }
                for proto, port in (("udp", SIP_PORT), ("tcp", SIP_PORT), ("tcp", TLS_PORT))
            ],
        },
    }
    r["EdgeSecurityGroup"] = {
        "Type": "AWS::EC2::SecurityGroup",
        "Properties": {
            "GroupDescription": "SIP edge tasks: SIP from the load balancer only",
            "VpcId": ref("VpcId"),
            "SecurityGroupIngress": [
                {
                    "IpProtocol": proto,
                    "FromPort": SIP_PORT,
                    "ToPort": SIP_PORT,
                    "SourceSecurityGroupId": ref("NlbSecurityGroup"),
                    "Description": f"SIP {proto.upper()} (and health checks) from the NLB",
                }
                for proto in ("udp", "tcp")
            ],
        },
    }
    r["SipLoadBalancer"] = {
        "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "Properties": {
            "Type": "network",
            "Scheme": "internet-facing",
            "Subnets": ref("NlbSubnetIds"),
            "SecurityGroups": [ref("NlbSecurityGroup")],
            "LoadBalancerAttributes": [
                {"Key": "load_balancing.cross_zone.enabled", "Value": "true"}
            ],
        },
    }
    target_attributes = [
        {"Key": "deregistration_delay.timeout_seconds", "Value": "30"},
        # The edge must see the phone's address for rport/received (RFC 3581).
        {"Key": "preserve_client_ip.enabled", "Value": "true"},
        # No source-IP stickiness: thousands of phones share one carrier-NAT address, and a
        # phone's own flow (5-tuple) already stays on one edge.
        {"Key": "stickiness.enabled", "Value": "false"},
    ]
    health = {
        "HealthCheckProtocol": "TCP",
        "HealthCheckPort": "traffic-port",
        "HealthCheckIntervalSeconds": 10,
        "HealthyThresholdCount": 2,
        "UnhealthyThresholdCount": 2,
    }
    r["SipTargetGroup"] = {
        "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Properties": {
            "Protocol": "TCP_UDP",
            "Port": SIP_PORT,
            "TargetType": "ip",
            "VpcId": ref("VpcId"),
            "TargetGroupAttributes": target_attributes,
            **health,
        },
    }
    r["SipTlsTargetGroup"] = {
        "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Condition": "HasTls",
        "Properties": {
            "Protocol": "TCP",
            "Port": SIP_PORT,
            "TargetType": "ip",
            "VpcId": ref("VpcId"),
            "TargetGroupAttributes": target_attributes,
            **health,
        },
    }
    r["SipListener"] = {
        "Type": "AWS::ElasticLoadBalancingV2::Listener",
        "Properties": {
            "LoadBalancerArn": ref("SipLoadBalancer"),
            "Port": SIP_PORT,
            "Protocol": "TCP_UDP",
            "DefaultActions": [{"Type": "forward", "TargetGroupArn": ref("SipTargetGroup")}],
        },
    }
    r["SipTlsListener"] = {
        "Type": "AWS::ElasticLoadBalancingV2::Listener",
        "Condition": "HasTls",
        "Properties": {
            "LoadBalancerArn": ref("SipLoadBalancer"),
            "Port": TLS_PORT,
            "Protocol": "TLS",
            "Certificates": [{"CertificateArn": ref("TlsCertificateArn")}],
            "SslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "DefaultActions": [{"Type": "forward", "TargetGroupArn": ref("SipTlsTargetGroup")}],
        },
    }
    edge_functions = [fn for fn in b.functions if fn.kind == "edge"]
    previous: str | None = None
    for k in edge_slot_ids(st):
        edge_slot(b, k, edge_functions, previous)
        previous = f"EdgeService{k}"
    b.outputs["SipEndpoint"] = {"Value": {"Fn::GetAtt": ["SipLoadBalancer", "DNSName"]}}
    b.outputs["EdgeClusterName"] = {"Value": ref("EdgeCluster")}


def edge_slot(b: Builder, k: int, edge_functions: list[Function], previous: str | None) -> None:
    r = b.resources
    statements: list[dict[str, Any]] = [
        {
            "Sid": "OwnQueue",
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
            ],
            "Resource": arn(f"EdgeQueue{k}"),
        }
    ]
    if edge_functions:
        statements.insert(
            0,
            {
                "Sid": "InvokeEdgeFunctions",
                "Effect": "Allow",
                "Action": ["lambda:InvokeFunction"],
                "Resource": [b.function_arn(fn) for fn in edge_functions],
            },
        )
    r[f"EdgeTaskRole{k}"] = role(
        trust(
            "ecs-tasks.amazonaws.com",
            ArnLike={
                "aws:SourceArn": sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*")
            },
            StringEquals={"aws:SourceAccount": ref("AWS::AccountId")},
        ),
        statements,
        f"SIP edge {k}: invokes the functions and reads its own queue; no DynamoDB.",
    )
    env = edge_environment(b, k)
    r[f"EdgeTaskDefinition{k}"] = {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": sub("${AWS::StackName}-edge-" + str(k)),
            "Cpu": ref("EdgeCpu"),
            "Memory": ref("EdgeMemory"),
            "NetworkMode": "awsvpc",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {
                "OperatingSystemFamily": "LINUX",
                "CpuArchitecture": ref("EdgeCpuArchitecture"),
            },
            "ExecutionRoleArn": arn("EdgeExecutionRole"),
            "TaskRoleArn": arn(f"EdgeTaskRole{k}"),
            "ContainerDefinitions": [
                {
                    "Name": CONTAINER,
                    "Image": sub(
                        "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/"
                        "${EdgeImageRepository}:${EdgeImageTag}"
                    ),
                    "Essential": True,
                    "PortMappings": [
                        {"ContainerPort": SIP_PORT, "Protocol": "udp"},
                        {"ContainerPort": SIP_PORT, "Protocol": "tcp"},
                    ],
                    "Environment": [{"Name": n, "Value": v} for n, v in sorted(env.items())],
                    "Secrets": [
                        {
                            "Name": "NONCE_KEY",
                            "ValueFrom": sub("${HmacKeysSecret}:NONCE_KEY::"),
                        }
                    ],
                    # Same probe as the Dockerfile's HEALTHCHECK: a SIP OPTIONS over UDP.
                    "HealthCheck": {
                        "Command": ["CMD", "python", "/app/sip_edge/healthcheck.py"],
                        "Interval": 30,
                        "Timeout": 5,
                        "Retries": 3,
                        "StartPeriod": 20,
                    },
                    "LogConfiguration": {
                        "LogDriver": "awslogs",
                        "Options": {
                            "awslogs-group": ref("EdgeLogGroup"),
                            "awslogs-region": ref("AWS::Region"),
                            "awslogs-stream-prefix": "edge",
                        },
                    },
                    "ReadonlyRootFilesystem": True,
                    "LinuxParameters": {"InitProcessEnabled": True},
                    # One fd per TCP/TLS connection (SIP_MAX_CONNECTIONS) plus headroom.
                    "Ulimits": [{"Name": "nofile", "SoftLimit": 65536, "HardLimit": 65536}],
                    "StopTimeout": 30,
                }
            ],
        },
    }
    load_balancers: list[Any] = [
        {
            "ContainerName": CONTAINER,
            "ContainerPort": SIP_PORT,
            "TargetGroupArn": ref("SipTargetGroup"),
        },
        {
            "Fn::If": [
                "HasTls",
                {
                    "ContainerName": CONTAINER,
                    "ContainerPort": SIP_PORT,
                    "TargetGroupArn": ref("SipTlsTargetGroup"),
                },
                ref("AWS::NoValue"),
            ]
        },
    ]
    depends = ["SipListener"] + ([previous] if previous else [])
    r[f"EdgeService{k}"] = {
        "Type": "AWS::ECS::Service",
        # One service per slot: the slot's identity (EDGE_ID, queue, dialogs) survives
        # task replacement, and services update one after another (DependsOn chain).
        "DependsOn": depends,
        "Properties": {
            "ServiceName": f"edge-{k}",
            "Cluster": ref("EdgeCluster"),
            "TaskDefinition": ref(f"EdgeTaskDefinition{k}"),
            "LaunchType": "FARGATE",
            "DesiredCount": {"Fn::If": [f"EdgeSlot{k}On", 1, 0]},
            # Never two tasks with one EDGE_ID: stop the old one, then start the new one.
            "DeploymentConfiguration": {
                "MinimumHealthyPercent": 0,
                "MaximumPercent": 100,
                "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
            },
            "HealthCheckGracePeriodSeconds": 60,
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "AssignPublicIp": ref("EdgeAssignPublicIp"),
                    "SecurityGroups": [ref("EdgeSecurityGroup")],
                    "Subnets": ref("EdgeSubnetIds"),
                }
            },
            "LoadBalancers": load_balancers,
            "PropagateTags": "SERVICE",
            "EnableECSManagedTags": True,
            "Tags": [
                {"Key": "edge-slot", "Value": str(k)},
                # Orders the service after the TLS listener when there is one.
                {
                    "Key": "sip-tls-listener",
                    "Value": {"Fn::If": ["HasTls", ref("SipTlsListener"), "none"]},
                },
            ],
        },
    }
