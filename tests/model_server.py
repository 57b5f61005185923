"""A real HTTP server on 127.0.0.1 for the model download tests: serves one file, honours Range
(or ignores it on request), and can cut the connection after N bytes of its first answer. `answer`
replaces the whole answer (hostile servers: trickling, endless, wrong ranges); such handlers must
stop by themselves (a bounded loop, or when the client goes away)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if srv.answer is not None:
            srv.answer(self, srv.data)
            return
        if self.path != srv.route:
            self.send_error(404, "Not Found")
            return
        data = srv.data
        start = 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "none" if srv.ignore_range else "bytes")
        self.end_headers()
        cut = srv.cut_after.pop(0) if srv.cut_after else None
        if cut is not None:  # send part of the promised body, then drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class ModelServer:
    """with ModelServer(data) as s: s.url -> http://127.0.0.1:PORT/<name>"""

    def __init__(self, data: bytes, name: str = "release.bin", ignore_range: bool = False, cut_after=(), answer=None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.data = data
        self.httpd.route = "/" + name
        self.httpd.ignore_range = ignore_range
        self.httpd.cut_after = list(cut_after)  # per request, in order: bytes sent before the cut
        self.httpd.requests = []
        self.httpd.answer = answer  # answer(handler, data): the whole response, or None
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{self.httpd.route}"

    @property
    def requests(self):
        return self.httpd.requests

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
