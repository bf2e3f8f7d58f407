"""Timelapse videos of a captured print: which videos, which frames, what size.

Pure module (stdlib only): it decides, :mod:`.ffmpeg` writes the command lines,
:mod:`.renderer` runs them and :mod:`.tiles` draws.

* **A video per grid position**: one frame per captured layer of the print, lowest layer
  first. A layer without an image at that position (camera failure, outside the bed) gets a
  labelled blank frame, so frame k of every video of a print shows the same layer.
* **The grid video**: each frame tiles the positions as they lie on the bed seen from above,
  like the gallery (back row on top, the front-left position bottom left). Tiles keep the
  camera's aspect ratio, are never enlarged, and the grid is at most
  :data:`GRID_MAX_WIDTH` wide; ffmpeg decodes the camera JPEGs at the smallest DCT scale
  (``-lowres``) that still covers a tile, since each grid frame decodes n x n of them.
* **Hold the last frame N s** adds ``round(N * fps)`` copies of the last frame.
* **Several cameras**: each camera has its own videos, one per position and one of the grid,
  from its own images (the layer records' ``camera``); the first camera of the print keeps
  the names of a single-camera print, the others' carry the camera's name
  (:func:`store.names.video_name`). A request names one camera or means every camera.

The names are :mod:`store.names`; the frames file beside each video :mod:`.files`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ...store.names import KIND_GRID, KIND_POSITION, video_name

TARGET_ALL = "all"
TARGETS = (TARGET_ALL, KIND_GRID, KIND_POSITION)

GRID_MAX_WIDTH = 1920
MAX_LOWRES = 3  # ffmpeg's JPEG decoder scales by 1/2, 1/4 or 1/8


def position_name(index: int) -> str:
    """A position as the UI names it: numbered 1 to n (its file names keep the index)."""
    return f"position {index + 1}"


class VideoError(Exception):
    """A render that cannot be done; the message says why, for the user."""


# ---- what to render ------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderTarget:
    """``all`` (every position that has an image, and the grid), ``grid``, or one
    ``position`` (``index``); of every camera of the print, or only of ``camera``."""

    kind: str
    index: Optional[int] = None
    camera: Optional[str] = None

    def describe(self) -> str:
        if self.kind == KIND_POSITION and self.index is not None:
            text = position_name(self.index)
        else:
            text = "all videos" if self.kind == TARGET_ALL else "the grid video"
        return text if self.camera is None else f"{text} of camera {self.camera}"


@dataclass(frozen=True)
class FrameSource:
    """One frame of one position: the layer's image there, or why there is none."""

    layer: int
    z_height: Optional[float]
    metadata: str  # the layer's metadata file, relative to the capture folder
    image: Optional[str]  # relative to the capture folder; None: a labelled blank
    missing: Optional[str] = None


@dataclass(frozen=True)
class PositionFrames:
    index: int
    row: int
    col: int
    frames: Tuple[FrameSource, ...]


@dataclass(frozen=True)
class VideoPlan:
    """One video: a position (one input) or the grid (one input per position)."""

    kind: str
    index: Optional[int]
    grid_size: int
    inputs: Tuple[PositionFrames, ...]
    camera: str = ""  # the camera's name ("": the one camera of an older print)
    first_camera: bool = True  # the print's first camera: the names without a camera
    several_cameras: bool = False  # the print has several: labels name the camera

    @property
    def layer_count(self) -> int:
        return len(self.inputs[0].frames) if self.inputs else 0

    def file_name(self, print_id: str) -> str:
        return video_name(print_id, self.index, None if self.first_camera else self.camera)

    def label(self) -> str:
        text = "grid video" if self.index is None else f"{position_name(self.index)} video"
        return f"{text} of camera {self.camera}" if self.several_cameras else text


def grid_size_of(layers: Sequence[Mapping[str, Any]]) -> int:
    """Points per side of a print's grid (the largest its layers recorded)."""
    sizes = [int(layer.get("grid_size") or 1) for layer in layers]
    return max(sizes) if sizes else 1


