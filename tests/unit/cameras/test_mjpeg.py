"""The MJPEG stream camera against hand-made streams from a local server on 127.0.0.1.

The real stream from ffmpeg is in tests/integration/test_cameras.py.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from typing import Callable, List, Union

import pytest
from fakes import tiny_jpeg
from harness.mjpeg_servers import RawServer, wait_closed

from octoprint_layercapture.cameras.mjpeg import MjpegStreamCamera
from octoprint_layercapture.capture.ports import CameraError, ShotRequest

REQUEST = ShotRequest(layer=3, layer_z=0.6, index=0, count=1, x=100.0, y=100.0, z=5.6)
FRAMES = [tiny_jpeg((20 * i, 100, 200 - 20 * i), size=(16, 12)) for i in range(8)]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n"


def part(data: bytes, length: bool = True, boundary: bytes = b"--frame", eol: bytes = b"\r\n"):
    headers = boundary + eol + b"Content-Type: image/jpeg" + eol
    if length:
        headers += b"Content-Length: %d" % len(data) + eol
    return headers + eol + data + eol


def stream_of(
    parts: List[Union[bytes, List[bytes]]],
    head: bytes = HEAD,
    gap: float = 0.15,
    hang_up: bool = False,
) -> Callable:
    """A handler sending ``head`` then the parts ``gap`` seconds apart (a part may be a
    list of pieces, each sent on its own); it records whether the client closed the
    connection, or hangs up itself after the last part with ``hang_up``."""
    closed: List[bool] = []

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head)
        try:
            for data in parts:
                time.sleep(gap)  # the camera's frame rate
                for piece in data if isinstance(data, list) else [data]:
                    conn.sendall(piece)
        except OSError:  # the client closed the connection while frames kept coming
            closed.append(True)
            return
        if not hang_up:
            closed.append(wait_closed(conn, 5))

    handler.closed = closed  # type: ignore[attr-defined]
    return handler


def grab(url: str, timeout: float = 3.0, retries: int = 0) -> bytes:
    camera = MjpegStreamCamera(url, timeout, retries)
    try:
        return camera.take(REQUEST).data
    finally:
        camera.close()


def error_of(url: str, timeout: float = 2.0) -> str:
    with pytest.raises(CameraError) as error:
        grab(url, timeout)
    return str(error.value)


def test_the_second_frame_is_returned_and_the_connection_closed():
    handler = stream_of([part(f) for f in FRAMES[:5]])
    with RawServer(handler) as server:
        assert grab(server.url()) == FRAMES[1]
        assert server.requests[0].startswith(b"GET /stream HTTP/1.1\r\n")
        deadline = time.monotonic() + 5
        while not handler.closed:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert handler.closed == [True], "the camera must close the stream"


def test_frames_buffered_before_the_settle_point_are_skipped():
    """A kept frame and two buffered ones arrive with the headers; the first frame that
    starts afterwards is the one."""

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + part(FRAMES[0]) + part(FRAMES[1]) + part(FRAMES[2]))
        time.sleep(0.2)  # the next frame comes from the camera later
        for data in FRAMES[3:6]:
            conn.sendall(part(data))
            time.sleep(0.05)
        wait_closed(conn, 5)

    with RawServer(handler) as server:
        assert grab(server.url()) == FRAMES[3]


def chunked(data: bytes, size: int = 37) -> List[bytes]:
    """``data`` in HTTP chunks of ``size`` bytes (with a chunk extension), one per piece."""
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return [b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces]


def test_chunked_transfer_split_anywhere():
    head = HEAD.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    parts = [chunked(b"garbage before the first boundary")]
    parts += [chunked(part(f)) for f in FRAMES[:4]]
    with RawServer(stream_of(parts, head)) as server:
        assert grab(server.url()) == FRAMES[1]


def test_parts_without_length_and_odd_boundaries():
    """Without Content-Length a frame is known to be complete only when the next one
    starts, so that one is skipped too."""
    head = HEAD.replace(b"boundary=frame", b'boundary="--frame"')
    parts = [part(f, length=False, eol=b"\n") for f in FRAMES[:5]]
    with RawServer(stream_of(parts, head)) as server:
        assert grab(server.url()) == FRAMES[2]


def test_basic_auth_from_the_url_and_no_credentials_in_the_name():
    with RawServer(stream_of([part(f) for f in FRAMES[:3]])) as server:
        url = server.url().replace("http://", "http://admin:s%40cret@")
        camera = MjpegStreamCamera(url, 3.0, 0)
        try:
            snapshot = camera.take(REQUEST)
        finally:
            camera.close()
        expected = base64.b64encode(b"admin:s@cret")
        assert b"Authorization: Basic " + expected + b"\r\n" in server.requests[0]
        assert "cret" not in snapshot.camera and "admin" not in snapshot.camera


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "HTTP 404 Not Found"),
        (
            b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n",
            "not an MJPEG stream (answered image/jpeg); use it as the snapshot URL",
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace\r\n\r\n",
            "the stream names no multipart boundary",
        ),
        # what a service that is no web server says is never quoted
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer (no HTTP status line)"),
        (
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; token=s3cret\r\n\r\n",
            "not an MJPEG stream (answered text/plain)",
        ),
        (b"HTTP/1.1 500 api_token=s3cret\r\n\r\n", "HTTP 500 Internal Server Error"),
    ],
)
def test_answers_that_are_no_stream(head, message):
    with RawServer(stream_of([], head)) as server:
        assert error_of(server.url()) == f"MJPEG stream {server.url()}: {message}"


def test_a_stream_that_ends_too_early():
    with RawServer(stream_of([part(FRAMES[0])], hang_up=True)) as server:
        url = server.url()
        assert error_of(url) == f"MJPEG stream {url}: the stream ended before a new frame"


def test_a_part_that_is_not_a_jpeg():
    parts = [part(FRAMES[0]), part(b"<html>oops</html>")]
    with RawServer(stream_of(parts)) as server:
        assert "answered image/jpeg with 17 bytes, not a JPEG" in error_of(server.url())


def test_a_stalled_stream_times_out_and_is_closed():
    release = threading.Event()
    closed: List[bool] = []

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(HEAD + part(FRAMES[0]))
        closed.append(wait_closed(conn, 5))
        release.wait(5)

    with RawServer(handler) as server:
        started = time.monotonic()
        assert error_of(server.url(), timeout=0.5) == (
            f"MJPEG stream {server.url()}: timed out after 0.5 s"
        )
        took = time.monotonic() - started
        deadline = time.monotonic() + 5
        while not closed:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        release.set()
    assert 0.45 <= took < 1.5, took
    assert closed == [True], "the connection is closed on a timeout too"


def test_a_refused_stream():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
    try:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/stream"
        assert error_of(url) == f"MJPEG stream {url}: connection refused"
    finally:
        probe.close()
