"""The G-code of a capture sequence: one function per step, and nothing else writes G-code.

The safe path these build, in order::

    G90                       absolute XYZ, only when the job is in G91
    M83                       relative E, only when we retract with relative E moves
    G1 E-1 F2100              retract (G1 E<e - 1> in an absolute job whose E the printer
                              confirmed; G10 when the file uses firmware retraction; none
                              when the length is 0 or the job's E mode is not known)
    G0 Z5.6 F600              lift to travel height before any XY move
    G0 X105 Y85 F6000         one move per grid point, each confirmed (M400 + M114,
                              or G4 P0 + M114, or M114 polls: ``wait_for_moves``)
    ...
    G0 X130.5 Y100 F6000      back above the return point, still at travel height
    G1 Z0.6 E1 F600           lower last, once the head is confirmed above the return
                              point, unretracting on the way down (E<e> in an absolute
                              job, G11 after it with firmware retraction) so no blob is
                              left standing still
    G91 / M83 ... / G1 F..    the job's modes given back, as its own mode commands in
                              their order (see :mod:`firmware`), after a confirm

All functions are pure; numbers are written compactly (``125``, ``105.5``, at most three
decimals, never ``-0``) so the printer is told exactly the rounded value we compare against.
"""

from __future__ import annotations

import math
from typing import List, Optional

from ..settings import WAIT_POLL
from .firmware import XYZ_ABSOLUTE, ModeHistory
from .ports import Position

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


def format_e(value: float) -> str:
    """An absolute E as the job wrote it: up to five decimals (slicers write five), so the
    job's next move extrudes exactly what the file says."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite E: {value!r}")
    rounded = round(number, 5)
    if rounded == 0:
        return "0"
    return f"{rounded:.5f}".rstrip("0").rstrip(".")


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


def travel_height(
    capture_z: float, stop_z: float, layer_z: float, printed_top: Optional[float] = None
) -> float:
    """Z for all travel away from the stop: the capture height, but never less than the
    clearance above where the job stopped (a Z-hop may be above the capture height), above
    this layer, or above the highest Z printed so far in the job (in a sequential print an
    earlier object may stand taller than the one being printed)."""
    floors = [capture_z, stop_z + TRAVEL_CLEARANCE, layer_z + TRAVEL_CLEARANCE]
    if printed_top is not None:
        floors.append(printed_top + TRAVEL_CLEARANCE)
    return as_sent(max(floors))


# How the sequence retracts: not at all, with E moves in relative E, with E moves in the
# job's absolute E, or with the firmware's own retraction (G10/G11) where the file uses it.
RETRACT_NONE = "none"
RETRACT_E = "e"
RETRACT_E_ABSOLUTE = "e_absolute"
RETRACT_FIRMWARE = "firmware"

# Largest difference between the file's E and the printer's report of it that still counts
# as the same (Marlin reports E with two decimals)
E_REPORT_TOLERANCE = 0.01


def retract_kind(
    retract_length: float,
    modes: ModeHistory,
    firmware_retraction: bool,
    retracted: bool,
    confirmed_e: Optional[float] = None,
) -> str:
    """How to retract where the job left the head (its modes and firmware retraction).

    With firmware retraction in the file, G10/G11 need no E mode at all; when the file's
    last G10 is not recovered yet the filament is already retracted, and the job's own G11
    will recover it. In a job in G90 whose E every firmware family reads as absolute, and
    whose E the printer confirmed (``confirmed_e``: the file's E, which the printer's
    report agreed with), the retract and the unretract are absolute E moves to that E minus
    and plus the length: no mode changes at all. Otherwise E moves need relative E (M83),
    so only a job whose E mode the file established can be given it back; a mode set
    outside the file (a start macro) is left alone and nothing is retracted."""
    if retract_length <= 0:
        return RETRACT_NONE
    if firmware_retraction:
        return RETRACT_NONE if retracted else RETRACT_FIRMWARE
    if modes.e is None:
        return RETRACT_NONE
    if confirmed_e is not None and not modes.xyz_relative and modes.absolute_e(None) is True:
        return RETRACT_E_ABSOLUTE
    return RETRACT_E


def confirmed_e(file_e: Optional[float], reported_e: Optional[float]) -> Optional[float]:
    """The file's E when the printer's report agrees with it, else None."""
    if file_e is None or reported_e is None:
        return None
    if not (math.isfinite(file_e) and math.isfinite(reported_e)):
        return None
    return file_e if abs(file_e - reported_e) <= E_REPORT_TOLERANCE else None


def setup_commands(modes: ModeHistory, kind: str) -> List[str]:
    """Absolute XYZ for our moves (only when the job is in G91: on Marlin a G90 would also
    switch E to absolute); relative E so an E retract is independent of the E count."""
    commands = [XYZ_ABSOLUTE] if modes.xyz_relative else []
    if kind == RETRACT_E:
        commands.append("M83")
    return commands


def changes_modes(modes: ModeHistory, kind: str) -> bool:
    return bool(setup_commands(modes, kind))


def retract_commands(
    kind: str, length: float, speed: float, e_at: Optional[float] = None
) -> List[str]:
    """``e_at``: the job's E, for an absolute retract."""
    if kind == RETRACT_FIRMWARE:
        return ["G10"]
    if length <= 0:
        return []
    if kind == RETRACT_E_ABSOLUTE:
        assert e_at is not None
        return [f"G1 E{format_e(e_at - length)} F{format_number(speed)}"]
    if kind != RETRACT_E:
        return []
    return [f"G1 E-{format_number(length)} F{format_number(speed)}"]


def lift_commands(travel_z: float, z_speed: float) -> List[str]:
    return [_z_move(travel_z, z_speed)]


def move_commands(x: float, y: float, speed: float) -> List[str]:
    """An XY move at the current (travel) height: to a grid point or back above the stop."""
    return [f"G0 X{format_number(x)} Y{format_number(y)} F{format_number(speed)}"]


def lower_commands(
    z: float, z_speed: float, kind: str, length: float, e_at: Optional[float] = None
) -> List[str]:
    """Once the head is confirmed above the return XY: back down to its Z, unretracting on
    the way (E moves: by the length, or to the job's E ``e_at`` when absolute) or right
    after (firmware retraction)."""
    if kind == RETRACT_E and length > 0:
        return [f"G1 Z{format_number(z)} E{format_number(length)} F{format_number(z_speed)}"]
    if kind == RETRACT_E_ABSOLUTE and length > 0:
        assert e_at is not None
        return [f"G1 Z{format_number(z)} E{format_e(e_at)} F{format_number(z_speed)}"]
    commands = [_z_move(z, z_speed)]
    if kind == RETRACT_FIRMWARE:
        commands.append("G11")
    return commands


def lower_again_commands(z: float, z_speed: float) -> List[str]:
    """The lowering sent again when the printer reports the head elsewhere: Z only, since
    the E of an unretract is relative and must not run twice."""
    return [_z_move(z, z_speed)]


def restore_mode_commands(modes: ModeHistory, kind: str, feedrate: Optional[float]) -> List[str]:
    """Give the job back the modes it had, when we changed them (see :func:`setup_commands`):
    its own last mode commands in their order, which restores them on every firmware
    (:meth:`ModeHistory.replay`); then its feed rate."""
    commands = modes.replay() if changes_modes(modes, kind) else []
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
