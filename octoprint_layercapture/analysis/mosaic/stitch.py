"""A layer's toolhead shots stitched into one top-down picture in bed millimetres.

1. **Place** every shot by the head's measured position and the camera's mounting: the
   mosaic is a bed area on the bed's own pixel lattice at the camera's scale (px/mm; less
   when the picture would exceed :attr:`StitchOptions.max_side`), row 0 at the back (max Y),
   and each shot is resampled into it with one affine map (Pillow, bilinear).
2. **Refine** the places by registering the overlaps: every pair of shots that overlap by
   at least :data:`MIN_OVERLAP` of a shot (among each shot's :data:`NEIGHBOURS` nearest)
   is phase-correlated where both see the bed; the
   measured relative offsets give each shot a correction by least squares (the corrections
   summing to zero), a pair that disagrees with the solution by more than
   :data:`OUTLIER_MM` is dropped and the fit repeated, and no correction exceeds
   :attr:`StitchOptions.max_correction` (``bounded`` says which were cut). Overlaps say
   nothing about where the whole set lies: when the layer's toolpath is known, the blended
   picture is correlated with the toolpath drawn on the same lattice and the whole set moved
   by the offset found, within the same bound (``toolpath_offset``). A layer printed
   shifted by less than the bound is thus drawn in place: the offset is reported.
3. **Blend**: each shot weighs 1 in its middle and falls to 0 towards its edges
   (:attr:`StitchOptions.feather`), so seams fade.

``checkpoint`` is called between the steps (the worker waits there while a capture has the
head away); ``progress(done, total)`` after each. Needs numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ...cameras.mounting import CameraMounting
from .registration import Grey, Shift, phase_correlate

MIN_OVERLAP = 0.08  # of the smaller shot's area
NEIGHBOURS = 8  # each shot is registered with this many nearest shots at most
OUTLIER_MM = 0.5
MASK_WEIGHT = 0.02  # a canvas pixel belongs to a shot where its weight is above this

Rect = Tuple[float, float, float, float]
Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class Tile:
    index: int
    image: Image.Image  # as the camera took it (RGB)
    head: Tuple[float, float]  # the nozzle's measured position (mm)


@dataclass(frozen=True)
class StitchOptions:
    max_correction: float = 1.5  # mm
    feather: float = 0.2  # share of the shorter image side over which a shot fades out
    max_side: int = 6000  # px of the mosaic's longer side
    register: bool = True


@dataclass(frozen=True)
class Lattice:
    """A bed area drawn at ``scale`` px/mm; pixel (0, 0) at its back-left corner."""

    rect: Rect
    scale: float

    @property
    def size(self) -> Tuple[int, int]:
        min_x, min_y, max_x, max_y = self.rect
        return (
            max(1, round((max_x - min_x) * self.scale)),
            max(1, round((max_y - min_y) * self.scale)),
        )

    def px(self, x: float, y: float) -> Tuple[float, float]:
        return ((x - self.rect[0]) * self.scale, (self.rect[3] - y) * self.scale)

    def bed(self, col: float, row: float) -> Tuple[float, float]:
        return (self.rect[0] + col / self.scale, self.rect[3] - row / self.scale)


@dataclass
class Placement:
    index: int
    camera: Tuple[float, float]  # where the mounting puts the image centre (mm)
    correction: Tuple[float, float] = (0.0, 0.0)  # mm, found by registration
    bounded: bool = False  # the correction was cut to the bound

    def to_dict(self) -> Dict[str, Any]:
        return {
            "index": self.index,
            "camera": {"x": round(self.camera[0], 3), "y": round(self.camera[1], 3)},
            "correction_mm": {"x": round(self.correction[0], 3), "y": round(self.correction[1], 3)},
            "bounded": self.bounded,
        }


@dataclass
class PairShift:
    a: int
    b: int
    offset: Tuple[float, float]  # c_a - c_b measured (mm)
    peak: float
    used: bool = False
    residual: Optional[float] = None  # mm, after the fit


@dataclass
class Mosaic:
    image: Image.Image
    coverage: Mask
    lattice: Lattice
    placements: List[Placement] = field(default_factory=list)
    pairs: List[PairShift] = field(default_factory=list)
    toolpath_offset: Optional[Tuple[float, float]] = None  # mm, None: not measured
    toolpath_peak: Optional[float] = None

    def registration(self) -> Dict[str, Any]:
        used = [p for p in self.pairs if p.used]
        residuals = sorted(p.residual for p in used if p.residual is not None)
        px = self.lattice.scale
        return {
            "pairs": len(self.pairs),
            "pairs_used": len(used),
            "median_residual_px": None
            if not residuals
            else round(residuals[len(residuals) // 2] * px, 3),
            "max_residual_px": None if not residuals else round(residuals[-1] * px, 3),
            "toolpath_offset_mm": None
            if self.toolpath_offset is None
            else {"x": round(self.toolpath_offset[0], 3), "y": round(self.toolpath_offset[1], 3)},
            "toolpath_peak": None if self.toolpath_peak is None else round(self.toolpath_peak, 3),
        }


ToolpathRaster = Callable[[Lattice], Grey]  # the layer's toolpath drawn on a lattice
Checkpoint = Callable[[], None]
Progress = Callable[[int, int], None]


def _weights(width: int, height: int, feather: float) -> Image.Image:
    ramp = max(1.0, feather * min(width, height))
    u = np.minimum(np.arange(width) + 0.5, width - np.arange(width) - 0.5)
    v = np.minimum(np.arange(height) + 0.5, height - np.arange(height) - 0.5)
    weight = np.minimum(np.minimum(u[None, :], v[:, None]) / ramp, 1.0).astype(np.float32)
    return Image.fromarray(weight, mode="F")


def _lattice(tiles: Sequence[Tile], mounting: CameraMounting, options: StitchOptions) -> Lattice:
    corners = [c for t in tiles for c in mounting.footprint(t.head)]
    margin = options.max_correction if options.register else 0.0
    min_x = min(x for x, _ in corners) - margin
    max_x = max(x for x, _ in corners) + margin
    min_y = min(y for _, y in corners) - margin
    max_y = max(y for _, y in corners) + margin
    scale = min(mounting.scale, options.max_side / max(max_x - min_x, max_y - min_y))
    return Lattice(
        (
            math.floor(min_x * scale) / scale,
            math.floor(min_y * scale) / scale,
            math.ceil(max_x * scale) / scale,
            math.ceil(max_y * scale) / scale,
        ),
        scale,
    )


@dataclass
class _Warped:
    box: Tuple[int, int, int, int]  # x0, y0, x1, y1 on the lattice
    image: NDArray[np.float32]  # rows, cols, 3
    weight: NDArray[np.float32]  # rows, cols
    _grey: Optional[Grey] = None

    def grey(self) -> Grey:
        if self._grey is None:
            rgb = self.image
            self._grey = (
                0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]
            ).astype(np.float64)
        return self._grey

    @property
    def centre(self) -> Tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


def _warp(
    tile: Tile,
    camera: Tuple[float, float],
    mounting: CameraMounting,
    lattice: Lattice,
    weights: Image.Image,
) -> Optional[_Warped]:
    """The shot resampled onto the lattice where its footprint lies (None: outside)."""
    shifted = CameraMounting(**{**mounting.to_dict(), "offset_x": 0.0, "offset_y": 0.0})
    corners = [lattice.px(*c) for c in shifted.footprint(camera)]
    width, height = lattice.size
    x0 = max(0, math.floor(min(x for x, _ in corners)))
    y0 = max(0, math.floor(min(y for _, y in corners)))
    x1 = min(width, math.ceil(max(x for x, _ in corners)))
    y1 = min(height, math.ceil(max(y for _, y in corners)))
    if x1 <= x0 or y1 <= y0:
        return None
    a00, a01, a10, a11 = mounting.matrix()
    s = lattice.scale
    left, top = lattice.rect[0], lattice.rect[3]
    ex, ey = left + x0 / s - camera[0], top - y0 / s - camera[1]
    u0, v0 = mounting.centre_px
    data = (
        a00 / s,
        -a01 / s,
        a00 * ex + a01 * ey + u0,
        a10 / s,
        -a11 / s,
        a10 * ex + a11 * ey + v0,
    )
    size = (x1 - x0, y1 - y0)
    image = tile.image.convert("RGB").transform(
        size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
    )
    weight = weights.transform(size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
    return _Warped(
        (x0, y0, x1, y1),
        np.asarray(image, dtype=np.float32),
        np.asarray(weight, dtype=np.float32),
    )


def _blend(lattice: Lattice, warped: Sequence[Optional[_Warped]]) -> Tuple[Any, Mask]:
    width, height = lattice.size
    total = np.zeros((height, width, 3), dtype=np.float32)
    weight = np.zeros((height, width), dtype=np.float32)
    for part in warped:
        if part is None:
            continue
        x0, y0, x1, y1 = part.box
        total[y0:y1, x0:x1] += part.image * part.weight[:, :, None]
        weight[y0:y1, x0:x1] += part.weight
    covered = weight > MASK_WEIGHT
    out = np.zeros_like(total)
    out[covered] = total[covered] / weight[covered][:, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), covered


def _masked(picture: Grey, mask: Mask) -> Grey:
    """``picture`` with the pixels outside ``mask`` set to the mean of those inside."""
    inside = picture[mask]
    fill = float(inside.mean()) if inside.size else 0.0
    return np.where(mask, picture, fill)


def _pair_shift(
    a: _Warped, b: _Warped, scale: float, max_shift_mm: float
) -> Optional[Tuple[Tuple[float, float], Shift]]:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    ma = a.weight[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0] > MASK_WEIGHT
    mb = b.weight[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0] > MASK_WEIGHT
    both = ma & mb
    smaller = min(a.weight.size, b.weight.size)
    if both.sum() < MIN_OVERLAP * smaller:
        return None
    rows = np.flatnonzero(both.any(axis=1))
    cols = np.flatnonzero(both.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    ga = a.grey()[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0][r0:r1, c0:c1]
    gb = b.grey()[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0][r0:r1, c0:c1]
    region = both[r0:r1, c0:c1]
    shift = phase_correlate(_masked(ga, region), _masked(gb, region), max_shift_mm * scale + 2)
    if not shift.trusted:
        return None
    # b's content sits at a's moved by (dx, dy): c_a - c_b = (dx, -dy) / scale
    return (shift.dx / scale, -shift.dy / scale), shift


def _solve(n: int, pairs: Sequence[PairShift]) -> NDArray[np.float64]:
    """Corrections (n x 2, mm) fitting the used pairs, summing to zero."""
    rows: List[NDArray[np.float64]] = []
    rhs: List[Tuple[float, float]] = []
    for pair in pairs:
        if not pair.used:
            continue
        row = np.zeros(n)
        row[pair.a], row[pair.b] = pair.peak, -pair.peak
        rows.append(row)
        rhs.append((pair.offset[0] * pair.peak, pair.offset[1] * pair.peak))
    rows.append(np.ones(n))
    rhs.append((0.0, 0.0))
    for i in range(n):  # a whisper towards no correction, for shots no pair reaches
        row = np.zeros(n)
        row[i] = 1e-3
        rows.append(row)
        rhs.append((0.0, 0.0))
    solution, *_ = np.linalg.lstsq(np.vstack(rows), np.asarray(rhs), rcond=None)
    return np.asarray(solution, dtype=np.float64)


def _refine(
    warped: Sequence[Optional[_Warped]],
    scale: float,
    options: StitchOptions,
    checkpoint: Checkpoint,
) -> Tuple[NDArray[np.float64], List[PairShift]]:
    n = len(warped)
    pairs: List[PairShift] = []
    for i, j in _neighbours(warped):
        a, b = warped[i], warped[j]
        if a is not None and b is not None:
            measured = _pair_shift(a, b, scale, 2 * options.max_correction)
            checkpoint()
            if measured is not None:
                offset, shift = measured
                pairs.append(PairShift(i, j, offset, shift.peak, used=True))
    corrections = _solve(n, pairs)
    for _ in range(2):
        dropped = False
        for pair in pairs:
            fitted = corrections[pair.a] - corrections[pair.b]
            pair.residual = float(np.hypot(*(np.asarray(pair.offset) - fitted)))
            if pair.used and pair.residual > OUTLIER_MM:
                pair.used, dropped = False, True
        if not dropped:
            break
        corrections = _solve(n, pairs)
    return corrections, pairs


def _neighbours(warped: Sequence[Optional[_Warped]]) -> List[Tuple[int, int]]:
    """The pairs to register: each shot with its :data:`NEIGHBOURS` nearest."""
    chosen: Set[Tuple[int, int]] = set()
    for i, a in enumerate(warped):
        if a is None:
            continue
        others = sorted(
            (math.dist(a.centre, b.centre), j)
            for j, b in enumerate(warped)
            if b is not None and j != i
        )
        chosen.update((min(i, j), max(i, j)) for _, j in others[:NEIGHBOURS])
    return sorted(chosen)


def _bound(vector: Tuple[float, float], limit: float) -> Tuple[Tuple[float, float], bool]:
    length = math.hypot(*vector)
    if length <= limit or length == 0:
        return vector, False
    return (vector[0] * limit / length, vector[1] * limit / length), True


def _toolpath_offset(
    image: Any, covered: Mask, lattice: Lattice, raster: ToolpathRaster, limit: float
) -> Optional[Tuple[Tuple[float, float], float]]:
    expected = raster(lattice)
    if not covered.any() or expected.max() <= 0:
        return None
    rgb = image.astype(np.float64)
    picture = 0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]
    shift = phase_correlate(expected, _masked(picture, covered), limit * lattice.scale + 1)
    if not shift.trusted:
        return None
    # the picture shows the toolpath moved by (dx, dy) px: every shot is off by minus that
    offset = (-shift.dx / lattice.scale, shift.dy / lattice.scale)
    if math.hypot(*offset) > limit:
        return None
    return offset, shift.peak


def stitch(
    tiles: Sequence[Tile],
    mounting: CameraMounting,
    options: StitchOptions = StitchOptions(),
    toolpath: Optional[ToolpathRaster] = None,
    checkpoint: Checkpoint = lambda: None,
    progress: Optional[Progress] = None,
) -> Mosaic:
    """The mosaic of ``tiles`` (at least one) taken with the camera mounted as ``mounting``."""
    if not tiles:
        raise ValueError("no shots to stitch")
    lattice = _lattice(tiles, mounting, options)
    width, height = mounting.image_width, mounting.image_height
    for tile in tiles:
        if tile.image.size != (width, height):
            raise ValueError(
                f"shot {tile.index + 1} is {tile.image.size[0]}x{tile.image.size[1]} pixels, "
                f"the mounting says {width}x{height}"
            )
    weights = _weights(width, height, options.feather)
    placements = [Placement(t.index, mounting.camera_at(*t.head)) for t in tiles]
    steps = len(tiles) * (3 if options.register else 1) + (1 if options.register else 0)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, steps)
        checkpoint()

    def warp_all(shift: Sequence[Tuple[float, float]]) -> List[Optional[_Warped]]:
        warped = []
        for tile, placement, (dx, dy) in zip(tiles, placements, shift):
            camera = (placement.camera[0] + dx, placement.camera[1] + dy)
            warped.append(_warp(tile, camera, mounting, lattice, weights))
            step()
        return warped

    zero = [(0.0, 0.0)] * len(tiles)
    warped = warp_all(zero)
    mosaic = Mosaic(Image.new("RGB", lattice.size), np.zeros((1, 1), bool), lattice, placements)
    if options.register and len(tiles) > 1:
        corrections, mosaic.pairs = _refine(warped, lattice.scale, options, checkpoint)
        for placement, row in zip(placements, corrections):
            placement.correction, placement.bounded = _bound(
                (float(row[0]), float(row[1])), options.max_correction
            )
        warped = warp_all([p.correction for p in placements])
    elif options.register:
        done += len(tiles)
    if options.register and toolpath is not None:
        image, covered = _blend(lattice, warped)
        found = _toolpath_offset(image, covered, lattice, toolpath, options.max_correction)
        step()
        if found is not None:
            (gx, gy), mosaic.toolpath_peak = found
            mosaic.toolpath_offset = (gx, gy)
            for placement in placements:
                moved = (placement.correction[0] + gx, placement.correction[1] + gy)
                placement.correction, bounded = _bound(moved, options.max_correction)
                placement.bounded = placement.bounded or bounded
            warped = warp_all([p.correction for p in placements])
        else:
            done += len(tiles)
    else:
        done += len(tiles) + (1 if options.register else 0)
    image, covered = _blend(lattice, warped)
    mosaic.image, mosaic.coverage = Image.fromarray(image, "RGB"), covered
    if progress is not None:
        progress(steps, steps)
    return mosaic
