"""Presence bodies: which entries of a list are users, and the NOTIFY bodies that say so.

Owns reading a resource list (`resource_list`, RFC 5367/4826), resolving its entries to accounts
(`resolve`, `discovery`), the watchers-index keys of those entries (`watched`), and the bodies:
PIDF (`pidf`, RFC 3863/4479), RLMI (`rlmi`, RFC 4662), multipart/related (`multipart`) and their
assembly into NOTIFYs (`notify`). May import `chalicelib.accounts` (numbers, the phone index)
and the shared core; never `live` or `api`.
"""
