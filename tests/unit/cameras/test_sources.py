"""Camera selection, the shared deadline/retry logic, OctoPrint webcams, flip/rotate and
the Test camera body/answer. HTTP and MJPEG cameras: test_cameras_http/_mjpeg.py."""

from __future__ import annotations

import base64
import http.client
import io
import threading
import time
from typing import Iterable, Iterator, List

import pytest
import requests
from fake_frames import pixels_differing_below_overlay, probe_reference
from fakes import tiny_jpeg
from PIL import Image

from octoprint_layercapture.cameras.base import (
    PermanentCameraError,
    RealCamera,
    Transform,
    check_jpeg,
    describe_body,
    explain_io_error,
    http_error,
    media_type,
    redact_url,
)
from octoprint_layercapture.cameras.http import SnapshotUrlCamera
from octoprint_layercapture.cameras.mjpeg import MjpegStreamCamera
from octoprint_layercapture.cameras.probe import (
    CAMERA_TEST_LIMIT_S,
    camera_test_settings,
    probe_camera,
    unsaved_url,
    within_test_limit,
)
from octoprint_layercapture.cameras.sources import (
    FakeCamera,
    NoCamera,
    OctoPrintWebcam,
    WebcamInfo,
    camera_port,
    rig_cameras,
    webcam_info,
)
from octoprint_layercapture.capture.ports import CameraError, ShotRequest
from octoprint_layercapture.settings import InvalidSettings, validate

REQUEST = ShotRequest(layer=3, layer_z=0.6, index=4, count=9, x=125.0, y=105.0, z=5.6)
JPEG = tiny_jpeg()


def webcam(name: str = "classic", chunks: Iterable[bytes] = (JPEG,), **kw) -> WebcamInfo:
    fields = {
        "name": name,
        "display_name": name.title(),
        "can_snapshot": True,
        "is_snapshot_webcam": True,
        "flip_h": False,
        "flip_v": False,
        "rotate90": False,
        "snapshot": lambda: iter(chunks),
    }
    fields.update(kw)
    return WebcamInfo(**fields)


# ---- which camera -------------------------------------------------------------------------


def cams(*entries: dict) -> dict:
    """Settings of these cameras (``cameras`` entries; names main, cam2, cam3...)."""
    named = [
        {"name": "main" if n == 0 else f"cam{n + 1}", **entry} for n, entry in enumerate(entries)
    ]
    return {"cameras": named}


def test_each_camera_type_gives_its_port():
    found: List[str] = []

    def find(name: str):
        found.append(name)
        return webcam()

    values = validate(
        cams(
            {"type": "fake"},
            {"type": "stream", "url": "http://cam/stream"},
            {"type": "snapshot", "url": "http://cam/snap"},
            {"type": "webcam", "webcam": "classic", "url": "http://not/used"},
        )
    )
    ports = [camera_port(camera, values, find) for camera in values.cameras]
    assert [type(p) for p in ports] == [
        FakeCamera,
        MjpegStreamCamera,
        SnapshotUrlCamera,
        OctoPrintWebcam,
    ]
    assert ports[3].name == "webcam 'classic'"
    assert found == ["classic"], "a webcam is looked up only for a webcam camera"
    for port in ports:
        port.close()


def test_the_first_camera_keeps_the_single_camera_file_names_the_others_carry_theirs():
    values = validate(cams({"type": "fake"}, {"type": "fake"}, {"type": "fake"}))
    rig = rig_cameras(values, lambda name: None)
    assert [(c.name, c.name_in_files, c.mounting) for c in rig] == [
        ("main", False, "fixed"),
        ("cam2", True, "fixed"),
        ("cam3", True, "fixed"),
    ]


def test_missing_or_unusable_webcams_give_a_camera_that_explains():
    values = validate({})
    (default_camera,) = values.cameras
    garage = validate(cams({"type": "webcam", "webcam": "garage"})).cameras[0]
    none = camera_port(garage, values, lambda name: None)
    with pytest.raises(CameraError, match=r"OctoPrint has no webcam named 'garage'"):
        none.take(REQUEST)
    default = camera_port(default_camera, values, lambda name: None)
    with pytest.raises(CameraError, match=r"^OctoPrint has no snapshot webcam \(Settings"):
        default.take(REQUEST)
    blind = camera_port(default_camera, values, lambda name: webcam(can_snapshot=False))
    assert isinstance(blind, NoCamera)
    with pytest.raises(CameraError, match=r"webcam 'classic': cannot take snapshots"):
        blind.take(REQUEST)


