"""Captures as research data (issue 16) on a real OctoPrint with its virtual printer.

One print of tests/fixtures/prusa_tiny.gcode (7 layers, every 3rd captured: layers 3 and 6,
3x3 grid, fake camera) with an ``M220 S120`` written into the file and an ``M221 S97`` sent
from the terminal before it; the hotend heated to its 35 °C target, the bed left off at the
virtual printer's ambient 23.4 °C (so actual and target differ). Then every version 2 record of the
metadata is checked against the file and the printer, the toolpath against an independent
reading of the G-code, and the custom event per layer against the push API.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import jsonschema
import pytest
from capture_checks import (
    METADATA_RE,
    apply_settings,
    capture_files,
    code_of,
    parse,
    wait_for_captured_layers,
)
from expected_layers import Analysis, analyse
from harness import Message, OctoPrintServer
from PIL import Image

from octoprint_layercapture.camera_settings import camera_entry
from octoprint_layercapture.schemas import load_schema

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "prusa_tiny.gcode"
LAYERS = [3, 6]
EVENT = "plugin_layercapture_layer_captured"
HOTEND_TARGET, AMBIENT = 35.0, 23.4
SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "capture_every_n_layers": 3,
    "capture_z_heights": [],
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
    "stop_mode": "pause",
    "capture_folder": "layercapture",
}


@pytest.fixture(scope="module")
def octoprint_server_options() -> Dict[str, Any]:
    return {"virtual_printer": {"ambientTemperature": AMBIENT}}


@dataclass
class Run:
    gcode: Path  # the printed file as uploaded
    lines: List[str]
    analysis: Analysis
    metadata: List[Tuple[Path, Dict[str, Any]]]  # by layer
    events: List[Message]
    history: List[Dict[str, Any]]  # OctoPrint's temperature history (what the printer reported)
    server: OctoPrintServer
    mark: int  # the push listener's index when the print started


def wait_for_temperatures(server: OctoPrintServer, timeout: float = 30.0) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        temps = server.get_json("/api/printer").get("temperature") or {}
        bed, tool = temps.get("bed") or {}, temps.get("tool0") or {}
        if bed.get("actual") == AMBIENT and tool.get("actual") == HOTEND_TARGET:
            return dict(temps)
        assert time.monotonic() < deadline, f"the virtual printer did not settle: {temps}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def run(octoprint_server: OctoPrintServer, tmp_path_factory: pytest.TempPathFactory) -> Run:
    server = octoprint_server
    apply_settings(server, SETTINGS)
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if code_of(line) == "G90")
    lines.insert(at + 1, "M220 S120 ; feed rate factor written in the file")
    gcode = tmp_path_factory.mktemp("gcode") / "research_tiny.gcode"
    gcode.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for path, body in (
        ("/api/printer/tool", {"command": "target", "targets": {"tool0": HOTEND_TARGET}}),
        ("/api/printer/command", {"commands": ["M221 S97"]}),  # the flow from the terminal
    ):
        response = server.api("POST", path, json=body)
        assert response.status_code == 204, (path, response.text)
    wait_for_temperatures(server)
    known = capture_files(server)
    mark = server.mark()
    server.start_print(gcode)
    server.wait_print_done(timeout=90)
    wait_for_captured_layers(server, len(LAYERS), since=mark, timeout=15)
    # the custom event, as any push API subscriber with the Status permission receives it
    events = server.events.wait_for_events(EVENT, len(LAYERS), timeout=15, since=mark)
    files = capture_files(server) - known
    metadata = sorted(
        (
            (p, json.loads(p.read_text(encoding="utf-8")))
            for p in files
            if METADATA_RE.match(p.name)
        ),
        key=lambda item: int(item[1]["layer"]),
    )
    return Run(
        gcode,
        lines,
        analyse(gcode),
        metadata,
        events,
        list(server.get_json("/api/printer?history=true&limit=300")["temperature"]["history"]),
        server,
        mark,
    )


def extrusions(lines: List[str], first: int, end: int) -> Tuple[float, List[int]]:
    """Independent reading of the file (absolute E with G92 resets, as prusa_tiny is): the
    E pushed by the moves with X/Y of lines ``[first, end)`` (0-based) and their indexes.
    The E position before ``first`` comes from reading the file from its start."""
    e = 0.0
    total = 0.0
    found = []
    for index, line in enumerate(lines[:end]):
        command, words = parse(line)
        if command == "G92" and words.get("E") is not None:
            e = float(words["E"] or 0.0)
        elif command in ("G0", "G1") and words.get("E") is not None:
            new = float(words["E"] or 0.0)
            if index >= first and new > e and ("X" in words or "Y" in words):
                total += new - e
                found.append(index)
            e = new
    return total, found


def last_fan(lines: List[str], before: int) -> Optional[float]:
    fan = None
    for line in lines[:before]:
        command, words = parse(line)
        if command == "M106":
            fan = words.get("S") if words.get("S") is not None else 255.0
        elif command == "M107":
            fan = 0.0
    return fan


def test_captured_layers_carry_schema_version_3(run: Run) -> None:
    validator = jsonschema.Draft202012Validator(load_schema("metadata"))
    assert [meta["layer"] for _path, meta in run.metadata] == LAYERS
    for path, meta in run.metadata:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(meta)]
        assert not errors, f"{path.name}:\n" + "\n".join(errors)
        assert meta["schema_version"] == 3 and len(meta["images"]) == 9
        # version 3: one camera, the settings' "main", with its identity
        assert [(c["name"], c["mounting"]) for c in meta["cameras"]] == [("main", "fixed")]
        assert meta["cameras"][0]["camera_info"] == meta["camera_info"]
        assert {image["camera_name"] for image in meta["images"]} == {"main"}


def test_the_gcode_record_names_the_printed_file_and_the_layers_lines(run: Run) -> None:
    data = run.gcode.read_bytes()
    uploaded = run.server.uploads_dir / run.gcode.name
    assert uploaded.read_bytes() == data  # what OctoPrint printed is the file we sent
    for _path, meta in run.metadata:
        gcode, layer = meta["gcode"], meta["layer"]
        assert gcode["error"] is None, gcode
        assert gcode["path"] == run.gcode.name
        assert gcode["sha256"] == hashlib.sha256(data).hexdigest()
        assert gcode["size_bytes"] == len(data)
        this, following = run.analysis.layers[layer - 1], run.analysis.layers[layer]
        # 1-based line numbers: from the layer's first extrusion to the line before the
        # next layer's first extrusion, so every extrusion of the layer lies inside
        assert gcode["first_line"] == this.first_extrusion_line + 1, (layer, gcode)
        assert gcode["last_line"] == following.first_extrusion_line, (layer, gcode)
        assert this.last_extrusion_line + 1 <= gcode["last_line"]
        first, end = gcode["byte_range"]
        text = data[first:end].decode("utf-8").splitlines()
        assert text == run.lines[this.first_extrusion_line : following.first_extrusion_line]


def test_the_toolpath_is_the_layers_extrusion(run: Run) -> None:
    validator = jsonschema.Draft202012Validator(load_schema("toolpath"))
    widths_in_file = {
        float(line.split(":", 1)[1]) for line in run.lines if line.startswith(";WIDTH:")
    }
    for path, meta in run.metadata:
        layer, summary = meta["layer"], meta["toolpath"]
        assert summary["error"] is None, summary
        document = json.loads((path.parent / summary["path"]).read_text(encoding="utf-8"))
        assert not list(validator.iter_errors(document))
        this, following = run.analysis.layers[layer - 1], run.analysis.layers[layer]
        expected_e, moves = extrusions(
            run.lines, this.first_extrusion_line, following.first_extrusion_line
        )
        assert expected_e > 1.0
        assert document["extruded_e"] == pytest.approx(expected_e, rel=0.01), layer
        assert sum(p["e"] for p in document["polylines"]) == pytest.approx(expected_e, rel=0.01)
        assert document["moves"] == len(moves) == summary["moves"]
        assert summary["extruded_e"] == document["extruded_e"]
        for polyline in document["polylines"]:
            assert polyline["z"] == pytest.approx(this.z)
            assert polyline["width"] in widths_in_file, polyline["width"]
            xs, ys = polyline["xy"][0::2], polyline["xy"][1::2]
            assert all(96 <= v <= 104 for v in xs + ys), "the 6 mm box around X/Y 100"
        svg = (path.parent / summary["svg"]).read_text(encoding="utf-8")
        assert svg.startswith("<svg") and svg.count("<polyline") == len(document["polylines"])


def test_process_state_and_temperatures_at_the_stop(run: Run) -> None:
    for _path, meta in run.metadata:
        process, layer = meta["process"], meta["layer"]
        temps = process["temperatures"]
        # what the virtual printer reported around the stop (OctoPrint's history, 2 s steps)
        stop = datetime.fromisoformat(meta["timestamp"]).timestamp()
        near = [h for h in run.history if abs(h["time"] - stop) <= 3.0]
        assert near, f"no temperature report within 3 s of {meta['timestamp']}"
        for heater in ("tool0", "bed"):
            reported = {(h[heater]["actual"], h[heater]["target"]) for h in near}
            assert (temps[heater]["actual"], temps[heater]["target"]) in reported, (heater, near)
        assert (temps["tool0"]["actual"], temps["tool0"]["target"]) == (35.0, 35.0)
        assert (temps["bed"]["actual"], temps["bed"]["target"]) == (23.4, 0.0)
        assert process["feed_rate_percent"] == 120.0  # the file's M220
        assert process["flow_percent"] == 97.0  # the terminal's M221
        following = run.analysis.layers[layer]
        fan = last_fan(run.lines, following.first_extrusion_line)
        assert fan is not None and process["fan_speed"] == pytest.approx(fan), layer
        assert process["fan_percent"] == pytest.approx(fan / 255 * 100, abs=0.01)
        assert process["tool"] == 0 and process["not_sent"] == ["tool"]


def test_profile_camera_and_image_records(run: Run) -> None:
    for path, meta in run.metadata:
        profile = meta["printer_profile"]
        assert profile["name"] == "Default" and profile["id"] == "_default"
        assert profile["bounds"]["max_x"] == 200.0 and profile["bounds"]["max_y"] == 200.0
        camera = meta["camera_info"]
        assert camera["kind"] == "fake" and camera["name"] == "fake camera"
        for image in meta["images"]:
            stored = (path.parent / image["path"]).read_bytes()
            assert image["sha256"] == hashlib.sha256(stored).hexdigest()
            assert image["size_bytes"] == len(stored)
            with Image.open(path.parent / image["path"]) as picture:
                assert (image["width"], image["height"]) == picture.size
                assert camera["resolution"] == {"width": picture.width, "height": picture.height}
            assert 0 < image["camera_latency_s"] <= image["duration_s"]
            assert len(image["captured_at"]) == len("2024-01-15T10:30:00.123")


def test_one_event_per_captured_layer_on_the_push_api(run: Run) -> None:
    assert [event.payload["layer"] for event in run.events] == LAYERS
    # exactly one per layer, also counting what came after the wait
    assert len(run.server.events.events(EVENT, since=run.mark)) == len(LAYERS)
    uploads = run.server.uploads_dir
    for event, (path, meta) in zip(run.events, run.metadata):
        payload = event.payload
        assert uploads / payload["metadata"] == path
        assert payload["images"] == [
            f"layercapture/{path.parent.name}/{i['path']}" for i in meta["images"]
        ]
        assert all((uploads / image).is_file() for image in payload["images"])
        assert (uploads / payload["toolpath"]).is_file()
        assert payload["gcode_file"] == run.gcode.name and payload["failures"] == 0
        assert str(uploads) not in json.dumps(payload)


def test_the_dataset_export_loads_with_the_datasets_library(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets  # the test extra's; never goes online for a local folder

    prints = run.server.get_json("/plugin/layercapture/prints")["prints"]
    (pid,) = [p["id"] for p in prints if p["gcode_file"] == run.gcode.name]
    response = run.server.api("GET", f"/plugin/layercapture/export/{pid}.zip")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/zip"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert "research_tiny-" in response.headers["Content-Disposition"]
    target = tmp_path / "dataset"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        (top,) = {name.split("/", 1)[0] for name in archive.namelist()}
        archive.extractall(target)
    folder = target / top
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(folder), split="train", cache_dir=str(tmp_path / "hf")
    )
    images = [image for _path, meta in run.metadata for image in meta["images"]]
    assert loaded.num_rows == len(images) == 18  # one row per image
    manifest = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    assert manifest["gcode"]["sha256"] == hashlib.sha256(run.gcode.read_bytes()).hexdigest()
    assert manifest["printer_profile"]["name"] == "Default" and manifest["images"] == 18
    dtypes = {"string": "string", "int": "int64", "float": "float64", "timestamp": "timestamp[s]"}
    for column in manifest["columns"][1:]:
        assert loaded.features[column["name"]].dtype == dtypes[column["type"]], column
    for wanted in ("gcode_sha256", "layer_first_line", "temperature_bed_actual", "sha256"):
        assert wanted in loaded.features, wanted
    by_hash = {row["sha256"]: row for row in loaded.remove_columns("image")}
    for _path, meta in run.metadata:
        for image in meta["images"]:
            row = by_hash[image["sha256"]]
            assert (row["layer"], row["index"]) == (meta["layer"], image["index"])
            assert row["layer_first_line"] == meta["gcode"]["first_line"]
            assert row["temperature_bed_actual"] == 23.4 and row["flow_percent"] == 97.0
            assert (folder / row["toolpath_file"]).is_file()
    # a bad id changes nothing and says why
    for bad in ("0123456789abcdef", "..%2F..%2Fetc", "nope"):
        answer = run.server.api("GET", f"/plugin/layercapture/export/{bad}.zip")
        assert answer.status_code == 404 and answer.json()["error"] == "no such print", bad
    denied = run.server.api_as("viewer", "GET", f"/plugin/layercapture/export/{pid}.zip")
    assert denied.status_code == 403
