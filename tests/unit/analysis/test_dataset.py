"""The dataset export: an ImageFolder zip that the real ``datasets`` library loads."""

from __future__ import annotations

import io
import json
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import jsonschema
import pytest
from PIL import Image

from octoprint_layercapture.analysis.dataset import COLUMNS
from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.store.files import CaptureStore, write_atomic
from octoprint_layercapture.store.index import CaptureIndex
from octoprint_layercapture.store.names import toolpath_name
from octoprint_layercapture.store.records import ImageRecord, LayerMetadata
from octoprint_layercapture.web import downloads

# the loader never goes online (the workplace has no network, CI neither)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

START = datetime(2024, 1, 15, 10, 0, 0)
SETTINGS = {"grid_spacing": 20.0, "grid_center": {"x": 100.0, "y": 100.0}, "grid_size": 3}


def jpeg(colour: int, size: Tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (colour, 80, 160)).save(out, "JPEG")
    return out.getvalue()


def write_print(
    root: Path, layers: List[int], version: int = 3, cameras: Sequence[str] = ("main",)
) -> None:
    """A print as plugin version ``version`` wrote it; the cameras after the first one
    (version 3) take 16 x 12 pictures."""
    store = CaptureStore(root)
    for layer in layers:
        when = START.replace(minute=layer)
        images = []
        for number, camera in enumerate(cameras):
            for index in range(9):
                size = (32, 24) if number == 0 else (16, 12)
                data = jpeg(index * 20 + number, size)
                in_files = None if number == 0 else camera
                saved = store.save_image(
                    layer, index, layer * 0.2, when, data, False, camera=in_files
                )
                images.append(image_record(saved.path.name, layer, index, when, data, camera))
        meta = LayerMetadata(
            layer, layer * 0.2, when.isoformat(), "box.gcode", START.isoformat(), images, SETTINGS
        )
        meta.plugin_version = "0.1.0"
        if version >= 2:
            folder = store.folder_for(layer, when)
            names = {"path": toolpath_name(layer, when), "svg": toolpath_name(layer, when, True)}
            write_atomic(folder / names["path"], b'{"polylines": []}\n')
            write_atomic(folder / names["svg"], b"<svg/>\n")
            meta.toolpath = {**names, "extruded_e": 1.25, "path_length": 40.0, "moves": 4}
            meta.gcode = {"path": "box.gcode", "sha256": "cd" * 32, "size_bytes": 1234}
            meta.gcode.update(first_line=10 * layer, last_line=10 * layer + 9)
            meta.process = {
                "temperatures": {
                    "tool0": {"actual": 35.0, "target": 35.0},
                    "bed": {"actual": 23.4, "target": 0.0},
                },
                "feed_rate_percent": 100.0,
                "flow_percent": 97.0,
                "fan_speed": None,  # never set in this print: the column is left out
                "fan_percent": None,
                "tool": 0,
            }
            meta.printer_profile = {"name": "Default", "bounds": {"min_x": 0.0, "max_x": 200.0}}
            infos = [
                {
                    "kind": "fake" if number == 0 else "snapshot_url",
                    "name": "fake camera" if number == 0 else f"snapshot URL {camera}",
                    "resolution": {"width": 32, "height": 24}
                    if number == 0
                    else {"width": 16, "height": 12},
                }
                for number, camera in enumerate(cameras)
            ]
            meta.camera_info = infos[0]
            meta.cameras = [
                {"name": camera, "mounting": "fixed", "camera_info": info}
                for camera, info in zip(cameras, infos)
            ]
        path = store.save_metadata(meta, when)
        if version < 3:  # as versions 1 and 2 wrote it: one camera, not named
            data = json.loads(path.read_text())
            data["schema_version"] = 2
            del data["cameras"]
            for image in data["images"]:
                del image["camera_name"]
            for failure in data["failures"]:
                del failure["camera"]
            path.write_text(json.dumps(data))
        if version == 1:  # as version 1 wrote it: none of the version 2 keys
            data = json.loads(path.read_text())
            for key in ("schema_version", "gcode", "process", "printer_profile", "camera_info"):
                del data[key]
            del data["toolpath"]
            for image in data["images"]:
                for key in ("sha256", "width", "height", "camera_latency_s"):
                    del image[key]
            path.write_text(json.dumps(data))


def image_record(
    name: str, layer: int, index: int, when: datetime, data: bytes, camera: str
) -> ImageRecord:
    row, col = divmod(index, 3)
    size = Image.open(io.BytesIO(data)).size
    return ImageRecord(
        path=name,
        position={"x": 80.0 + 20 * col, "y": 80.0 + 20 * row, "z": layer * 0.2 + 5},
        index=index,
        row=row,
        col=col,
        measured={"x": 80.0 + 20 * col, "y": 80.0 + 20 * row, "z": 5.6, "e": 1.5},
        captured_at=when.isoformat(timespec="milliseconds"),
        duration_s=0.1,
        camera="fake camera",
        size_bytes=len(data),
        sha256="ab" * 32,
        width=size[0],
        height=size[1],
        camera_latency_s=0.02,
        camera_name=camera,
    )


