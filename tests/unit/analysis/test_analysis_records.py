"""The version 2 records: process state, the layer's place in the file, per-image facts."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import List, Optional, Tuple

import jsonschema
import pytest

from octoprint_layercapture.analysis.events import layer_event, layer_event_payload
from octoprint_layercapture.analysis.gcode_file import GcodeFile
from octoprint_layercapture.analysis.records import (
    PROCESS_CODES,
    LayerContext,
    LayerSpans,
    PrintRecords,
    ProcessState,
    StopObservation,
    complete_metadata,
    describe_camera,
    filepos,
    printer_profile_record,
    temperatures_record,
)
from octoprint_layercapture.cameras.fake import FakeCamera
from octoprint_layercapture.cameras.http import SnapshotUrlCamera
from octoprint_layercapture.cameras.sources import NoCamera, OctoPrintWebcam, WebcamInfo
from octoprint_layercapture.capture.layers import LayerTargets, LayerTracker
from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.settings import Bounds
from octoprint_layercapture.store.files import CaptureStore
from octoprint_layercapture.store.index import print_id
from octoprint_layercapture.store.records import ImageRecord, LayerMetadata
from octoprint_layercapture.store.writer import WrittenImage

SCHEMA = load_schema("metadata")
WHEN = datetime(2024, 1, 15, 10, 30, 0)
XYZ = {"x": 100.0, "y": 100.0, "z": 5.4}


def test_process_state_follows_factors_fan_and_tool() -> None:
    state = ProcessState()
    assert state.snapshot() == {
        "temperatures": {},
        "feed_rate_percent": 100.0,
        "flow_percent": 100.0,
        "fan_speed": None,
        "fan_percent": None,
        "tool": 0,
        "not_sent": ["feed_rate_percent", "flow_percent", "fan_speed", "tool"],
    }
    for gcode, line in [
        ("M220", "M220 S80"),
        ("M221", "M221 S95"),
        ("M106", "M106 S127.5"),
        ("M106", "M106 P1 S255"),  # another fan
        ("T", "T1"),
        ("M221", "M221 S90 T0"),  # tool 0's flow, tool 1 is active
    ]:
        assert gcode in PROCESS_CODES
        state.feed(gcode, line)
    snap = state.snapshot()
    assert snap["feed_rate_percent"] == 80.0
    assert snap["flow_percent"] == 100.0  # tool 1's flow was never set
    assert (snap["fan_speed"], snap["fan_percent"], snap["tool"]) == (127.5, 50.0, 1)
    assert snap["not_sent"] == ["flow_percent"]
    state.feed("T", "T0")
    state.feed("M107", "M107")
    state.feed("M220", "M220 B")
    state.feed("M220", "M220 S150")
    assert state.snapshot()["flow_percent"] == 90.0
    assert state.snapshot()["fan_speed"] == 0.0
    state.feed("M220", "M220 R")
    assert state.snapshot()["feed_rate_percent"] == 80.0
    state.feed("M106", "M106")  # no S: full speed
    state.feed("M220", "M220 Sbanana")  # ignored
    assert state.snapshot()["fan_speed"] == 255.0
    assert state.snapshot()["feed_rate_percent"] == 80.0


def test_filepos_and_layer_spans() -> None:
    assert filepos({"source:file", "filepos:1234", "fileline:7"}) == 1234
    assert filepos({"source:api"}) is None and filepos(None) is None
    spans = LayerSpans()
    spans.started(1, {"filepos:100"}, "state-1")
    assert spans.completed(1) is None  # the next layer has not started
    spans.started(2, {"filepos:250"}, "state-2")
    span = spans.completed(1)
    assert span is not None
    assert (span.layer, span.start_line_end, span.next_line_end, span.start_state) == (
        1,
        100,
        250,
        "state-1",
    )
    assert spans.completed(3) is None


def write_gcode(tmp_path: Path, lines: List[str], newline: str = "\n") -> Tuple[Path, List[int]]:
    """The file and the filepos (end offset) of each line, as OctoPrint tags them."""
    path = tmp_path / "print.gcode"
    data = b""
    ends = []
    for line in lines:
        data += (line + newline).encode()
        ends.append(len(data))
    path.write_bytes(data)
    return path, ends


def test_gcode_file_line_numbers_and_starts(tmp_path: Path) -> None:
    lines = [";header", "G90", "", "G1 X1 Y1 E1 ; é", "G1 X2 Y2 E2", "G1 X3 Y3 E3"]
    path, ends = write_gcode(tmp_path, lines, "\r\n")
    source = GcodeFile(path)
    digest = source.digest()
    assert digest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.size_bytes == path.stat().st_size
    for number, end in enumerate(ends, start=1):
        start = source.line_start(end)
        assert path.read_bytes()[start:end].decode().rstrip("\r\n") == lines[number - 1]
        assert source.line_number(start) == number
    # going back is allowed (it counts again from the start)
    assert source.line_number(source.line_start(ends[1])) == 2
    assert source.comments_before(ends[-1]) == (None, None)


def test_gcode_file_finds_the_comments_in_force(tmp_path: Path) -> None:
    path, ends = write_gcode(tmp_path, [";TYPE:Perimeter", ";WIDTH:0.45", "G1 X1", ";WIDTH:0.5"])
    assert GcodeFile(path).comments_before(ends[2]) == (0.45, "Perimeter")
    assert GcodeFile(path).comments_before(ends[3]) == (0.5, "Perimeter")


def test_describe_camera() -> None:
    assert describe_camera(FakeCamera(90, None, []))["kind"] == "fake"
    assert describe_camera(NoCamera("none"))["kind"] == "none"
    url = describe_camera(SnapshotUrlCamera("http://u:secret@cam/snap?pwd=x", 1.0, 0))
    assert url["kind"] == "snapshot_url" and "secret" not in json.dumps(url)
    info = WebcamInfo("classic", "Classic", True, True, True, False, True, lambda: [])
    webcam = describe_camera(OctoPrintWebcam(info, 1.0, 0))
    assert webcam["webcam"] == {
        "name": "classic",
        "display_name": "Classic",
        "flip_h": True,
        "flip_v": False,
        "rotate90": True,
    }
    assert "rotated" in webcam["name"]


def test_temperatures_and_profile_records() -> None:
    temps = temperatures_record(
        {
            "tool0": {"actual": 37.5, "target": 35, "offset": 0},
            "bed": {"actual": 21.3, "target": None, "offset": 0},
            "time": 123,
            "weird key": {"actual": 1},
        }
    )
    assert temps == {
        "tool0": {"actual": 37.5, "target": 35.0, "offset": 0.0},
        "bed": {"actual": 21.3, "target": None, "offset": 0.0},
    }
    profile = printer_profile_record(
        {
            "id": "_default",
            "name": "Default",
            "model": "Generic RepRap Printer",
            "volume": {"width": 200, "depth": 200, "height": 200, "origin": "lowerleft"},
        },
        Bounds(0, 0, 200, 200, 200),
    )
    assert profile["name"] == "Default" and profile["volume"]["width"] == 200.0
    assert profile["bounds"]["max_x"] == 200 and profile["bounds"]["radius"] is None
    assert printer_profile_record(None, None)["volume"] is None


LAYER_LINES = [
    "G90",
    "M83",
    "G1 Z0.2",
    ";TYPE:Perimeter",
    ";WIDTH:0.45",
    "G1 X10 Y10 E0.5",  # layer 1 starts (index 5)
    "G1 X20 Y10 E0.5",
    "G1 Z0.4",
    "G1 X20 Y20 E0.7",  # layer 2 starts (index 8)
    "G1 X10 Y20 E0.3",
    "G1 Z0.6",
    "G1 X10 Y10 E0.2",  # layer 3 starts (index 11)
]


def feed_like_the_hook(path_lines: List[str], ends: List[int]) -> LayerContext:
    """What the plugin's queuing hook and session do with these lines (capturing layer 2)."""
    tracker = LayerTracker(LayerTargets(every_n=2))
    spans = LayerSpans()
    trigger = None
    for line, end in zip(path_lines, ends):
        code = line.split(";")[0].strip()
        if not code:
            continue  # OctoPrint never hands comments to the hooks
        found = tracker.feed(code)
        if tracker.layer != spans.layer:
            spans.started(
                tracker.layer, {"source:file", f"filepos:{end}"}, tracker.layer_start_state
            )
        trigger = trigger or found
    assert trigger is not None and trigger.layer == 2
    return LayerContext(records(path_lines), spans.completed(2), ProcessState().snapshot())


