"""Local camera servers on 127.0.0.1 for the camera tests.

* :class:`SnapshotServer`: a snapshot HTTP server (keep-alive) whose paths misbehave on
  purpose: ``/jpeg``, ``/slow?delay=S``, ``/status/<code>``, ``/html``, ``/hang``,
  ``/truncated``, ``/reset``, ``/flaky`` (every other request 503) and ``/script`` (the
  next behaviour of :attr:`SnapshotServer.script` per request). :meth:`refused_url` is a
  port where nothing listens.
* :class:`MjpegRelay`: a real MJPEG stream from ``ffmpeg`` (test pattern, ``mpjpeg``
  muxer on stdout) served to any number of clients over HTTP; it records which frames each
  client got and when the client closed. With ``keep_last`` it starts each client with the
  frame it sent before, like servers that keep the last frame.
* :func:`ffmpeg_listen`: ffmpeg's own HTTP server (``-listen 1``, chunked, one client).
* :func:`make_jpeg`: a camera-like JPEG made with Pillow.

Fault injection only: the servers' sleeps and waits are the faults, tests wait on events.
"""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
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


# ---- MJPEG ------------------------------------------------------------------------------

_PART_HEAD = re.compile(rb"--ffmpeg\r\nContent-type: image/jpeg\r\nContent-length: (\d+)\r\n\r\n")


@dataclass
class Frame:
    index: int
    data: bytes  # the JPEG
    part: bytes  # delimiter, headers, JPEG, line break: what ffmpeg wrote


@dataclass
class RelayClient:
    sent: List[Tuple[int, float]] = field(default_factory=list)  # (frame index, time)
    connected_at: float = 0.0
    closed_at: Optional[float] = None
    closed: threading.Event = field(default_factory=threading.Event)


class MjpegRelay:
    """ffmpeg's ``mpjpeg`` output relayed to HTTP clients at ``/stream``."""

    def __init__(self, size: str = "640x480", rate: int = 10, keep_last: bool = False) -> None:
        self.keep_last = keep_last
        self.frames: List[Frame] = []
        self.clients: List[RelayClient] = []
        self.first_frame = threading.Event()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._process = subprocess.Popen(
            [
                FFMPEG,
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                f"testsrc=size={size}:rate={rate}",
                "-q:v",
                "5",
                "-f",
                "mpjpeg",
                "pipe:1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._listener = socket.create_server((HOST, 0))
        self._threads = [
            threading.Thread(target=self._read_ffmpeg, name="test-mjpeg-ffmpeg", daemon=True),
            threading.Thread(target=self._accept, name="test-mjpeg-accept", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._listener.getsockname()[1]}/stream"

    def frame_data(self) -> Dict[bytes, int]:
        with self._cond:
            return {f.data: f.index for f in self.frames}

    def stop(self) -> None:
        self._stopping.set()
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._listener.close()
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> MjpegRelay:
        if not self.first_frame.wait(15):
            self.stop()
            raise AssertionError("ffmpeg produced no MJPEG frame within 15 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_ffmpeg(self) -> None:
        assert self._process.stdout is not None
        buffer = b""
        while not self._stopping.is_set():
            data = self._process.stdout.read1(65536)  # type: ignore[attr-defined]
            if not data:
                return
            buffer += data
            while True:
                head = _PART_HEAD.search(buffer)
                if head is None:
                    break
                end = head.end() + int(head.group(1))
                if len(buffer) < end + 2:
                    break
                part = buffer[head.start() : end + 2]
                with self._cond:
                    self.frames.append(Frame(len(self.frames), buffer[head.end() : end], part))
                    self._cond.notify_all()
                self.first_frame.set()
                buffer = buffer[end + 2 :]

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            client = RelayClient(connected_at=time.monotonic())
            with self._cond:
                self.clients.append(client)
            threading.Thread(
                target=self._serve, args=(conn, client), name="test-mjpeg-client", daemon=True
            ).start()

    def _serve(self, conn: socket.socket, client: RelayClient) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            head = (
                b"HTTP/1.1 200 OK\r\n"
                b"Content-Type: multipart/x-mixed-replace;boundary=ffmpeg\r\n"
                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
            )
            with self._cond:
                next_index = len(self.frames)
                kept = self.frames[-1] if self.keep_last and self.frames else None
            if kept is not None:
                head += kept.part
                client.sent.append((kept.index, time.monotonic()))
            conn.sendall(head)
            while not self._stopping.is_set():
                with self._cond:
                    self._cond.wait_for(
                        lambda n=next_index: len(self.frames) > n or self._stopping.is_set(), 5
                    )
                    frames = self.frames[next_index:]
                next_index += len(frames)
                for frame in frames:
                    client.sent.append((frame.index, time.monotonic()))
                    conn.sendall(frame.part)
        except OSError:
            pass  # the client went away
        finally:
            client.closed_at = time.monotonic()
            client.closed.set()
            conn.close()


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (read from /proc, without connecting:
    ffmpeg -listen 1 serves the first connection only)."""
    wanted = f"0100007F:{port:04X}"
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":
                return True
    return False


def ffmpeg_listen(port: int, rate: int = 10, timeout: float = 15.0) -> subprocess.Popen[bytes]:
    """ffmpeg serving one MJPEG client itself (HTTP/1.1, chunked) on 127.0.0.1:port."""
    process = subprocess.Popen(
        [
            FFMPEG,
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            f"testsrc=size=320x240:rate={rate}",
            "-f",
            "mpjpeg",
            "-content_type",
            "multipart/x-mixed-replace;boundary=ffmpeg",
            "-listen",
            "1",
            f"http://{HOST}:{port}/stream",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"ffmpeg did not listen on port {port}")
        time.sleep(0.02)  # polling /proc: nothing to subscribe to
    return process


class RawServer:
    """A TCP server on 127.0.0.1 that hands each connection and its HTTP request head to
    ``handler(conn, request)`` on its own thread (for hand-made MJPEG answers)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.requests: List[bytes] = []
        self.closed = threading.Event()  # set when a handler saw the client close
        self._listener = socket.create_server((HOST, 0))
        self._stopping = threading.Event()
        threading.Thread(target=self._accept, name="test-raw-accept", daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self, path: str = "stream") -> str:
        return f"http://{HOST}:{self.port}/{path}"

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(conn,), name="test-raw-client", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            self.requests.append(request)
            self.handler(conn, request)
        except OSError:
            pass
        finally:
            conn.close()


def wait_closed(conn: socket.socket, timeout: float) -> bool:
    """Whether the peer closed ``conn`` within ``timeout`` (reads and drops its data)."""
    conn.settimeout(timeout)
    try:
        while conn.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:  # reset by the peer: closed as well
        return True
