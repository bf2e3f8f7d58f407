"""The fake toolhead camera: what a downward camera on the print head would see.

A pure renderer (stdlib + Pillow) for tests and the demo, and the ground truth that makes
the mosaic testable. The bed is drawn from above in bed millimetres: a dark bed with a fixed
speckle texture (a function of the bed position only, so every shot of a spot shows the same
specks; ``bed_texture`` off: a blank bed), the extrusion moves printed so far in the job as
lines as wide as the extrusion,
older layers darker and the current layer brightest. A shot is the part of that drawing under
the camera's footprint (:class:`~.mounting.CameraMounting`: offset, scale, rotation,
mirroring) with the nozzle at the head's measured position, optionally displaced by a small
placement error, slightly softened and with sensor noise.

An optional defect changes the current layer inside a square: ``unprinted`` (its lines are
missing there, the layer below shows) or ``under_extrusion`` (its lines are a third as wide
and dimmer). :func:`render_bed` draws any bed area straight from above without noise: what a
perfect mosaic of the shots would be.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .mounting import CameraMounting, parse_mounting

DEFECT_KINDS = ("none", "unprinted", "under_extrusion")
DEFAULT_WIDTH = 0.45  # mm, for paths whose slicer states no width
TEXTURE_CELL = 4.0  # mm: the speckle is drawn per cell, each cell from its own seed
SPECKS_PER_CELL = 14
BED = (38, 40, 44)
CURRENT = (240, 196, 120)  # the current layer: the brightest
OLDEST = (70, 58, 40)  # the first layer under a tall print
BELOW = (140, 114, 76)  # the layer just below the current one
UNDER_EXTRUSION_WIDTH = 1.0 / 3.0

Rect = Tuple[float, float, float, float]  # min_x, min_y, max_x, max_y (mm)


@dataclass(frozen=True)
class Defect:
    kind: str  # "unprinted" or "under_extrusion"
    x: float  # centre (bed mm)
    y: float
    size: float  # side of the square (mm)

    def rect(self) -> Rect:
        half = self.size / 2
        return (self.x - half, self.y - half, self.x + half, self.y + half)


@dataclass(frozen=True)
class FakeToolheadOptions:
    """The fake toolhead camera's settings (``fake_toolhead``)."""

    defect: str = "none"
    defect_x: float = 125.0
    defect_y: float = 105.0
    defect_size: float = 5.0
    defect_layers: Tuple[int, ...] = ()  # empty: every captured layer
    placement_noise: float = 0.0  # mm: the shot is taken up to this far from the reported spot
    pixel_noise: float = 3.0  # grey levels of sensor noise
    bed_texture: bool = True  # False: a blank bed (what Calibrate must refuse)
    # the camera's real mounting when it differs from the settings' (tests of Calibrate)
    true_mounting: Optional[CameraMounting] = None

    def defect_for(self, layer: int) -> Optional[Defect]:
        if self.defect == "none" or (self.defect_layers and layer not in self.defect_layers):
            return None
        return Defect(self.defect, self.defect_x, self.defect_y, self.defect_size)

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["defect_layers"] = list(self.defect_layers)
        data["true_mounting"] = None if self.true_mounting is None else self.true_mounting.to_dict()
        return data


_OPTION_LIMITS = {
    "defect_x": (-10000.0, 10000.0),
    "defect_y": (-10000.0, 10000.0),
    "defect_size": (0.1, 500.0),
    "placement_noise": (0.0, 10.0),
    "pixel_noise": (0.0, 64.0),
}


def parse_options(data: Any) -> Tuple[FakeToolheadOptions, List[Tuple[str, str]]]:
    """The options from their settings mapping, and every problem as ``(field, message)``."""
    default = FakeToolheadOptions()
    if not isinstance(data, Mapping):
        return default, [("", f"must be a mapping of the fake camera's options, got {data!r}")]
    errors: List[Tuple[str, str]] = []
    values: Dict[str, Any] = {}
    known = set(asdict(default))
    errors += [(key, "is not an option of the fake toolhead camera") for key in set(data) - known]
    defect = data.get("defect", "none")
    if defect not in DEFECT_KINDS:
        errors.append(("defect", f"must be one of {', '.join(DEFECT_KINDS)}, got {defect!r}"))
    else:
        values["defect"] = defect
    for key, (low, high) in _OPTION_LIMITS.items():
        if key not in data:
            continue
        raw = data[key]
        try:
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)
        except (TypeError, ValueError):
            errors.append((key, f"must be a number, got {raw!r}"))
            continue
        if not (math.isfinite(number) and low <= number <= high):
            errors.append((key, f"must be between {low:g} and {high:g}, got {raw!r}"))
            continue
        values[key] = number
    layers = data.get("defect_layers", [])
    if not isinstance(layers, (list, tuple)) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in layers
    ):
        errors.append(("defect_layers", f"must be a list of layer numbers, got {layers!r}"))
    else:
        values["defect_layers"] = tuple(sorted(set(layers)))
    texture = data.get("bed_texture", True)
    if not isinstance(texture, bool):
        errors.append(("bed_texture", f"must be true or false, got {texture!r}"))
    else:
        values["bed_texture"] = texture
    true = data.get("true_mounting")
    if true is not None:
        mounting, problems = parse_mounting(true)
        errors += [(f"true_mounting.{key}", message) for key, message in problems]
        values["true_mounting"] = mounting
    return FakeToolheadOptions(**{**asdict(default), **values}), errors


