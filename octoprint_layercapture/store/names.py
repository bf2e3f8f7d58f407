"""The capture folder's names: day folders, image, thumbnail, metadata, toolpath, mosaic
files.

Pure module, the one place for the file-name patterns; :func:`parse_image_name` and
:func:`parse_metadata_name` read them back for the gallery. Layout under the capture root::

    2024-01-15/layer_0003_pos_00_z_0_60_20240115_103000.jpg
    2024-01-15/layer_0003_pos_00_z_0_60_20240115_103000_thumb.jpg
    2024-01-15/layer_0003_pos_00_cam_nozzle_z_0_60_20240115_103000.jpg
    2024-01-15/layer_0003_metadata_20240115_103000.json
    2024-01-15/layer_0003_toolpath_20240115_103000.json   (and .svg)
    2024-01-15/layer_0003_mosaic_20240115_103000.jpg      (toolhead camera, see analysis.mosaic)
    2024-01-15/layer_0003_mosaic_20240115_103000_toolpath.png   (its overlays)
    2024-01-15/layer_0003_mosaic_20240115_103000_departure.png
    2024-01-15/video_<print id>_grid.mp4                  the grid video of a print
    2024-01-15/video_<print id>_grid.json                 its frames file
    2024-01-15/video_<print id>_pos_04.mp4                position 4's video (and .json)
    2024-01-15/video_<print id>_pos_04_cam_nozzle.mp4     camera nozzle's video of it
    2024-01-15/video_<print id>_grid_cam_nozzle.mp4       camera nozzle's grid video

The first camera of the settings (the only one, in a single-camera set-up) keeps the names
without a camera; every other camera's images and videos carry ``_cam_<name>`` after the
position (or ``grid``).

A video is rendered to ``.video_<...>.mp4.<random>.tmp`` beside its final name, its frames
laid out in ``render-<job>-<random>/`` below the plugin's data folder.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Optional, Union

DAY_FORMAT = "%Y-%m-%d"
STAMP_FORMAT = "%Y%m%d_%H%M%S"
IMAGE_EXT = ".jpg"
THUMB_SUFFIX = "_thumb"
METADATA_EXT = ".json"
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"

_IMAGE_FORMAT = "layer_{layer:04d}_pos_{index:02d}{camera}_z_{z}_{stamp}" + IMAGE_EXT
_CAMERA_FORMAT = "_cam_{name}"
# A camera name fit for file names: lowercase letters, digits and '-', no '_' (which
# separates the parts of a name).
CAMERA_NAME_LENGTH = 16
_CAMERA_NAME = rf"[a-z0-9][a-z0-9-]{{0,{CAMERA_NAME_LENGTH - 1}}}"
_CAMERA_NAME_RE = re.compile(rf"^{_CAMERA_NAME}$")
_METADATA_FORMAT = "layer_{layer:04d}_metadata_{stamp}" + METADATA_EXT
TOOLPATH_EXT = ".json"
TOOLPATH_SVG_EXT = ".svg"
_TOOLPATH_FORMAT = "layer_{layer:04d}_toolpath_{stamp}"  # + TOOLPATH_EXT or TOOLPATH_SVG_EXT
_IMAGE_RE = re.compile(
    r"^layer_(?P<layer>\d{4,})_pos_(?P<index>\d{2,})"
    rf"(?:_cam_(?P<camera>{_CAMERA_NAME}))?"
    r"_z_(?P<zi>\d+)_(?P<zf>\d{2})"
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
# a toolhead camera's stitched layer and the overlays drawn on its lattice
MOSAIC_PARTS = {"image": ".jpg", "toolpath": "_toolpath.png", "departure": "_departure.png"}
_MOSAIC_FORMAT = "layer_{layer:04d}_mosaic_{stamp}"  # + a MOSAIC_PARTS ending
_MOSAIC_RE = re.compile(
    r"^layer_(?P<layer>\d{4,})_mosaic_(?P<stamp>\d{8}_\d{6})(?P<part>"
    + "|".join(re.escape(end) for end in MOSAIC_PARTS.values())
    + ")$"
)
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

VIDEO_PREFIX = "video_"
VIDEO_EXT = ".mp4"
VIDEO_FRAMES_EXT = ".json"
KIND_GRID = "grid"  # the video whose frames tile every position
KIND_POSITION = "position"  # the video of one position
RENDER_WORK_PREFIX = "render-"  # a render's frame folders, below the plugin's data folder
_VIDEO_RE = re.compile(
    "^"
    + re.escape(VIDEO_PREFIX)
    + r"(?P<print>[0-9a-f]{8,64})_(?:(?P<grid>grid)|pos_(?P<index>\d{2,}))"
    + rf"(?:_cam_(?P<camera>{_CAMERA_NAME}))?(?P<ext>"
    + re.escape(VIDEO_EXT)
    + "|"
    + re.escape(VIDEO_FRAMES_EXT)
    + ")$"
)


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


def is_camera_name(name: str) -> bool:
    """Whether ``name`` may name a camera in file names (see :func:`image_name`)."""
    return isinstance(name, str) and bool(_CAMERA_NAME_RE.match(name))


def image_name(
    layer: int, index: int, z: float, when: datetime, camera: Optional[str] = None
) -> str:
    """``layer_0003_pos_00_z_0_60_20240115_103000.jpg``; ``z`` is the layer's Z. With a
    ``camera`` (every camera but the first): ``layer_0003_pos_00_cam_nozzle_z_0_60_...``."""
    _check_index("layer", layer)
    _check_index("index", index)
    if camera is not None and not is_camera_name(camera):
        raise ValueError(f"not a camera name for file names: {camera!r}")
    return _IMAGE_FORMAT.format(
        layer=layer,
        index=index,
        camera="" if camera is None else _CAMERA_FORMAT.format(name=camera),
        z=z_text(z),
        stamp=_stamp(when),
    )


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


def mosaic_name(layer: int, when: datetime, part: str = "image") -> str:
    """``layer_0003_mosaic_20240115_103000.jpg`` (``part`` "image"), or one of its overlays
    (``"toolpath"``, ``"departure"``: ``..._toolpath.png``); ``when`` is the layer's metadata
    time."""
    _check_index("layer", layer)
    if part not in MOSAIC_PARTS:
        raise ValueError(f"part must be one of {', '.join(MOSAIC_PARTS)}, got {part!r}")
    return _MOSAIC_FORMAT.format(layer=layer, stamp=_stamp(when)) + MOSAIC_PARTS[part]


def is_mosaic_name(name: str) -> bool:
    """Whether ``name`` is a :func:`mosaic_name` (the picture or an overlay)."""
    m = _MOSAIC_RE.match(name)
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
    camera: Optional[str] = None  # None: the first camera's name (no camera part)

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
        camera=m["camera"],
    )


def parse_metadata_name(name: str) -> Optional[MetadataName]:
    m = _METADATA_RE.match(name)
    if m is None or _parse_stamp(m["stamp"]) is None:
        return None
    return MetadataName(layer=int(m["layer"]), stamp=m["stamp"])


# ---- videos ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoName:
    """The parts of a video's (or its frames file's) name."""

    print_id: str
    index: Optional[int]  # None: the grid video
    is_frames_file: bool
    camera: Optional[str] = None  # None: the first camera's (no camera part)

    @property
    def kind(self) -> str:
        return KIND_GRID if self.index is None else KIND_POSITION


def video_name(print_id: str, index: Optional[int], camera: Optional[str] = None) -> str:
    """``video_<print id>_grid.mp4`` (index None) or ``video_<print id>_pos_04.mp4``. With a
    ``camera`` (every camera but the first, as for images): ``..._pos_04_cam_nozzle.mp4``,
    ``..._grid_cam_nozzle.mp4``."""
    if index is not None:
        _check_index("index", index)
    if camera is not None and not is_camera_name(camera):
        raise ValueError(f"not a camera name for file names: {camera!r}")
    part = "grid" if index is None else f"pos_{index:02d}"
    suffix = "" if camera is None else _CAMERA_FORMAT.format(name=camera)
    return f"{VIDEO_PREFIX}{print_id}_{part}{suffix}{VIDEO_EXT}"


def video_frames_name(video: str) -> str:
    """The frames file beside a video: the same stem, ``.json``."""
    if not video.endswith(VIDEO_EXT):
        raise ValueError(f"not a video name: {video!r}")
    return video[: -len(VIDEO_EXT)] + VIDEO_FRAMES_EXT


def parse_video_name(name: str) -> Optional[VideoName]:
    """Read back :func:`video_name` / :func:`video_frames_name`; None for other names."""
    m = _VIDEO_RE.match(name)
    if m is None:
        return None
    index = None if m["grid"] else int(m["index"])
    return VideoName(m["print"], index, m["ext"] == VIDEO_FRAMES_EXT, m["camera"])


def temp_video_name(video: str, token: str) -> str:
    """Where ``video`` is rendered before it is renamed: ``.<video>.<token>.tmp``."""
    return f"{TEMP_PREFIX}{video}.{token}{TEMP_SUFFIX}"


def is_temp_video_name(name: str) -> bool:
    """Whether ``name`` is a :func:`temp_video_name` (what an interrupted render leaves)."""
    return name.startswith(TEMP_PREFIX + VIDEO_PREFIX) and name.endswith(TEMP_SUFFIX)
