"""`python -m sip_edge`: run the SIP edge with the settings of the environment."""

from __future__ import annotations

import asyncio

from sip_edge.server import serve_forever

if __name__ == "__main__":
    asyncio.run(serve_forever())
