"""Test helper: a local HTTP server standing in for figshare and the weight hosts.

Serves, on 127.0.0.1:
- ``/api/articles/<id>/files`` -> JSON list like the figshare API (id, name, size,
  computed_md5, download_url);
- ``/files/<id>`` and any other registered path -> bytes, with HTTP Range support.

Per-path behaviour (``mode``):
- ``good``: honest server;
- ``cut_once``: the first request announces the full Content-Length but closes the
  connection after sending half the body; later requests are honest;
- ``cut_always``: every request without a Range header is cut halfway;
- ``corrupt``: serves other bytes of the same length;
- ``ignore_range``: answers a Range request with 200 and the whole body;
- ``stall_once``: the first request sends half the body, then stalls for ``stall_seconds``
  before closing (the client's read timeout must fire); later requests are honest.

Every request is recorded as ``(path, range_header_or_None)``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FakeRemote:
    """State shared with the handler; start/stop the server with :meth:`start`/:meth:`stop`."""

    def __init__(self, article_id: int = 7033577):
        self.article_id = article_id
        self.bodies: dict = {}
        self.modes: dict = {}
        self.hits: dict = {}
        self.manifest: list = []
        self.requests: list = []
        self.lock = threading.Lock()
        self.server = None
        self.thread = None
        self.stall_seconds = 2.0

    # -- content
    def add_figshare_file(self, name: str, file_id: int, body: bytes, mode: str = "good",
                          md5: str | None = None) -> None:
        path = f"/files/{file_id}"
        self.add_path(path, body, mode)
        self.manifest.append({"id": file_id, "name": name, "size": len(body),
                              "computed_md5": md5 or hashlib.md5(body).hexdigest(),
                              "download_url": f"{self.url}{path}"})

    def add_path(self, path: str, body: bytes, mode: str = "good") -> None:
        self.bodies[path] = body
        self.modes[path] = mode

    def requests_for(self, path: str) -> list:
        with self.lock:
            return [r for r in self.requests if r[0] == path]

    # -- server
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeRemote":
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                remote._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None

    # -- handling
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        range_header = handler.headers.get("Range")
        with self.lock:
            self.requests.append((parts.path, range_header))
            self.hits[parts.path] = self.hits.get(parts.path, 0) + 1
            hit = self.hits[parts.path]
        if parts.path == f"/api/articles/{self.article_id}/files":
            page = re.search(r"(?:^|&)page=(\d+)", parts.query)
            payload = self.manifest if page is None or page.group(1) == "1" else []
            self._send(handler, 200, json.dumps(payload).encode(), "application/json")
            return
        if parts.path not in self.bodies:
            self._send(handler, 404, b"not found")
            return
        body, mode = self.bodies[parts.path], self.modes[parts.path]
        if mode == "corrupt":
            body = bytes((b + 1) % 256 for b in body)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and mode != "ignore_range":
            start = int(match.group(1))
            if start >= len(body):
                self._send(handler, 416, b"", extra={"Content-Range": f"bytes */{len(body)}"})
                return
        payload = body[start:]
        headers = {}
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        cut = (mode in ("cut_once", "stall_once") and hit == 1) or \
            (mode == "cut_always" and not range_header)
        self._send(handler, status, payload, extra=headers,
                   cut_after=len(payload) // 2 if cut else None)
        if cut and mode == "stall_once":
            time.sleep(self.stall_seconds)

    @staticmethod
    def _send(handler, status, payload, content_type="application/octet-stream", extra=None,
              cut_after=None):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Accept-Ranges", "bytes")
        for key, value in (extra or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload if cut_after is None else payload[:cut_after])
        handler.wfile.flush()
        handler.close_connection = True
