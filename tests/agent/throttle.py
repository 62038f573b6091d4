"""A slow reverse proxy for payload downloads, so a test can cut the agent off mid-transfer:
GETs (with their Range header) are forwarded to the real server and the body is passed on in
small pieces with a pause after each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_PASSED_HEADERS = ("content-length", "content-range", "content-type", "accept-ranges", "etag")


def _handler(upstream: str, piece: int, pause: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {"Range": self.headers["Range"]} if self.headers["Range"] else {}
            try:
                with httpx.stream("GET", upstream + self.path, headers=headers) as answer:
                    self.send_response(answer.status_code)
                    for name in _PASSED_HEADERS:
                        if name in answer.headers:
                            self.send_header(name, answer.headers[name])
                    self.end_headers()
                    for chunk in answer.iter_bytes(piece):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent was killed mid-transfer

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def throttled(
    upstream: str, port: int, *, piece: int = 64 << 10, pause: float = 0.02
) -> Iterator[str]:
    """Serve ``upstream`` on 127.0.0.1:``port`` at about ``piece / pause`` bytes a second."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(upstream, piece, pause))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
