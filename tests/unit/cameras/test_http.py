"""The snapshot URL camera against a local HTTP server on 127.0.0.1 (tests/support/harness)."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest
from harness.camera_servers import SnapshotServer

from octoprint_layercapture.cameras.base import redact_url
from octoprint_layercapture.cameras.http import SnapshotUrlCamera
from octoprint_layercapture.capture.ports import CameraError, ShotRequest

REQUEST = ShotRequest(layer=3, layer_z=0.6, index=0, count=1, x=100.0, y=100.0, z=5.6)


@pytest.fixture(scope="module")
def server() -> Iterator[SnapshotServer]:
    with SnapshotServer() as running:
        yield running


def take(url: str, timeout: float = 2.0, retries: int = 0) -> bytes:
    camera = SnapshotUrlCamera(url, timeout, retries)
    try:
        return camera.take(REQUEST).data
    finally:
        camera.close()


def error_of(url: str, timeout: float = 2.0, retries: int = 0) -> str:
    with pytest.raises(CameraError) as error:
        take(url, timeout, retries)
    return str(error.value)


def test_the_jpeg_is_returned_byte_for_byte(server):
    assert take(server.url("jpeg")) == server.jpeg


def test_the_connection_is_kept_alive_between_snapshots(server):
    camera = SnapshotUrlCamera(server.url("jpeg?keepalive"), 2.0, 0)
    try:
        for _ in range(4):
            assert camera.take(REQUEST).data == server.jpeg
    finally:
        camera.close()
    clients = {hit.client for hit in server.hits if hit.path == "/jpeg?keepalive"}
    assert len(clients) == 1, f"one connection expected, got {clients}"


def test_a_slow_camera_within_the_timeout_is_fine(server):
    started = time.monotonic()
    assert take(server.url("slow?delay=0.4"), timeout=3) == server.jpeg
    assert time.monotonic() - started >= 0.4


def test_http_errors(server):
    url = server.url("status/500")
    assert error_of(url) == f"snapshot URL {url}: HTTP 500 Internal Server Error"
    url = server.url("status/503")
    assert error_of(url, retries=1) == (
        f"snapshot URL {url}: HTTP 503 Service Unavailable (2 attempts)"
    )


def test_a_missing_page_is_not_retried(server):
    before = len(server.hits_for("status/404"))
    url = server.url("status/404")
    assert error_of(url, retries=3) == f"snapshot URL {url}: HTTP 404 Not Found"
    assert len(server.hits_for("status/404")) == before + 1


def test_an_html_page_is_not_an_image(server):
    url = server.url("html")
    assert error_of(url) == f"snapshot URL {url}: answered text/html with 72 bytes, not a JPEG"


def test_a_refused_connection(server):
    url = server.refused_url()
    assert error_of(url, retries=1) == f"snapshot URL {url}: connection refused (2 attempts)"


def test_a_hanging_camera_is_given_up_at_the_timeout(server):
    url = server.url("hang")
    started = time.monotonic()
    assert error_of(url, timeout=0.5) == f"snapshot URL {url}: timed out after 0.5 s"
    took = time.monotonic() - started
    assert 0.45 <= took < 1.5, took


def test_broken_answers(server):
    url = server.url("truncated")
    assert error_of(url) == (
        f"snapshot URL {url}: the connection closed before the image was complete"
    )
    url = server.url("reset")
    assert error_of(url) == f"snapshot URL {url}: closed the connection without answering"


def test_a_retry_can_succeed(server):
    assert take(server.url("flaky"), retries=1) == server.jpeg


def test_credentials_never_show_in_the_name(server):
    url = server.url("jpeg").replace("http://", "http://admin:secret@")
    camera = SnapshotUrlCamera(url, 2.0, 0)
    try:
        snapshot = camera.take(REQUEST)
    finally:
        camera.close()
    assert "secret" not in snapshot.camera and "admin" not in snapshot.camera
    assert snapshot.data == server.jpeg


def test_the_camera_thread_ends_with_close(server):
    def camera_threads():
        return {t for t in threading.enumerate() if t.name.startswith("layercapture-camera")}

    before = camera_threads()  # other tests' cameras may still be collected
    camera = SnapshotUrlCamera(server.url("jpeg"), 2.0, 0)
    camera.take(REQUEST)
    assert camera_threads() - before, "the snapshot runs on a named camera thread"
    camera.close()
    deadline = time.monotonic() + 5
    while camera_threads() - before:
        assert time.monotonic() < deadline, "the camera thread still runs after close()"
        time.sleep(0.01)


def test_a_redirect_to_the_same_host_is_followed(server):
    assert take(server.url("redirect?to=/jpeg")) == server.jpeg
    assert take(server.url(f"redirect?to={server.url('jpeg')}")) == server.jpeg


def test_a_redirect_to_another_host_is_not_followed(server):
    with SnapshotServer() as other:
        url = server.url(f"redirect?to={other.url('jpeg')}")
        before = len(server.hits_for("redirect"))
        assert error_of(url, retries=2) == (
            f"snapshot URL {redact_url(url)}: redirects to another host "
            f"(http://127.0.0.1:{other.port}), which is not followed; use the address it "
            "leads to as the URL"
        )
        assert other.hits == [], "the other host was never asked"
        assert len(server.hits_for("redirect")) == before + 1, "not retried"


def test_endless_redirects_end(server):
    url = server.url("loop")
    assert error_of(url) == f"snapshot URL {url}: more than 5 redirects"


def test_a_text_answer_is_described_not_quoted(server):
    url = server.url("text?body=INTERNAL-ONLY%20api_token%3Ds3cret")
    message = error_of(url)
    assert message == (
        f"snapshot URL {redact_url(url)}: answered text/plain with 30 bytes, not a JPEG"
    )
