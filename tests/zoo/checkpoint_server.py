"""A checkpoint server on 127.0.0.1 for the zoo tests: it serves files under the registry's URL paths and
can misbehave on demand (close early, stall, ignore Range, be slow), recording every request it gets.

Like GitHub's release downloads, a path under `/SwinTransformer/` answers with a 302 to `/cdn/<same path>`,
where the bytes are served; torchvision's `/models/...` paths are served directly.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 1 << 16


@dataclass
class Behaviour:
    """How one path misbehaves. close_after / stall_after apply to the first `times` requests of the path."""

    close_after: int | None = None  # send the full Content-Length, then close after this many body bytes
    stall_after: int | None = None  # send this many body bytes (0: none, headers only), then go silent
    stall_before_headers: bool = False  # accept the connection, never answer
    ignore_range: bool = False  # answer every request with 200 and the whole file
    delay_s: float = 0.0  # wait this long before the body (gives concurrent clients time to line up)
    times: int = 1


@dataclass
class Request:
    path: str
    range: str | None
    status: int
    body_bytes: int = 0


@dataclass
class CheckpointServer:
    files: dict = field(default_factory=dict)  # URL path -> local file
    behaviour: dict = field(default_factory=dict)  # URL path -> Behaviour
    requests: list = field(default_factory=list)

    def __post_init__(self):
        self.release = threading.Event()  # set at shutdown: stalled handlers return
        self._lock = threading.Lock()
        self._seen = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, url_path: str, local_file, behaviour: Behaviour | None = None):
        self.files[url_path] = Path(local_file)
        if behaviour is not None:
            self.behaviour[url_path] = behaviour

    def get_requests(self, url_path: str) -> list:
        """The requests that reached the bytes of `url_path` (after any redirect)."""
        with self._lock:
            return [r for r in self.requests if r.path in (url_path, "/cdn" + url_path)]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, request):
        with self._lock:
            self.requests.append(request)
        return request

    def _handle(self, handler):
        path, range_header = handler.path, handler.headers.get("Range")
        if path.startswith("/SwinTransformer/"):
            self._record(Request(path, range_header, 302))
            handler.send_response(302)
            handler.send_header("Location", "/cdn" + path)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        key = path[len("/cdn"):] if path.startswith("/cdn/") else path
        local = self.files.get(key)
        if local is None:
            self._record(Request(path, range_header, 404))
            handler.send_error(404, "Not Found")
            return
        with self._lock:
            count = self._seen[key] = self._seen.get(key, 0) + 1
        behaviour = self.behaviour.get(key, Behaviour())
        misbehave = count <= behaviour.times
        if behaviour.stall_before_headers and misbehave:
            self._record(Request(path, range_header, 0))
            self.release.wait(60)
            return
        size = local.stat().st_size
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and not behaviour.ignore_range:
            start = int(match.group(1))
            if start >= size:
                self._record(Request(path, range_header, 416))
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{size}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            handler.send_response(200)
        handler.send_header("Content-Length", str(size - start))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        record = self._record(Request(path, range_header, 206 if start else 200))
        limit = size - start
        stall = False
        if misbehave and behaviour.close_after is not None:
            limit = min(limit, behaviour.close_after)
        if misbehave and behaviour.stall_after is not None:
            limit, stall = min(limit, behaviour.stall_after), True
        if behaviour.delay_s:
            time.sleep(behaviour.delay_s)
        with open(local, "rb") as f:
            f.seek(start)
            while record.body_bytes < limit:
                block = f.read(min(CHUNK, limit - record.body_bytes))
                if not block:
                    break
                try:
                    handler.wfile.write(block)
                except OSError:  # the client gave up
                    return
                record.body_bytes += len(block)
        if stall:
            handler.wfile.flush()
            self.release.wait(60)
        handler.close_connection = True