def print_cameras(layers: Sequence[Mapping[str, Any]]) -> List[str]:
    """A print's camera names, the first camera first (the layer records' ``cameras``,
    then any other an image names); ``[""]`` for a print of one unnamed camera."""
    names: Dict[str, None] = {}
    for layer in layers:
        for name in layer.get("cameras") or []:
            names.setdefault(str(name), None)
        for image in layer.get("images") or []:
            names.setdefault(str(image.get("camera") or ""), None)
    return list(names) or [""]


def _image_camera(image: Mapping[str, Any], first: str) -> str:
    return str(image.get("camera") or first)


def images_per_position(
    layers: Sequence[Mapping[str, Any]], camera: Optional[str] = None
) -> Dict[int, int]:
    """How many captured images each position has in these layers (of every camera, or
    only of ``camera``)."""
    first = print_cameras(layers)[0]
    counts: Dict[int, int] = {}
    for layer in layers:
        for image in layer.get("images") or []:
            if camera is not None and _image_camera(image, first) != camera:
                continue
            counts[int(image["index"])] = counts.get(int(image["index"]), 0) + 1
    return counts


def target_problem(layers: Sequence[Mapping[str, Any]], target: RenderTarget) -> Optional[str]:
    """Why ``target`` cannot be rendered for a print with these layers (None: it can)."""
    if not layers:
        return "this print has no captured layers"
    size = grid_size_of(layers)
    cameras = print_cameras(layers)
    if target.camera is not None and target.camera not in cameras:
        names = ", ".join(repr(c) for c in cameras)
        return f"camera must be one of this print's cameras ({names}), got {target.camera!r}"
    counts = images_per_position(layers, target.camera)
    if not counts:
        return "this print has no images" + (
            "" if target.camera is None else f" of camera {target.camera}"
        )
    if target.kind == KIND_GRID and size == 1:
        return "a 1x1 print has no grid video: render its position (index 0)"
    if target.kind == KIND_POSITION:
        index = target.index
        if index is None or not 0 <= index < size * size:
            return f"index must be a position of this {size}x{size} grid (0 to {size * size - 1})"
        if index not in counts:
            return f"index {index} ({position_name(index)}) has no image in this print"
    return None


def missing_reason(layer: Mapping[str, Any], index: int, camera: Optional[str] = None) -> str:
    """Why a layer has no image at ``index`` (of ``camera``): the skip reason or the failure
    messages (a failure that names another camera is not this camera's)."""
    for skipped in layer.get("skipped") or []:
        if skipped.get("index") == index and skipped.get("reason"):
            return str(skipped["reason"])
    messages = [
        str(f["message"])
        for f in layer.get("failures") or []
        if f.get("index") == index
        and f.get("message")
        and (camera is None or f.get("camera") in (None, camera))
    ]
    return "; ".join(messages) if messages else "no image"


def _position_frames(
    layers: Sequence[Mapping[str, Any]], index: int, size: int, camera: str, first: str
) -> PositionFrames:
    frames = []
    for layer in layers:
        image = next(
            (
                i
                for i in layer.get("images") or []
                if i.get("index") == index and _image_camera(i, first) == camera
            ),
            None,
        )
        z = layer.get("z_height")
        frames.append(
            FrameSource(
                layer=int(layer["layer"]),
                z_height=float(z) if isinstance(z, (int, float)) else None,
                metadata=str(layer["metadata"]),
                image=None if image is None else str(image["path"]),
                missing=None if image is not None else missing_reason(layer, index, camera),
            )
        )
    row, col = divmod(index, size)
    return PositionFrames(index, row, col, tuple(frames))


