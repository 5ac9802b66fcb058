"""The SIP core: parsing, messages and transactions, with no I/O.

Modules import one way, down this list: `grammar` (shared patterns, quoting), `headers` (field
names, the Headers multi-map), `status` (reason phrases, ParseError), `uri`, `values` (header
values), `message` (Request/Response), `parser` (datagrams and streams), `transaction`.
"""
