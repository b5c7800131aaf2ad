"""Faults between droptune and the emulators: an HTTP proxy that answers 503/429 when told to,
and a TCP forwarder that starts listening late (a Pub/Sub service that is briefly down)."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class FlakyHttpProxy:
    """Forwards to `upstream`; every `fail_every`-th request (or all, while `down`) gets
    `status` instead, the way Cloud Storage answers when it is overloaded."""

    def __init__(self, upstream: str, fail_every: int = 0, status: int = 503) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_every, self.status, self.down = fail_every, status, False
        self.requests = self.failed = 0
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._should_fail():
                    payload = b'{"error": {"code": %d, "message": "injected"}}' % proxy.status
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _should_fail(self) -> bool:
        with self._lock:
            n = next(self._count)
            self.requests += 1
            fail = self.down or (self.fail_every > 0 and n % self.fail_every == 0)
            self.failed += fail
            return fail

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LateTcpForwarder:
    """Listens on `port` only after `delay` seconds, then forwards every connection to
    `target`: a service that was unreachable for a while and came back."""

    def __init__(self, port: int, target: tuple[str, int], delay: float) -> None:
        self.port, self.target = port, target
        self._closed = threading.Event()
        self._timer = threading.Timer(delay, self._serve)
        self._timer.start()

    def _serve(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()
        self._listener.close()

    def close(self) -> None:
        self._timer.cancel()
        self._closed.set()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
