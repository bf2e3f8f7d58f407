"""Local MJPEG servers on 127.0.0.1 for the stream camera tests.

* :class:`MjpegRelay`: a real MJPEG stream from ``ffmpeg`` (test pattern, ``mpjpeg``
  muxer on stdout) served to any number of clients over HTTP; it records which frames each
  client got and when the client closed. With ``keep_last`` it starts each client with the
  frame it sent before, like servers that keep the last frame.
* :func:`ffmpeg_listen`: ffmpeg's own HTTP server (``-listen 1``, chunked, one client).
* :class:`RawServer`: hands each connection to a test's handler, for hand-made streams.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from system_packages import require_program

from .camera_servers import HOST


def _test_pattern(size: str, rate: int) -> List[str]:
    """ffmpeg reading its moving test pattern in real time (the start of every command).

    Without ffmpeg the test asking for it skips (fails in CI) with the apt-get line."""
    return [
        require_program("ffmpeg"),
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate={rate}",
    ]


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
            [*_test_pattern(size, rate), "-q:v", "5", "-f", "mpjpeg", "pipe:1"],
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
            *_test_pattern("320x240", rate),
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
