"""The gallery index knows a layer's toolpath files (schema version 2) and still reads
version 1 metadata files."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from octoprint_layercapture.store.files import CaptureStore, write_atomic
from octoprint_layercapture.store.index import CaptureIndex
from octoprint_layercapture.store.names import image_name, toolpath_name
from octoprint_layercapture.store.records import ImageRecord, LayerMetadata

WHEN = datetime(2024, 1, 15, 10, 30, 0)
SETTINGS = {"grid_spacing": 20.0, "grid_center": {"x": 100.0, "y": 100.0}, "grid_size": 1}


def write_layer(root: Path, layer: int, toolpath: bool) -> Path:
    store = CaptureStore(root)
    when = WHEN.replace(minute=layer)
    saved = store.save_image(layer, 0, 0.2 * layer, when, b"\xff\xd8\xff jpeg \xff\xd9", False)
    image = ImageRecord(path=saved.path.name, position={"x": 1, "y": 1, "z": 1}, index=0)
    meta = LayerMetadata(layer, 0.2 * layer, when.isoformat(), "a.gcode", "x", [image], SETTINGS)
    if toolpath:
        folder = store.folder_for(layer, when)
        names = {"path": toolpath_name(layer, when), "svg": toolpath_name(layer, when, svg=True)}
        write_atomic(folder / names["path"], b"{}")
        write_atomic(folder / names["svg"], b"<svg/>")
        meta.toolpath = {**names, "extruded_e": 1.0}
    path = store.save_metadata(meta, when)
    if not toolpath:  # as version 1 wrote it: no schema_version, none of its fields
        data = json.loads(path.read_text())
        for key in ("schema_version", "gcode", "process", "printer_profile", "camera_info"):
            del data[key]
        del data["toolpath"]
        path.write_text(json.dumps(data))
    return path


def test_toolpath_files_are_served_zipped_and_deleted(tmp_path: Path) -> None:
    write_layer(tmp_path, 3, toolpath=True)
    write_layer(tmp_path, 6, toolpath=False)  # an old file, read as before
    index = CaptureIndex(tmp_path)
    (summary,) = index.prints().items
    assert summary["layer_count"] == 2 and summary["image_count"] == 2
    new, old = index.layers(summary["id"]).items
    day = WHEN.strftime("%Y-%m-%d")
    assert new["toolpath"] == f"{day}/{toolpath_name(3, WHEN.replace(minute=3))}"
    assert new["toolpath_svg"].endswith(".svg")
    assert old["toolpath"] is None and old["toolpath_svg"] is None
    assert index.file_path(new["toolpath"]) == tmp_path / new["toolpath"]
    assert index.file_path(new["toolpath_svg"]) is not None
    files = [relative for relative, _ in index.print_files(summary["id"])]
    assert new["toolpath"] in files and new["toolpath_svg"] in files
    # a toolpath name the metadata lists but that is not ours is never served
    assert index.file_path(f"{day}/{image_name(3, 0, 0.6, WHEN)}.svg") is None
    result = index.delete_print(summary["id"])
    assert result is not None and result.failed == []
    assert not (tmp_path / new["toolpath"]).exists()
    assert not (tmp_path / new["toolpath_svg"]).exists()
