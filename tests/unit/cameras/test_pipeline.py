"""The image pipeline: camera bytes stored as received (or flipped/rotated when the webcam
asks), written on the writer thread while the head moves on, the metadata after the files
with what failed."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

import jsonschema
import pytest
from fakes import FakeClock, HeadState, RecorderPrinter, tiny_jpeg
from PIL import Image

from octoprint_layercapture.cameras.base import Transform
from octoprint_layercapture.capture.armed import ArmedPrint, PrintInfo
from octoprint_layercapture.capture.layers import LayerTrigger, MotionState
from octoprint_layercapture.capture.ports import ShotRequest, Snapshot
from octoprint_layercapture.capture.shots import RigCamera
from octoprint_layercapture.capture.worker import CaptureRequest, CaptureWorker
from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.settings import Bounds, validate
from octoprint_layercapture.store import writer as image_writer
from octoprint_layercapture.store.writer import ImageWriter

SCHEMA = load_schema("metadata")
BED = Bounds(0, 0, 200, 200, 200)
PHOTO = tiny_jpeg((10, 200, 90), size=(64, 32))


class Camera:
    """Returns ``photo``; ``transform`` as a webcam with flip/rotate settings has."""

    def __init__(
        self,
        transform: Optional[Transform] = None,
        photo: bytes = PHOTO,
        name: str = "test camera",
    ) -> None:
        self.transform = transform or Transform()
        self.photo = photo
        self.name = name
        self.closed = False

    def take(self, request: ShotRequest) -> Snapshot:
        return Snapshot(self.photo, "image/jpeg", 0.01, self.name)

    def close(self) -> None:
        self.closed = True


def make_request(tmp_path: Path, **settings: Any) -> CaptureRequest:
    values = validate(
        {"grid_center_x": 100, "grid_center_y": 100, "capture_delay": 0.0, **settings}, BED
    )
    return CaptureRequest(
        trigger=LayerTrigger(layer=3, z=0.6, next_z=0.8, source="motion", reasons=("every 3",)),
        motion=MotionState(
            x=90.0, y=95.0, z=0.8, e=1.0, absolute_xyz=True, absolute_e=True, feedrate=1800.0
        ),
        held_line="G1 X91 Y95 E1.4",
        armed=ArmedPrint(
            values,
            values.bounds(BED),
            PrintInfo("box.gcode", datetime(2024, 1, 15, 10, 0, 0)),
            tmp_path / "layercapture",
            None,
        ),
    )


class Rig:
    def __init__(
        self,
        camera: Camera,
        writer: Optional[ImageWriter] = None,
        others: Optional[Dict[str, Camera]] = None,
    ) -> None:
        self.clock = FakeClock()
        self.camera = camera
        self.others = others or {}
        self.printer = RecorderPrinter(self.clock, HeadState(x=90.0, y=95.0, z=0.8, e=1.0))
        self.statuses: List[Dict[str, Any]] = []
        self.continued = threading.Event()
        self.captured = threading.Event()
        self.worker = CaptureWorker(
            make_printer=lambda: self.printer,
            make_cameras=lambda request, plan: [
                RigCamera("main", self.camera),
                *(RigCamera(name, cam, True) for name, cam in self.others.items()),
            ],
            on_status=self._status,
            on_finished=lambda request, result: self.continued.set(),
            plugin_version="test",
            clock=self.clock,
            writer=writer,
        )

    def _status(self, status: Dict[str, Any]) -> None:
        self.statuses.append(status)
        if status.get("state") in ("captured", "error"):
            self.captured.set()

    def run(self, request: CaptureRequest) -> Dict[str, Any]:
        self.worker.start()
        try:
            self.worker.submit(request)
            assert self.captured.wait(10), f"no capture result: {self.statuses}"
        finally:
            self.worker.stop()
        (path,) = sorted(request.store_root.rglob("layer_*_metadata_*.json"))
        data = json.loads(path.read_text())
        jsonschema.validate(data, SCHEMA)
        data["_folder"] = path.parent
        return data


def test_camera_bytes_are_stored_as_received(tmp_path):
    rig = Rig(Camera())
    meta = rig.run(make_request(tmp_path))
    assert len(meta["images"]) == 9 and meta["failures"] == []
    for image in meta["images"]:
        assert (meta["_folder"] / image["path"]).read_bytes() == PHOTO
        assert image["size_bytes"] == len(PHOTO)
        # schema version 2: the stored file's hash and size, the camera's answer time
        assert image["sha256"] == hashlib.sha256(PHOTO).hexdigest()
        assert (image["width"], image["height"]) == (64, 32)
        assert image["camera_latency_s"] == 0.01
        thumb = Image.open(meta["_folder"] / image["thumbnail"])
        assert thumb.format == "JPEG" and thumb.size == (64, 32)
    assert rig.camera.closed, "the worker closes the camera after the sequence"
    assert meta["schema_version"] == 3
    assert meta["camera_info"]["resolution"] == {"width": 64, "height": 32}
    assert {image["camera_name"] for image in meta["images"]} == {"main"}
    assert meta["camera_info"]["kind"] == "none"  # a test double, none of the plugin's


def test_several_cameras_each_store_their_own_bytes_under_their_names(tmp_path):
    """The first camera keeps the single-camera names; the others carry theirs. Each image
    is its camera's bytes (or flipped as that camera, and only that one, asks)."""
    nozzle = Camera(photo=tiny_jpeg((200, 10, 10), size=(48, 40)), name="snapshot URL http://n")
    turned = Camera(Transform(rotate90=True), tiny_jpeg((10, 10, 200), size=(64, 32)), "webcam")
    rig = Rig(Camera(), others={"nozzle": nozzle, "side-2": turned})
    meta = rig.run(make_request(tmp_path))
    assert meta["failures"] == [] and len(meta["images"]) == 27
    assert [(c["name"], c["mounting"]) for c in meta["cameras"]] == [
        ("main", "fixed"),
        ("nozzle", "fixed"),
        ("side-2", "fixed"),
    ]
    # each camera's identity and the size it delivered (before side-2's rotation)
    resolutions = [c["camera_info"]["resolution"] for c in meta["cameras"]]
    assert resolutions == [
        {"width": 64, "height": 32},
        {"width": 48, "height": 40},
        {"width": 64, "height": 32},
    ]
    assert meta["camera"] == "test camera"
    assert meta["camera_info"] == meta["cameras"][0]["camera_info"]
    by_camera: Dict[str, List[Dict[str, Any]]] = {}
    for image in meta["images"]:
        by_camera.setdefault(image["camera_name"], []).append(image)
    assert {name: len(images) for name, images in by_camera.items()} == {
        "main": 9,
        "nozzle": 9,
        "side-2": 9,
    }
    for image in by_camera["main"]:
        assert "_cam_" not in image["path"] and image["camera"] == "test camera"
        assert (meta["_folder"] / image["path"]).read_bytes() == PHOTO
    for image in by_camera["nozzle"]:
        assert f"_pos_{image['index']:02d}_cam_nozzle_z_0_60_" in image["path"]
        assert (meta["_folder"] / image["path"]).read_bytes() == nozzle.photo
        assert image["sha256"] == hashlib.sha256(nozzle.photo).hexdigest()
        assert (image["width"], image["height"]) == (48, 40)
        assert image["thumbnail"] == image["path"].replace(".jpg", "_thumb.jpg")
    for image in by_camera["side-2"]:
        stored = (meta["_folder"] / image["path"]).read_bytes()
        assert "_cam_side-2_" in image["path"]
        assert Image.open(io.BytesIO(stored)).size == (32, 64), "rotated as it asks"
    assert len(list(meta["_folder"].glob("*.jpg"))) == 54
    assert all(camera.closed for camera in (rig.camera, nozzle, turned))


