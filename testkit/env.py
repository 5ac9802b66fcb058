"""The environment the tests run in (and the benchmarks that borrow their set-up): moto's
fake credentials, one region, a table prefix of their own, the test SIP domain."""

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
    "STAGE": "test",
    "TABLE_PREFIX": "sc-test-",
    "SIP_DOMAIN": "example.org",
    "POWERTOOLS_METRICS_NAMESPACE": "SmartContactsTest",
    "POWERTOOLS_DEV": "false",
    "EDGE_QUEUE_WAIT": "1",
}
