"""Real cameras on a real OctoPrint: local camera servers on 127.0.0.1 (tests/support/harness/
camera_servers.py), OctoPrint's classic webcam, a snapshot URL and a real MJPEG stream
from ffmpeg; the webcam list and the Test camera endpoint.

One OctoPrint for the module and three short prints (one captured layer each): the classic
webcam against a scripted snapshot server (byte-identical JPEGs and one failure of each
kind in the same layer), a refused snapshot URL, and the MJPEG stream.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import pytest
from capture_checks import METADATA_RE, apply_settings, capture_files
from expected_layers import analyse, expected_capture_layers
from harness import OctoPrintServer, free_port
from harness.camera_servers import SnapshotServer
from harness.mjpeg_servers import MjpegRelay, ffmpeg_listen
from PIL import Image, ImageStat

from octoprint_layercapture.camera_settings import camera_entry

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prusa_markers.gcode"
PLUGIN = "/plugin/layercapture"
CAPTURE_AT = [1.0]  # one layer of the 13
BASE_SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry()],  # OctoPrint's snapshot webcam, as by default
    "snapshot_timeout": 2.0,
    "snapshot_retries": 0,
    "capture_every_n_layers": 0,
    "capture_z_heights": CAPTURE_AT,
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 1,
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
    "create_thumbnails": True,
    "stop_mode": "pause",
}


@pytest.fixture(scope="module")
def snapshots() -> Iterator[SnapshotServer]:
    with SnapshotServer() as server:
        yield server


@pytest.fixture(scope="module")
def relay() -> Iterator[MjpegRelay]:
    # keep_last: every client gets an old frame first, as ustreamer and many IP cameras do
    with MjpegRelay(keep_last=True) as running:
        yield running


@pytest.fixture(scope="module")
def octoprint_server_options(snapshots: SnapshotServer) -> Dict[str, Any]:
    return {
        "config_overrides": {
            "plugins": {"classicwebcam": {"snapshot": snapshots.url("jpeg"), "snapshotTimeout": 5}}
        },
        "plugin_settings": BASE_SETTINGS,
    }


def classic_webcam(server: OctoPrintServer, **values: Any) -> None:
    response = server.api("POST", "/api/settings", json={"plugins": {"classicwebcam": values}})
    assert response.status_code == 200, response.text


def camera_test(server: OctoPrintServer, body: Any, user: str = "admin") -> Any:
    return server.api_as(user, "POST", f"{PLUGIN}/camera/test", json=body)


def camera_body(kind: str, **fields: Any) -> Dict[str, Any]:
    """A Test camera body for one camera of the form (the settings panel sends its row)."""
    return {"camera": {"type": kind, **fields}}


def image_of(answer: Mapping[str, Any]) -> bytes:
    prefix = "data:image/jpeg;base64,"
    assert answer["image"].startswith(prefix)
    return base64.b64decode(answer["image"][len(prefix) :])


# ---- the webcam list -------------------------------------------------------------------


def test_webcams_lists_octoprints_webcams(octoprint_server: OctoPrintServer) -> None:
    response = octoprint_server.api("GET", f"{PLUGIN}/webcams")
    assert response.status_code == 200, response.text
    webcams = response.json()["webcams"]
    assert {
        "name": "classic",
        "displayName": "Classic Webcam",
        "canSnapshot": True,
        "snapshot": True,
        "flipH": False,
        "flipV": False,
        "rotate90": False,
    } in webcams
    assert octoprint_server.api_as("viewer", "GET", f"{PLUGIN}/webcams").status_code == 403


# ---- Test camera -------------------------------------------------------------------------


def test_camera_test_shows_the_image_as_received(
    octoprint_server: OctoPrintServer, snapshots: SnapshotServer
) -> None:
    url = snapshots.url("jpeg")
    response = camera_test(octoprint_server, camera_body("snapshot", url=url, name="top"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True and answer["camera"] == f"snapshot URL {url}"
    assert answer["name"] == "top"
    assert image_of(answer) == snapshots.jpeg
    assert (answer["width"], answer["height"]) == (640, 480)
    assert answer["size_bytes"] == len(snapshots.jpeg)
    assert answer["content_type"] == "image/jpeg" and 0 <= answer["duration_s"] < 2


def test_camera_test_shows_the_exact_error(
    octoprint_server: OctoPrintServer, snapshots: SnapshotServer
) -> None:
    url = snapshots.url("html")
    answer = camera_test(octoprint_server, camera_body("snapshot", url=url)).json()
    assert answer == {
        "ok": False,
        "name": "main",
        "camera": f"snapshot URL {url}",
        "error": f"snapshot URL {url}: answered text/html with 72 bytes, not a JPEG",
        "duration_s": answer["duration_s"],
    }
    answer = camera_test(octoprint_server, camera_body("webcam", webcam="garage")).json()
    assert answer["error"] == (
        "OctoPrint has no webcam named 'garage' (Settings > Webcam & Timelapse)"
    )


def test_a_hanging_camera_test_is_bounded_and_does_not_block_octoprint(
    octoprint_server: OctoPrintServer, snapshots: SnapshotServer
) -> None:
    url = snapshots.url("hang")
    answers: List[Any] = []
    body = {**camera_body("snapshot", url=url), "snapshot_timeout": 1.5, "snapshot_retries": 0}
    started = time.monotonic()
    thread = threading.Thread(target=lambda: answers.append(camera_test(octoprint_server, body)))
    thread.start()
    try:
        assert snapshots.hanging.wait(10), "the camera was not asked"
        # OctoPrint answers other requests meanwhile
        probe = time.monotonic()
        assert octoprint_server.api("GET", "/api/version").status_code == 200
        assert time.monotonic() - probe < 1.0
        busy = camera_test(octoprint_server, camera_body("snapshot", url=snapshots.url("jpeg")))
        assert busy.status_code == 409 and "another camera test" in busy.json()["error"]
    finally:
        thread.join(15)
        snapshots.release_hangs()
    took = time.monotonic() - started
    answer = answers[0].json()
    assert answer["ok"] is False and answer["error"] == f"snapshot URL {url}: timed out after 1.5 s"
    assert took < 4.0, took


def test_camera_test_grabs_a_frame_of_the_ffmpeg_stream(
    octoprint_server: OctoPrintServer, relay: MjpegRelay
) -> None:
    answer = camera_test(octoprint_server, camera_body("stream", url=relay.url)).json()
    assert answer["ok"] is True, answer
    client = relay.clients[-1]
    assert client.closed.wait(5), "the stream must be closed after the frame"
    index = relay.frame_data().get(image_of(answer))
    assert index is not None, "the frame must be one of ffmpeg's, byte for byte"
    kept = client.sent[0][0]
    assert index > kept, "the frame kept from before the request must not be used"
    assert (answer["width"], answer["height"]) == (640, 480)


def test_camera_test_honours_the_webcams_flip_and_rotation(
    octoprint_server: OctoPrintServer, snapshots: SnapshotServer
) -> None:
    classic_webcam(octoprint_server, snapshot=snapshots.url("jpeg"), flipH=True, rotate90=True)
    try:
        answer = camera_test(octoprint_server, camera_body("webcam", webcam="classic")).json()
    finally:
        classic_webcam(octoprint_server, flipH=False, rotate90=False)
    assert answer["ok"] is True, answer
    assert answer["camera"] == (
        "webcam 'classic' (flipped horizontally, rotated 90° counter-clockwise)"
    )
    assert (answer["width"], answer["height"]) == (480, 640)
    image = Image.open(io.BytesIO(image_of(answer))).convert("RGB")
    # the source has a red top-left and a blue top-right quarter; mirrored, then turned
    # left, red ends up top-left and blue bottom-left
    red = ImageStat.Stat(image.crop((0, 0, 240, 320))).mean
    blue = ImageStat.Stat(image.crop((0, 320, 240, 640))).mean
    assert red[0] > red[2] + 60 and blue[2] > blue[0] + 60, (red, blue)


@pytest.mark.parametrize(
    ("body", "keys"),
    [
        ({"snapshot_timeout": 0, "bogus": 1}, ["bogus"]),
        ({"snapshot_timeout": 0, "snapshot_retries": -1}, ["snapshot_retries", "snapshot_timeout"]),
        (camera_body("stream", url="rtsp://cam/stream"), ["camera.url"]),
        (camera_body("fake", name="Not A Name"), ["camera.name"]),
        (camera_body("snapshot"), ["camera.url"]),
        ({"camera": "fake"}, ["camera"]),
        ({"snapshot_url": "http://cam/snap"}, ["snapshot_url"]),  # version 2's keys
        (["not", "an", "object"], ["settings"]),
    ],
)
def test_camera_test_refuses_bad_bodies(
    octoprint_server: OctoPrintServer, body: Any, keys: List[str]
) -> None:
    response = camera_test(octoprint_server, body)
    assert response.status_code == 400, response.text
    errors = response.json()["errors"]
    assert sorted(e["key"] for e in errors) == keys
    assert all(e["message"] for e in errors)


def test_camera_test_needs_the_manage_permission(octoprint_server: OctoPrintServer) -> None:
    assert camera_test(octoprint_server, {}, user="viewer").status_code == 403
    anonymous = octoprint_server.api_as(None, "POST", f"{PLUGIN}/camera/test", json={})
    assert anonymous.status_code in (400, 403), anonymous.status_code


def test_ffmpegs_own_http_server_chunked_stream() -> None:
    """ffmpeg serving HTTP itself (chunked, one client): a frame, then ffmpeg sees the
    stream closed and exits."""
    from octoprint_layercapture.cameras.mjpeg import MjpegStreamCamera
    from octoprint_layercapture.capture.ports import ShotRequest

    port = free_port()
    process = ffmpeg_listen(port)
    try:
        camera = MjpegStreamCamera(f"http://127.0.0.1:{port}/stream", 5.0, 0)
        snapshot = camera.take(ShotRequest(1, 0.2, 0, 1, 100.0, 100.0, 5.2))
        camera.close()
        assert Image.open(io.BytesIO(snapshot.data)).size == (320, 240)
        assert process.wait(10) is not None, "ffmpeg keeps streaming to a closed client"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


# ---- prints ------------------------------------------------------------------------------


def expected_layers() -> List[int]:
    return expected_capture_layers(analyse(FIXTURE).layers, 0, CAPTURE_AT)


def start_print(server: OctoPrintServer, settings: Mapping[str, Any]) -> Tuple[set, int]:
    apply_settings(server, {**BASE_SETTINGS, **settings})
    server.wait_for_state("Operational", 30)
    known = capture_files(server)
    upload = server.start_print(FIXTURE)
    assert upload.get("effective_print") is not False, upload
    return known, server.mark()


def finish_print(server: OctoPrintServer, known: set, mark: int) -> List[Dict[str, Any]]:
    """Waits for the end of the print and its captures; the new layers' metadata."""
    server.wait_print_done(timeout=120, since=mark)
    wanted = len(expected_layers())
    seen: List[Any] = []

    def captured(message: Any) -> bool:
        if message.kind == "plugin" and message.name == "layercapture":
            if (message.payload.get("status") or {}).get("state") == "captured":
                seen.append(message)
        return len(seen) >= wanted

    server.events.wait_for(captured, 30, since=mark, description="the layer captures")
    paths = sorted(p for p in capture_files(server) - known if METADATA_RE.match(p.name))
    metadata = []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["_folder"] = path.parent
        metadata.append(data)
    assert [m["layer"] for m in metadata] == expected_layers()
    return metadata


