"""Where a layer's mosaic departs from its toolpath: an aid for a person, not a verdict.

The layer's extrusion is drawn on the mosaic's lattice three ways: its *core* (half the
line width), the lines as wide as extruded, and the lines grown by :data:`TOLERANCE_MM`.
What the current layer looks like is learnt from the picture itself: the median grey of the
core against the median grey away from the grown lines; a pixel is *printed* when it is
brighter than halfway (a layer that does not stand out by :data:`MIN_CONTRAST` grey levels
is not judged). Then, in cells of :data:`CELL_MM`:

* **unprinted**: the share of the core that is not printed, over the cell and its eight
  neighbours (sparse infill leaves cells without a line), at least :data:`UNPRINTED_SHARE`;
* **unexpected**: printed pixels away from the grown lines, at least
  :data:`UNEXPECTED_SHARE` of that area.

Flagged cells that touch (eight ways) form a region; a region counts when its extent
(the box around its departing pixels) is at least :data:`MIN_REGION_MM2`. The ``score`` is the
share of the seen toolpath (core) area that lies in unprinted regions plus the unexpected
regions' printed area against the same: 0 for a layer as planned. Only what the mosaic
covers is judged. Needs numpy.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from .overlay import Polylines, draw_extrusion
from .registration import Grey
from .stitch import Lattice, Mask

CELL_MM = 1.0
TOLERANCE_MM = 0.3
MIN_CONTRAST = 20.0
UNPRINTED_SHARE = 0.5
UNEXPECTED_SHARE = 0.25
MIN_REGION_MM2 = 4.0
UNPRINTED, UNEXPECTED = "unprinted", "unexpected"
_HEAT = {UNPRINTED: (230, 40, 40), UNEXPECTED: (60, 110, 255)}


@dataclass
class Region:
    kind: str
    bounds: Tuple[float, float, float, float]  # mm
    pixels: int  # departing pixels in it

    @property
    def centre(self) -> Tuple[float, float]:
        return ((self.bounds[0] + self.bounds[2]) / 2, (self.bounds[1] + self.bounds[3]) / 2)

    @property
    def area(self) -> float:
        return (self.bounds[2] - self.bounds[0]) * (self.bounds[3] - self.bounds[1])

    def to_dict(self) -> Dict[str, Any]:
        min_x, min_y, max_x, max_y = self.bounds
        return {
            "kind": self.kind,
            "center": {"x": round(self.centre[0], 2), "y": round(self.centre[1], 2)},
            "bounds": {
                "min_x": round(min_x, 2),
                "min_y": round(min_y, 2),
                "max_x": round(max_x, 2),
                "max_y": round(max_y, 2),
            },
            "area_mm2": round(self.area, 2),
        }


@dataclass
class Departure:
    score: Optional[float] = None
    regions: List[Region] = field(default_factory=list)
    toolpath_seen: Optional[float] = None  # share of the layer's toolpath the mosaic covers
    contrast: Optional[float] = None  # grey levels between the layer and its surroundings
    error: Optional[str] = None
    heat: Dict[str, NDArray[np.float64]] = field(default_factory=dict)  # kind -> cell shares
    cell_px: int = 1

    def to_dict(self) -> Dict[str, Any]:
        return {
            "score": None if self.score is None else round(self.score, 4),
            "regions": [r.to_dict() for r in self.regions],
            "toolpath_seen": None if self.toolpath_seen is None else round(self.toolpath_seen, 3),
            "contrast": None if self.contrast is None else round(self.contrast, 1),
            "cell_mm": CELL_MM,
            "error": self.error,
        }


def _cells(mask: NDArray[Any], cell: int) -> NDArray[np.float64]:
    """Per-cell counts of ``mask`` (cells of ``cell`` x ``cell`` pixels, the last ones cut)."""
    rows, cols = mask.shape[0] // cell, mask.shape[1] // cell
    cut = mask[: rows * cell, : cols * cell].astype(np.float64)
    return np.asarray(cut.reshape(rows, cell, cols, cell).sum(axis=(1, 3)), dtype=np.float64)


def _around(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each cell's count plus its eight neighbours'."""
    padded = np.pad(counts, 1)
    rows, cols = counts.shape
    return np.asarray(
        sum(
            padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ),
        dtype=np.float64,
    )


def _components(flags: NDArray[np.bool_]) -> List[List[Tuple[int, int]]]:
    seen = np.zeros_like(flags)
    found = []
    rows, cols = flags.shape
    for r0, c0 in zip(*np.nonzero(flags)):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        queue, cells = deque([(int(r0), int(c0))]), []
        while queue:
            r, c = queue.popleft()
            cells.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    nr, nc = r + dr, c + dc
                    if 0 <= nr < rows and 0 <= nc < cols and flags[nr, nc] and not seen[nr, nc]:
                        seen[nr, nc] = True
                        queue.append((nr, nc))
        found.append(cells)
    return found


