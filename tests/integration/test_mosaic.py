"""The toolhead mosaic (issue 19) on a real OctoPrint with its virtual printer.

Two prints of tests/fixtures/prusa_mosaic.gcode (a flat 36 x 36 mm box, 4 layers of 0.3 mm)
with the fake toolhead camera (16 px/mm, turned 2 degrees, offset from the nozzle, sensor
noise and up to 0.8 mm of placement noise per shot):

* a 3x3 grid 15 mm apart capturing layers 1 and 3, an unprinted 5 x 5 mm square in layer 3
  (the last layer, 4, is never captured: no layer follows it);
* a 5x5 grid 9 mm apart capturing layer 2.

Each captured layer gets a mosaic with its overlays, served, zipped and deleted with the
print; the mosaic is compared with a direct drawing of the same bed area from the same
G-code (placement error per shot, measured by phase correlation), the departure map must
find the square within 1 mm and nothing on the defect-free layers, and stitching must have
started only after the layer's sequence gave the job back.
"""

from __future__ import annotations

import io
import json
import statistics
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Tuple

import jsonschema
import numpy as np
import pytest
from capture_checks import METADATA_RE, apply_settings, capture_files, wait_for_captured_layers
from harness import OctoPrintServer
from PIL import Image

from octoprint_layercapture.analysis.mosaic.registration import grey, phase_correlate
from octoprint_layercapture.analysis.toolpath import PathStart, read_toolpath
from octoprint_layercapture.camera_settings import camera_entry
from octoprint_layercapture.cameras.toolhead import (
    Defect,
    render_bed,
    scene_from_polylines,
)
from octoprint_layercapture.schemas import load_schema

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "prusa_mosaic.gcode"
BASE = "/plugin/layercapture"
DEFECT = {"x": 107.0, "y": 94.0, "size": 5.0}
MOUNTING = {
    "mode": "toolhead",
    "offset_x": 3.0,
    "offset_y": -2.0,
    "scale": 16.0,
    "rotation": 2.0,
    "mirrored": False,
    "image_width": 640,
    "image_height": 480,
}
FAKE = {
    "defect": "unprinted",
    "defect_x": DEFECT["x"],
    "defect_y": DEFECT["y"],
    "defect_size": DEFECT["size"],
    "defect_layers": [3],
    "placement_noise": 0.8,
    "pixel_noise": 3.0,
    "bed_texture": True,
    "true_mounting": None,
}
SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "z_offset": 5.0,
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
    "stop_mode": "hold",
    "capture_folder": "layercapture",
    "camera_mounting": MOUNTING,
    "fake_toolhead": FAKE,
    "mosaic_max_correction": 1.5,
    "departure_warning_score": 0.005,
}
GRIDS = {
    "3x3": {
        "grid_size": 3,
        "grid_spacing": 15.0,
        "capture_every_n_layers": 0,
        "capture_z_heights": [0.3, 0.9],
    },
    "5x5": {
        "grid_size": 5,
        "grid_spacing": 9.0,
        "capture_every_n_layers": 0,
        "capture_z_heights": [0.6],
    },
}
LAYERS = {"3x3": [1, 3], "5x5": [2]}


@dataclass
class Layer:
    path: Path
    meta: Dict[str, Any]


@dataclass
class Run:
    layers: Dict[Tuple[str, int], Layer]
    pushes: List[Dict[str, Any]]
    server: OctoPrintServer


def _print(server: OctoPrintServer, grid: str, tmp: Path) -> Tuple[List[Layer], List[Any]]:
    apply_settings(server, {**SETTINGS, **GRIDS[grid]})
    known = capture_files(server)
    gcode = tmp / f"mosaic_{grid}.gcode"
    gcode.write_bytes(FIXTURE.read_bytes())
    mark = server.mark()
    server.start_print(gcode)
    server.wait_print_done(timeout=120)
    count = len(LAYERS[grid])
    wait_for_captured_layers(server, count, since=mark, timeout=30)
    done = set()

    def stitched(message: Any) -> bool:
        data = (message.payload or {}) if message.kind == "plugin" else {}
        if data.get("type") == "mosaic" and data["mosaic"].get("state") == "done":
            done.add(data["mosaic"]["metadata"])
        return len(done) >= count

    server.events.wait_for(stitched, 60, since=mark, description=f"{count} mosaics")
    pushes = [
        m.payload["mosaic"]
        for m in server.events.plugin_messages("layercapture", since=mark)
        if (m.payload or {}).get("type") == "mosaic"
    ]
    found = [p for p in capture_files(server) - known if METADATA_RE.match(p.name)]
    layers = [Layer(p, json.loads(p.read_text(encoding="utf-8"))) for p in found]
    return sorted(layers, key=lambda layer: layer.meta["layer"]), pushes