def failures_by_message(meta: Mapping[str, Any], count: int) -> Dict[str, Dict[str, Any]]:
    """The layer's failures by message, each checked to name its grid position as the UI
    does ("position 5 of 9: ..." for index 4), the prefix removed."""
    found: Dict[str, Dict[str, Any]] = {}
    for failure in meta["failures"]:
        prefix = f"position {failure['index'] + 1} of {count}: "
        assert failure["message"].startswith(prefix), failure
        found[failure["message"][len(prefix) :]] = failure
    assert len(found) == len(meta["failures"]), meta["failures"]
    return found


def test_a_print_with_the_classic_webcam(
    octoprint_server: OctoPrintServer, snapshots: SnapshotServer
) -> None:
    """Byte-identical JPEGs through OctoPrint's webcam API (one of them slow); in the same
    layer one failure of each kind, recorded with its reason and duration; the print
    completes. While the first snapshot is being taken, the Test camera button is refused."""
    server = octoprint_server
    classic_webcam(server, snapshot=snapshots.url("script"), snapshotTimeout=5)
    # one behaviour per grid position, in visiting order, never two failures in a row
    # before the end (two in a row skip the layer's rest); the hang last, since the
    # classic webcam holds a lock until its own (longer) timeout ends
    script = ["gate", "status/500", "jpeg", "html", "slow", "truncated", "jpeg", "reset", "hang"]
    snapshots.script[:] = script
    snapshots.gate_reached.clear()
    snapshots.gate_open.clear()
    hits_before = len(snapshots.hits_for("script"))
    known, mark = start_print(server, {"grid_size": 3, "snapshot_timeout": 3.0})
    try:
        assert snapshots.gate_reached.wait(60), "the first snapshot was never asked for"
        refused = camera_test(server, camera_body("fake"))
        assert refused.status_code == 409 and "capture sequence is running" in refused.text
    finally:
        snapshots.gate_open.set()
    try:
        (meta,) = finish_print(server, known, mark)
    finally:
        snapshots.release_hangs()
        classic_webcam(server, snapshot=snapshots.url("jpeg"))
    assert len(snapshots.hits_for("script")) - hits_before == 9, "one request per position"
    label = "webcam 'classic'"
    timed_out = f"{label}: timed out after 3 s"
    expected = {  # the 3rd, 4th, 6th, 7th and 9th pictures of the script
        f"{label}: HTTP 500 Internal Server Error",
        f"{label}: answered no content type with 72 bytes, not a JPEG",
        f"{label}: the connection closed before the image was complete",
        f"{label}: closed the connection without answering",
        timed_out,
    }
    failures = failures_by_message(meta, 9)
    assert set(failures) == expected, meta["failures"]
    for failure in failures.values():
        assert failure["phase"] == "capture"
        assert failure["duration_s"] is not None and failure["duration_s"] >= 0
    assert failures[timed_out]["duration_s"] == pytest.approx(3.0, abs=0.5)
    assert len(meta["images"]) == 4 and meta["camera"] == label
    # the slow answer (1 s, within the 3 s timeout) is an image like the others
    assert max(image["duration_s"] for image in meta["images"]) >= 1.0
    for image in meta["images"]:
        assert (meta["_folder"] / image["path"]).read_bytes() == snapshots.jpeg
        assert image["size_bytes"] == len(snapshots.jpeg) and image["camera"] == label
        assert Image.open(meta["_folder"] / image["thumbnail"]).size == (320, 240)


