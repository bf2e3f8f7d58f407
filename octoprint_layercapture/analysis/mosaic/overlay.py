"""What is drawn over a mosaic, on the mosaic's own lattice (so it lines up pixel for pixel):
the layer's toolpath as thin lines coloured by feature type, its extrusion as a mask (for
the registration and the departure map), and the departure map as a heat layer.
Pillow only; the masks come back as numpy arrays when numpy is there.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Tuple

from PIL import Image, ImageDraw

from ..toolpath import DEFAULT_WIDTH, feature_colour

Polylines = Sequence[Mapping[str, Any]]  # {"type", "width", "xy"} as the toolpath file has
Rect = Tuple[float, float, float, float]


def _points(xy: Sequence[float], rect: Rect, scale: float) -> list:  # type: ignore[type-arg]
    return [
        ((xy[i] - rect[0]) * scale, (rect[3] - xy[i + 1]) * scale) for i in range(0, len(xy), 2)
    ]


def draw_extrusion(
    polylines: Polylines,
    rect: Rect,
    scale: float,
    size: Tuple[int, int],
    grow: float = 0.0,
    factor: float = 1.0,
) -> Image.Image:
    """An ``L`` mask, 255 where the toolpath extrudes: each line ``factor`` times its width
    plus ``grow`` mm on each side."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for line in polylines:
        xy = line.get("xy") or []
        if len(xy) < 4:
            continue
        width_mm = (line.get("width") or DEFAULT_WIDTH) * factor + 2 * grow
        width = max(1, round(width_mm * scale))
        points = _points(xy, rect, scale)
        draw.line(points, fill=255, width=width, joint="curve")
        r = width / 2
        for px, py in (points[0], points[-1]):
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
    return mask


def toolpath_overlay(
    polylines: Polylines, rect: Rect, scale: float, size: Tuple[int, int]
) -> Image.Image:
    """An ``RGBA`` picture of the toolpath's centre lines, transparent elsewhere."""
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    line_width = max(1, round(scale * 0.12))
    for line in polylines:
        xy = line.get("xy") or []
        if len(xy) < 4:
            continue
        colour = feature_colour(line.get("type"))
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        draw.line(_points(xy, rect, scale), fill=(*rgb, 230), width=line_width, joint="curve")
    return overlay