def test_a_write_failure_names_its_camera(tmp_path, monkeypatch):
    real_write = image_writer.write_atomic

    def failing_write(path, data, mode=0o644):
        if "_pos_04_cam_nozzle_z" in path.name and not path.name.endswith("_thumb.jpg"):
            raise OSError(28, "No space left on device")
        real_write(path, data, mode)

    monkeypatch.setattr(image_writer, "write_atomic", failing_write)
    meta = Rig(Camera(), others={"nozzle": Camera()}).run(make_request(tmp_path))
    (failure,) = meta["failures"]
    assert (failure["index"], failure["phase"], failure["camera"]) == (4, "write", "nozzle")
    assert len(meta["images"]) == 17
    assert {i["camera_name"] for i in meta["images"] if i["index"] == 4} == {"main"}


def test_flip_and_rotate_are_applied_when_the_webcam_asks(tmp_path):
    rig = Rig(Camera(Transform(flip_h=True, rotate90=True)))
    meta = rig.run(make_request(tmp_path, grid_size=1, image_quality=70))
    (image,) = meta["images"]
    stored = (meta["_folder"] / image["path"]).read_bytes()
    assert stored != PHOTO
    assert Image.open(io.BytesIO(stored)).size == (32, 64)
    assert image["size_bytes"] == len(stored)
    assert image["sha256"] == hashlib.sha256(stored).hexdigest()
    assert (image["width"], image["height"]) == (32, 64)
    # the camera's resolution is what it delivered, before the rotation
    assert meta["camera_info"]["resolution"] == {"width": 64, "height": 32}
    assert Image.open(meta["_folder"] / image["thumbnail"]).size == (32, 64)


