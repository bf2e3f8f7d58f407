"""A video's files: the frames file and the gallery's record of it, saving, leftovers
(analysis/video/files.py, store/entries.video_record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from video_layers import NINE, layer

from octoprint_layercapture.analysis.video.files import (
    frames_document,
    remove_leftovers,
    save_video,
)
from octoprint_layercapture.analysis.video.plan import RenderTarget, plan_grid_layout, plan_videos
from octoprint_layercapture.store.entries import video_record
from octoprint_layercapture.store.names import video_frames_name, video_name

PID = "0123456789abcdef"


def _plans(cameras=None):
    layers = [
        layer(3, NINE, cameras=cameras),
        layer(6, [i for i in NINE if i != 2], failed={2: "camera down"}, cameras=cameras),
    ]
    return plan_videos(layers, RenderTarget("all"))


INFO = {"id": PID, "gcode_file": "box.gcode", "print_start_time": "2024-01-01T09:00:00"}


def test_a_position_videos_frames_name_each_layer_and_image_or_why_not():
    two = _plans()[2]
    doc = frames_document(two, video_name(PID, 2), INFO, (640, 480), 25, 50, 2.0)
    assert (doc["kind"], doc["index"], doc["row"], doc["col"]) == ("position", 2, 0, 2)
    assert (doc["layer_frames"], doc["hold_frames"], doc["frame_count"]) == (2, 50, 52)
    assert (doc["codec"], doc["pixel_format"], doc["width"], doc["height"]) == (
        "h264",
        "yuv420p",
        640,
        480,
    )
    assert doc["print_id"] == PID and doc["gcode_file"] == "box.gcode"
    first, second = doc["frames"]
    assert first == {
        "frame": 0,
        "layer": 3,
        "z_height": 0.6,
        "metadata": "2024-01-01/layer_0003_metadata_20240101_090000.json",
        "image": "2024-01-01/layer_0003_pos_02.jpg",
    }
    assert second["image"] is None and second["missing"] == "camera down"


def test_the_grid_videos_frames_name_each_tile():
    grid = _plans()[-1]
    layout = plan_grid_layout(3, (640, 480))
    doc = frames_document(grid, video_name(PID, None), INFO, (1920, 1440), 25, 0, 0.0, layout)
    assert doc["kind"] == "grid" and doc["index"] is None and doc["frame_count"] == 2
    assert doc["grid"]["width"] == 1920 and len(doc["grid"]["tiles"]) == 9
    tiles = doc["frames"][1]["tiles"]
    assert [t["index"] for t in tiles] == NINE
    assert tiles[2] == {"index": 2, "image": None, "missing": "camera down"}
    assert tiles[3]["image"] == "2024-01-01/layer_0006_pos_03.jpg"
    json.dumps(doc)  # all JSON


def test_the_gallery_record_comes_from_the_names_and_needs_the_video_file():
    name = video_name(PID, 4)
    doc = frames_document(_plans()[4], name, INFO, (640, 480), 10, 5, 0.5)
    doc["print_id"] = "ffffffffffffffff"  # what the document says is not trusted
    key = f"2024-01-01/{video_frames_name(name)}"
    assert video_record(key, "2024-01-01", doc, lambda n: None) is None
    record = video_record(key, "2024-01-01", doc, lambda n: 1234 if n == name else None)
    assert record == {
        "print_id": PID,
        "kind": "position",
        "index": 4,
        "camera": "",
        "first_camera": True,
        "row": 1,
        "col": 1,
        "path": f"2024-01-01/{name}",
        "metadata": key,
        "size_bytes": 1234,
        "width": 640,
        "height": 480,
        "fps": 10,
        "frame_count": 7,
        "layers": [3, 6],
        "hold_frames": 5,
        "duration_s": 0.7,
        "rendered_at": None,
    }
    assert video_record("2024-01-01/" + name, "2024-01-01", doc, lambda n: 1) is None
    assert video_record(f"2024-01-01/video_{PID}_grid.json", "2024-01-01", {}, lambda n: 9) == {
        **dict.fromkeys(("width", "height", "fps", "frame_count", "duration_s", "rendered_at")),
        "print_id": PID,
        "kind": "grid",
        "index": None,
        "camera": "",
        "first_camera": True,
        "row": None,
        "col": None,
        "path": f"2024-01-01/video_{PID}_grid.mp4",
        "metadata": f"2024-01-01/video_{PID}_grid.json",
        "size_bytes": 9,
        "layers": [],
        "hold_frames": 0,
    }


def test_the_record_of_another_cameras_video_names_it_from_the_file_name():
    """The first camera's videos carry no camera in their names: the frames file's
    ``camera`` names it; another camera's name comes from the file name, not the document."""
    plans = [p for p in _plans(cameras={"main": NINE, "nozzle": NINE}) if p.index == 4]
    main, nozzle = plans
    sizes = lambda n: 5  # noqa: E731
    for plan, camera, first in ((main, "main", True), (nozzle, "nozzle", False)):
        name = plan.file_name(PID)
        doc = frames_document(plan, name, INFO, (640, 480), 10, 0, 0.0)
        assert doc["camera"] == camera
        doc["camera"] = "top" if not first else doc["camera"]  # not trusted for the others
        record = video_record(f"2024-01-01/{video_frames_name(name)}", "2024-01-01", doc, sizes)
        assert record is not None
        assert (record["camera"], record["first_camera"]) == (camera, first)
        assert record["path"] == f"2024-01-01/{name}"


def test_saving_writes_the_frames_file_then_renames_the_video(tmp_path: Path):
    final = tmp_path / video_name(PID, None)
    final.write_bytes(b"old video")
    temp = tmp_path / ".new.tmp"
    temp.write_bytes(b"new video")
    frames = save_video(temp, final, {"frames": []})
    assert frames == tmp_path / video_frames_name(final.name)
    assert json.loads(frames.read_text()) == {"frames": []}
    assert final.read_bytes() == b"new video" and not temp.exists()
    with pytest.raises(OSError):
        save_video(tmp_path / "gone.tmp", final, {"frames": [1]})
    assert final.read_bytes() == b"new video"


def test_leftovers_of_interrupted_renders_are_removed_and_nothing_else(tmp_path: Path):
    work, root = tmp_path / "data", tmp_path / "captures"
    (work / "render-3-ab12" / "v00").mkdir(parents=True)
    (work / "keep-me").mkdir()
    day = root / "2024-01-01"
    day.mkdir(parents=True)
    (day / f".video_{PID}_grid.mp4.ab12cd34.tmp").write_bytes(b"half")
    kept = [
        day / f"video_{PID}_grid.mp4",
        day / ".layer_0003_pos_00_z_0_60_20240101_090000.jpg.x.tmp",  # the writer's
        root / f".video_{PID}_grid.mp4.ab12cd34.tmp",  # not in a day folder
    ]
    for path in kept:
        path.write_bytes(b"x")
    assert remove_leftovers(work, root) == 2
    assert sorted(p.name for p in work.iterdir()) == ["keep-me"]
    assert all(p.exists() for p in kept)
    assert remove_leftovers(tmp_path / "none", None) == 0