def records(_lines: List[str], gcode: Optional[GcodeFile] = None) -> PrintRecords:
    return PrintRecords(
        gcode_path=None if gcode is None else gcode.path,
        gcode_storage_path="folder/print.gcode",
        firmware_family=None,
        printer_profile=printer_profile_record({"name": "Default"}, None),
        read_temperatures=lambda: {"tool0": {"actual": 200.0, "target": 200.0}},
        gcode=gcode,
    )


def layer_metadata(*others: str) -> LayerMetadata:
    """Two positions of camera "main", and of each camera in ``others``."""
    images = [
        ImageRecord(path="layer_0002_pos_00_z_0_40_20240115_103000.jpg", position=XYZ, index=0),
        ImageRecord(path="layer_0002_pos_01_z_0_40_20240115_103000.jpg", position=XYZ, index=1),
    ]
    for name in others:
        images += [
            ImageRecord(
                path=f"layer_0002_pos_0{i}_cam_{name}_z_0_40_20240115_103000.jpg",
                position=XYZ,
                index=i,
                camera_name=name,
            )
            for i in (0, 1)
        ]
    settings = {"grid_spacing": 20.0, "grid_center": {"x": 100.0, "y": 100.0}, "grid_size": 3}
    meta = LayerMetadata(2, 0.4, WHEN.isoformat(), "print.gcode", None, images, settings)
    meta.cameras = [
        {"name": name, "mounting": "fixed", "camera_info": None} for name in ("main", *others)
    ]
    return meta