# ---- what was printed --------------------------------------------------------------------


@dataclass(frozen=True)
class Stroke:
    """One extrusion polyline: points (x0, y0, x1, y1, ...) in bed mm and its width."""

    xy: Tuple[float, ...]
    width: float


@dataclass(frozen=True)
class PrintedLayer:
    z: float
    strokes: Tuple[Stroke, ...]

    def bounds(self) -> Optional[Rect]:
        xs = [v for s in self.strokes for v in s.xy[0::2]]
        ys = [v for s in self.strokes for v in s.xy[1::2]]
        if not xs:
            return None
        return (min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class Scene:
    """The job so far: its layers from the bottom up, the last one being printed now."""

    layers: Tuple[PrintedLayer, ...] = ()
    defect: Optional[Defect] = None
    bed_texture: bool = True  # the bed's speckle (False: a blank bed)

    @property
    def current(self) -> Optional[PrintedLayer]:
        return self.layers[-1] if self.layers else None


def scene_from_polylines(
    polylines: Sequence[Mapping[str, Any]], layer_z: float, defect: Optional[Defect] = None
) -> Scene:
    """A scene from toolpath polylines (``{"z", "width", "xy"}`` as
    :meth:`analysis.toolpath.Polyline.to_dict` writes them) up to the layer at ``layer_z``;
    polylines above it are left out."""
    by_z: Dict[float, List[Stroke]] = {}
    for line in polylines:
        z = round(float(line["z"]), 3)
        if z > layer_z + 1e-3:
            continue
        width = line.get("width") or DEFAULT_WIDTH
        by_z.setdefault(z, []).append(Stroke(tuple(float(v) for v in line["xy"]), float(width)))
    layers = tuple(PrintedLayer(z, tuple(by_z[z])) for z in sorted(by_z))
    return Scene(layers, defect)


# ---- drawing ------------------------------------------------------------------------------


@dataclass
class _Canvas:
    """A bed area drawn from above at ``scale`` px/mm; row 0 is the back edge (max Y)."""

    rect: Rect
    scale: float
    size: Tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        min_x, min_y, max_x, max_y = self.rect
        self.size = (  # a rect on the pixel lattice gives its whole number of pixels
            max(1, math.ceil((max_x - min_x) * self.scale - 1e-6)),
            max(1, math.ceil((max_y - min_y) * self.scale - 1e-6)),
        )

    def px(self, x: float, y: float) -> Tuple[float, float]:
        return ((x - self.rect[0]) * self.scale, (self.rect[3] - y) * self.scale)


def _seed(*values: int) -> int:
    return zlib.crc32(struct.pack(f"<{len(values)}q", *values))


def _draw_bed(draw: ImageDraw.ImageDraw, canvas: _Canvas) -> None:
    """The speckle: a few specks per :data:`TEXTURE_CELL` cell, from that cell's seed."""
    min_x, min_y, max_x, max_y = canvas.rect
    for cx in range(math.floor(min_x / TEXTURE_CELL) - 1, math.ceil(max_x / TEXTURE_CELL) + 1):
        for cy in range(math.floor(min_y / TEXTURE_CELL) - 1, math.ceil(max_y / TEXTURE_CELL) + 1):
            rng = random.Random(_seed(cx, cy))  # noqa: S311 (a drawing, not a secret)
            for _ in range(SPECKS_PER_CELL):
                x = (cx + rng.random()) * TEXTURE_CELL
                y = (cy + rng.random()) * TEXTURE_CELL
                r = (0.08 + 0.3 * rng.random()) * canvas.scale
                grey = rng.randint(60, 110)
                px, py = canvas.px(x, y)
                draw.ellipse((px - r, py - r, px + r, py + r), fill=(grey, grey, grey + 6))


def _layer_colour(index: int, count: int) -> Tuple[int, int, int]:
    """Older layers darker: the one below the current :data:`BELOW`, the first
    :data:`OLDEST` when there are many."""
    if index == count - 1:
        return CURRENT
    depth = count - 1 - index  # 1 for the layer below the current one
    t = min(1.0, (depth - 1) / 8.0)
    return tuple(round(b + (o - b) * t) for b, o in zip(BELOW, OLDEST))  # type: ignore[return-value]


def _draw_strokes(
    draw: ImageDraw.ImageDraw,
    canvas: _Canvas,
    strokes: Sequence[Stroke],
    colour: Tuple[int, int, int],
    width_factor: float = 1.0,
) -> None:
    min_x, min_y, max_x, max_y = canvas.rect
    for stroke in strokes:
        xs, ys = stroke.xy[0::2], stroke.xy[1::2]
        pad = stroke.width
        if max(xs) < min_x - pad or min(xs) > max_x + pad:
            continue
        if max(ys) < min_y - pad or min(ys) > max_y + pad:
            continue
        points = [canvas.px(x, y) for x, y in zip(xs, ys)]
        width = max(1, round(stroke.width * width_factor * canvas.scale))
        draw.line(points, fill=colour, width=width, joint="curve")
        r = width / 2
        for px, py in (points[0], points[-1]):  # round ends, as a bead of plastic has
            draw.ellipse((px - r, py - r, px + r, py + r), fill=colour)


def _draw_scene(scene: Scene, canvas: _Canvas) -> Image.Image:
    image = Image.new("RGB", canvas.size, BED)
    draw = ImageDraw.Draw(image)
    if scene.bed_texture:
        _draw_bed(draw, canvas)
    count = len(scene.layers)
    for i, layer in enumerate(scene.layers[:-1]):
        _draw_strokes(draw, canvas, layer.strokes, _layer_colour(i, count))
    current = scene.current
    if current is None:
        return image
    defect = scene.defect
    below = image.copy() if defect is not None else None
    _draw_strokes(draw, canvas, current.strokes, CURRENT)
    if defect is None or below is None:
        return image
    x0, y0 = canvas.px(defect.rect()[0], defect.rect()[3])
    x1, y1 = canvas.px(defect.rect()[2], defect.rect()[1])
    box = (round(x0), round(y0), round(x1), round(y1))
    if defect.kind == "under_extrusion":
        thin = below.copy()
        dim = tuple(round(c * 0.8) for c in CURRENT)
        _draw_strokes(ImageDraw.Draw(thin), canvas, current.strokes, dim, UNDER_EXTRUSION_WIDTH)  # type: ignore[arg-type]
        below = thin
    image.paste(below.crop(box), box[:2])
    return image


def render_bed(scene: Scene, rect: Rect, scale: float) -> Image.Image:
    """``rect`` of the bed straight from above at ``scale`` px/mm, without noise: the
    ground truth of a mosaic of that area."""
    return _draw_scene(scene, _Canvas(rect, scale))


def shot_offset(options: FakeToolheadOptions, layer: int, index: int) -> Tuple[float, float]:
    """How far (mm) the shot of ``layer``/``index`` is from where the head reported it:
    up to ``placement_noise`` in any direction, the same for the same shot every time."""
    if options.placement_noise <= 0:
        return (0.0, 0.0)
    rng = random.Random(_seed(layer, index, 7))  # noqa: S311 (a drawing, not a secret)
    angle = rng.uniform(0, 2 * math.pi)
    distance = options.placement_noise * math.sqrt(rng.random())
    return (distance * math.cos(angle), distance * math.sin(angle))


def render_view(
    scene: Scene,
    mounting: CameraMounting,
    head: Tuple[float, float],
    pixel_noise: float = 0.0,
    seed: int = 0,
) -> Image.Image:
    """The image of a camera mounted as ``mounting`` with the nozzle at ``head``."""
    corners = mounting.footprint(head)
    margin, s = 0.5, mounting.scale
    # on the bed's own pixel lattice: every shot rasterises a line the same way
    rect = (
        math.floor((min(x for x, _ in corners) - margin) * s) / s,
        math.floor((min(y for _, y in corners) - margin) * s) / s,
        math.ceil((max(x for x, _ in corners) + margin) * s) / s,
        math.ceil((max(y for _, y in corners) + margin) * s) / s,
    )
    canvas = _Canvas(rect, s)
    world = _draw_scene(scene, canvas)
    # image pixel -> bed -> world pixel, all affine: one resampling
    (x00, y00) = mounting.to_bed(head, (0.0, 0.0))
    (x10, y10) = mounting.to_bed(head, (1.0, 0.0))
    (x01, y01) = mounting.to_bed(head, (0.0, 1.0))
    left, top = rect[0], rect[3]
    coefficients = (
        (x10 - x00) * s,
        (x01 - x00) * s,
        (x00 - left) * s,
        -(y10 - y00) * s,
        -(y01 - y00) * s,
        (top - y00) * s,
    )
    size = (mounting.image_width, mounting.image_height)
    view = world.transform(size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    view = view.filter(ImageFilter.GaussianBlur(0.6))  # a real lens is never this sharp
    if pixel_noise > 0:
        view = _add_noise(view, pixel_noise, seed)
    return view


def _add_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Uniform noise with standard deviation ``sigma`` grey levels, the same for a seed."""
    w, h = image.size
    raw = Image.frombytes("L", (w, h), random.Random(seed).randbytes(w * h))  # noqa: S311 (a drawing, not a secret)
    amplitude = min(1.0, sigma * math.sqrt(3) / 128)  # uniform: sd = half-range / sqrt(3)
    grey = Image.new("L", (w, h), 128)
    noise = Image.blend(grey, raw, amplitude).convert("RGB")
    return ImageChops.add(image, noise, 1.0, -128)
