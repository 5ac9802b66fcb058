"""The REST API (chalice local, threaded) in a thread of its own: `make run` and the tests.

Tests start and stop it many times in one process, which chalice allows only so: the first
server turns the app object into a local one, and later ones must reuse it as it is.
"""

from __future__ import annotations

import threading


class RestThread:
    """`app.py`'s routes served on host:port until `stop`; also a context manager."""

    def __init__(self, host: str, port: int, name: str = "rest-api") -> None:
        from chalice.config import Config
        from chalice.local import CustomLocalChalice, LocalDevServer, create_local_server

        from app import app

        config = Config.create(chalice_stage="local")
        if isinstance(app, CustomLocalChalice):
            self._server = LocalDevServer(app, config, host, port)
        else:
            self._server = create_local_server(app, config, host, port)
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> RestThread:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
