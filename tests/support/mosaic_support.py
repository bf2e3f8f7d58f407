"""The toolhead mosaic's test material: the prusa_mosaic fixture as a fake toolhead
camera's scene, and a grid of shots of it (shared by the unit tests and the benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from octoprint_layercapture.analysis.mosaic.overlay import draw_extrusion
from octoprint_layercapture.analysis.mosaic.registration import grey, phase_correlate
from octoprint_layercapture.analysis.mosaic.stitch import Lattice, Mosaic, Tile
from octoprint_layercapture.cameras.mounting import CameraMounting
from octoprint_layercapture.cameras.toolhead import (
    FakeToolheadOptions,
    Scene,
    render_bed,
    render_view,
    shot_offset,
)
from octoprint_layercapture.cameras.toolhead_camera import printed_so_far

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prusa_mosaic.gcode"
CENTRE = (100.0, 100.0)
PLAIN = FakeToolheadOptions()
MOUNTING = CameraMounting(mode="toolhead", offset_x=3.0, offset_y=-2.0, scale=16.0, rotation=2.0)


def scene(layer: int = 3, options: FakeToolheadOptions = PLAIN) -> Scene:
    """The fixture printed up to layer ``layer`` (0.3 mm layers)."""
    return printed_so_far(FIXTURE, None, None, round(0.3 * layer, 3), options, layer)


def polylines(of: Scene) -> List[Dict[str, Any]]:
    """The current layer as toolpath polylines."""
    assert of.current is not None
    return [{"xy": list(s.xy), "width": s.width, "type": None} for s in of.current.strokes]


def raster(lines: Sequence[Dict[str, Any]]) -> Any:
    def draw(lattice: Lattice) -> Any:
        mask = draw_extrusion(lines, lattice.rect, lattice.scale, lattice.size)
        return np.asarray(mask, dtype=np.float64)

    return draw


def heads(size: int, spacing: float) -> List[Tuple[float, float]]:
    half = size // 2
    return [
        (CENTRE[0] + (c - half) * spacing, CENTRE[1] + (r - half) * spacing)
        for r in range(size)
        for c in range(size)
    ]


def shots(
    of: Scene,
    size: int = 3,
    spacing: float = 15.0,
    mounting: CameraMounting = MOUNTING,
    options: FakeToolheadOptions = PLAIN,
    layer: int = 3,
) -> List[Tile]:
    """The grid's shots as the fake camera takes them, each at the reported position."""
    tiles = []
    for index, head in enumerate(heads(size, spacing)):
        dx, dy = shot_offset(options, layer, index)
        image = render_view(
            of, mounting, (head[0] + dx, head[1] + dy), options.pixel_noise, layer * 1000 + index
        )
        tiles.append(Tile(index, image, head))
    return tiles


def placement_errors(
    mosaic: Mosaic, truth_scene: Scene, window: Optional[Tuple[int, int]] = None
) -> List[float]:
    """Per shot: the shift (px) between the mosaic and a direct drawing of the same bed
    area, around the middle of the shot."""
    lattice = mosaic.lattice
    truth = grey(render_bed(truth_scene, lattice.rect, lattice.scale))
    picture = grey(mosaic.image)
    rows, cols = window or (200, 280)
    errors = []
    for placement in mosaic.placements:
        col, row = lattice.px(*placement.camera)
        r0, c0 = int(row) - rows // 2, int(col) - cols // 2
        part = (slice(r0, r0 + rows), slice(c0, c0 + cols))
        shift = phase_correlate(truth[part], picture[part], max_shift=24)
        errors.append(float(np.hypot(shift.dx, shift.dy)))
    return errors