def test_complete_metadata_end_to_end(tmp_path: Path) -> None:
    path, ends = write_gcode(tmp_path, LAYER_LINES)
    context = feed_like_the_hook(LAYER_LINES, ends)
    context = LayerContext(records(LAYER_LINES, GcodeFile(path)), context.span, context.process)
    store = CaptureStore(tmp_path / "captures")
    meta = layer_metadata()
    observed = StopObservation(
        {"tool0": {"actual": 200.0, "target": 200.0, "offset": 0.0}},
        {"main": describe_camera(FakeCamera(90, None, []))},
    )
    written = {(0, "main"): WrittenImage("a" * 64, 640, 480, 0.0123456, (640, 480))}
    complete_metadata(meta, context, observed, written, store, WHEN)
    data = meta.to_dict()
    jsonschema.validate(data, SCHEMA)
    assert data["schema_version"] == 3
    (main,) = data["cameras"]
    assert main == {"name": "main", "mounting": "fixed", "camera_info": data["camera_info"]}
    gcode = data["gcode"]
    assert gcode["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (gcode["first_line"], gcode["last_line"]) == (9, 11)  # 1-based: lines 9..11
    first, end = gcode["byte_range"]
    assert path.read_bytes()[first:end].decode().splitlines() == LAYER_LINES[8:11]
    assert gcode["error"] is None
    assert data["process"]["temperatures"]["tool0"]["actual"] == 200.0
    assert data["camera_info"]["kind"] == "fake"
    assert data["camera_info"]["resolution"] == {"width": 640, "height": 480}
    image = data["images"][0]
    assert (image["sha256"], image["width"], image["camera_latency_s"]) == ("a" * 64, 640, 0.0123)
    assert data["images"][1]["sha256"] is None  # not written
    toolpath = data["toolpath"]
    assert toolpath["error"] is None and toolpath["moves"] == 2
    assert toolpath["extruded_e"] == pytest.approx(1.0)
    assert toolpath["widths"] == [0.45]  # stated in layer 1, still in force
    folder = store.folder_for(2, WHEN)
    document = json.loads((folder / toolpath["path"]).read_text())
    jsonschema.validate(document, load_schema("toolpath"))
    assert document["polylines"][0]["xy"] == [20, 10, 20, 20, 10, 20]
    assert document["gcode"]["first_line"] == 9
    assert (folder / toolpath["svg"]).read_text().startswith("<svg")


def test_complete_metadata_of_several_cameras(tmp_path: Path) -> None:
    """Each image gets its own camera's facts; each camera its identity and resolution;
    camera_info stays the first camera's (what version 2 readers know)."""
    _path, ends = write_gcode(tmp_path, LAYER_LINES)
    context = feed_like_the_hook(LAYER_LINES, ends)
    meta = layer_metadata("nozzle")
    observed = StopObservation(
        {},
        {
            "main": describe_camera(FakeCamera(90, None, [])),
            "nozzle": describe_camera(SnapshotUrlCamera("http://u:pw@cam/snap", 1.0, 0)),
        },
    )
    written = {
        (0, "main"): WrittenImage("a" * 64, 640, 480, 0.01, (640, 480)),
        (0, "nozzle"): WrittenImage("b" * 64, 320, 240, 0.02, (320, 240)),
        (1, "nozzle"): WrittenImage("c" * 64, 320, 240, 0.03, (320, 240)),
    }
    complete_metadata(meta, context, observed, written, CaptureStore(tmp_path), WHEN)
    data = meta.to_dict()
    jsonschema.validate(data, SCHEMA)
    facts = [(i["camera_name"], i["index"], i["sha256"]) for i in data["images"]]
    assert facts == [
        ("main", 0, "a" * 64),
        ("main", 1, None),
        ("nozzle", 0, "b" * 64),
        ("nozzle", 1, "c" * 64),
    ]
    main, nozzle = data["cameras"]
    assert main["camera_info"]["kind"] == "fake"
    assert main["camera_info"]["resolution"] == {"width": 640, "height": 480}
    assert nozzle["camera_info"]["kind"] == "snapshot_url"
    assert nozzle["camera_info"]["url"] == "http://***@cam/snap"
    assert nozzle["camera_info"]["resolution"] == {"width": 320, "height": 240}
    assert data["camera_info"] == main["camera_info"]


def test_complete_metadata_without_the_file(tmp_path: Path) -> None:
    _path, ends = write_gcode(tmp_path, LAYER_LINES)
    context = feed_like_the_hook(LAYER_LINES, ends)
    meta = layer_metadata()
    complete_metadata(meta, context, None, {}, CaptureStore(tmp_path), WHEN)
    data = meta.to_dict()
    jsonschema.validate(data, SCHEMA)
    assert data["gcode"]["sha256"] is None and "not on this OctoPrint" in data["gcode"]["error"]
    assert data["toolpath"]["path"] is None and data["toolpath"]["error"]
    # a file removed since the print started: recorded, never raised
    gone = GcodeFile(tmp_path / "gone.gcode")
    context = LayerContext(records(LAYER_LINES, gone), context.span, context.process)
    meta = layer_metadata()
    complete_metadata(meta, context, None, {}, CaptureStore(tmp_path), WHEN)
    assert "could not read the printed file" in meta.to_dict()["gcode"]["error"]


def test_event_payload(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    metadata_file = uploads / "layercapture" / "2024-01-15" / "layer_0002_metadata_x.json"
    meta = layer_metadata("nozzle").to_dict()
    meta["toolpath"] = {"path": "t.json", "svg": "t.svg"}
    payload = layer_event_payload(metadata_file, meta, uploads, "abc")
    assert payload["metadata"] == "layercapture/2024-01-15/layer_0002_metadata_x.json"
    assert payload["images"] == [
        "layercapture/2024-01-15/layer_0002_pos_00_z_0_40_20240115_103000.jpg",
        "layercapture/2024-01-15/layer_0002_pos_01_z_0_40_20240115_103000.jpg",
        "layercapture/2024-01-15/layer_0002_pos_00_cam_nozzle_z_0_40_20240115_103000.jpg",
        "layercapture/2024-01-15/layer_0002_pos_01_cam_nozzle_z_0_40_20240115_103000.jpg",
    ]
    assert payload["toolpath"] == "layercapture/2024-01-15/t.json"
    assert (payload["layer"], payload["print_id"], payload["image_count"]) == (2, "abc", 4)
    assert payload["cameras"] == ["main", "nozzle"]
    assert str(tmp_path) not in json.dumps(payload)


def test_the_layer_event_is_read_back_from_the_metadata_file_written(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    store = CaptureStore(uploads / "layercapture")
    meta = layer_metadata()
    meta.print_start_time = "2024-01-15T10:00:00"
    path = store.save_metadata(meta, WHEN)
    payload = layer_event(path, uploads)
    assert payload is not None
    assert payload["print_id"] == print_id("print.gcode", "2024-01-15T10:00:00", "")
    assert payload["metadata"] == f"layercapture/2024-01-15/{path.name}"
    assert payload["image_count"] == 2 and payload["toolpath"] is None
    path.write_text("[]")  # no JSON object: no event, a warning
    assert layer_event(path, uploads) is None
    assert layer_event(tmp_path / "gone.json", uploads) is None


def test_with_markers_a_layer_spans_from_its_marker_to_the_next(tmp_path: Path) -> None:
    lines = [
        "G90",
        "M83",
        "@LAYERCAPTURE 0 0.2",  # layer 1 starts here (index 2)
        "G1 Z0.2",
        "G1 X10 Y10 E0.5",
        "@LAYERCAPTURE 1 0.4",  # layer 2 (index 5)
        "G1 Z0.4",
        "G1 X20 Y10 E0.5",
        "@LAYERCAPTURE 2 0.6",  # layer 3 (index 8): layer 2 is complete
        "G1 Z0.6",
    ]
    path, ends = write_gcode(tmp_path, lines)
    tracker = LayerTracker(LayerTargets(every_n=2))
    spans = LayerSpans()
    trigger = None
    for line, end in zip(lines, ends):
        tags = {"source:file", f"filepos:{end}"}
        if line.startswith("@"):  # the at-command hook
            found = tracker.feed_marker(line.split(None, 1)[1])
        else:
            found = tracker.feed(line)
        if tracker.layer != spans.layer:
            spans.started(tracker.layer, tags, tracker.layer_start_state)
        trigger = trigger or found
    assert trigger is not None and (trigger.layer, trigger.source) == (2, "marker")
    context = LayerContext(records(lines, GcodeFile(path)), spans.completed(2), {})
    meta = layer_metadata()
    complete_metadata(meta, context, None, {}, CaptureStore(tmp_path / "c"), WHEN)
    gcode = meta.to_dict()["gcode"]
    assert (gcode["first_line"], gcode["last_line"]) == (6, 8)  # the marker to before the next
    assert meta.toolpath is not None and meta.toolpath["extruded_e"] == pytest.approx(0.5)
