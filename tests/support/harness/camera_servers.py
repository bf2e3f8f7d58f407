"""Local camera servers on 127.0.0.1 for the camera tests.

* :class:`SnapshotServer`: a snapshot HTTP server (keep-alive) whose paths misbehave on
  purpose: ``/jpeg``, ``/slow?delay=S``, ``/status/<code>``, ``/html``, ``/hang``,
  ``/truncated``, ``/reset``, ``/flaky`` (every other request 503), ``/redirect?to=URL``
  (302), ``/loop`` (302 to itself), ``/text`` (200 text/plain: :attr:`SnapshotServer.text`
  or ``?body=...``) and ``/script``
  (the next behaviour of :attr:`SnapshotServer.script` per request). :meth:`refused_url` is a
  port where nothing listens.
* :func:`make_jpeg`: a camera-like JPEG made with Pillow.

MJPEG streams (ffmpeg, hand-made): :mod:`harness.mjpeg_servers`.

Fault injection only: the servers' sleeps and waits are the faults, tests wait on events.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
HTML_PAGE = b"<html><head><title>Login</title></head><body>Please log in</body></html>"


def make_jpeg(size: Tuple[int, int] = (640, 480), quality: int = 85, seed: int = 1) -> bytes:
    """A JPEG with gradients, shapes and noise (compresses like a camera frame); its
    quadrants differ (red top-left, blue top-right) so flips and turns can be checked."""
    import random

    from PIL import Image, ImageDraw

    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 2, height // 2), fill=(220, 30, 30))
    draw.rectangle((width // 2, 0, width, height // 2), fill=(30, 30, 220))
    rng = random.Random(seed)
    for _ in range(200):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(3, max(4, width // 40))
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    noise = Image.effect_noise(size, 40).convert("RGB")
    image = Image.blend(image, noise, 0.15)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


@dataclass
class Hit:
    path: str
    client: Tuple[str, int]
    at: float


class _SnapshotHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        owner._record(Hit(self.path, self.client_address, time.monotonic()))
        behaviour = url.path.strip("/") or "jpeg"
        if behaviour == "script":
            behaviour = owner._next_script_step()
        elif behaviour == "flaky":
            behaviour = "status/503" if owner._count("flaky") % 2 == 1 else "jpeg"
        query = parse_qs(url.query)
        self._behave(owner, behaviour, query)

    def _behave(self, owner: SnapshotServer, behaviour: str, query: Dict[str, List[str]]) -> None:
        if behaviour == "slow":
            time.sleep(float(query.get("delay", ["1"])[0]))
            behaviour = "jpeg"
        if behaviour == "gate":
            owner.gate_reached.set()
            owner.gate_open.wait(30)
            behaviour = "jpeg"
        if behaviour == "jpeg":
            self._send(200, "image/jpeg", owner.jpeg)
        elif behaviour.startswith("status/"):
            code = int(behaviour.split("/")[1])
            self._send(code, "text/html", b"<html><body><h1>%d</h1></body></html>" % code)
        elif behaviour == "html":
            self._send(200, "text/html; charset=utf-8", HTML_PAGE)
        elif behaviour == "hang":
            release = owner._release
            owner.hanging.set()
            release.wait(60)  # until the test releases it: longer than any timeout
            self.close_connection = True
        elif behaviour == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(owner.jpeg)))
            self.end_headers()
            self.wfile.write(owner.jpeg[: len(owner.jpeg) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif behaviour == "reset":
            self.close_connection = True
        elif behaviour in ("redirect", "loop"):
            target = query.get("to", ["/loop"])[0] if behaviour == "redirect" else "/loop"
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif behaviour == "text":
            self._send(200, "text/plain", query.get("body", [owner.text])[0].encode())
        else:
            self._send(404, "text/plain", b"no such behaviour")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: SnapshotServer


class SnapshotServer:
    def __init__(self, jpeg: Optional[bytes] = None) -> None:
        self.jpeg = jpeg or make_jpeg()
        self.text = "some text"
        self.script: List[str] = []
        self.hits: List[Hit] = []
        self.gate_reached = threading.Event()
        self.gate_open = threading.Event()
        self.hanging = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {}
        self._server = _Server((HOST, 0), _SnapshotHandler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="test-snapshot-server", daemon=True
        )
        self._closed_port: Optional[socket.socket] = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "jpeg") -> str:
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def refused_url(self) -> str:
        """A URL whose port is bound but not listening: connecting is refused."""
        if self._closed_port is None:
            self._closed_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._closed_port.bind((HOST, 0))
        return f"http://{HOST}:{self._closed_port.getsockname()[1]}/snapshot"

    def start(self) -> SnapshotServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.gate_open.set()
        self._server.shutdown()
        self._server.server_close()
        if self._closed_port is not None:
            self._closed_port.close()

    def __enter__(self) -> SnapshotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def release_hangs(self) -> None:
        """Ends the requests hanging now (later ones hang again)."""
        with self._lock:
            release, self._release = self._release, threading.Event()
        self.hanging.clear()
        release.set()

    def hits_for(self, path: str) -> List[Hit]:
        with self._lock:
            return [h for h in self.hits if urlsplit(h.path).path.strip("/") == path.strip("/")]

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def _count(self, key: str) -> int:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def _next_script_step(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else "jpeg"