def test_settings_reach_the_camera():
    values = validate(
        {
            **cams({"type": "snapshot", "url": "http://cam/snap"}),
            "snapshot_timeout": 2.5,
            "snapshot_retries": 3,
        }
    )
    camera = camera_port(values.cameras[0], values, lambda name: None)
    assert isinstance(camera, SnapshotUrlCamera)
    assert camera.timeout == 2.5 and camera.attempts == 4
    camera.close()


# ---- OctoPrint webcams ---------------------------------------------------------------------


def test_webcam_bytes_are_returned_as_received_from_the_chunks():
    data = tiny_jpeg(size=(64, 48))
    camera = OctoPrintWebcam(
        webcam(chunks=[data[:10], b"", data[10:100], data[100:]]), timeout=2, retries=0
    )
    snapshot = camera.take(REQUEST)
    assert snapshot.data == data
    assert snapshot.content_type == "image/jpeg" and snapshot.camera == "webcam 'classic'"
    camera.close()


class WebcamNotAbleToTakeSnapshotException(Exception):
    """Same name as OctoPrint's (recognised by name: cameras.py imports no OctoPrint)."""


def test_webcam_failures_are_explained_and_retried_only_when_it_can_help():
    calls = []

    def broken():
        calls.append(1)
        raise WebcamNotAbleToTakeSnapshotException("classic")

    camera = OctoPrintWebcam(webcam(snapshot=broken), timeout=2, retries=2)
    with pytest.raises(CameraError) as error:
        camera.take(REQUEST)
    assert str(error.value) == "webcam 'classic': cannot take snapshots"
    assert len(calls) == 1, "no retry for a webcam that cannot take snapshots"

    def http_500():
        response = requests.Response()
        response.status_code, response.reason = 500, "Internal Server Error"
        raise requests.HTTPError("500 Server Error", response=response)

    camera = OctoPrintWebcam(webcam(snapshot=http_500), timeout=2, retries=1)
    with pytest.raises(CameraError) as error:
        camera.take(REQUEST)
    assert str(error.value) == "webcam 'classic': HTTP 500 Internal Server Error (2 attempts)"

    missing_calls = []

    def http_404():
        missing_calls.append(1)
        response = requests.Response()
        response.status_code, response.reason = 404, "Not Found"
        raise requests.HTTPError("404 Client Error", response=response)

    camera = OctoPrintWebcam(webcam(snapshot=http_404), timeout=2, retries=3)
    with pytest.raises(CameraError) as error:
        camera.take(REQUEST)
    assert str(error.value) == "webcam 'classic': HTTP 404 Not Found"
    assert len(missing_calls) == 1, "a missing page does not come back on a retry"

    html = OctoPrintWebcam(webcam(chunks=[b"<html>nope</html>"]), timeout=2, retries=0)
    with pytest.raises(CameraError, match=r"answered no content type with 17 bytes, not a JPEG$"):
        html.take(REQUEST)


