"""What a capture sequence takes on a real printer: its moves timed the way firmware runs them.

Pure module. :func:`sequence_moves` lists the moves a capture sends (retract, lift, one move
per grid point, back, lower with the unretract), exactly as :mod:`moves` writes them;
:func:`move_seconds` times one with a trapezoidal profile: accelerate, cruise, decelerate.
Every capture move starts and ends at rest (the printer confirms the head at each grid
point, and a lift or a lowering changes direction), so no junction speed is carried over.

The speed of a move is its feed rate, but no axis faster than the printer's maximum for it;
its acceleration the printer's travel acceleration, but no axis beyond its maximum. The
printer's limits come from, in this order: what the firmware reported (Marlin answers
``M503`` with ``M203`` maximum feed rates, ``M201`` maximum accelerations and ``M204``
accelerations), the OctoPrint printer profile's axis speeds (maximum feed rates only), and
Marlin 2's stock configuration (:data:`STOCK`). OctoPrint's virtual printer ignores all of
them: it sleeps a tenth of distance / feed rate per move, so it is faster than this model
says a real printer is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..numbers import finite_number

AXES = ("x", "y", "z", "e")


@dataclass(frozen=True)
class MotionLimits:
    """Maximum feed rates (mm/s) and accelerations (mm/s²) per axis, the acceleration of
    travel moves, of moves that extrude and of retracts, and where each came from."""

    max_feedrate: Mapping[str, float]
    max_acceleration: Mapping[str, float]
    travel_acceleration: float
    retract_acceleration: float
    print_acceleration: float
    sources: Mapping[str, str] = field(default_factory=dict)  # "feedrate", "acceleration"

    def describe(self) -> str:
        speeds = ", ".join(f"{a.upper()} {self.max_feedrate[a]:g}" for a in AXES)
        accels = ", ".join(f"{a.upper()} {self.max_acceleration[a]:g}" for a in AXES)
        return (
            f"max feed rates {speeds} mm/s ({self.sources.get('feedrate', '?')}); "
            f"max accelerations {accels}, travel {self.travel_acceleration:g}, extruding "
            f"{self.print_acceleration:g}, retract {self.retract_acceleration:g} mm/s² "
            f"({self.sources.get('acceleration', '?')})"
        )


# Marlin 2's Configuration.h as shipped: DEFAULT_MAX_FEEDRATE, DEFAULT_MAX_ACCELERATION,
# DEFAULT_TRAVEL_ACCELERATION, DEFAULT_RETRACT_ACCELERATION and DEFAULT_ACCELERATION.
STOCK = MotionLimits(
    max_feedrate={"x": 300.0, "y": 300.0, "z": 5.0, "e": 25.0},
    max_acceleration={"x": 3000.0, "y": 3000.0, "z": 100.0, "e": 10000.0},
    travel_acceleration=3000.0,
    retract_acceleration=3000.0,
    print_acceleration=3000.0,
    sources={"feedrate": "Marlin's stock values", "acceleration": "Marlin's stock values"},
)


@dataclass(frozen=True)
class ReportedLimits:
    """What the firmware reported; None where it said nothing."""

    max_feedrate: Optional[Dict[str, float]] = None  # M203, mm/s
    max_acceleration: Optional[Dict[str, float]] = None  # M201
    travel_acceleration: Optional[float] = None  # M204 T (or P on firmware without T)
    retract_acceleration: Optional[float] = None  # M204 R
    print_acceleration: Optional[float] = None  # M204 P (or S on older firmware)

    @property
    def empty(self) -> bool:
        return self == ReportedLimits()


_REPORT = re.compile(r"\b(M20[134])\b((?:\s+[A-Z]-?\d+(?:\.\d+)?)+)", re.IGNORECASE)
_WORD = re.compile(r"([A-Z])(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_reported_limits(lines: Iterable[str]) -> ReportedLimits:
    """Marlin's M503 (or M201/M203/M204 without parameters) report lines, e.g.
    ``echo:  M203 X500.00 Y500.00 Z12.00 E120.00`` and ``echo:  M204 P1250.00 R1250.00
    T1250.00``; lines that are not such reports are ignored."""
    reported = ReportedLimits()
    for line in lines:
        for code, words in _REPORT.findall(line):
            values = {k.upper(): float(v) for k, v in _WORD.findall(words)}
            positive = {k: v for k, v in values.items() if math.isfinite(v) and v > 0}
            per_axis = {a: positive[a.upper()] for a in AXES if a.upper() in positive}
            code = code.upper()
            if code == "M203" and len(per_axis) == len(AXES):
                reported = replace(reported, max_feedrate=per_axis)
            elif code == "M201" and len(per_axis) == len(AXES):
                reported = replace(reported, max_acceleration=per_axis)
            elif code == "M204":
                printing = positive.get("P", positive.get("S"))
                reported = replace(
                    reported,
                    travel_acceleration=positive.get("T", printing),
                    retract_acceleration=positive.get("R"),
                    print_acceleration=printing,
                )
    return reported


def is_limits_reply(line: str) -> bool:
    return _REPORT.search(line) is not None


def profile_feedrates(profile: Optional[Mapping[str, Any]]) -> Optional[Dict[str, float]]:
    """The OctoPrint printer profile's axis speeds (``axes.<axis>.speed``, mm/min) in mm/s;
    None unless all four are given."""
    axes = (profile or {}).get("axes")
    if not isinstance(axes, Mapping):
        return None
    speeds: Dict[str, float] = {}
    for axis in AXES:
        entry = axes.get(axis)
        value = finite_number(entry.get("speed")) if isinstance(entry, Mapping) else None
        if value is None or value <= 0:
            return None
        speeds[axis] = value / 60.0
    return speeds


def motion_limits(
    reported: Optional[ReportedLimits] = None,
    profile_speeds: Optional[Mapping[str, float]] = None,
) -> MotionLimits:
    """The limits to time moves with: the firmware's, else the profile's speeds, else
    :data:`STOCK` (see the module docstring)."""
    reported = reported or ReportedLimits()
    feedrate, feed_source = dict(STOCK.max_feedrate), STOCK.sources["feedrate"]
    if reported.max_feedrate is not None:
        feedrate, feed_source = dict(reported.max_feedrate), "the firmware's M203"
    elif profile_speeds is not None:
        feedrate, feed_source = dict(profile_speeds), "the printer profile's axis speeds"
    accel, accel_source = dict(STOCK.max_acceleration), STOCK.sources["acceleration"]
    if reported.max_acceleration is not None:
        accel, accel_source = dict(reported.max_acceleration), "the firmware's M201/M204"
    travel = reported.travel_acceleration or STOCK.travel_acceleration
    retract = reported.retract_acceleration or STOCK.retract_acceleration
    printing = reported.print_acceleration or STOCK.print_acceleration
    if reported.travel_acceleration is not None and reported.max_acceleration is None:
        accel_source = "the firmware's M204, Marlin's stock M201"
    return MotionLimits(
        feedrate,
        accel,
        travel,
        retract,
        printing,
        {"feedrate": feed_source, "acceleration": accel_source},
    )


@dataclass(frozen=True)
class Move:
    """One straight move: the distance per axis (mm) and its feed rate (mm/min, as F)."""

    dx: float
    dy: float
    dz: float
    de: float
    feedrate: float


def trapezoid_seconds(distance: float, speed: float, acceleration: float) -> float:
    """From rest to rest over ``distance``: up to ``speed`` at ``acceleration`` and down
    again (a triangle when the distance is too short to reach the speed)."""
    if distance <= 0:
        return 0.0
    if speed <= 0 or acceleration <= 0:
        raise ValueError("speed and acceleration must be positive")
    if distance >= speed * speed / acceleration:
        return distance / speed + speed / acceleration
    return 2.0 * math.sqrt(distance / acceleration)


def move_seconds(move: Move, limits: MotionLimits) -> float:
    """As Marlin plans it: the feed rate applies to the XYZ length (to E alone for a pure
    E move), each axis capped at its maximum feed rate and acceleration."""
    deltas = {"x": move.dx, "y": move.dy, "z": move.dz, "e": move.de}
    xyz = math.sqrt(move.dx**2 + move.dy**2 + move.dz**2)
    length = xyz if xyz > 0 else abs(move.de)
    if length == 0:
        return 0.0
    speed = move.feedrate / 60.0
    if xyz == 0:
        acceleration = limits.retract_acceleration
    elif move.de:
        acceleration = limits.print_acceleration
    else:
        acceleration = limits.travel_acceleration
    for axis, delta in deltas.items():
        if delta:
            share = length / abs(delta)
            speed = min(speed, limits.max_feedrate[axis] * share)
            acceleration = min(acceleration, limits.max_acceleration[axis] * share)
    return trapezoid_seconds(length, speed, acceleration)


def sequence_moves(
    start: Tuple[float, float, float],
    points: Sequence[Tuple[float, float]],
    travel_z: float,
    *,
    movement_speed: float,
    z_speed: float,
    retract_length: float = 0.0,
    retract_speed: float = 0.0,
) -> List[Move]:
    """The moves of one capture from ``start`` (where the job stopped) over ``points`` and
    back, as :mod:`moves` writes them: retract, lift, one XY move per point, back above the
    start, lower with the unretract."""
    x, y, z = start
    result: List[Move] = []
    if retract_length > 0:
        result.append(Move(0.0, 0.0, 0.0, -retract_length, retract_speed))
    result.append(Move(0.0, 0.0, travel_z - z, 0.0, z_speed))
    here = (x, y)
    for point in [*points, (x, y)]:
        result.append(Move(point[0] - here[0], point[1] - here[1], 0.0, 0.0, movement_speed))
        here = point
    result.append(Move(0.0, 0.0, z - travel_z, max(retract_length, 0.0), z_speed))
    return result


def sequence_seconds(moves: Iterable[Move], limits: MotionLimits) -> float:
    return sum(move_seconds(m, limits) for m in moves)