def test_a_print_with_a_refused_snapshot_url(
    octoprint_server: OctoPrintServer, snapshots: SnapshotServer
) -> None:
    url = snapshots.refused_url()
    known, mark = start_print(
        octoprint_server,
        {
            "cameras": [camera_entry(type="snapshot", url=url)],
            "snapshot_retries": 1,
            "snapshot_timeout": 1.0,
        },
    )
    (meta,) = finish_print(octoprint_server, known, mark)
    assert meta["images"] == []
    ((message, failure),) = failures_by_message(meta, 1).items()
    assert message == f"snapshot URL {url}: connection refused (2 attempts)"
    assert failure["phase"] == "capture" and failure["index"] == 0


def test_a_print_with_the_ffmpeg_mjpeg_stream(
    octoprint_server: OctoPrintServer, relay: MjpegRelay
) -> None:
    clients_before = len(relay.clients)
    known, mark = start_print(
        octoprint_server, {"cameras": [camera_entry(type="stream", url=relay.url)]}
    )
    (meta,) = finish_print(octoprint_server, known, mark)
    assert meta["failures"] == [] and meta["camera"] == f"MJPEG stream {relay.url}"
    (image,) = meta["images"]
    stored = (meta["_folder"] / image["path"]).read_bytes()
    index = relay.frame_data().get(stored)
    assert index is not None, "the stored JPEG must be one of ffmpeg's frames, byte for byte"
    (client,) = relay.clients[clients_before:]
    assert client.closed.wait(5), "the stream must be closed after the frame"
    kept = client.sent[0][0]
    assert index > kept, "the frame kept from before the settle point must not be used"