def export(root: Path, folder: str = "export") -> Dict[str, bytes]:
    index = CaptureIndex(root)
    (summary,) = index.prints().items
    body = downloads.dataset_body(
        index, summary["id"], folder, "9.9.9", datetime(2024, 2, 1, 12, 0)
    )
    assert body is not None and body.missing == 0
    data = b""
    while True:
        block = body.read(64 * 1024)
        if not block:
            break
        data += block
    assert len(data) == body.size  # the size announced before the first byte
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_zip_has_the_imagefolder_layout(tmp_path: Path) -> None:
    write_print(tmp_path / "captures", [3, 6])
    files = export(tmp_path / "captures")
    names = sorted(files)
    assert "export/metadata.jsonl" in names and "export/README.md" in names
    images = [n for n in names if n.startswith("export/images/") and n.endswith(".jpg")]
    assert len(images) == 18
    assert len([n for n in names if n.startswith("export/toolpaths/")]) == 4
    assert len([n for n in names if n.startswith("export/layers/")]) == 2
    rows = [json.loads(line) for line in files["export/metadata.jsonl"].splitlines()]
    assert sorted("export/" + row["file_name"] for row in rows) == images
    row = rows[0]
    assert (row["layer"], row["index"], row["gcode_sha256"]) == (3, 0, "cd" * 32)
    assert row["z_height"] == pytest.approx(0.6) and row["captured_at"] == "2024-01-15T10:03:00"
    assert row["temperature_bed_actual"] == 23.4 and row["temperature_tool0_target"] == 35.0
    assert row["toolpath_file"].startswith("toolpaths/") and row["metadata_file"].startswith(
        "layers/"
    )
    assert "export/" + row["toolpath_file"] in files
    assert "fan_speed" not in row  # no value anywhere in this print
    manifest = json.loads(files["export/dataset.json"])
    jsonschema.validate(manifest, load_schema("manifest"))
    assert manifest["gcode"]["sha256"] == "cd" * 32 and manifest["plugin_version"] == "9.9.9"
    assert manifest["images"] == 18 and manifest["layers"] == 2
    assert "fan_speed" in manifest["empty_columns"]
    assert [c["name"] for c in manifest["columns"]] == list(row)
    readme = files["export/README.md"].decode()
    for column in manifest["columns"]:
        assert f"`{column['name']}`" in readme


def test_the_real_datasets_library_loads_it_typed(tmp_path: Path) -> None:
    import datasets  # a test dependency (pyproject's test extra): missing is a failure

    write_print(tmp_path / "captures", [3, 6])
    target = tmp_path / "unzipped"
    for name, data in export(tmp_path / "captures", "ds").items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(target / "ds"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert loaded.num_rows == 18
    features = loaded.features
    manifest = json.loads((target / "ds" / "dataset.json").read_text())
    expected = {"string": "string", "int": "int64", "float": "float64", "timestamp": "timestamp[s]"}
    for column in manifest["columns"][1:]:
        assert features[column["name"]].dtype == expected[column["type"]], column
    assert type(features["image"]).__name__ == "Image"
    first = loaded[0]
    assert first["image"].size == (32, 24) and first["layer"] in (3, 6)


def test_every_camera_s_images_are_rows_with_their_camera(tmp_path: Path) -> None:
    """Three cameras: one row per camera and position, each with its camera's name and
    identity; the loader reads the camera column."""
    import datasets

    write_print(tmp_path / "captures", [3], cameras=("main", "nozzle", "side"))
    files = export(tmp_path / "captures", "ds")
    rows = [json.loads(line) for line in files["ds/metadata.jsonl"].splitlines()]
    assert len(rows) == 27
    by_camera: Dict[str, List[dict]] = {}
    for row in rows:
        by_camera.setdefault(row["camera"], []).append(row)
    assert sorted(by_camera) == ["main", "nozzle", "side"]
    for name, camera_rows in by_camera.items():
        assert sorted(r["index"] for r in camera_rows) == list(range(9))
        for row in camera_rows:
            assert ("_cam_" in row["file_name"]) == (name != "main")
            stored = files["ds/" + row["file_name"]]
            assert Image.open(io.BytesIO(stored)).size == (row["width"], row["height"])
            expected = (32, 24, "fake") if name == "main" else (16, 12, "snapshot_url")
            assert (row["camera_width"], row["camera_height"], row["camera_kind"]) == expected
    target = tmp_path / "unzipped"
    for name, data in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    loaded = datasets.load_dataset(
        "imagefolder", data_dir=str(target / "ds"), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert loaded.features["camera"].dtype == "string"
    assert sorted(set(loaded["camera"])) == ["main", "nozzle", "side"]


def test_a_version_2_print_has_no_camera_column(tmp_path: Path) -> None:
    write_print(tmp_path / "captures", [2], version=2)
    files = export(tmp_path / "captures")
    rows = [json.loads(line) for line in files["export/metadata.jsonl"].splitlines()]
    assert len(rows) == 9 and "camera" not in rows[0]
    assert rows[0]["camera_kind"] == "fake" and rows[0]["camera_width"] == 32
    manifest = json.loads(files["export/dataset.json"])
    assert manifest["metadata_schema_version"] == 2 and "camera" in manifest["empty_columns"]


def test_a_version_1_print_exports_with_the_columns_it_has(tmp_path: Path) -> None:
    write_print(tmp_path / "captures", [2], version=1)
    files = export(tmp_path / "captures")
    rows = [json.loads(line) for line in files["export/metadata.jsonl"].splitlines()]
    assert len(rows) == 9 and "gcode_sha256" not in rows[0] and rows[0]["position_x"] == 80.0
    manifest = json.loads(files["export/dataset.json"])
    jsonschema.validate(manifest, load_schema("manifest"))
    assert manifest["metadata_schema_version"] == 1
    assert "gcode_sha256" in manifest["empty_columns"] and "sha256" in manifest["empty_columns"]


def test_every_column_is_documented() -> None:
    assert len({c.name for c in COLUMNS}) == len(COLUMNS)
    docs = (Path(__file__).parents[3] / "docs" / "metadata.md").read_text(encoding="utf-8")
    for column in COLUMNS:
        assert f"`{column.name}`" in docs, column.name
    assert "`temperature_<heater>_actual`" in docs
