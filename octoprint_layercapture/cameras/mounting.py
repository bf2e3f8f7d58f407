"""Where a camera is mounted and how its pixels map to the bed.

A *fixed* camera (on a stand, the plugin's first use) looks at the printer from outside;
its pictures are not placed on the bed. A *toolhead* camera rides on the print head and
looks down: each shot shows the bed around the head, so the shots of a layer are tiles of
one top-down picture (see :mod:`analysis.mosaic`).

A toolhead camera's mounting, in bed coordinates (X to the right, Y to the back, seen
from above):

* ``offset_x``/``offset_y``: where the centre of the image lies relative to the nozzle (mm);
* ``scale``: pixels per millimetre on the surface at the capture height;
* ``rotation``: degrees counter-clockwise from bed +X to the image's rightward axis;
* ``mirrored``: the image is mirrored left-right (some endoscopes, a camera seen through a
  mirror);
* ``image_width``/``image_height``: the pixel size of the camera's images.

Pixel coordinates are continuous: pixel (i, j) covers ``[i, i + 1) x [j, j + 1)``, so the
image centre is ``(width / 2, height / 2)``. A bed point ``d`` millimetres from the image
centre lands at ``centre + A d`` with ``A = scale * [[m cos r, m sin r], [sin r, -cos r]]``
(``m = -1`` when mirrored): :meth:`CameraMounting.matrix`. Moving the head by ``d`` moves
the picture's content by ``-A d``, which is what *Calibrate* measures.

This dataclass is one camera's property (the settings hold it as one ``camera_mounting``
mapping). Pure module (stdlib only).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Tuple

FIXED = "fixed"
TOOLHEAD = "toolhead"
MOUNTINGS = (FIXED, TOOLHEAD)

Matrix = Tuple[float, float, float, float]  # a00, a01, a10, a11 (row-major)
Point = Tuple[float, float]

# what a value may be, per field: (minimum, maximum); the checks of :func:`mounting_errors`
LIMITS: Dict[str, Tuple[float, float]] = {
    "offset_x": (-200.0, 200.0),
    "offset_y": (-200.0, 200.0),
    "scale": (0.5, 500.0),
    "rotation": (-360.0, 360.0),
    "image_width": (16, 10000),
    "image_height": (16, 10000),
}


@dataclass(frozen=True)
class CameraMounting:
    mode: str = FIXED
    offset_x: float = 0.0
    offset_y: float = 0.0
    scale: float = 16.0
    rotation: float = 0.0
    mirrored: bool = False
    image_width: int = 640
    image_height: int = 480

    @property
    def on_toolhead(self) -> bool:
        return self.mode == TOOLHEAD

    @property
    def centre_px(self) -> Point:
        return (self.image_width / 2.0, self.image_height / 2.0)

    def matrix(self) -> Matrix:
        """Pixels per millimetre: bed offset ``(dx, dy)`` -> pixel offset ``(du, dv)``."""
        return similarity(self.scale, self.rotation, self.mirrored)

    def camera_at(self, head_x: float, head_y: float) -> Point:
        """The bed point under the image centre with the nozzle at ``head``."""
        return (head_x + self.offset_x, head_y + self.offset_y)

    def to_pixel(self, head: Point, point: Point) -> Point:
        """Where bed ``point`` appears in the image taken with the nozzle at ``head``."""
        a00, a01, a10, a11 = self.matrix()
        cx, cy = self.camera_at(*head)
        dx, dy = point[0] - cx, point[1] - cy
        u0, v0 = self.centre_px
        return (u0 + a00 * dx + a01 * dy, v0 + a10 * dx + a11 * dy)

    def to_bed(self, head: Point, pixel: Point) -> Point:
        """The bed point seen at ``pixel`` of the image taken with the nozzle at ``head``."""
        b00, b01, b10, b11 = invert(self.matrix())
        cx, cy = self.camera_at(*head)
        u0, v0 = self.centre_px
        du, dv = pixel[0] - u0, pixel[1] - v0
        return (cx + b00 * du + b01 * dv, cy + b10 * du + b11 * dv)

    def footprint(self, head: Point) -> List[Point]:
        """The corners of one shot on the bed (mm): top-left, top-right, bottom-right,
        bottom-left of the image."""
        w, h = float(self.image_width), float(self.image_height)
        return [self.to_bed(head, corner) for corner in ((0, 0), (w, 0), (w, h), (0, h))]

    def footprint_size(self) -> Point:
        """The width and height of a shot on the bed (mm)."""
        return (self.image_width / self.scale, self.image_height / self.scale)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def similarity(scale: float, rotation_deg: float, mirrored: bool) -> Matrix:
    r = math.radians(rotation_deg)
    m = -1.0 if mirrored else 1.0
    c, s = math.cos(r), math.sin(r)
    return (scale * m * c, scale * m * s, scale * s, -scale * c)


def invert(a: Matrix) -> Matrix:
    a00, a01, a10, a11 = a
    det = a00 * a11 - a01 * a10
    if det == 0:
        raise ValueError("the mounting's matrix is singular")
    return (a11 / det, -a01 / det, -a10 / det, a00 / det)


def decompose(a: Matrix) -> Tuple[float, float, bool]:
    """``(scale, rotation in degrees (-180, 180], mirrored)`` of the similarity nearest to
    ``a`` (a matrix of the form of :func:`similarity`, up to measurement noise)."""
    a00, a01, a10, a11 = a
    det = a00 * a11 - a01 * a10
    mirrored = bool(det > 0)
    m = -1.0 if mirrored else 1.0
    # rows: scale * m * (cos, sin) and scale * (sin, -cos)
    cos_sum = a00 * m - a11
    sin_sum = a01 * m + a10
    rotation = math.degrees(math.atan2(float(sin_sum), float(cos_sum)))
    scale = math.sqrt(abs(float(det)))
    if rotation <= -180.0:
        rotation += 360.0
    return scale, rotation, mirrored


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


def parse_mounting(data: Any) -> Tuple[CameraMounting, List[Tuple[str, str]]]:
    """A mounting from its settings mapping, and the problems found as ``(field, message)``
    (every one, the defaults standing in for the wrong values)."""
    default = CameraMounting()
    errors: List[Tuple[str, str]] = []
    if not isinstance(data, Mapping):
        return default, [("", f"must be a mapping of the mounting's values, got {data!r}")]
    unknown = sorted(set(data) - set(default.to_dict()))
    errors += [(key, "is not a mounting value") for key in unknown]
    values: Dict[str, Any] = default.to_dict()
    mode = data.get("mode", FIXED)
    if mode not in MOUNTINGS:
        errors.append(("mode", f"must be 'fixed' or 'toolhead', got {mode!r}"))
    else:
        values["mode"] = mode
    mirrored = data.get("mirrored", False)
    if isinstance(mirrored, str) and mirrored.lower() in ("true", "false"):
        mirrored = mirrored.lower() == "true"
    if not isinstance(mirrored, bool):
        errors.append(("mirrored", f"must be true or false, got {mirrored!r}"))
    else:
        values["mirrored"] = mirrored
    for key, (low, high) in LIMITS.items():
        if key not in data:
            continue
        raw = data[key]
        try:
            number = _number(raw)
        except (TypeError, ValueError):
            errors.append((key, f"must be a number, got {raw!r}"))
            continue
        whole = key.startswith("image_")
        if whole and number != int(number):
            errors.append((key, f"must be a whole number of pixels, got {raw!r}"))
            continue
        if not low <= number <= high:
            errors.append((key, f"must be between {low:g} and {high:g}, got {number:g}"))
            continue
        values[key] = int(number) if whole else number
    return CameraMounting(**values), errors