def plan_videos(layers: Sequence[Mapping[str, Any]], target: RenderTarget) -> List[VideoPlan]:
    """The videos ``target`` asks for, from a print's layer records (the gallery's, lowest
    layer first): per camera (the print's order; only ``target.camera`` when it names one,
    else each camera that has images there), position videos by index, then the grid
    video. Raises :class:`VideoError` when the target cannot be rendered (see
    :func:`target_problem`)."""
    problem = target_problem(layers, target)
    if problem is not None:
        raise VideoError(problem)
    ordered = sorted(layers, key=lambda d: (int(d["layer"]), str(d.get("timestamp") or "")))
    size = grid_size_of(ordered)
    cameras = print_cameras(ordered)
    first, several = cameras[0], len(cameras) > 1
    plans: List[VideoPlan] = []
    for camera in cameras if target.camera is None else [target.camera]:
        counts = images_per_position(ordered, camera)
        if not counts:
            continue  # a camera that failed at every shot: nothing to show
        if target.kind == KIND_POSITION:
            assert target.index is not None
            indexes = [target.index] if target.index in counts else []
        elif target.kind == TARGET_ALL:
            indexes = sorted(counts)
        else:
            indexes = []
        own = (camera, camera == first, several)
        for index in indexes:
            frames = (_position_frames(ordered, index, size, camera, first),)
            plans.append(VideoPlan(KIND_POSITION, index, size, frames, *own))
        if target.kind == KIND_GRID or (target.kind == TARGET_ALL and size > 1):
            inputs = tuple(
                _position_frames(ordered, i, size, camera, first) for i in range(size * size)
            )
            plans.append(VideoPlan(KIND_GRID, None, size, inputs, *own))
    return plans


def hold_frame_count(fps: int, hold_seconds: float) -> int:
    """Copies of the last frame that make it stay ``hold_seconds`` longer."""
    return max(0, round(hold_seconds * fps))


# ---- sizes ---------------------------------------------------------------------------------

Size = Tuple[int, int]


def even_size(size: Size) -> Size:
    """The largest even width and height within ``size`` (yuv420p needs even sides)."""
    width, height = size
    return max(2, width - width % 2), max(2, height - height % 2)


@dataclass(frozen=True)
class GridLayout:
    """Where each position's tile lies in a grid frame."""

    grid_size: int
    tile_width: int
    tile_height: int
    lowres: int  # ffmpeg's -lowres for camera JPEGs of the reference size

    @property
    def width(self) -> int:
        return self.grid_size * self.tile_width

    @property
    def height(self) -> int:
        return self.grid_size * self.tile_height

    def origin(self, index: int) -> Tuple[int, int]:
        """Top-left pixel of position ``index``'s tile (row 0 is the front of the bed,
        drawn at the bottom)."""
        row, col = divmod(index, self.grid_size)
        return col * self.tile_width, (self.grid_size - 1 - row) * self.tile_height

    def to_dict(self) -> Dict[str, Any]:
        return {
            "size": self.grid_size,
            "tile_width": self.tile_width,
            "tile_height": self.tile_height,
            "width": self.width,
            "height": self.height,
            "tiles": [
                {"index": i, "row": i // self.grid_size, "col": i % self.grid_size}
                | dict(zip(("x", "y"), self.origin(i)))
                for i in range(self.grid_size * self.grid_size)
            ],
        }


def plan_grid_layout(grid_size: int, source: Size, max_width: int = GRID_MAX_WIDTH) -> GridLayout:
    """Tiles the size of the camera frames ``source``, shrunk so the grid is at most
    ``max_width`` wide; even sides."""
    if grid_size < 1:
        raise ValueError(f"grid size must be at least 1, got {grid_size}")
    width, height = source
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    tile_width = min(width, max_width // grid_size)
    tile_height = max(1, round(tile_width * height / width))
    tile_width, tile_height = even_size((tile_width, tile_height))
    lowres = 0
    while (
        lowres < MAX_LOWRES
        and math.ceil(width / 2 ** (lowres + 1)) >= tile_width
        and math.ceil(height / 2 ** (lowres + 1)) >= tile_height
    ):
        lowres += 1
    return GridLayout(grid_size, tile_width, tile_height, lowres)
