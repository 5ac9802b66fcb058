"""Every price the cost model (`bench.cost`) uses, in one place, with where it comes from.

List prices in US dollars for the US East (N. Virginia) region, as published on AWS's pricing
pages (the URL beside each) and read on the date below; other regions cost roughly 10-15% more
(eu-west-1). No free tier, no Savings Plans, no reserved capacity: a list-price month. SMS
prices depend on the destination country and change often: one part to France is assumed.
Change a figure here and `python -m bench cost` recomputes every table and the plot.
"""

from __future__ import annotations

#: When the figures below were read from the pages they cite.
AS_OF = "2025-06"
REGION = "us-east-1"
HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30.4

# --- AWS Lambda (https://aws.amazon.com/lambda/pricing/), arm64 -----------------------------
LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_PER_GB_SECOND_ARM = 0.0000133334  # the first 7.5 billion GB-s of a month
#: A function gets CPU in proportion to its memory: one full vCPU at 1,769 MB
#: (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
LAMBDA_MB_PER_VCPU = 1769

# --- Amazon DynamoDB (https://aws.amazon.com/dynamodb/pricing/) ----------------------------
#: On-demand, after the 1 November 2024 cut.
DYNAMODB_PER_MILLION_RRU = 0.125
DYNAMODB_PER_MILLION_WRU = 0.625
#: Provisioned capacity, per unit-hour.
DYNAMODB_PER_RCU_HOUR = 0.00013
DYNAMODB_PER_WCU_HOUR = 0.00065
DYNAMODB_PER_GB_MONTH = 0.25  # standard table class storage
DYNAMODB_PITR_PER_GB_MONTH = 0.20  # continuous backups
#: DynamoDB Streams reads by Lambda triggers are free
#: (https://aws.amazon.com/dynamodb/pricing/on-demand/, "DynamoDB Streams").

# --- Amazon SQS (https://aws.amazon.com/sqs/pricing/), standard queues ----------------------
SQS_PER_MILLION_REQUESTS = 0.40  # each 64 KB chunk of a request is one request

# --- Amazon SNS (https://aws.amazon.com/sns/pricing/) and SMS -------------------------------
SNS_MOBILE_PUSH_PER_MILLION = 0.50
#: One SMS part to France, transactional (AWS End User Messaging SMS pricing,
#: https://aws.amazon.com/end-user-messaging/pricing/); check your destination countries.
SMS_PER_MESSAGE = 0.07

# --- AWS Fargate (https://aws.amazon.com/fargate/pricing/), Linux/ARM -----------------------
FARGATE_ARM_PER_VCPU_HOUR = 0.03238
FARGATE_ARM_PER_GB_HOUR = 0.00356

# --- Elastic Load Balancing (https://aws.amazon.com/elasticloadbalancing/pricing/), NLB -----
NLB_PER_HOUR = 0.0225
NLB_PER_LCU_HOUR = 0.006
#: One NLB capacity unit (TCP): 800 new connections/s, 100,000 active connections, 1 GB/h.
NLB_LCU_NEW_CONNECTIONS_PER_S = 800
NLB_LCU_ACTIVE_CONNECTIONS = 100_000
NLB_LCU_GB_PER_HOUR = 1.0
#: UDP flows: 400 new flows/s and 50,000 active flows per LCU.
NLB_LCU_NEW_UDP_FLOWS_PER_S = 400
NLB_LCU_ACTIVE_UDP_FLOWS = 50_000

# --- Data transfer (https://aws.amazon.com/ec2/pricing/on-demand/, "Data Transfer") ---------
TRANSFER_OUT_PER_GB = 0.09  # to the internet, the first 10 TB of a month

# --- Amazon EC2 and RDS, for a self-run SIP server (the comparison) -------------------------
#: c7g.large: 2 vCPU (Graviton3), 4 GiB (https://aws.amazon.com/ec2/pricing/on-demand/).
EC2_C7G_LARGE_PER_HOUR = 0.0725
EC2_C7G_LARGE_VCPUS = 2
#: t4g.medium: 2 vCPU burstable, 4 GiB, for a web/API tier (FlexiAPI).
EC2_T4G_MEDIUM_PER_HOUR = 0.0336
#: RDS for MySQL db.r6g.large Multi-AZ (2 vCPU, 16 GiB), its storage gp3 per GB-month
#: (https://aws.amazon.com/rds/mysql/pricing/).
RDS_R6G_LARGE_MULTI_AZ_PER_HOUR = 0.45
RDS_GP3_MULTI_AZ_PER_GB_MONTH = 0.23
#: ElastiCache for Redis cache.t4g.medium (https://aws.amazon.com/elasticache/pricing/),
#: FlexiAPI's and Flexisip's registrar store.
ELASTICACHE_T4G_MEDIUM_PER_HOUR = 0.065