@pytest.fixture(scope="module")
def run(octoprint_server: OctoPrintServer, tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("gcode")
    layers: Dict[Tuple[str, int], Layer] = {}
    pushes: List[Dict[str, Any]] = []
    for grid in GRIDS:
        found, pushed = _print(octoprint_server, grid, tmp)
        assert [layer.meta["layer"] for layer in found] == LAYERS[grid]
        layers.update({(grid, layer.meta["layer"]): layer for layer in found})
        pushes += pushed
    return Run(layers, pushes, octoprint_server)


def _scene(meta: Dict[str, Any]) -> Any:
    """What was printed up to this layer's end, read from the file independently."""
    end = meta["gcode"]["byte_range"][1]
    text = FIXTURE.read_bytes()[:end].decode("utf-8")
    path = read_toolpath(text.splitlines(), PathStart(None, None, None, None), None)
    defect = None
    if meta["layer"] in FAKE["defect_layers"]:
        defect = Defect("unprinted", DEFECT["x"], DEFECT["y"], DEFECT["size"])
    return scene_from_polylines([p.to_dict() for p in path.polylines], meta["z_height"], defect)


def _placement_errors(layer: Layer) -> List[float]:
    """Per shot: how far (px) the mosaic is from a direct drawing of the same bed area,
    around the middle of the shot's footprint."""
    mosaic = layer.meta["mosaic"]
    extent = mosaic["extent"]
    rect = (extent["min_x"], extent["min_y"], extent["max_x"], extent["max_y"])
    truth = grey(render_bed(_scene(layer.meta), rect, mosaic["px_per_mm"]))
    picture = grey(Image.open(layer.path.parent / mosaic["path"]))
    assert truth.shape == picture.shape
    errors = []
    for tile in mosaic["tiles"]:
        col = (tile["camera"]["x"] - rect[0]) * mosaic["px_per_mm"]
        row = (rect[3] - tile["camera"]["y"]) * mosaic["px_per_mm"]
        r0, c0 = int(row) - 100, int(col) - 140
        window = (slice(r0, r0 + 200), slice(c0, c0 + 280))
        shift = phase_correlate(truth[window], picture[window], max_shift=24)
        errors.append(float(np.hypot(shift.dx, shift.dy)))
    return errors


def test_every_captured_layer_has_a_mosaic_with_its_overlays(run: Run) -> None:
    schema = load_schema("metadata")
    for (grid, number), layer in run.layers.items():
        jsonschema.validate(layer.meta, schema)
        mosaic = layer.meta["mosaic"]
        assert mosaic["status"] == "done", (grid, number, mosaic.get("error"))
        assert len(mosaic["tiles"]) == len(layer.meta["images"]) == GRIDS[grid]["grid_size"] ** 2
        folder = layer.path.parent
        with Image.open(folder / mosaic["path"]) as picture:
            assert picture.format == "JPEG"
            assert picture.size == (mosaic["width"], mosaic["height"])
        with Image.open(folder / mosaic["toolpath_overlay"]) as overlay:
            assert overlay.mode == "RGBA" and overlay.size == (mosaic["width"], mosaic["height"])
            alpha = np.asarray(overlay)[:, :, 3]
        # the toolpath's lines sit where the box is: 82..118 mm on both axes
        extent, scale = mosaic["extent"], mosaic["px_per_mm"]
        rows, cols = np.nonzero(alpha)
        xs = extent["min_x"] + cols / scale
        ys = extent["max_y"] - rows / scale
        assert 81.5 < xs.min() < 83 and 117 < xs.max() < 118.5, (xs.min(), xs.max())
        assert 81.5 < ys.min() < 83 and 117 < ys.max() < 118.5, (ys.min(), ys.max())
        registration = mosaic["registration"]
        assert registration["pairs_used"] >= GRIDS[grid]["grid_size"] ** 2 - 1
        assert registration["toolpath_offset_mm"] is not None


def test_the_mosaic_matches_a_direct_drawing_of_the_bed(run: Run) -> None:
    for key, layer in run.layers.items():
        errors = _placement_errors(layer)
        assert statistics.median(errors) <= 1.0, (key, errors)
        assert max(errors) <= 3.0, (key, errors)
        # the placement noise was there, and registration took it out
        corrections = [
            np.hypot(t["correction_mm"]["x"], t["correction_mm"]["y"])
            for t in layer.meta["mosaic"]["tiles"]
        ]
        assert max(corrections) > 0.2, (key, corrections)
        assert not any(t["bounded"] for t in layer.meta["mosaic"]["tiles"])


def test_the_departure_map_finds_the_unprinted_square_and_nothing_else(run: Run) -> None:
    for (grid, number), layer in run.layers.items():
        departure = layer.meta["mosaic"]["departure"]
        assert departure["error"] is None and departure["toolpath_seen"] > 0.95
        if number not in FAKE["defect_layers"]:
            assert departure["regions"] == [] and departure["score"] == 0, (grid, number)
            assert departure["warning"] is False
            continue
        assert len(departure["regions"]) == 1, departure["regions"]
        region = departure["regions"][0]
        assert region["kind"] == "unprinted"
        miss = np.hypot(region["center"]["x"] - DEFECT["x"], region["center"]["y"] - DEFECT["y"])
        assert miss <= 1.0, region
        assert departure["warning"] is True and departure["score"] > 0
        with Image.open(layer.path.parent / layer.meta["mosaic"]["departure_overlay"]) as heat:
            assert heat.mode == "RGBA"
    warned = [p for p in run.pushes if p.get("state") == "done" and p.get("warning")]
    assert [p["layer"] for p in warned] == [3]


def test_stitching_starts_after_the_job_was_given_back(run: Run) -> None:
    for layer in run.layers.values():
        meta = layer.meta
        started = datetime.fromisoformat(meta["mosaic"]["started_at"])
        last_shot = max(datetime.fromisoformat(i["captured_at"]) for i in meta["images"])
        assert started > last_shot
        stitching = [p for p in run.pushes if p["metadata"].endswith(layer.path.name)]
        assert stitching[0]["state"] == "stitching" and stitching[-1]["state"] == "done"


def test_the_mosaic_files_are_served_zipped_and_deleted_with_the_print(run: Run) -> None:
    server = run.server
    layer = run.layers[("3x3", 3)]
    day = layer.path.parent.name
    names = [layer.meta["mosaic"][k] for k in ("path", "toolpath_overlay", "departure_overlay")]
    for name, kind in zip(names, ("image/jpeg", "image/png", "image/png")):
        response = server.api("GET", f"{BASE}/files/{day}/{name}")
        assert response.status_code == 200, name
        assert response.headers["Content-Type"].startswith(kind)
    prints = server.get_json(f"{BASE}/prints")["prints"]
    pid = next(p["id"] for p in prints if p["gcode_file"] == "mosaic_3x3.gcode")
    listed = server.get_json(f"{BASE}/prints/{pid}/layers")["layers"]
    last = next(item for item in listed if item["layer"] == 3)
    assert last["mosaic"] == f"{day}/{names[0]}"
    assert last["mosaic_info"]["warning"] is True
    zipped = server.api("GET", f"{BASE}/download/{pid}.zip")
    assert zipped.status_code == 200
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        inside = {Path(n).name for n in archive.namelist()}
    assert set(names) <= inside
    response = server.api("DELETE", f"{BASE}/prints/{pid}")
    assert response.status_code == 200, response.text
    assert not any((layer.path.parent / name).exists() for name in names)
    assert server.api("GET", f"{BASE}/files/{day}/{names[0]}").status_code == 404
