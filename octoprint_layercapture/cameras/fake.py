"""A Pillow-drawn stand-in for a camera frame (fake camera mode, tests, demos).

Pure module (stdlib + Pillow), no file I/O. The frame shows the print bed from above with
10 mm grid lines, the grid positions, a crosshair at the capture position, a side view of
the layer stack that grows with the layer, and an overlay naming layer, Z, position and
time. The static part (bed, grid lines, positions) is cached per geometry.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Optional, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

from ..capture.ports import ShotRequest, Snapshot
from ..settings import Bounds
from .base import Transform

_logger = logging.getLogger("octoprint.plugins.layercapture.fake_camera")

DEFAULT_BED = (0.0, 0.0, 250.0, 210.0)  # min x, min y, max x, max y when bounds are unknown
DEFAULT_MAX_Z = 250.0
DEFAULT_SIZE = (640, 480)

_BACKGROUND = (24, 26, 30)
_BED = (52, 56, 64)
_MINOR_LINE = (70, 75, 85)
_MAJOR_LINE = (105, 112, 125)
_BED_EDGE = (150, 158, 170)
_POINT = (90, 200, 250)
_CROSSHAIR = (255, 70, 60)
_TEXT = (240, 240, 240)
_PANEL = (12, 12, 14)
_STACK = ((240, 160, 40), (200, 120, 20))

_Rect = Tuple[float, float, float, float]
_Key = Tuple[float, float, float, float]


@dataclass(frozen=True)
class FakeFrameRequest:
    """What a fake frame shows (the keyword arguments of :func:`render_fake_frame`)."""

    layer: int
    layer_z: float
    position: Tuple[float, float, float]
    index: int
    count: int


@lru_cache(maxsize=8)
def pillow_font(size: int) -> Any:
    """Pillow's built-in font; scalable with Pillow >= 10.1 and FreeType, else bitmap."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow: no size argument
        return ImageFont.load_default()