def test_the_head_moves_on_while_the_files_are_written(tmp_path):
    """With the writer stalled, the whole sequence runs and the job continues; the
    metadata comes only after the stalled writes, and lists every image."""
    writer = ImageWriter()
    rig = Rig(Camera(), writer)
    stall = threading.Event()
    rig.worker.start()
    writer.submit(lambda: stall.wait(10))  # the writer is busy with something slow
    try:
        rig.worker.submit(make_request(tmp_path))
        assert rig.continued.wait(10), "the job must continue without waiting for the disk"
        assert not rig.captured.is_set(), "the metadata must wait for the images"
        assert not list((tmp_path / "layercapture").rglob("*.json"))
        stall.set()
        assert rig.captured.wait(10)
    finally:
        stall.set()
        rig.worker.stop()
    (path,) = (tmp_path / "layercapture").rglob("*.json")
    meta = json.loads(path.read_text())
    assert len(meta["images"]) == 9 and meta["failures"] == []
    assert all((path.parent / i["path"]).is_file() for i in meta["images"])


def test_write_failures_are_recorded(tmp_path, monkeypatch):
    real_write = image_writer.write_atomic

    def failing_write(path, data, mode=0o644):
        if "_pos_04_" in path.name and not path.name.endswith("_thumb.jpg"):
            raise OSError(28, "No space left on device")
        if "_pos_07_" in path.name and path.name.endswith("_thumb.jpg"):
            raise OSError(5, "Input/output error")
        real_write(path, data, mode)

    monkeypatch.setattr(image_writer, "write_atomic", failing_write)
    rig = Rig(Camera())
    meta = rig.run(make_request(tmp_path))
    by_index = {i["index"]: i for i in meta["images"]}
    assert sorted(by_index) == [0, 1, 2, 3, 5, 6, 7, 8], "the unwritten image is not listed"
    assert by_index[7]["thumbnail"] is None
    failures = {(f["index"], f["phase"]) for f in meta["failures"]}
    assert failures == {(4, "write"), (7, "write")}
    messages = sorted(f["message"] for f in meta["failures"])
    assert "not saved ([Errno 28] No space left on device)" in messages[0]
    assert "_thumb.jpg not saved ([Errno 5] Input/output error)" in messages[1]
    assert not list(meta["_folder"].glob("*_pos_04_*")), "no thumbnail without its image"
    assert rig.printer.continued
    assert rig.statuses[-1]["outcome"] == "completed_with_failures"


def test_an_unreadable_image_keeps_the_bytes_and_records_the_thumbnail(tmp_path):
    class Garbled(Camera):
        def take(self, request):
            return Snapshot(b"\xff\xd8\xff" + b"\x00" * 40 + b"\xff\xd9", "image/jpeg", 0.0, "x")

    meta = Rig(Garbled()).run(make_request(tmp_path, grid_size=1))
    (image,) = meta["images"]
    assert image["thumbnail"] is None
    (failure,) = meta["failures"]
    assert (
        failure["phase"] == "write" and "not made (the image is unreadable)" in failure["message"]
    )


def test_the_writer_thread_is_named_and_stops(tmp_path):
    writer = ImageWriter()
    writer.start()
    assert "layercapture-writer" in [t.name for t in threading.enumerate()]
    done = []
    pending = writer.submit_image(tmp_path / "a.jpg", PHOTO, tmp_path / "a_thumb.jpg")
    writer.submit(lambda: done.append(True))
    writer.stop(timeout=5)
    assert done == [True], "queued jobs finish before the thread ends"
    result = pending.wait(0)
    assert result is not None and result.size_bytes == len(PHOTO) and not result.errors
    assert "layercapture-writer" not in [t.name for t in threading.enumerate()]


def test_a_stopped_writer_writes_inline(tmp_path):
    writer = ImageWriter()  # never started (as after a shutdown)
    pending = writer.submit_image(tmp_path / "b.jpg", PHOTO, None)
    assert pending.wait(0) is not None and (tmp_path / "b.jpg").read_bytes() == PHOTO


def test_writes_wait_while_the_head_moves(tmp_path):
    writer = ImageWriter()
    writer.start()
    try:
        with writer.held():
            pending = writer.submit_image(tmp_path / "c.jpg", PHOTO, tmp_path / "c_thumb.jpg")
            assert pending.wait(0.3) is None, "no disk work while the head moves"
            assert not (tmp_path / "c.jpg").exists()
        assert pending.wait(5) is not None
        assert (tmp_path / "c.jpg").read_bytes() == PHOTO
    finally:
        writer.stop(timeout=5)


def test_a_stop_during_a_sequence_still_writes_what_was_queued(tmp_path):
    writer = ImageWriter()
    writer.start()
    with writer.held():
        pending = writer.submit_image(tmp_path / "d.jpg", PHOTO, None)
        writer.stop(timeout=5)
        assert pending.wait(0) is not None and (tmp_path / "d.jpg").read_bytes() == PHOTO
    assert not writer.running


@pytest.mark.parametrize("create", [True, False])
def test_thumbnails_follow_the_setting(tmp_path, create):
    meta = Rig(Camera()).run(make_request(tmp_path, grid_size=1, create_thumbnails=create))
    (image,) = meta["images"]
    assert (image["thumbnail"] is not None) == create
    assert len(list(meta["_folder"].glob("*_thumb.jpg"))) == int(create)