def _region(
    kind: str, cells: List[Tuple[int, int]], pixels: Mask, cell: int, lattice: Lattice
) -> Optional[Region]:
    inside = np.zeros_like(pixels)
    for r, c in cells:
        inside[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = True
    rows, cols = np.nonzero(pixels & inside)
    if rows.size == 0:
        return None
    min_x, max_y = lattice.bed(float(cols.min()), float(rows.min()))
    max_x, min_y = lattice.bed(float(cols.max() + 1), float(rows.max() + 1))
    return Region(kind, (min_x, min_y, max_x, max_y), int(rows.size))


def departure_map(
    picture: Grey, covered: Mask, lattice: Lattice, polylines: Polylines
) -> Departure:
    """The departure map of a mosaic (grey levels, its coverage) from its layer's toolpath."""
    size = lattice.size
    result = Departure()

    def mask(**kw: float) -> Mask:
        drawn = draw_extrusion(polylines, lattice.rect, lattice.scale, size, **kw)
        return np.asarray(drawn, dtype=np.uint8) > 0

    core = mask(factor=0.5)
    grown = mask(grow=TOLERANCE_MM)
    if not core.any():
        result.error = "the layer's toolpath has no extrusion to compare with"
        return result
    seen_core = core & covered
    away = ~grown & covered
    result.toolpath_seen = float(seen_core.sum() / core.sum())
    if seen_core.sum() == 0 or away.sum() == 0:
        result.error = "the mosaic does not cover the layer's toolpath"
        return result
    inside, outside = float(np.median(picture[seen_core])), float(np.median(picture[away]))
    result.contrast = inside - outside
    if result.contrast < MIN_CONTRAST:
        result.error = (
            f"the layer does not stand out from what lies around it ({result.contrast:.0f} grey "
            f"levels, at least {MIN_CONTRAST:g} needed): not judged"
        )
        return result
    threshold = (inside + outside) / 2
    printed = picture > threshold
    unprinted_px = seen_core & ~printed
    unexpected_px = away & printed
    cell = max(1, round(CELL_MM * lattice.scale))
    result.cell_px = cell
    core_cells = _around(_cells(seen_core, cell))
    unprinted_share = np.divide(
        _around(_cells(unprinted_px, cell)),
        core_cells,
        out=np.zeros_like(core_cells),
        where=core_cells > 0,
    )
    unprinted_flags = (core_cells >= 0.1 * cell * cell) & (unprinted_share >= UNPRINTED_SHARE)
    away_cells = _cells(away, cell)
    unexpected_share = np.divide(
        _cells(unexpected_px, cell),
        away_cells,
        out=np.zeros_like(away_cells),
        where=away_cells > 0,
    )
    unexpected_flags = (away_cells >= 0.25 * cell * cell) & (unexpected_share >= UNEXPECTED_SHARE)
    result.heat = {UNPRINTED: unprinted_share, UNEXPECTED: unexpected_share}
    departing = 0
    for kind, flags, pixels in (
        (UNPRINTED, unprinted_flags, unprinted_px),
        (UNEXPECTED, unexpected_flags, unexpected_px),
    ):
        for cells in _components(flags):
            region = _region(kind, cells, pixels, cell, lattice)
            if region is not None and region.area >= MIN_REGION_MM2:
                result.regions.append(region)
                departing += region.pixels
    result.regions.sort(key=lambda r: -r.area)
    result.score = float(departing / seen_core.sum())
    return result


def heat_overlay(departure: Departure, lattice: Lattice) -> Image.Image:
    """An ``RGBA`` picture of the departure map on the lattice: red where the layer looks
    unprinted, blue where it looks printed without a toolpath, regions outlined."""
    size = lattice.size
    overlay = Image.new("RGBA", size, (0, 0, 0, 0))
    cell = departure.cell_px
    for kind, shares in departure.heat.items():
        alpha = np.clip((shares - 0.2) / 0.6, 0, 1) * 170
        layer = np.zeros((*shares.shape, 4), dtype=np.uint8)
        layer[:, :, :3] = _HEAT[kind]
        layer[:, :, 3] = alpha.astype(np.uint8)
        cells = Image.fromarray(layer, "RGBA")
        scaled = cells.resize(
            (shares.shape[1] * cell, shares.shape[0] * cell), Image.Resampling.NEAREST
        )
        overlay.alpha_composite(scaled.crop((0, 0, *size)))
    draw = ImageDraw.Draw(overlay)
    for region in departure.regions:
        x0, y0 = lattice.px(region.bounds[0], region.bounds[3])
        x1, y1 = lattice.px(region.bounds[2], region.bounds[1])
        width = max(2, math.ceil(lattice.scale * 0.15))
        draw.rectangle((x0, y0, x1, y1), outline=(*_HEAT[region.kind], 255), width=width)
    return overlay
