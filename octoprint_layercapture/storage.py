"""Capture files on disk: names, day folders, atomic writes, thumbnails and metadata.

Pure module (stdlib + Pillow). Layout under the capture root::

    2024-01-15/layer_0003_pos_00_z_0_60_20240115_103000.jpg
    2024-01-15/layer_0003_pos_00_z_0_60_20240115_103000_thumb.jpg
    2024-01-15/layer_0003_metadata_20240115_103000.json

The name formats below are the only place that knows them; :func:`parse_image_name`
reads them back for the gallery.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from PIL import Image, ImageOps

_logger = logging.getLogger("octoprint.plugins.layercapture.storage")

# ---- names: the one place for the file-name patterns ---------------------------------------

DAY_FORMAT = "%Y-%m-%d"
STAMP_FORMAT = "%Y%m%d_%H%M%S"
IMAGE_EXT = ".jpg"
THUMB_SUFFIX = "_thumb"
METADATA_EXT = ".json"
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"

_IMAGE_FORMAT = "layer_{layer:04d}_pos_{index:02d}_z_{z}_{stamp}" + IMAGE_EXT
_METADATA_FORMAT = "layer_{layer:04d}_metadata_{stamp}" + METADATA_EXT
TOOLPATH_EXT = ".json"
TOOLPATH_SVG_EXT = ".svg"
_TOOLPATH_FORMAT = "layer_{layer:04d}_toolpath_{stamp}"  # + TOOLPATH_EXT or TOOLPATH_SVG_EXT
_IMAGE_RE = re.compile(
    r"^layer_(?P<layer>\d{4,})_pos_(?P<index>\d{2,})_z_(?P<zi>\d+)_(?P<zf>\d{2})"
    r"_(?P<stamp>\d{8}_\d{6})(?P<thumb>"
    + re.escape(THUMB_SUFFIX)
    + r")?"
    + re.escape(IMAGE_EXT)
    + "$"
)
_METADATA_RE = re.compile(
    r"^layer_(?P<layer>\d{4,})_metadata_(?P<stamp>\d{8}_\d{6})" + re.escape(METADATA_EXT) + "$"
)
_TOOLPATH_RE = re.compile(
    r"^layer_(?P<layer>\d{4,})_toolpath_(?P<stamp>\d{8}_\d{6})(?P<ext>"
    + re.escape(TOOLPATH_EXT)
    + "|"
    + re.escape(TOOLPATH_SVG_EXT)
    + ")$"
)
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _stamp(when: datetime) -> str:
    return when.strftime(STAMP_FORMAT)


def _check_index(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")


def z_text(z: float) -> str:
    """``0.6 -> "0_60"``, ``10.25 -> "10_25"`` (two decimals, ``_`` for the point)."""
    if not isinstance(z, (int, float)) or isinstance(z, bool) or not math.isfinite(z):
        raise ValueError(f"Z must be a finite number, got {z!r}")
    text = f"{z:.2f}"
    if text == "-0.00":  # float noise just below zero
        text = "0.00"
    elif text.startswith("-"):
        raise ValueError(f"Z must not be negative, got {z!r}")
    return text.replace(".", "_")


def image_name(layer: int, index: int, z: float, when: datetime) -> str:
    """``layer_0003_pos_00_z_0_60_20240115_103000.jpg``; ``z`` is the layer's Z."""
    _check_index("layer", layer)
    _check_index("index", index)
    return _IMAGE_FORMAT.format(layer=layer, index=index, z=z_text(z), stamp=_stamp(when))


def thumbnail_name(image: str) -> str:
    """``..._103000.jpg -> ..._103000_thumb.jpg``."""
    if not image.endswith(IMAGE_EXT) or image.endswith(THUMB_SUFFIX + IMAGE_EXT):
        raise ValueError(f"not a full-size image name: {image!r}")
    return image[: -len(IMAGE_EXT)] + THUMB_SUFFIX + IMAGE_EXT


def metadata_name(layer: int, when: datetime) -> str:
    """``layer_0003_metadata_20240115_103000.json``."""
    _check_index("layer", layer)
    return _METADATA_FORMAT.format(layer=layer, stamp=_stamp(when))


def toolpath_name(layer: int, when: datetime, svg: bool = False) -> str:
    """``layer_0003_toolpath_20240115_103000.json`` (the layer's extrusion moves), or its
    ``.svg`` preview; ``when`` is the layer's metadata time, so the three names match."""
    _check_index("layer", layer)
    ext = TOOLPATH_SVG_EXT if svg else TOOLPATH_EXT
    return _TOOLPATH_FORMAT.format(layer=layer, stamp=_stamp(when)) + ext


def is_toolpath_name(name: str) -> bool:
    """Whether ``name`` is a :func:`toolpath_name` (JSON or SVG)."""
    m = _TOOLPATH_RE.match(name)
    return m is not None and _parse_stamp(m["stamp"]) is not None


