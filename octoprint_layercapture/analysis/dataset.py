"""A print's captures as a dataset: a zip in Hugging Face's *ImageFolder* layout.

::

    <name>/README.md        what every column and file means (made from COLUMNS)
    <name>/dataset.json     the manifest: schema version, G-code hash, printer profile,
                            plugin version, the print's settings, the columns and counts
    <name>/metadata.jsonl   one row per image: file_name + every per-image field, flat
    <name>/images/<day>/layer_..._pos_..jpg
    <name>/toolpaths/<day>/layer_..._toolpath_...json / .svg
    <name>/layers/<day>/layer_..._metadata_...json   (the layer files as written)

``datasets.load_dataset("imagefolder", data_dir="<name>")`` gives one row per image with
the columns of :data:`COLUMNS` (other files are not images and are left alone by it).

Streamed, never built in memory: the rows are made twice from the layers' metadata files,
once to learn the size of ``metadata.jsonl`` and which columns hold a value (a zip with a
Content-Length needs every size first), and again while the zip is sent. A column that
holds no value in any row of this print (a version 1 print has no hashes, a print without
fan commands no fan speed) is left out, so that every column the loader sees has a type;
``dataset.json`` lists the left-out ones. Pure module (stdlib + zipstream-ng).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from zipstream import ZipStream

DATASET_SCHEMA_VERSION = 1
METADATA_FILE = "metadata.jsonl"
IMAGES, TOOLPATHS, LAYERS = "images", "toolpaths", "layers"

Meta = Mapping[str, Any]
ReadMetadata = Callable[[str], Meta]  # relative path -> the layer's metadata


def _at(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


@dataclass(frozen=True)
class Row:
    meta: Meta
    image: Meta
    day: str
    files: Mapping[str, Optional[str]]  # "toolpath", "toolpath_svg", "metadata" in the zip
    print_id: str


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "string", "int", "float" or "timestamp" (how the loader types it)
    description: str
    value: Callable[[Row], Any]


def _layer(*keys: str) -> Callable[[Row], Any]:
    return lambda row: _at(row.meta, *keys)


def _image(*keys: str) -> Callable[[Row], Any]:
    return lambda row: _at(row.image, *keys)


def camera_info(meta: Meta, image: Meta) -> Any:
    """The ``camera_info`` of the camera that took ``image``: its entry of ``cameras``
    (metadata version 3), else the layer's one ``camera_info`` (versions 1 and 2 have one
    camera)."""
    name = image.get("camera_name")
    for entry in meta.get("cameras") or ():
        if isinstance(entry, Mapping) and name is not None and entry.get("name") == name:
            return entry.get("camera_info")
    return meta.get("camera_info")


def _camera(*keys: str) -> Callable[[Row], Any]:
    return lambda row: _at(camera_info(row.meta, row.image), *keys)


COLUMNS: Tuple[Column, ...] = (
    Column("print_id", "string", "the gallery's id of the print", lambda r: r.print_id),
    Column("gcode_file", "string", "name of the printed G-code file", _layer("gcode_file")),
    Column(
        "gcode_path", "string", "its path in OctoPrint's local storage", _layer("gcode", "path")
    ),
    Column("gcode_sha256", "string", "SHA-256 of the printed file", _layer("gcode", "sha256")),
    Column("gcode_size_bytes", "int", "its size in bytes", _layer("gcode", "size_bytes")),
    Column(
        "print_start_time",
        "timestamp",
        "when the print started (local time, whole seconds)",
        _layer("print_start_time"),
    ),
    Column(
        "layer",
        "int",
        "the captured layer (1-based: the k-th height the print extrudes at)",
        _layer("layer"),
    ),
    Column("z_height", "float", "the layer's height (mm)", _layer("z_height")),
    Column(
        "layer_first_line",
        "int",
        "first line of the layer in the file (1-based)",
        _layer("gcode", "first_line"),
    ),
    Column(
        "layer_last_line", "int", "last line of the layer in the file", _layer("gcode", "last_line")
    ),
    Column(
        "layer_timestamp",
        "timestamp",
        "when the layer's capture began (local time, whole seconds)",
        _layer("timestamp"),
    ),
    Column(
        "trigger_source",
        "string",
        "what found the layer: motion (the moves) or marker (@LAYERCAPTURE)",
        _layer("trigger", "source"),
    ),
    Column(
        "index",
        "int",
        "grid position (row by row from the front-left, the same on every layer)",
        _image("index"),
    ),
    Column("row", "int", "grid row from the front", _image("row")),
    Column("col", "int", "grid column from the left", _image("col")),
    Column("position_x", "float", "commanded head X at the picture (mm)", _image("position", "x")),
    Column("position_y", "float", "commanded head Y (mm)", _image("position", "y")),
    Column(
        "position_z",
        "float",
        "commanded head Z: layer height + z_offset (mm)",
        _image("position", "z"),
    ),
    Column(
        "measured_x",
        "float",
        "head X the printer reported (M114) before the picture (mm)",
        _image("measured", "x"),
    ),
    Column("measured_y", "float", "reported Y (mm)", _image("measured", "y")),
    Column("measured_z", "float", "reported Z (mm)", _image("measured", "z")),
    Column("measured_e", "float", "reported E (mm)", _image("measured", "e")),
    Column("stop_x", "float", "where the job stopped: X (mm)", _layer("stop_position", "x")),
    Column("stop_y", "float", "where the job stopped: Y (mm)", _layer("stop_position", "y")),
    Column("stop_z", "float", "where the job stopped: Z (mm)", _layer("stop_position", "z")),
    Column("stop_e", "float", "where the job stopped: E (mm)", _layer("stop_position", "e")),
    Column(
        "captured_at",
        "timestamp",
        "when the picture came (local time, whole seconds; to the ms in the layer file)",
        _image("captured_at"),
    ),
    Column(
        "camera_latency_s",
        "float",
        "seconds from asking the camera to having the picture",
        _image("camera_latency_s"),
    ),
    Column(
        "duration_s",
        "float",
        "seconds at this position: move, settle, picture",
        _image("duration_s"),
    ),
    Column("size_bytes", "int", "size of the image file", _image("size_bytes")),
    Column("sha256", "string", "SHA-256 of the image file", _image("sha256")),
    Column("width", "int", "image width (pixels)", _image("width")),
    Column("height", "int", "image height (pixels)", _image("height")),
    Column(
        "camera",
        "string",
        "the camera's name in the settings (one row per camera and position; null before "
        "the plugin could take several cameras)",
        _image("camera_name"),
    ),
    Column(
        "camera_kind",
        "string",
        "fake, webcam, snapshot_url or stream_url",
        _camera("kind"),
    ),
    Column(
        "camera_name",
        "string",
        "the camera as the plugin names it (URLs without credentials)",
        lambda r: _at(camera_info(r.meta, r.image), "name") or _at(r.image, "camera"),
    ),
    Column(
        "camera_width",
        "int",
        "width of the pictures the camera delivered (before flip/rotate)",
        _camera("resolution", "width"),
    ),
    Column("camera_height", "int", "their height", _camera("resolution", "height")),
    Column(
        "webcam_flip_h",
        "int",
        "OctoPrint webcam setting: flipped horizontally (1/0)",
        _camera("webcam", "flip_h"),
    ),
    Column(
        "webcam_flip_v",
        "int",
        "OctoPrint webcam setting: flipped vertically (1/0)",
        _camera("webcam", "flip_v"),
    ),
    Column(
        "webcam_rotate90",
        "int",
        "OctoPrint webcam setting: turned 90° counter-clockwise (1/0)",
        _camera("webcam", "rotate90"),
    ),
    Column(
        "feed_rate_percent",
        "float",
        "feed-rate factor in force (M220; 100 when never sent)",
        _layer("process", "feed_rate_percent"),
    ),
    Column(
        "flow_percent",
        "float",
        "flow factor of the active tool (M221; 100 when never sent)",
        _layer("process", "flow_percent"),
    ),
    Column(
        "fan_speed", "float", "part fan (M106 S, 0-255; M107 = 0)", _layer("process", "fan_speed")
    ),
    Column("fan_percent", "float", "part fan in percent", _layer("process", "fan_percent")),
    Column("tool", "int", "active tool (T<n>; 0 when never sent)", _layer("process", "tool")),
    Column(
        "printer_profile",
        "string",
        "OctoPrint printer profile name",
        _layer("printer_profile", "name"),
    ),
    Column(
        "bed_min_x",
        "float",
        "bounds the grid was held to: min X (mm)",
        _layer("printer_profile", "bounds", "min_x"),
    ),
    Column("bed_min_y", "float", "min Y (mm)", _layer("printer_profile", "bounds", "min_y")),
    Column("bed_max_x", "float", "max X (mm)", _layer("printer_profile", "bounds", "max_x")),
    Column("bed_max_y", "float", "max Y (mm)", _layer("printer_profile", "bounds", "max_y")),
    Column(
        "toolpath_file",
        "string",
        "the layer's toolpath in this dataset",
        lambda r: r.files.get("toolpath"),
    ),
    Column(
        "toolpath_svg",
        "string",
        "its SVG preview in this dataset",
        lambda r: r.files.get("toolpath_svg"),
    ),
    Column(
        "toolpath_extruded_e",
        "float",
        "filament the layer's extrusion moves push (mm of E)",
        _layer("toolpath", "extruded_e"),
    ),
    Column(
        "toolpath_length",
        "float",
        "XY length of the layer's extrusion moves (mm)",
        _layer("toolpath", "path_length"),
    ),
    Column(
        "metadata_file",
        "string",
        "the layer's metadata file in this dataset",
        lambda r: r.files.get("metadata"),
    ),
)
HEATER_FIELDS = (("actual", "measured"), ("target", "set"))


def _temperature(heater: str, field: str) -> Callable[[Row], Any]:
    return lambda row: _at(row.meta, "process", "temperatures", heater, field)


def heater_columns(heaters: Sequence[str]) -> List[Column]:
    """``temperature_<heater>_actual`` / ``_target`` for the heaters the print reported."""
    return [
        Column(
            f"temperature_{heater}_{field}",
            "float",
            f"{heater} temperature {word} at the stop (°C)",
            _temperature(heater, field),
        )
        for heater in heaters
        for field, word in HEATER_FIELDS
    ]


def _typed(kind: str, value: Any) -> Any:
    """The value as its column's type (floats stay floats: 100.0, never 100)."""
    if value is None:
        return None
    try:
        if kind == "float":
            return None if isinstance(value, str) else float(value)
        if kind == "int":
            return None if isinstance(value, str) else int(value)
        if kind == "timestamp":
            # whole seconds: the loader (pyarrow) types "YYYY-MM-DDTHH:MM:SS" as a
            # timestamp, but leaves one with a fraction a string
            moment = datetime.fromisoformat(str(value)).replace(microsecond=0)
            return moment.isoformat()
        return str(value)
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class ExportLayer:
    """One indexed layer (paths relative to the capture folder, ``<day>/<name>``)."""

    metadata: str
    images: Tuple[str, ...]
    toolpath: Optional[str] = None
    toolpath_svg: Optional[str] = None

    @property
    def day(self) -> str:
        return self.metadata.split("/", 1)[0]


