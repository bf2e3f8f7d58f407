"""Grid plan: which head positions a layer capture visits, in which order, at which height.

Pure module (no OctoPrint imports). Position indexes are row-major from the front-left
corner (row 0 = lowest Y, column 0 = lowest X, ``index = row * size + col``) so a file name
means the same physical position on every layer. The visiting order is a snake
(boustrophedon) path over the rows, which never jumps back across the whole grid.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..settings import Bounds, grid_offsets

_logger = logging.getLogger("octoprint.plugins.layercapture.grid")

DECIMALS = 3
"""Planned coordinates are rounded to this many decimals (G-code needs no more)."""


def _mm(value: float) -> float:
    return round(float(value), DECIMALS)


def _text(value: float) -> str:
    """A number in a reason: ``245.0``, ``10.25``."""
    return repr(_mm(value))


@dataclass(frozen=True)
class GridPoint:
    """A position the head visits. ``z`` is the capture Z (layer Z plus offset)."""

    index: int
    row: int
    col: int
    x: float
    y: float
    z: float


@dataclass(frozen=True)
class SkippedPoint:
    """A grid position that is not visited, and why."""

    index: int
    x: float
    y: float
    z: float
    reason: str


@dataclass(frozen=True)
class GridPlan:
    """The positions of one layer capture.

    ``points`` are in visiting order (a snake); their ``index`` stays row-major.
    ``z_raised_for_clearance`` is true when the configured offset was below the minimum
    clearance and ``capture_z`` was raised to ``layer_z + min_clearance``.
    """

    points: Tuple[GridPoint, ...]
    skipped: Tuple[SkippedPoint, ...]
    capture_z: float
    size: int
    spacing: float
    center_x: float
    center_y: float
    layer_z: float = 0.0
    z_offset: float = 0.0
    z_raised_for_clearance: bool = False
    printed_top: Optional[float] = None  # the highest Z printed so far, if known
    max_z: Optional[float] = None  # the highest Z the head may go to, if known

    @property
    def count(self) -> int:
        """Number of grid positions, visited or skipped (``size * size``)."""
        return self.size * self.size

    def point(self, index: int) -> Optional[GridPoint]:
        """The visited point with this row-major index, or None (skipped/unknown)."""
        for p in self.points:
            if p.index == index:
                return p
        return None


def _check_finite(**values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


def _outside_reasons(x: float, y: float, bounds: Bounds) -> List[str]:
    reasons = []
    for axis, value, low, high in (
        ("X", x, bounds.min_x, bounds.max_x),
        ("Y", y, bounds.min_y, bounds.max_y),
    ):
        if value < low:
            reasons.append(f"{axis} {_text(value)} is below bed min {axis} {_text(low)}")
        elif value > high:
            reasons.append(f"{axis} {_text(value)} is beyond bed max {axis} {_text(high)}")
    distance = bounds.outside_circle(x, y)
    if distance is not None and bounds.radius is not None:
        reasons.append(
            f"{_text(distance)} mm from the centre of the round bed (radius {_text(bounds.radius)})"
        )
    return reasons


def _capture_z(
    layer_z: float, z_offset: float, min_clearance: float, printed_top: Optional[float]
) -> Tuple[float, bool]:
    """``layer_z + z_offset``, but at least ``min_clearance`` above this layer and above
    the highest Z printed so far (rounded up)."""
    wanted = layer_z + z_offset
    lowest = max(layer_z, layer_z if printed_top is None else printed_top) + min_clearance
    raised = wanted < lowest
    target = max(wanted, lowest)
    z = _mm(target)
    if z < lowest:  # rounding must never bring the head below the clearance
        z = _mm(z + 10**-DECIMALS)
    return z, raised


def _snake_orders(size: int) -> List[List[Tuple[int, int]]]:
    """The four snake paths over a ``size`` x ``size`` grid as (row, col) lists.

    First the default (front-left corner, left to right), then front-right, back-left,
    back-right.
    """
    orders = []
    for rows in (list(range(size)), list(range(size - 1, -1, -1))):
        for first_cols in (list(range(size)), list(range(size - 1, -1, -1))):
            order: List[Tuple[int, int]] = []
            for k, row in enumerate(rows):
                cols = first_cols if k % 2 == 0 else first_cols[::-1]
                order.extend((row, col) for col in cols)
            orders.append(order)
    return orders


def plan_grid(
    center_x: float,
    center_y: float,
    spacing: float,
    size: int,
    layer_z: float,
    z_offset: float,
    bounds: Optional[Bounds],
    min_clearance: float = 1.0,
    start_xy: Optional[Tuple[float, float]] = None,
    printed_top: Optional[float] = None,
) -> GridPlan:
    """Plan the positions of one layer capture.

    ``capture_z = layer_z + z_offset``, raised to ``min_clearance`` above the layer, and
    above ``printed_top`` (the highest Z printed so far: in a sequential print an earlier
    object may be taller), when the offset is smaller (the head never travels at print
    height over the part). With a round bed (``bounds.radius``) positions off the circle
    are skipped too. With ``bounds``,
    positions whose X or Y lie outside ``[min, max]`` (inclusive) are skipped with a reason,
    and every position is skipped when ``bounds.max_z`` is set and ``capture_z`` exceeds it.
    With ``bounds=None`` nothing is skipped: the caller (settings validation) is then
    responsible for the positions being reachable.

    ``start_xy`` is where the head is when the sequence starts. The snake then begins at
    one of the four corners: the one with the shortest round trip from ``start_xy`` and
    back (see :func:`travel_distance`), of two such the one nearest to ``start_xy``.
    Without it the snake starts front-left. Indexes stay row-major whatever the order.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"grid size must be a whole number >= 1, got {size!r}")
    _check_finite(
        center_x=center_x,
        center_y=center_y,
        spacing=spacing,
        layer_z=layer_z,
        z_offset=z_offset,
        min_clearance=min_clearance,
    )
    if spacing <= 0 and size > 1:
        raise ValueError(f"grid spacing must be greater than 0, got {spacing!r}")
    if min_clearance < 0:
        raise ValueError(f"min_clearance must be >= 0, got {min_clearance!r}")

    if printed_top is not None:
        _check_finite(printed_top=printed_top)
    capture_z, raised = _capture_z(layer_z, z_offset, min_clearance, printed_top)
    z_reason = None
    if bounds is not None and bounds.max_z is not None and capture_z > bounds.max_z:
        z_reason = f"capture Z {_text(capture_z)} is above max Z {_text(bounds.max_z)}"

    offsets = grid_offsets(size, spacing)
    planned = {}
    skipped = []
    for row, dy in enumerate(offsets):
        for col, dx in enumerate(offsets):
            index = row * size + col
            x, y = _mm(center_x + dx), _mm(center_y + dy)
            reasons = [] if bounds is None else _outside_reasons(x, y, bounds)
            if z_reason:
                reasons.append(z_reason)
            if reasons:
                skipped.append(SkippedPoint(index, x, y, capture_z, "; ".join(reasons)))
            else:
                planned[(row, col)] = GridPoint(index, row, col, x, y, capture_z)

    orders = [[planned[rc] for rc in order if rc in planned] for order in _snake_orders(size)]
    visit = orders[0]
    if start_xy is not None and visit:
        start = (float(start_xy[0]), float(start_xy[1]))

        def cost(order: List[GridPoint]) -> Tuple[float, float]:
            # round trip first (opposite corners tie on it), then the shorter first leg;
            # min() keeps the first of equal candidates, so the default order wins ties
            first_leg = math.dist(start, (order[0].x, order[0].y))
            return round(_round_trip(order, start), 6), round(first_leg, 6)

        visit = min(orders, key=cost)

    if raised:
        _logger.debug(
            f"z offset {z_offset:g} is below the clearance {min_clearance:g}; "
            f"capturing at Z {capture_z:g}"
        )
    return GridPlan(
        points=tuple(visit),
        skipped=tuple(skipped),
        capture_z=capture_z,
        size=size,
        spacing=float(spacing),
        center_x=float(center_x),
        center_y=float(center_y),
        layer_z=float(layer_z),
        z_offset=float(z_offset),
        z_raised_for_clearance=raised,
        printed_top=printed_top,
        max_z=None if bounds is None else bounds.max_z,
    )


def path_length(points: Sequence[Tuple[float, float]]) -> float:
    """Length of the polyline through ``points`` (mm)."""
    return sum(math.dist(a, b) for a, b in zip(points, points[1:]))


def _round_trip(points: Sequence[GridPoint], start: Tuple[float, float]) -> float:
    if not points:
        return 0.0
    return path_length([start, *((p.x, p.y) for p in points), start])


def travel_distance(plan: GridPlan, start_xy: Tuple[float, float]) -> float:
    """XY path length from ``start_xy`` through the visited points and back (mm)."""
    return _round_trip(plan.points, (float(start_xy[0]), float(start_xy[1])))
