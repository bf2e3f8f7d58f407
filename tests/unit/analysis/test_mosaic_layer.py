"""A layer's mosaic from its files on disk, and the mosaic thread."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import pytest
from mosaic_support import MOUNTING, polylines, scene, shots

from octoprint_layercapture.analysis import mosaic as mosaic_package
from octoprint_layercapture.analysis.mosaic import layer as mosaic_layer
from octoprint_layercapture.analysis.mosaic.layer import MosaicOptions, make_mosaic, save_record
from octoprint_layercapture.analysis.mosaic.worker import MosaicWorker
from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.store.names import image_name, metadata_name, mosaic_name, toolpath_name

WHEN = datetime(2024, 1, 15, 10, 30, 0)


def write_layer(folder: Path, mounting: Dict[str, Any], toolpath: bool = True) -> Path:
    of = scene(3)
    images = []
    for tile in shots(of):
        name = image_name(3, tile.index, 0.9, WHEN)
        tile.image.save(folder / name, "JPEG", quality=92)
        x, y = tile.head
        images.append(
            {
                "path": name,
                "index": tile.index,
                "position": {"x": x, "y": y, "z": 5.9},
                "measured": {"x": x, "y": y, "z": 5.9, "e": None},
            }
        )
    meta: Dict[str, Any] = {
        "layer": 3,
        "z_height": 0.9,
        "timestamp": WHEN.isoformat(),
        "gcode_file": "box.gcode",
        "print_start_time": None,
        "images": images,
        "settings": {
            "grid_spacing": 15.0,
            "grid_center": {"x": 100.0, "y": 100.0},
            "grid_size": 3,
            "camera_mounting": mounting,
        },
        "capture_z": 5.9,
        "camera": "fake toolhead camera",
        "skipped": [],
        "failures": [],
        "timings": {},
        "trigger": {},
        "plugin_version": "test",
        "mosaic": {"status": "pending"},
    }
    if toolpath:
        name = toolpath_name(3, WHEN)
        (folder / name).write_text(json.dumps({"polylines": polylines(of)}), encoding="utf-8")
        meta["toolpath"] = {"path": name}
    path = folder / metadata_name(3, WHEN)
    path.write_text(json.dumps(meta), encoding="utf-8")
    return path


def test_a_toolhead_layer_gets_its_mosaic_files_and_record(tmp_path: Path) -> None:
    path = write_layer(tmp_path, MOUNTING.to_dict())
    record = make_mosaic(path, MosaicOptions(warning_score=0.01))
    assert record is not None and record["status"] == "done", record
    for key, part in (
        ("path", "image"),
        ("toolpath_overlay", "toolpath"),
        ("departure_overlay", "departure"),
    ):
        assert record[key] == mosaic_name(3, WHEN, part) and (tmp_path / record[key]).is_file()
    assert record["departure"]["regions"] == [] and record["departure"]["warning"] is False
    assert save_record(path, record)
    meta = json.loads(path.read_text(encoding="utf-8"))
    assert meta["mosaic"] == record
    jsonschema.validate(
        meta["mosaic"],
        {**load_schema("metadata")["$defs"]["mosaic"], "$defs": load_schema("metadata")["$defs"]},
    )


def test_without_a_toolpath_the_mosaic_is_made_but_not_judged(tmp_path: Path) -> None:
    record = make_mosaic(write_layer(tmp_path, MOUNTING.to_dict(), toolpath=False), MosaicOptions())
    assert record is not None and record["status"] == "done"
    assert record["toolpath_overlay"] is None and record["departure_overlay"] is None
    assert record["departure"]["error"] == "the layer's toolpath is not known"


def test_a_fixed_camera_layer_is_left_alone(tmp_path: Path) -> None:
    path = write_layer(tmp_path, {**MOUNTING.to_dict(), "mode": "fixed"})
    assert make_mosaic(path, MosaicOptions()) is None


def test_without_numpy_the_record_says_what_the_extra_adds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mosaic_layer, "numpy_available", lambda: False)
    record = make_mosaic(write_layer(tmp_path, MOUNTING.to_dict()), MosaicOptions())
    assert record is not None and record["status"] == "unavailable"
    assert 'pip install "OctoPrint-LayerCapture[analysis]"' in record["error"]
    assert mosaic_package.numpy_available()  # here numpy is installed


def test_a_deleted_layer_gets_no_record(tmp_path: Path) -> None:
    path = write_layer(tmp_path, MOUNTING.to_dict())
    path.unlink()
    assert save_record(path, {"status": "done"}) is False


def test_the_thread_waits_while_the_head_is_away(tmp_path: Path) -> None:
    path = write_layer(tmp_path, MOUNTING.to_dict())
    idle = threading.Event()
    done: List[Path] = []
    pushed: List[Dict[str, Any]] = []
    finished = threading.Event()

    def on_done(p: Path) -> None:
        done.append(p)
        finished.set()

    worker = MosaicWorker(MosaicOptions, lambda timeout: idle.wait(timeout), on_done, pushed.append)
    worker.start()
    try:
        assert worker.running
        worker.submit(path)
        worker.submit(tmp_path / "missing_metadata.json")  # unreadable: not queued
        time.sleep(1.2)
        assert done == [] and pushed == []  # a capture has the head away
        idle.set()
        assert finished.wait(60)
    finally:
        worker.stop()
    assert not worker.running
    assert done == [path]
    states = [p["state"] for p in pushed]
    assert states[0] == "stitching" and states[-1] == "done"
    assert pushed[-1]["layer"] == 3 and pushed[-1]["metadata"].endswith(path.name)
    assert json.loads(path.read_text(encoding="utf-8"))["mosaic"]["status"] == "done"


def test_stopping_while_waiting_ends_the_thread(tmp_path: Path) -> None:
    path = write_layer(tmp_path, MOUNTING.to_dict())
    worker = MosaicWorker(
        MosaicOptions,
        lambda timeout: time.sleep(min(timeout, 0.05)) or False,
        lambda p: None,
        lambda d: None,
    )
    worker.start()
    worker.submit(path)
    time.sleep(0.2)
    started = time.monotonic()
    worker.stop(5)
    assert not worker.running and time.monotonic() - started < 2
    assert json.loads(path.read_text(encoding="utf-8"))["mosaic"] == {"status": "pending"}