def _in_zip(folder: str, relative: Optional[str]) -> Optional[str]:
    return None if relative is None else f"{folder}/{relative}"


class DatasetPlan:
    """What goes into the dataset of one print; :meth:`rows` makes ``metadata.jsonl``."""

    def __init__(
        self,
        print_id: str,
        layers: Sequence[ExportLayer],
        found: Mapping[str, Path],
        read_metadata: ReadMetadata,
    ) -> None:
        self.print_id = print_id
        self.layers = [layer for layer in layers if layer.metadata in found]
        self.found = found
        self.read_metadata = read_metadata
        self.columns: List[Column] = []
        self.empty_columns: List[str] = []
        self.jsonl_size = 0
        self.image_count = 0
        self.first_layer: Meta = {}

    def _layer_rows(self, layer: ExportLayer, meta: Meta) -> Iterator[Row]:
        files = {
            "metadata": _in_zip(LAYERS, layer.metadata),
            "toolpath": _in_zip(
                TOOLPATHS, layer.toolpath if layer.toolpath in self.found else None
            ),
            "toolpath_svg": _in_zip(
                TOOLPATHS, layer.toolpath_svg if layer.toolpath_svg in self.found else None
            ),
        }
        by_name = {
            str(image.get("path")): image
            for image in meta.get("images") or []
            if isinstance(image, Mapping)
        }
        for relative in layer.images:
            image = by_name.get(relative.rsplit("/", 1)[-1])
            if image is not None and relative in self.found:
                yield Row(meta, image, layer.day, files, self.print_id)

    def _all_rows(self) -> Iterator[Tuple[str, Row]]:
        for layer in self.layers:
            try:
                meta = self.read_metadata(layer.metadata)
            except (OSError, ValueError) as exc:
                raise RuntimeError(f"{layer.metadata} can no longer be read: {exc}") from exc
            for row in self._layer_rows(layer, meta):
                relative = f"{row.day}/{row.image['path']}"
                yield relative, row

    def measure(self) -> None:
        """The first pass: the heaters, the columns with a value, the rows' size."""
        heaters: Set[str] = set()
        filled: Set[str] = set()
        for relative, row in self._all_rows():
            if not self.first_layer:
                self.first_layer = row.meta
            temps = _at(row.meta, "process", "temperatures")
            if isinstance(temps, Mapping):
                heaters.update(str(name) for name in temps)
            record = self._record(relative, row, [*COLUMNS, *heater_columns(sorted(heaters))])
            filled.update(name for name, value in record.items() if value is not None)
        candidates = [*COLUMNS, *heater_columns(sorted(heaters))]
        self.columns = [c for c in candidates if c.name in filled]
        self.empty_columns = [c.name for c in candidates if c.name not in filled]
        size = count = 0
        for line in self.rows():
            size += len(line)
            count += 1
        self.jsonl_size, self.image_count = size, count

    def _record(self, relative: str, row: Row, columns: Sequence[Column]) -> Dict[str, Any]:
        record: Dict[str, Any] = {"file_name": f"{IMAGES}/{relative}"}
        for column in columns:
            raw = column.value(row)
            if isinstance(raw, bool):
                raw = int(raw)
            record[column.name] = _typed(column.kind, raw)
        return record

    def rows(self) -> Iterator[bytes]:
        """``metadata.jsonl``, a line at a time (the same bytes on every call while the
        metadata files stay as they are)."""
        for relative, row in self._all_rows():
            record = self._record(relative, row, self.columns)
            yield (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def manifest(plan: DatasetPlan, plugin_version: str, exported_at: datetime) -> Dict[str, Any]:
    """``dataset.json`` (schema ``manifest``, see docs/metadata.md)."""
    first = plan.first_layer
    gcode = _at(first, "gcode") or {}
    return {
        "schema_version": DATASET_SCHEMA_VERSION,
        "format": "imagefolder",
        "print_id": plan.print_id,
        "gcode": {
            "file": _at(first, "gcode_file"),
            "path": _at(gcode, "path"),
            "sha256": _at(gcode, "sha256"),
            "size_bytes": _at(gcode, "size_bytes"),
        },
        "print_start_time": _at(first, "print_start_time"),
        "printer_profile": _at(first, "printer_profile"),
        "settings": _at(first, "settings") or {},
        "metadata_schema_version": _at(first, "schema_version") or 1,
        "captured_with_plugin_version": _at(first, "plugin_version"),
        "plugin_version": plugin_version,
        "exported_at": exported_at.isoformat(timespec="seconds"),
        "layers": len(plan.layers),
        "images": plan.image_count,
        "files": {
            "metadata": METADATA_FILE,
            "images": f"{IMAGES}/",
            "toolpaths": f"{TOOLPATHS}/",
            "layers": f"{LAYERS}/",
        },
        "columns": [
            {"name": "file_name", "type": "string", "description": "the image in this dataset"}
        ]
        + [{"name": c.name, "type": c.kind, "description": c.description} for c in plan.columns],
        "empty_columns": plan.empty_columns,
    }


def readme(plan: DatasetPlan, data: Mapping[str, Any]) -> str:
    """The dataset's README.md: the layout and every column."""
    gcode = data["gcode"]
    lines = [
        f"# Layer captures of {gcode['file'] or 'a print'}",
        "",
        f"{data['images']} images of {data['layers']} layers, captured by OctoPrint-LayerCapture "
        f"{data['captured_with_plugin_version'] or '(unknown version)'}; exported "
        f"{data['exported_at']}.",
        "",
        "Load it with the Hugging Face `datasets` library:",
        "",
        "```python",
        "from datasets import load_dataset",
        'rows = load_dataset("imagefolder", data_dir="<this folder>", split="train")',
        "```",
        "",
        "## Files",
        "",
        f"- `{METADATA_FILE}`: one row per image (columns below); `file_name` is the image.",
        f"- `{IMAGES}/<day>/`: the images, as the camera delivered them.",
        f"- `{TOOLPATHS}/<day>/`: per layer, its extrusion moves as polylines in bed mm "
        "(`.json`) and a preview (`.svg`).",
        f"- `{LAYERS}/<day>/`: per layer, the metadata file the plugin wrote.",
        "- `dataset.json`: the G-code file's SHA-256, the printer profile, the settings, the "
        "plugin version and these columns with their types.",
        "",
        "The fields of the JSON files are described in the plugin's docs/metadata.md.",
        "",
        "## Columns",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{c['name']}` | {c['type']} | {c['description']} |" for c in data["columns"]]
    if plan.empty_columns:
        lines += [
            "",
            "Left out because no image of this print has a value for them: "
            + ", ".join(f"`{name}`" for name in plan.empty_columns)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def dataset_zip(
    plan: DatasetPlan, folder: str, plugin_version: str, exported_at: datetime
) -> ZipStream:
    """The zip of ``plan`` below ``folder/`` (call :meth:`DatasetPlan.measure` first)."""
    data = manifest(plan, plugin_version, exported_at)
    stream = ZipStream(sized=True)
    stream.add(readme(plan, data).encode("utf-8"), f"{folder}/README.md")
    stream.add(
        (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
        f"{folder}/dataset.json",
    )
    stream.add(plan.rows(), f"{folder}/{METADATA_FILE}", size=plan.jsonl_size)
    for layer in plan.layers:
        for image in layer.images:
            if image in plan.found:
                _add(stream, plan.found[image], f"{folder}/{IMAGES}/{image}")
        for extra in (layer.toolpath, layer.toolpath_svg):
            if extra is not None and extra in plan.found:
                _add(stream, plan.found[extra], f"{folder}/{TOOLPATHS}/{extra}")
        _add(stream, plan.found[layer.metadata], f"{folder}/{LAYERS}/{layer.metadata}")
    return stream


def _add(stream: ZipStream, path: Path, arcname: str) -> None:
    stream.add_path(os.fspath(path), arcname=arcname, recurse=False)


def export_layers(records: Sequence[Mapping[str, Any]]) -> List[ExportLayer]:
    """The gallery's layer records of a print as :class:`ExportLayer` values."""
    return [
        ExportLayer(
            metadata=str(record["metadata"]),
            images=tuple(str(image["path"]) for image in record.get("images") or ()),
            toolpath=record.get("toolpath"),
            toolpath_svg=record.get("toolpath_svg"),
        )
        for record in records
    ]
