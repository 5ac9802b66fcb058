"""The edge's presence logic without I/O: the subscription dialogs, what happens to them, and
the record they are stored as. The asyncio driver (`sip_edge.subscription_service`) carries out
what it asks for."""
