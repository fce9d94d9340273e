"""A local HTTP server standing in for an outside provider (geocoding, weather, map tiles):
each test says how it answers and reads what it was asked.

    with ProviderServer() as provider:
        provider.answer(json=[{"lat": "45.1", "lon": "9.2"}])
        provider.answer(status=500)              # every later request gets a 500
        provider.answer(body=b"{not json")
        provider.answer(json=..., delay=2.0)     # answers after two seconds
        provider.answer(json=..., path="/v1/")   # only for paths that start with /v1/
        provider.url                            # http://127.0.0.1:<port>
        provider.requests                       # [(path, {param: value}, headers)]

Only the outside world is replaced: the portal's own code runs as it does in production.
"""

from __future__ import annotations

import io
import json as jsonlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from PIL import Image


def tile_png(color: str = "#2f6b3a") -> bytes:
    """A 256 × 256 map tile of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), color).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        parts = urlsplit(self.path)
        self.server.provider.requests.append(
            Request(parts.path, dict(parse_qsl(parts.query)), dict(self.headers.items()))
        )
        answer = self.server.provider.answer_for(parts.path)
        if answer.delay:
            time.sleep(answer.delay)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting, as it should

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    provider: ProviderServer


class ProviderServer:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.current = Answer()
        self.routes: dict[str, Answer] = {}
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.provider = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(
        self,
        *,
        json: Any = None,
        body: bytes | None = None,
        status: int = 200,
        content_type: str = "application/json",
        delay: float = 0.0,
        path: str = "",
    ) -> None:
        """How to answer from now on: every request, or those whose path starts with `path`."""
        if body is None:
            body = b"" if json is None else jsonlib.dumps(json).encode()
        if path:
            self.routes[path] = Answer(status, body, content_type, delay)
        else:
            self.current = Answer(status, body, content_type, delay)

    def answer_for(self, path: str) -> Answer:
        prefixes = sorted((p for p in self.routes if path.startswith(p)), key=len, reverse=True)
        return self.routes[prefixes[0]] if prefixes else self.current

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
