"""The G-code of a capture sequence: one function per step, and nothing else writes G-code.

The safe path these build, in order::

    G90                       absolute XYZ for our moves
    M83                       relative E, only when we retract
    G1 E-1 F2100              retract (skipped when the length is 0)
    G0 Z5.6 F600              lift to travel height before any XY move
    G0 X105 Y85 F6000         one move per grid point, each confirmed (M400 + M114,
                              or G4 P0 + M114, or M114 polls: ``wait_for_moves``)
    ...
    G0 X130.5 Y100 F6000      back above the stop position, still at travel height
    G0 Z0.6 F600              lower last, once the head is confirmed above the stop
    G1 E1 F2100               unretract
    G91 / M82 or M83 / G1 F.. restore the job's modes (after a confirm, see sequence.py)

All functions are pure; numbers are written compactly (``125``, ``105.5``, at most three
decimals, never ``-0``) so the printer is told exactly the rounded value we compare against.
"""

from __future__ import annotations

import math
from typing import List, Optional

from .ports import MotionLike, Position
from .settings import WAIT_POLL

# Extra height above the stop Z and above the printed top while the head is away from the
# part, so a travel never drags the nozzle over the print even with a 0 mm Z offset.
TRAVEL_CLEARANCE = 1.0

# Asks the printer where the head is (see replies.py for the answers we read).
POSITION_QUERY = "M114"

# Largest difference (mm) between a commanded and a reported axis that still counts as there.
POSITION_TOLERANCE = 0.01

# A harmless line that makes the printer answer (a temperature report): sent to wake
# OctoPrint's send loop when its own pause stalls (printer_port.py).
WAKE_COMMANDS = ("M105",)


def format_number(value: float) -> str:
    """``125.0`` -> ``"125"``, ``105.50`` -> ``"105.5"``, ``-0.0001`` -> ``"0"``."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite coordinate: {value!r}")
    rounded = round(number, 3)
    if rounded == 0:
        return "0"
    return f"{rounded:.3f}".rstrip("0").rstrip(".")


def as_sent(value: float) -> float:
    """The value the printer receives for ``value`` (what its position report should show)."""
    return float(format_number(value))


def position_as_sent(position: Position) -> Position:
    """:func:`as_sent` for each known axis of ``position`` (E is left as it is)."""
    x, y, z = (None if v is None else as_sent(v) for v in (position.x, position.y, position.z))
    return Position(x, y, z, position.e)


def reached(reported: Position, commanded: Position) -> bool:
    """Whether a position report shows the head at the commanded axes (an axis commanded
    as None is not checked: a lift only commands Z)."""
    pairs = ((reported.x, commanded.x), (reported.y, commanded.y), (reported.z, commanded.z))
    return all(
        want is None or (got is not None and abs(got - want) <= POSITION_TOLERANCE)
        for got, want in pairs
    )


def travel_height(capture_z: float, stop_z: float, layer_z: float) -> float:
    """Z for all travel away from the stop: the capture height, but never less than the
    clearance above where the job stopped (a Z-hop may be above the capture height) or
    above the printed top."""
    return as_sent(max(capture_z, stop_z + TRAVEL_CLEARANCE, layer_z + TRAVEL_CLEARANCE))


def retract_planned(retract_length: float, motion: MotionLike) -> bool:
    """Retract only when asked to and when we know the job's E mode to restore afterwards:
    restoring the wrong one would make the job's next extrusions wildly wrong."""
    return retract_length > 0 and motion.absolute_e is not None


def setup_commands(retract: bool) -> List[str]:
    """Absolute XYZ for our moves; relative E so the retract is independent of the E count."""
    return ["G90", "M83"] if retract else ["G90"]


def retract_commands(length: float, speed: float) -> List[str]:
    if length <= 0:
        return []
    return [f"G1 E-{format_number(length)} F{format_number(speed)}"]


def lift_commands(travel_z: float, z_speed: float) -> List[str]:
    return [_z_move(travel_z, z_speed)]


def move_commands(x: float, y: float, speed: float) -> List[str]:
    """An XY move at the current (travel) height: to a grid point or back above the stop."""
    return [f"G0 X{format_number(x)} Y{format_number(y)} F{format_number(speed)}"]


def lower_commands(stop_z: float, z_speed: float) -> List[str]:
    """Once the head is confirmed above the stop XY: back down to the stop Z."""
    return [_z_move(stop_z, z_speed)]


def unretract_commands(length: float, speed: float) -> List[str]:
    if length <= 0:
        return []
    return [f"G1 E{format_number(length)} F{format_number(speed)}"]


def restore_mode_commands(motion: MotionLike) -> List[str]:
    """Give the job back the modes it had: we switch to G90, and to M83 when we retract;
    an unknown XYZ mode is left at the firmware default G90. Marlin's G90 (and G91) also
    set the E mode, so a known E mode is restored even when we did not retract: an M83 job
    would otherwise go on with absolute E."""
    commands: List[str] = []
    if motion.absolute_xyz is False:
        commands.append("G91")
    if motion.absolute_e is not None:
        commands.append("M82" if motion.absolute_e else "M83")
    feedrate: Optional[float] = motion.feedrate
    if feedrate is not None and math.isfinite(feedrate) and feedrate > 0:
        commands.append(f"G1 F{format_number(feedrate)}")
    return commands


def confirm_commands(wait_for_moves: str) -> List[str]:
    """Wait until the queued moves are done, then ask for the position. ``wait_for_moves``
    is the waiting G-code itself ("M400", "G4 P0"; Marlin's G4 also waits for the move
    queue) or "poll": M114 alone, which the sequence repeats until it shows the target."""
    wait = [] if wait_for_moves == WAIT_POLL else [wait_for_moves]
    return [*wait, POSITION_QUERY]


def _z_move(z: float, z_speed: float) -> str:
    return f"G0 Z{format_number(z)} F{format_number(z_speed)}"
