"""Helpers the tests (tests/) and the benchmarks (bench/) both use, so neither imports the other.

`ports` (the one free-port helper), `stats` (percentiles), `sip_client` (a small SIP user agent
over real sockets), `notify_body` (an independent parser of list NOTIFY bodies), `sms` (the SMS
moto's SNS received), `fault_proxy` (faults in front of moto's server), `sipp_trace` (SIPp runs
and what they received) and `chaos` (the chaos run: `make bench` runs it long, the suite short).
Product code (app.py, chalicelib, sip_edge, devstack, infra) never imports it.
"""