def day_folder(root: Path, when: Union[datetime, date]) -> Path:
    """``<root>/YYYY-MM-DD`` for the date of ``when``."""
    return Path(root) / when.strftime(DAY_FORMAT)


def is_day_folder_name(name: str) -> bool:
    """Whether ``name`` is a ``YYYY-MM-DD`` folder name of a real date."""
    try:
        return bool(_DAY_RE.match(name)) and bool(datetime.strptime(name, DAY_FORMAT))
    except ValueError:
        return False


def _parse_stamp(stamp: str) -> Optional[datetime]:
    try:
        return datetime.strptime(stamp, STAMP_FORMAT)
    except ValueError:
        return None


@dataclass(frozen=True)
class ImageName:
    """The parts of an image (or thumbnail) file name."""

    layer: int
    index: int
    z: float
    stamp: str
    is_thumbnail: bool

    @property
    def when(self) -> Optional[datetime]:
        return _parse_stamp(self.stamp)


@dataclass(frozen=True)
class MetadataName:
    layer: int
    stamp: str

    @property
    def when(self) -> Optional[datetime]:
        return _parse_stamp(self.stamp)


def parse_image_name(name: str) -> Optional[ImageName]:
    """Read back an :func:`image_name` or :func:`thumbnail_name`; None for other names."""
    m = _IMAGE_RE.match(name)
    if m is None or _parse_stamp(m["stamp"]) is None:
        return None
    return ImageName(
        layer=int(m["layer"]),
        index=int(m["index"]),
        z=float(f"{m['zi']}.{m['zf']}"),
        stamp=m["stamp"],
        is_thumbnail=m["thumb"] is not None,
    )


def parse_metadata_name(name: str) -> Optional[MetadataName]:
    m = _METADATA_RE.match(name)
    if m is None or _parse_stamp(m["stamp"]) is None:
        return None
    return MetadataName(layer=int(m["layer"]), stamp=m["stamp"])


# ---- paths and atomic writes ---------------------------------------------------------------