class _BedView:
    """Maps bed millimetres to pixels: X to the right, Y up (front of the bed at the bottom)."""

    def __init__(self, bed: _Key, size: Tuple[int, int]) -> None:
        width, height = size
        self.bed = bed
        min_x, min_y, max_x, max_y = bed
        margin = max(8, min(width, height) // 24)
        top = margin + _overlay_height(height)  # keep the bed clear of the text overlay
        span_x, span_y = max(max_x - min_x, 1e-3), max(max_y - min_y, 1e-3)
        self.scale = max(min((width - 2 * margin) / span_x, (height - top - margin) / span_y), 1e-6)
        self.left = (width - span_x * self.scale) / 2
        self.bottom = height - margin

    def px(self, x: float, y: float) -> Tuple[float, float]:
        return (
            self.left + (x - self.bed[0]) * self.scale,
            self.bottom - (y - self.bed[1]) * self.scale,
        )


def _overlay_height(height: int) -> int:
    return max(40, height // 6)


def _grid_step(scale: float) -> float:
    """10 mm lines, coarser when they would be closer than 4 px."""
    for step in (10.0, 50.0, 100.0, 500.0, 1000.0):
        if step * scale >= 4:
            return step
    return 10000.0


@lru_cache(maxsize=8)
def _background(
    bed: _Key, points: Tuple[Tuple[float, float], ...], size: Tuple[int, int]
) -> Image.Image:
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)
    view = _BedView(bed, size)
    min_x, min_y, max_x, max_y = bed
    x0, y1 = view.px(min_x, min_y)
    x1, y0 = view.px(max_x, max_y)
    draw.rectangle((x0, y0, x1, y1), fill=_BED)
    step = _grid_step(view.scale)
    for axis_min, axis_max, is_x in ((min_x, max_x, True), (min_y, max_y, False)):
        k = math.ceil(axis_min / step)
        while k * step <= axis_max:
            value = k * step
            colour = _MAJOR_LINE if k % 5 == 0 else _MINOR_LINE
            if is_x:
                px, _ = view.px(value, min_y)
                draw.line((px, y0, px, y1), fill=colour)
            else:
                _, py = view.px(min_x, value)
                draw.line((x0, py, x1, py), fill=colour)
            k += 1
    draw.rectangle((x0, y0, x1, y1), outline=_BED_EDGE, width=2)
    radius = max(3, min(size) // 90)
    for x, y in points:
        px, py = view.px(x, y)
        draw.ellipse((px - radius, py - radius, px + radius, py + radius), outline=_POINT, width=2)
    return image


def _draw_crosshair(draw: ImageDraw.ImageDraw, view: _BedView, x: float, y: float) -> None:
    px, py = view.px(x, y)
    arm = max(10, int(min(view.bed[2] - view.bed[0], 60) * view.scale * 0.15))
    draw.line((px - arm, py, px + arm, py), fill=_CROSSHAIR, width=2)
    draw.line((px, py - arm, px, py + arm), fill=_CROSSHAIR, width=2)
    r = arm // 2
    draw.ellipse((px - r, py - r, px + r, py + r), outline=_CROSSHAIR, width=2)


def _stack_scale(z: float, z_max: float) -> float:
    """0..1 height of ``z`` on a log-like scale: monotonic, and the first layers show."""
    return math.log1p(max(z, 0.0) / 2.0) / math.log1p(max(z_max, 1.0) / 2.0)


def _draw_stack(
    draw: ImageDraw.ImageDraw,
    box: _Rect,
    layer: int,
    layer_z: float,
    capture_z: float,
    z_max: float,
) -> None:
    """Side view of the print: one bar per layer (or per group of layers), bed at the bottom.

    Heights use :func:`_stack_scale` up to ``z_max`` (the printer's max Z or 250 mm).
    """
    font = pillow_font(11)
    left, top, right, bottom = box
    draw.rectangle(box, fill=_PANEL, outline=_BED_EDGE)
    z_max = max(z_max, layer_z, capture_z)
    inner_top, inner_bottom = top + 16, bottom - 6
    full = inner_bottom - inner_top
    draw.text((left + 4, top + 2), f"side view, Z 0-{z_max:g}", fill=_TEXT, font=font)
    for tick in (1.0, 10.0, 100.0):
        if tick < z_max:
            ty = inner_bottom - full * _stack_scale(tick, z_max)
            draw.line((left + 2, ty, left + 8, ty), fill=_BED_EDGE)
            draw.text((left + 10, ty - 6), f"{tick:g}", fill=_MAJOR_LINE, font=font)
    draw.line((left + 4, inner_bottom, right - 4, inner_bottom), fill=_BED_EDGE, width=2)
    bars = max(1, min(int(layer), 40))
    bar_left, bar_right = left + (right - left) * 0.35, right - (right - left) * 0.2
    for i in range(bars):
        y_low = inner_bottom - full * _stack_scale(layer_z * i / bars, z_max)
        y_high = inner_bottom - full * _stack_scale(layer_z * (i + 1) / bars, z_max)
        draw.rectangle((bar_left, y_high, bar_right, y_low), fill=_STACK[i % 2])
    cam_y = inner_bottom - full * _stack_scale(capture_z, z_max)
    for x in range(int(bar_left) - 6, int(right - 4), 8):  # dashed line at capture Z
        draw.line((x, cam_y, x + 4, cam_y), fill=_CROSSHAIR)
    draw.polygon(
        ((right - 14, cam_y - 5), (right - 4, cam_y - 5), (right - 9, cam_y + 3)), fill=_CROSSHAIR
    )


def render_fake_frame(
    *,
    layer: int,
    layer_z: float,
    position: Tuple[float, float, float],
    index: int,
    count: int,
    bounds: Optional[Bounds],
    grid_points: Sequence[Tuple[float, float]],
    when: datetime,
    quality: int = 90,
    size: Tuple[int, int] = DEFAULT_SIZE,
    camera: str = "",
) -> bytes:
    """A JPEG frame (``quality`` 1-100, ``size`` pixels) picturing this capture; a
    ``camera`` name is written beside "FAKE CAMERA" (the cameras after the first).

    ``bounds=None`` draws a 250 x 210 mm bed. Same arguments give the same bytes.
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be a whole number 1-100, got {quality!r}")
    width, height = int(size[0]), int(size[1])
    if width < 64 or height < 48:
        raise ValueError(f"frame size must be at least 64x48, got {size!r}")
    bed: _Key = (
        DEFAULT_BED if bounds is None else (bounds.min_x, bounds.min_y, bounds.max_x, bounds.max_y)
    )
    points = tuple((float(x), float(y)) for x, y in grid_points)
    image = _background(bed, points, (width, height)).copy()
    draw = ImageDraw.Draw(image)
    view = _BedView(bed, (width, height))
    x, y, z = (float(v) for v in position)
    _draw_crosshair(draw, view, x, y)

    panel_w, panel_h = max(90, width // 6), max(80, height // 3)
    _draw_stack(
        draw,
        (width - panel_w - 6, height - panel_h - 6, width - 6, height - 6),
        layer,
        layer_z,
        z,
        DEFAULT_MAX_Z if bounds is None or bounds.max_z is None else bounds.max_z,
    )

    overlay = _overlay_height(height)
    draw.rectangle((0, 0, width, overlay), fill=_PANEL)
    font = pillow_font(max(10, overlay // 4))
    lines = (
        f"FAKE CAMERA{' ' + camera if camera else ''}   layer {layer}   Z {layer_z:.2f} mm",
        f"position {index + 1} of {count}   X {x:.1f}  Y {y:.1f}  Z {z:.2f}",
        when.strftime("%Y-%m-%d %H:%M:%S"),
    )
    line_h = overlay / (len(lines) + 0.3)
    for i, text in enumerate(lines):
        draw.text((8, 3 + i * line_h), text, fill=_TEXT, font=font)

    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


class FakeCamera:
    """Draws the capture instead of photographing it (testing without hardware)."""

    name = "fake camera"
    transform = Transform()

    def __init__(
        self,
        quality: int,
        bounds: Optional[Bounds],
        grid_points: Sequence[Tuple[float, float]],
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._quality = quality
        self._bounds = bounds
        self._grid_points = list(grid_points)
        self._now = now

    def take(self, request: ShotRequest) -> Snapshot:
        started = time.monotonic()
        data = render_fake_frame(
            layer=request.layer,
            layer_z=request.layer_z,
            position=(request.x, request.y, request.z),
            index=request.index,
            count=request.count,
            bounds=self._bounds,
            grid_points=self._grid_points,
            when=self._now(),
            quality=self._quality,
            camera=request.camera if request.name_in_files else "",
        )
        return Snapshot(data, "image/jpeg", time.monotonic() - started, self.name)

    def close(self) -> None:
        pass
