"""A captured layer's metadata record (the JSON file beside its images). Pure module."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..camera_settings import FIRST_CAMERA_NAME

PositionRecord = Dict[str, float]  # {x, y, z} as the metadata stores it
#: The metadata layout written now; files without ``schema_version`` are version 1.
#: 2: the research records (analysis.records); 3: several cameras (each image names its
#: camera, ``cameras`` lists them, a failure names the camera it is about).
METADATA_SCHEMA_VERSION = 3


@dataclass
class ImageRecord:
    path: str  # file name, relative to the day folder
    position: PositionRecord  # commanded {x, y, z}; z includes the offset
    index: int
    thumbnail: Optional[str] = None
    row: Optional[int] = None
    col: Optional[int] = None
    measured: Optional[Dict[str, Optional[float]]] = None  # M114 {x, y, z, e}
    captured_at: Optional[str] = None  # ISO local time
    duration_s: Optional[float] = None
    camera: str = ""  # what took it: "snapshot URL http://...", "webcam 'classic'"...
    size_bytes: Optional[int] = None
    content_type: str = "image/jpeg"
    # schema version 2 (see analysis.records): the stored file and the camera's answer
    sha256: Optional[str] = None  # of the file as stored
    width: Optional[int] = None  # pixels of the stored image
    height: Optional[int] = None
    camera_latency_s: Optional[float] = None  # from asking the camera to having the JPEG
    # schema version 3: the camera's name in the settings ("main", the default camera's,
    # "nozzle"); files of versions 1 and 2 have one camera and no such key
    camera_name: str = FIRST_CAMERA_NAME


@dataclass
class SkippedRecord:
    index: int
    position: PositionRecord
    reason: str


@dataclass
class FailureRecord:
    index: Optional[int]
    phase: str
    message: str
    duration_s: Optional[float] = None
    camera: Optional[str] = None  # version 3: the camera's name, for a failure of one camera


@dataclass
class LayerMetadata:
    """One captured layer. The field names are the JSON keys, in this order."""

    layer: int
    z_height: float
    timestamp: str  # ISO local, e.g. "2024-01-15T10:30:00"
    gcode_file: str
    print_start_time: Optional[str]
    images: List[ImageRecord]
    settings: Dict[str, Any]  # grid_spacing, grid_center {x, y}, grid_size, z_offset, stop_mode
    capture_z: Optional[float] = None
    # where the job stopped, as the printer reported it: {x, y, z, e, source}
    stop_position: Optional[Dict[str, Any]] = None
    # where the head went back to: the stop position, or where the user's pause script
    # parked it (pause mode): {x, y, z, e}
    return_position: Optional[Dict[str, Any]] = None
    travel_z: Optional[float] = None  # the height of every move away from the part
    camera: str = ""  # what took the (first camera's) images
    skipped: List[SkippedRecord] = field(default_factory=list)
    failures: List[FailureRecord] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)  # stop, moves, ... total (s)
    trigger: Dict[str, Any] = field(default_factory=dict)  # source, reasons
    plugin_version: str = ""
    # schema version 2 (docs/metadata.md; filled in by analysis.records): files without
    # the key are version 1 and hold none of the fields below
    schema_version: int = METADATA_SCHEMA_VERSION
    gcode: Optional[Dict[str, Any]] = None  # the printed file: hash, size, the layer's lines
    process: Optional[Dict[str, Any]] = None  # temperatures, factors, fan, tool at the stop
    printer_profile: Optional[Dict[str, Any]] = None  # OctoPrint's profile, the bounds used
    camera_info: Optional[Dict[str, Any]] = None  # which (first) camera, what it delivered
    toolpath: Optional[Dict[str, Any]] = None  # the layer's toolpath files and totals
    # a toolhead camera's stitched layer (analysis.mosaic): "pending" until it is made
    mosaic: Optional[Dict[str, Any]] = None
    # schema version 3: every camera of the capture in the settings' order, each
    # {name, mounting, camera_info} (camera_info as above, filled in by analysis.records)
    cameras: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = _json_safe(asdict(self))
        return data

    def to_json(self) -> bytes:
        text = json.dumps(self.to_dict(), sort_keys=False, indent=2, ensure_ascii=False)
        return (text + "\n").encode("utf-8")


def _json_safe(value: Any) -> Any:
    """NaN/inf become null (they are not JSON); containers are copied recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def read_metadata(path: Path) -> Dict[str, Any]:
    """Load a metadata file; ValueError when it is not a JSON object."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{Path(path).name} does not hold a JSON object")
    return data