def test_a_hanging_webcam_plugin_is_given_up_at_the_timeout():
    release = threading.Event()

    def hang() -> Iterator[bytes]:
        release.wait(10)
        yield JPEG

    camera = OctoPrintWebcam(webcam(snapshot=hang), timeout=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(CameraError) as error:
        camera.take(REQUEST)
    took = time.monotonic() - started
    release.set()
    assert str(error.value) == "webcam 'classic': timed out after 0.3 s (2 attempts)"
    assert 0.55 <= took < 2.0, took  # two attempts of 0.3 s, not the plugin's 10 s


def test_each_attempt_runs_on_a_named_camera_thread():
    names = []

    def snapshot():
        names.append(threading.current_thread().name)
        return [JPEG]

    camera = OctoPrintWebcam(webcam(snapshot=snapshot), timeout=2, retries=0)
    camera.take(REQUEST)
    camera.close()
    assert names and names[0].startswith("layercapture-camera")


def test_an_unexpected_error_of_a_camera_is_reported_not_raised():
    class Broken(RealCamera):
        def fetch(self, deadline):
            raise KeyError("bug")

    with pytest.raises(CameraError, match=r"^broken: unexpected error KeyError\('bug'\)$"):
        Broken("broken", 1, 0).take(REQUEST)


class FakeProvided:
    class config:
        name = "cam2"
        displayName = "Garage"
        canSnapshot = True
        flipH = True
        flipV = False
        rotate90 = True

    class providerPlugin:
        @staticmethod
        def take_webcam_snapshot(name):
            return [name.encode()]


def test_webcam_info_from_octoprint_and_its_json():
    info = webcam_info(FakeProvided(), snapshot_webcam="classic")
    assert info.to_json() == {
        "name": "cam2",
        "displayName": "Garage",
        "canSnapshot": True,
        "snapshot": False,
        "flipH": True,
        "flipV": False,
        "rotate90": True,
    }
    assert list(info.snapshot()) == [b"cam2"]
    assert webcam_info(FakeProvided(), snapshot_webcam="cam2").is_snapshot_webcam
    assert info.transform == Transform(True, False, True)


# ---- flip / rotate -------------------------------------------------------------------------


def quadrants(size=(80, 40)) -> bytes:
    """Red top-left quarter, blue top-right, the rest black."""
    image = Image.new("RGB", size)
    w, h = size
    image.paste((255, 0, 0), (0, 0, w // 2, h // 2))
    image.paste((0, 0, 255), (w // 2, 0, w, h // 2))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def color_at(jpeg: bytes, x: float, y: float):
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    r, _g, b = image.getpixel((int(x * image.width), int(y * image.height)))
    return "red" if r > 150 > b else "blue" if b > 150 > r else "black"


@pytest.mark.parametrize(
    ("transform", "size", "red_at", "blue_at"),
    [
        (Transform(), (80, 40), (0.25, 0.25), (0.75, 0.25)),
        (Transform(flip_h=True), (80, 40), (0.75, 0.25), (0.25, 0.25)),
        (Transform(flip_v=True), (80, 40), (0.25, 0.75), (0.75, 0.75)),
        # counter-clockwise: the top edge becomes the left edge, top-left goes bottom-left
        (Transform(rotate90=True), (40, 80), (0.25, 0.75), (0.25, 0.25)),
        # flipped first, then turned, as OctoPrint shows it
        (Transform(flip_h=True, rotate90=True), (40, 80), (0.25, 0.25), (0.25, 0.75)),
    ],
)
def test_transforms_match_octoprints_display(transform, size, red_at, blue_at):
    source = quadrants()
    result = transform.apply(source, quality=90)
    if transform.identity:
        assert result is source, "no transform: the bytes as received"
    assert Image.open(io.BytesIO(result)).size == size
    assert color_at(result, *red_at) == "red"
    assert color_at(result, *blue_at) == "blue"


def test_a_transformed_webcam_says_so_in_its_name():
    camera = OctoPrintWebcam(webcam(flip_h=True, rotate90=True), timeout=1, retries=0)
    assert camera.name == "webcam 'classic' (flipped horizontally, rotated 90° counter-clockwise)"
    assert camera.take(REQUEST).data == JPEG, "the camera returns what it received"


# ---- texts ---------------------------------------------------------------------------------


def test_jpeg_checks():
    check_jpeg(JPEG, "cam")
    check_jpeg(JPEG + b"\r\n\x00\x00", "cam")  # padding after the end marker is fine
    with pytest.raises(CameraError, match=r"^cam: incomplete JPEG \(\d+ bytes, no end"):
        check_jpeg(JPEG[:-20], "cam")
    with pytest.raises(CameraError, match=r"^cam: answered text/html with an empty body, not"):
        check_jpeg(b"", "cam", "text/html; charset=utf-8")
    assert describe_body(b"\x00abc") == "4 bytes", "what came is never quoted"
    with pytest.raises(CameraError) as error:
        check_jpeg(b"INTERNAL-ONLY api_token=s3cret", "cam", "text/plain; token=s3cret")
    assert str(error.value) == "cam: answered text/plain with 30 bytes, not a JPEG"
    assert media_type("Text/HTML; charset=utf-8") == "text/html"
    assert media_type("api_token=s3cret") == "an unreadable content type"
    assert media_type(None) == "no content type"


def test_http_errors_show_the_standard_phrase_not_the_servers():
    assert str(http_error("cam", 503, "api_token=s3cret")) == "cam: HTTP 503 Service Unavailable"
    assert isinstance(http_error("cam", 404, ""), PermanentCameraError)
    assert str(http_error("cam", 599, "whatever")) == "cam: HTTP 599"
    bad_status = requests.ConnectionError(http.client.BadStatusLine("INTERNAL-ONLY s3cret"))
    assert explain_io_error(bad_status, "cam", 5) == "cam: not a valid HTTP answer"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://cam:8080/?action=snapshot", "http://cam:8080/?action=snapshot"),
        ("http://admin:secret@cam/snap.jpg", "http://***@cam/snap.jpg"),
        (
            "http://cam/cgi-bin/CGIProxy.fcgi?cmd=snapPicture2&usr=admin&pwd=secret",
            "http://cam/cgi-bin/CGIProxy.fcgi?cmd=snapPicture2&usr=***&pwd=***",
        ),
    ],
)
def test_urls_are_shown_without_credentials(url, shown):
    assert redact_url(url) == shown


def test_io_errors_read_well():
    refused = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert explain_io_error(refused, "cam", 5) == "cam: connection refused"
    assert explain_io_error(requests.ReadTimeout("x"), "cam", 2.5) == "cam: timed out after 2.5 s"
    assert (
        explain_io_error(requests.ReadTimeout("x"), "cam", None)
        == "cam: timed out (the webcam plugin's own timeout)"
    )
    assert explain_io_error(requests.exceptions.MissingSchema("x"), "cam", 1) == "cam: invalid URL"


# ---- Test camera ---------------------------------------------------------------------------


def test_camera_test_settings_take_the_body_over_the_saved_values():
    saved = {
        **cams({"type": "snapshot", "url": "http://saved/snap"}),
        "snapshot_timeout": 9.0,
        "grid_size": 99,
    }
    values, camera = camera_test_settings({"snapshot_timeout": "2"}, saved)
    assert camera.url == "http://saved/snap" and values.snapshot_timeout == 2.0
    body = {"camera": {"name": "top", "type": "stream", "url": "http://cam/stream"}}
    values, camera = camera_test_settings(body, saved)
    assert (camera.name, camera.type, camera.url) == ("top", "stream", "http://cam/stream")
    assert values.cameras == (camera,)
    with pytest.raises(InvalidSettings) as error:
        camera_test_settings({"snapshot_timeout": -1, "camera": {"url": "x"}, "grid_size": 3}, {})
    keys = sorted(e.key for e in error.value.errors)
    assert keys == ["grid_size"], "unknown keys are refused before anything else"
    with pytest.raises(InvalidSettings) as error:
        camera_test_settings(
            {"snapshot_timeout": -1, "camera": {"type": "stream", "url": "ftp://x"}}, {}
        )
    assert sorted(e.key for e in error.value.errors) == ["camera.url", "snapshot_timeout"]
    with pytest.raises(InvalidSettings):
        camera_test_settings(["not", "an", "object"], {})
    with pytest.raises(InvalidSettings) as error:
        camera_test_settings({"camera": "http://cam/snap"}, {})
    assert [e.key for e in error.value.errors] == ["camera"]
    # settings version 2's camera keys point to the camera entry that replaced them
    with pytest.raises(InvalidSettings) as error:
        camera_test_settings({"snapshot_url": "http://cam/snap"}, {})
    ((key, message),) = [(e.key, e.message) for e in error.value.errors]
    assert key == "snapshot_url" and message.startswith("was replaced by 'camera'")


def test_probe_answers_with_the_image_or_the_exact_error():
    values = validate({})
    closed = []

    class Closing(OctoPrintWebcam):
        def close(self):
            closed.append(True)
            super().close()

    source = quadrants()
    answer = probe_camera(Closing(webcam(chunks=[source], rotate90=True), 1, 0), values)
    assert answer["ok"] is True and (answer["width"], answer["height"]) == (40, 80)
    image = base64.b64decode(answer["image"].split(",", 1)[1])
    assert answer["image"].startswith("data:image/jpeg;base64,")
    assert answer["size_bytes"] == len(image) and color_at(image, 0.25, 0.75) == "red"

    failing = Closing(webcam(chunks=[b"<html>"]), 1, 0)
    answer = probe_camera(failing, values)
    with pytest.raises(CameraError) as error:
        Closing(webcam(chunks=[b"<html>"]), 1, 0).take(REQUEST)
    assert answer == {
        "ok": False,
        "name": "main",
        "camera": "webcam 'classic'",
        "error": str(error.value),
        "duration_s": answer["duration_s"],
    }
    assert closed == [True, True], "the probe closes the camera"


def test_camera_test_settings_take_the_grid_centre_from_the_form_then_the_saved_values():
    saved = {"grid_center_x": 90.0, "grid_center_y": 95.0, "z_offset": 3.0, "grid_size": 5}
    values, _ = camera_test_settings({"grid_center_x": "60", "camera": {"type": "fake"}}, saved)
    assert (values.grid_center_x, values.grid_center_y, values.z_offset) == (60.0, 95.0, 3.0)
    assert values.grid_size == 3, "only the camera and position keys are taken"
    with pytest.raises(InvalidSettings) as error:
        camera_test_settings({"grid_center_y": "front"}, saved)
    assert [e.key for e in error.value.errors] == ["grid_center_y"]


def test_the_fake_camera_test_draws_the_head_at_the_forms_centre():
    values, camera = camera_test_settings({"camera": {"type": "fake"}, "grid_center_x": 60}, {})
    answer = probe_camera(camera_port(camera, values, lambda name: None), values)
    drawn = base64.b64decode(answer["image"].split(",", 1)[1])
    at_form = probe_reference(60.0, 105.0, values.z_offset)
    at_default = probe_reference(125.0, 105.0, values.z_offset)
    assert pixels_differing_below_overlay(drawn, at_form) == 0
    assert pixels_differing_below_overlay(drawn, at_default) > 100


def test_probe_with_the_fake_camera():
    values = validate(cams({"type": "fake"}))
    answer = probe_camera(camera_port(values.cameras[0], values, lambda name: None), values)
    assert answer["ok"] and answer["camera"] == "fake camera" and answer["name"] == "main"
    assert (answer["width"], answer["height"]) == (640, 480)


@pytest.mark.parametrize(
    ("timeout", "retries", "limited"),
    [
        (5.0, 1, (5.0, 1)),  # 10 s: as set
        (300.0, 20, (30.0, 0)),  # 6300 s: one attempt of 30 s
        (10.0, 5, (10.0, 2)),  # 60 s: three attempts of 10 s
        (16.0, 1, (16.0, 0)),  # 32 s: one attempt
        (0.5, 20, (0.5, 20)),  # 10.5 s: as set
    ],
)
def test_a_camera_test_ends_within_30_s_whatever_the_settings(timeout, retries, limited):
    values, _ = camera_test_settings({"snapshot_timeout": timeout, "snapshot_retries": retries}, {})
    assert (values.snapshot_timeout, values.snapshot_retries) == limited
    assert values.snapshot_timeout * (values.snapshot_retries + 1) <= CAMERA_TEST_LIMIT_S
    assert within_test_limit(values) == values


def test_urls_no_saved_camera_has_are_told_apart():
    saved = cams(
        {"type": "snapshot", "url": "http://cam/snap"},
        {"type": "stream", "url": "http://cam2/stream"},
    )

    def test(**camera) -> bool:
        return unsaved_url({"camera": camera}, saved)

    assert not test(type="snapshot", url=" http://cam/snap ")
    assert not test(type="snapshot", url="http://cam2/stream"), "any saved camera's address"
    assert not test(type="stream", url="")
    assert not test(type="webcam", webcam="x", url="http://10.0.0.1/"), "a webcam fetches no URL"
    assert not test(type="fake", url="http://10.0.0.1/")
    assert test(type="snapshot", url="http://10.0.0.1/")
    assert test(type="stream", url="http://cam/stream")
    assert unsaved_url({"camera": {"type": "stream", "url": "http://cam/stream"}}, {})
    assert not unsaved_url(["not", "an", "object"], saved)
    assert not unsaved_url({"camera": "http://10.0.0.1/"}, saved)


def test_redirect_targets_keep_to_the_same_scheme_host_and_port():
    from octoprint_layercapture.cameras.http import same_origin_target

    base = "http://admin:pw@cam:8080/snap"
    assert same_origin_target(base, "/other?x=1") == "http://admin:pw@cam:8080/other?x=1"
    assert same_origin_target(base, "http://CAM:8080/b") == "http://admin:pw@cam:8080/b"
    assert same_origin_target("http://cam/a", "http://cam:80/b") == "http://cam:80/b"
    for elsewhere in ("http://cam:8081/b", "https://cam:8080/b", "http://10.0.0.1:8080/b"):
        assert same_origin_target(base, elsewhere) is None, elsewhere
    assert same_origin_target(base, "http://[::1/") is None
