"""The asyncio SIP edge: transports around the I/O-free SIP core in `sip_edge.sip`."""
