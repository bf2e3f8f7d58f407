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
    ``position`` (``index``)."""

    kind: str
    index: Optional[int] = None

    def describe(self) -> str:
        if self.kind == KIND_POSITION and self.index is not None:
            return position_name(self.index)
        return "all videos" if self.kind == TARGET_ALL else "the grid video"


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

    @property
    def layer_count(self) -> int:
        return len(self.inputs[0].frames) if self.inputs else 0

    def file_name(self, print_id: str) -> str:
        return video_name(print_id, self.index)

    def label(self) -> str:
        return "grid video" if self.index is None else f"{position_name(self.index)} video"


def grid_size_of(layers: Sequence[Mapping[str, Any]]) -> int:
    """Points per side of a print's grid (the largest its layers recorded)."""
    sizes = [int(layer.get("grid_size") or 1) for layer in layers]
    return max(sizes) if sizes else 1


def images_per_position(layers: Sequence[Mapping[str, Any]]) -> Dict[int, int]:
    """How many captured images each position has in these layers."""
    counts: Dict[int, int] = {}
    for layer in layers:
        for image in layer.get("images") or []:
            counts[int(image["index"])] = counts.get(int(image["index"]), 0) + 1
    return counts


def target_problem(layers: Sequence[Mapping[str, Any]], target: RenderTarget) -> Optional[str]:
    """Why ``target`` cannot be rendered for a print with these layers (None: it can)."""
    if not layers:
        return "this print has no captured layers"
    size = grid_size_of(layers)
    counts = images_per_position(layers)
    if not counts:
        return "this print has no images"
    if target.kind == KIND_GRID and size == 1:
        return "a 1x1 print has no grid video: render its position (index 0)"
    if target.kind == KIND_POSITION:
        index = target.index
        if index is None or not 0 <= index < size * size:
            return f"index must be a position of this {size}x{size} grid (0 to {size * size - 1})"
        if index not in counts:
            return f"index {index} ({position_name(index)}) has no image in this print"
    return None


def missing_reason(layer: Mapping[str, Any], index: int) -> str:
    """Why a layer has no image at ``index``: the skip reason or the failure messages."""
    for skipped in layer.get("skipped") or []:
        if skipped.get("index") == index and skipped.get("reason"):
            return str(skipped["reason"])
    messages = [
        str(f["message"])
        for f in layer.get("failures") or []
        if f.get("index") == index and f.get("message")
    ]
    return "; ".join(messages) if messages else "no image"


def _position_frames(layers: Sequence[Mapping[str, Any]], index: int, size: int) -> PositionFrames:
    frames = []
    for layer in layers:
        image = next((i for i in layer.get("images") or [] if i.get("index") == index), None)
        z = layer.get("z_height")
        frames.append(
            FrameSource(
                layer=int(layer["layer"]),
                z_height=float(z) if isinstance(z, (int, float)) else None,
                metadata=str(layer["metadata"]),
                image=None if image is None else str(image["path"]),
                missing=None if image is not None else missing_reason(layer, index),
            )
        )
    row, col = divmod(index, size)
    return PositionFrames(index, row, col, tuple(frames))


def plan_videos(layers: Sequence[Mapping[str, Any]], target: RenderTarget) -> List[VideoPlan]:
    """The videos ``target`` asks for, from a print's layer records (the gallery's, lowest
    layer first): position videos by index, then the grid video. Raises
    :class:`VideoError` when the target cannot be rendered (see :func:`target_problem`)."""
    problem = target_problem(layers, target)
    if problem is not None:
        raise VideoError(problem)
    ordered = sorted(layers, key=lambda d: (int(d["layer"]), str(d.get("timestamp") or "")))
    size = grid_size_of(ordered)
    plans: List[VideoPlan] = []
    if target.kind == KIND_POSITION:
        assert target.index is not None
        indexes = [target.index]
    elif target.kind == TARGET_ALL:
        indexes = sorted(images_per_position(ordered))
    else:
        indexes = []
    for index in indexes:
        plans.append(
            VideoPlan(KIND_POSITION, index, size, (_position_frames(ordered, index, size),))
        )
    if target.kind == KIND_GRID or (target.kind == TARGET_ALL and size > 1):
        inputs = tuple(_position_frames(ordered, i, size) for i in range(size * size))
        plans.append(VideoPlan(KIND_GRID, None, size, inputs))
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