def resolve_inside(root: Path, relative: str) -> Path:
    """Resolve a user-supplied relative path below ``root``.

    Raises ValueError when it is absolute, contains NUL bytes, backslashes or ``..``
    parts, or resolves (through symlinks) to somewhere outside ``root``. ``""`` is root.
    """
    if not isinstance(relative, str):
        raise ValueError("path must be text")
    if "\x00" in relative:
        raise ValueError("path contains a NUL byte")
    if "\\" in relative:
        raise ValueError("path contains a backslash")
    if relative.startswith("/") or os.path.isabs(relative) or re.match(r"^[A-Za-z]:", relative):
        raise ValueError("path must be relative")
    if ".." in relative.split("/"):
        raise ValueError("path must not contain '..'")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise ValueError("path leads outside the capture folder")
    return target


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one.

    Writes a temporary ``.<name>.<random>.tmp`` in the same folder, fsyncs it and renames
    it over ``path``. On any error the temporary file is removed and the error re-raised.
    """
    path = Path(path)
    fd, temp = tempfile.mkstemp(
        dir=str(path.parent), prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the OS allows it (best effort)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(root: Path) -> int:
    """Delete ``.*.tmp`` files left below ``root`` by an interrupted write; returns the count.

    Call it when nothing is writing (at startup). Symlinked folders are not followed.
    """
    removed = 0
    if not Path(root).is_dir():
        return 0
    for folder, _dirs, files in os.walk(str(root)):
        for name in files:
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError as exc:
                    _logger.warning(f"Could not remove stale file {name} in {folder}: {exc}")
    if removed:
        _logger.info(f"Removed {removed} unfinished temporary file(s) below {root}")
    return removed


# ---- thumbnails ----------------------------------------------------------------------------

_EXIF_ORIENTATION = 0x0112


def make_thumbnail(jpeg: bytes, max_size: Tuple[int, int] = (320, 240), quality: int = 85) -> bytes:
    """A JPEG no bigger than ``max_size``, keeping the aspect ratio.

    JPEG input is decoded in draft mode (DCT scaling: only as many pixels as needed);
    other formats Pillow reads (PNG...) are decoded fully. EXIF orientation is applied so
    the thumbnail looks like the browser's view of the original.
    """
    with Image.open(io.BytesIO(jpeg)) as source:
        if source.format == "JPEG":
            source.draft("RGB", max_size)
        image: Image.Image = source
        if source.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(source)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.thumbnail(max_size)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()


# ---- metadata ------------------------------------------------------------------------------

Position = Dict[str, float]
#: The metadata layout written now; files without ``schema_version`` are version 1.
METADATA_SCHEMA_VERSION = 2


@dataclass
class ImageRecord:
    path: str  # file name, relative to the day folder
    position: Position  # commanded {x, y, z}; z includes the offset
    index: int
    thumbnail: Optional[str] = None
    row: Optional[int] = None
    col: Optional[int] = None
    measured: Optional[Dict[str, Optional[float]]] = None  # M114 {x, y, z, e}
    captured_at: Optional[str] = None  # ISO local time
    duration_s: Optional[float] = None
    camera: str = ""
    size_bytes: Optional[int] = None
    content_type: str = "image/jpeg"
    # schema version 2 (see analysis.records): the stored file and the camera's answer
    sha256: Optional[str] = None  # of the file as stored
    width: Optional[int] = None  # pixels of the stored image
    height: Optional[int] = None
    camera_latency_s: Optional[float] = None  # from asking the camera to having the JPEG


@dataclass
class SkippedRecord:
    index: int
    position: Position
    reason: str


@dataclass
class FailureRecord:
    index: Optional[int]
    phase: str
    message: str
    duration_s: Optional[float] = None


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
    camera: str = ""
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
    camera_info: Optional[Dict[str, Any]] = None  # which camera, what it delivered
    toolpath: Optional[Dict[str, Any]] = None  # the layer's toolpath files and totals

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


# ---- the store -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedImage:
    path: Path
    thumbnail_path: Optional[Path]
    size_bytes: int


class CaptureStore:
    """Writes captures below ``root`` (OctoPrint's uploads folder / capture folder).

    One layer's files share a day folder: the first image saved for a layer pins its date
    until that layer's metadata is saved (for files within :data:`PIN_WINDOW` of that
    image), so a capture running across midnight stays together. ``day`` overrides it.
    """

    PIN_WINDOW = timedelta(hours=1)

    def __init__(self, root: Path, folder_mode: int = 0o755, file_mode: int = 0o644) -> None:
        self.root = Path(root)
        self._folder_mode = folder_mode
        self._file_mode = file_mode
        self._pins: Dict[int, Tuple[date, datetime]] = {}  # layer -> (folder date, pinned at)

    def _pinned_day(self, layer: int, when: datetime) -> Optional[date]:
        pin = self._pins.get(layer)
        if pin is not None and abs(when - pin[1]) <= self.PIN_WINDOW:
            return pin[0]
        return None

    def folder_for(self, layer: int, when: datetime, day: Optional[date] = None) -> Path:
        """The day folder for a file of ``layer`` written at ``when`` (created if needed)."""
        chosen = day or self._pinned_day(layer, when) or when.date()
        folder = day_folder(self.root, chosen)
        folder.mkdir(mode=self._folder_mode, parents=True, exist_ok=True)
        return folder

    @property
    def file_mode(self) -> int:
        return self._file_mode

    def image_path(
        self,
        layer: int,
        index: int,
        layer_z: float,
        when: datetime,
        day: Optional[date] = None,
    ) -> Path:
        """Where the image of ``layer``/``index`` taken at ``when`` goes (the day folder is
        created and pinned for the layer); nothing is written yet."""
        path = self.folder_for(layer, when, day) / image_name(layer, index, layer_z, when)
        if self._pinned_day(layer, when) is None:
            self._pins[layer] = (day or when.date(), when)
        return path

    def save_image(
        self,
        layer: int,
        index: int,
        layer_z: float,
        when: datetime,
        data: bytes,
        thumbnail: bool,
        thumb_quality: int = 85,
        day: Optional[date] = None,
    ) -> SavedImage:
        """Store the image bytes unchanged (and a thumbnail when asked), right now.

        Raises OSError when the image cannot be written; a failed thumbnail is logged and
        reported as ``thumbnail_path=None`` (the image itself is kept). The capture
        sequence writes through :mod:`image_writer` instead, off the printer's path.
        """
        if not data:
            raise ValueError("no image data")
        path = self.image_path(layer, index, layer_z, when, day)
        write_atomic(path, bytes(data), self._file_mode)
        thumb_path = None
        if thumbnail:
            try:
                thumb = make_thumbnail(data, quality=thumb_quality)
                thumb_path = path.with_name(thumbnail_name(path.name))
                write_atomic(thumb_path, thumb, self._file_mode)
            except Exception as exc:
                _logger.warning(f"Could not write the thumbnail of {path.name}: {exc}")
                thumb_path = None
        return SavedImage(path=path, thumbnail_path=thumb_path, size_bytes=len(data))

    def save_metadata(
        self, meta: LayerMetadata, when: datetime, day: Optional[date] = None
    ) -> Path:
        """Write ``meta`` as ``layer_NNNN_metadata_<when>.json`` atomically."""
        path = self.folder_for(meta.layer, when, day) / metadata_name(meta.layer, when)
        write_atomic(path, meta.to_json(), self._file_mode)
        self._pins.pop(meta.layer, None)
        return path
