"""A real HTTP server on 127.0.0.1 whose answers a test scripts, one per request.

The decision client is tested against real sockets (connection refused, timeouts, dropped
connections, 5xx, malformed bodies) rather than a mocked transport.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer. ``body`` may be a dict (sent as JSON), bytes or a callable of the request."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    """Close the connection without answering."""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    """Answers requests with ``replies`` in order; the last one repeats."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.received: list[Received] = []
        self._lock = threading.Lock()

    def next_reply(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            index = min(len(self.received), len(self.replies)) - 1
            return self.replies[index]


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
            reply = server.next_reply(request)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.drop:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            body = reply.body(request) if callable(reply.body) else reply.body
            if isinstance(body, (dict, list)):
                payload = json.dumps(body).encode()
                content_type = "application/json"
            else:
                payload = body if isinstance(body, bytes) else str(body or "").encode()
                content_type = "text/plain"
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.headers.pop("Content-Type", content_type))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(replies: list[Reply]) -> Iterator[tuple[str, ScriptedServer]]:
    """``(base_url, server)`` of a server on a free port, stopped afterwards."""
    script = ScriptedServer(replies)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ReplyBody = Callable[[Received], Any]
