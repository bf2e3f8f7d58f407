from __future__ import annotations

import dataclasses
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import pytest
from fakes import FakeCamera, FakeClock, HeadState, RecorderPrinter

from octoprint_layercapture.capture.armed import ArmedPrint, PrintInfo
from octoprint_layercapture.capture.layers import LayerTrigger, MotionState
from octoprint_layercapture.capture.shots import RigCamera
from octoprint_layercapture.capture.worker import CaptureRequest, CaptureWorker
from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.settings import Bounds, validate

SCHEMA = load_schema("metadata")
BED = Bounds(0, 0, 200, 200, 200)


def make_request(tmp_path: Path, **settings: Any) -> CaptureRequest:
    values = validate(
        {"grid_center_x": 100, "grid_center_y": 100, "capture_delay": 0.0, **settings}, BED
    )
    motion = MotionState(
        x=90.0, y=95.0, z=0.8, e=12.5, absolute_xyz=True, absolute_e=True, feedrate=1800.0
    )
    return CaptureRequest(
        trigger=LayerTrigger(layer=3, z=0.6, next_z=0.8, source="motion", reasons=("every 3",)),
        motion=motion,
        held_line="G1 X91 Y95 E12.9",
        armed=ArmedPrint(
            values,
            values.bounds(BED),
            PrintInfo("box.gcode", datetime(2024, 1, 15, 10, 0, 0)),
            tmp_path / "layercapture",
            None,
        ),
    )


class Harness:
    def __init__(self, make_cameras: Any = None, on_layer_saved: Any = None, **hooks: Any) -> None:
        self.clock = FakeClock()
        self.printer = RecorderPrinter(
            self.clock, HeadState(x=90.0, y=95.0, z=0.8, e=12.5, feedrate=1800.0)
        )
        self.camera = FakeCamera(self.clock)
        self.statuses: List[Dict[str, Any]] = []
        self.finished: List[Any] = []
        self.done = threading.Event()
        self.worker = CaptureWorker(
            make_printer=lambda: self.printer,
            make_cameras=make_cameras or (lambda request, plan: [RigCamera("main", self.camera)]),
            on_status=self._status,
            on_finished=lambda request, result: self.finished.append(result),
            plugin_version="test",
            clock=self.clock,
            on_layer_saved=on_layer_saved,
            **hooks,
        )

    def _status(self, status: Dict[str, Any]) -> None:
        self.statuses.append(status)
        if status.get("state") in ("captured", "error"):
            self.done.set()

    def run(self, request: CaptureRequest) -> None:
        self.worker.start()
        try:
            self.worker.submit(request)
            assert self.done.wait(10), f"no capture result; statuses: {self.statuses}"
        finally:
            self.worker.stop()


def metadata_files(root: Path) -> List[Path]:
    return sorted(root.rglob("layer_*_metadata_*.json"))


def test_a_capture_writes_images_and_valid_metadata(tmp_path):
    harness = Harness()
    request = make_request(tmp_path)
    harness.run(request)

    (path,) = metadata_files(request.store_root)
    data = json.loads(path.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["layer"] == 3 and data["z_height"] == 0.6
    assert data["gcode_file"] == "box.gcode"
    assert sorted(image["index"] for image in data["images"]) == list(range(9))
    for image in data["images"]:
        assert (path.parent / image["path"]).is_file()
    assert harness.printer.continued
    assert harness.finished[0].outcome == "completed"
    assert not harness.worker.busy
    assert harness.statuses[-1]["state"] == "captured"


def test_the_gallery_hears_of_each_metadata_file_before_the_captured_status(tmp_path):
    events: List[Any] = []
    harness = Harness(on_layer_saved=lambda path: events.append(("saved", path)))
    harness.worker._on_status = lambda status: (  # record the order of both callbacks
        events.append(("status", status.get("state"))),
        harness._status(status),
    )
    harness.run(make_request(tmp_path))
    saved = [e for e in events if e[0] == "saved"]
    assert [p for _, p in saved] == metadata_files(tmp_path / "layercapture")
    assert events.index(saved[0]) < events.index(("status", "captured"))


def test_a_failing_gallery_callback_does_not_fail_the_capture(tmp_path):
    def broken(path: Path) -> None:
        raise RuntimeError("index broken")

    harness = Harness(on_layer_saved=broken)
    harness.run(make_request(tmp_path))
    assert harness.statuses[-1]["state"] == "captured"
    assert len(metadata_files(tmp_path / "layercapture")) == 1


def test_a_failing_preparation_still_continues_the_job(tmp_path):
    def broken_camera(request, plan):
        raise RuntimeError("camera driver exploded")

    harness = Harness(make_cameras=broken_camera)
    request = make_request(tmp_path)
    harness.run(request)

    assert harness.printer.continued, "the job must never be left stopped"
    plugin_moves = [m for m in harness.printer.moves if m.command != request.held_line]
    assert not [m for m in plugin_moves if m.changes_xy], "the head must not move"
    assert harness.printer.log[-2:] == [request.held_line, "<continue>"]
    (path,) = metadata_files(request.store_root)
    failures = json.loads(path.read_text())["failures"]
    assert any("camera driver exploded" in f["message"] for f in failures)


def test_points_outside_the_bed_are_skipped_and_recorded(tmp_path):
    harness = Harness()
    request = make_request(tmp_path, grid_size=5, grid_spacing=40, bed_max_x=300)
    narrow = Bounds(0, 0, 150, 200, 200)
    armed = dataclasses.replace(request.armed, bounds=narrow)
    request = dataclasses.replace(request, armed=armed)
    harness.run(request)

    data = json.loads(metadata_files(request.store_root)[0].read_text())
    skipped = {s["index"] for s in data["skipped"]}
    assert skipped == {row * 5 + 4 for row in range(5)}  # the X = 180 column
    assert all("beyond bed max X" in s["reason"] for s in data["skipped"])
    assert {i["index"] for i in data["images"]}.isdisjoint(skipped)
    assert all(m.after[0] <= 150 for m in harness.printer.moves)


def test_stop_ends_the_named_thread():
    harness = Harness()
    harness.worker.start()
    names = [t.name for t in threading.enumerate()]
    assert "layercapture-worker" in names
    harness.worker.stop(timeout=5)
    assert "layercapture-worker" not in [t.name for t in threading.enumerate()]


@pytest.mark.parametrize("stop_mode", ["pause", "hold"])
def test_metadata_records_the_stop_mode(tmp_path, stop_mode):
    harness = Harness()
    request = make_request(tmp_path, stop_mode=stop_mode)
    harness.run(request)
    data = json.loads(metadata_files(request.store_root)[0].read_text())
    assert data["settings"]["stop_mode"] == stop_mode


def test_the_worker_says_when_a_sequence_is_handed_to_it_and_when_the_job_is_back(tmp_path):
    """The video renderer stops ffmpeg on on_busy (before the head moves) and lets it go on
    at on_idle; busy is true in between."""
    seen: List[tuple] = []
    harness = Harness(
        on_busy=lambda: seen.append(("busy", harness.worker.busy)),
        on_idle=lambda: seen.append(("idle", harness.worker.busy)),
    )
    harness.run(make_request(tmp_path))
    assert seen[0] == ("busy", True)
    assert ("idle", False) in seen and seen.index(("idle", False)) > 0
