"""Layer detection from the G-code lines of a print job.

The plugin feeds every line of the printed file to :class:`LayerTracker` as OctoPrint
queues it (``octoprint.comm.protocol.gcode.queuing``, on the comm thread) and every
``@LAYERCAPTURE`` at-command to :meth:`LayerTracker.feed_marker`. The tracker follows the
printer's modes and position and says when a target layer is complete. This module is pure:
standard library only, no I/O, no locks, no logging.

Rules
-----
* A *layer* is a distinct height at which the print extrudes: a G0/G1/G2/G3 move in
  absolute XYZ mode (G90) with X or Y (arcs: also I, J or R) and a positive E delta
  (M83: ``E > 0``; M82: ``E`` above the current E). Layer k is the k-th such height,
  1-based; :attr:`LayerTracker.layer` is 0 before the first extrusion.
* A new layer starts when an extruding move ends at least ``min_layer_height`` above the
  current layer height (a Z wobble smaller than that is the same layer). Its first
  extruding move is the *trigger line*: layer k is complete and nothing of layer k+1 has been
  sent. :meth:`LayerTracker.feed` returns a :class:`LayerTrigger` for that very line when
  layer k is a target; the tracker's state already includes the line's effects, and
  ``LayerTrigger.state_before`` is the motion state before it (where the head is while the
  plugin holds the line back).
* Z-hops, travel moves, retract/unretract (E without XY), and every move in relative XYZ
  mode (G91) never make a layer (G91 moves still update the position). A Z lift at the end
  of the print without extrusion never counts.
* Purge lines: on the first layer, an extrusion more than ``min_layer_height`` *below* the
  current layer height re-bases the current layer height to it without counting a layer.
  So a purge line drawn higher than the first layer doesn't shift the count. (Heuristic; a
  purge line drawn *lower* than the first layer counts as layer 1 unless markers are used.)
* Sequential prints ("complete individual objects"): after the first layer, an extrusion
  more than ``min_layer_height`` below the current layer is the next object's first layer:
  a new layer, like a rise (the file's layer list goes on counting, as the slicer's does).
  The head then stands low beside finished objects, so the plugin never travels below
  :attr:`LayerTracker.max_printed_z` (a trigger's ``printed_top``).
* Targets: ``every_n`` (layers n, 2n, ...) and Z heights, each firing once, on the first
  completed layer whose height is >= it (1e-6 tolerance). One trigger can carry several
  reasons. The last layer never completes (no layer starts after it), so it never triggers.
* Markers: ``@LAYERCAPTURE [layer_num] [layer_z]`` in the slicer's before- or after-layer-
  change G-code, with PrusaSlicer's meaning (``layer_num`` is the 0-based index of the layer
  that is starting, ``layer_z`` its height). Once one marker is seen, markers decide: marker
  ``n`` (n >= 1) means layer n (1-based) is complete; motion keeps tracking position and
  heights but no longer counts or triggers. A marker without a usable ``layer_num`` counts
  as the next one (the k-th marker of a job means ``layer_num = k - 1``). The trigger's ``z``
  is the height the tracker saw layer n extrude at; when nothing was extruded yet, the
  marker's ``layer_z`` (the starting layer's height), else the current Z, else 0.0.
* Vase (spiral) mode: an extruding move in absolute XYZ that rises slightly (by more than 0
  and at most ``max(min_layer_height, 0.05)``) is a spiral move and never triggers. When
  :data:`VASE_MIN_MOVES` consecutive extruding moves are spiral moves,
  :attr:`LayerTracker.vase_mode` becomes True and nothing (markers included) triggers for
  the rest of the job. Solid bottom layers before the spiral trigger as usual, except the
  last one (its "next layer" is the spiral). Layers keep being counted by the rule above (a
  spiral rises continuously, so the count then follows ``min_layer_height`` steps and means
  little).
* Modes and positions: firmware defaults at the start (G90, M82, position unknown). What
  G90/G91 do to the E mode follows the firmware family (:mod:`firmware`; an unknown family
  is read as Marlin 2, where they set it too). :attr:`MotionState.modes` keeps the mode
  commands the file gave, :attr:`MotionState.absolute_e` is None until the file established
  the E mode. Firmware retraction: a bare G10 retracts, G11 recovers (G10 with P or L sets
  tool offsets or temperatures and is ignored). G92 sets the given axes (no axis given:
  nothing, like Marlin). G28 makes the homed axes (all three when none is named)
  *unknown* (``None``) rather than 0, since the home position depends on the machine; G29
  makes X, Y and Z unknown. Relative moves keep an unknown axis unknown. In M82 with E
  unknown, E is taken as 0 to decide whether a move extrudes.
* Robustness: ``feed`` and ``feed_marker`` never raise. Lowercase commands, ``G01``,
  trailing ``;`` comments, ``N`` line numbers, ``*`` checksums and compact forms
  (``G1X10E.5``) are accepted; unknown commands are ignored. As in Marlin, ``E`` inside a
  word starts a new word, never an exponent (``Z1E2`` is Z1 E2). An E, Z or F value that
  can't be read (or is not finite, or beyond 1e9) is ignored; such an X or Y value makes
  that axis unknown (X/Y words are read lazily, see below).

Cost: about 1.3 us per line of a slicer file on a slow machine (Python 3.11). Lines other
than G0-G3/G28/G29/G90-G92/M82/M83 are rejected from their first characters. In absolute
mode the X/Y words are kept as text and only turned into numbers when the state is read
(``state``, a trigger's ``state_before``), since ``float()`` is most of a line's cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple

from .firmware import E_ABSOLUTE, E_RELATIVE, XYZ_ABSOLUTE, XYZ_RELATIVE, ModeHistory
from .gcode_lexer import (
    CENTRE,
    COMMANDS,
    EPS,
    EZF,
    HEAD,
    K_ABS,
    K_ARC,
    K_EABS,
    K_EREL,
    K_HOME,
    K_PROBE,
    K_RECOVER,
    K_REL,
    K_RETRACT,
    K_SETPOS,
    LIMIT,
    MIN_STEP,
    SLOW_FIRST,
    axis_value,
    clean,
    compact_parts,
    finite,
)

__all__ = [
    "VASE_MIN_MOVES",
    "LayerTargets",
    "LayerTracker",
    "LayerTrigger",
    "MotionState",
]

#: Consecutive slightly-rising extruding moves that mean spiral vase mode.
VASE_MIN_MOVES = 8


def _layer_index(text: str) -> Optional[int]:
    """A non-negative integer from a marker parameter ("12" or "12.0"), else None."""
    value = finite(text)
    if value is not None and value >= 0 and value == int(value):
        return int(value)
    return None


@dataclass(frozen=True)
class LayerTargets:
    """Which completed layers to capture."""

    every_n: int = 3  # 0 = off; capture layers n, 2n, 3n ...
    z_heights: Tuple[float, ...] = ()  # each: first completed layer whose height >= it, once
    min_layer_height: float = 0.05  # smallest Z rise that counts as a new layer


@dataclass(frozen=True)
class MotionState:
    """The printer's modes and position after the lines fed so far (None = unknown)."""

    x: Optional[float]
    y: Optional[float]
    z: Optional[float]
    e: Optional[float]
    absolute_xyz: bool  # G90 (True) / G91 (False)
    # E absolute (M82) or relative (M83) as the firmware family reads the file's mode
    # commands; None until the file established it (a start macro may have set it)
    absolute_e: Optional[bool]
    feedrate: Optional[float]  # last F seen (mm/min)
    modes: ModeHistory = field(default_factory=ModeHistory)
    firmware_retraction: bool = False  # the file retracts with G10/G11
    retracted: bool = False  # ... and its last G10 was not recovered yet


@dataclass(frozen=True)
class LayerTrigger:
    """Layer ``layer`` is complete and is a target: capture it now."""

    layer: int  # the completed layer (1-based)
    z: float  # its height
    next_z: float  # height of the layer that is starting
    source: str  # "motion" or "marker"
    reasons: Tuple[str, ...]  # e.g. ("every 3 layers", "z >= 3.0")
    # Motion state before the trigger line (motion) or at the marker: where the head is
    # while the job is stopped. Always set by the tracker.
    state_before: Optional[MotionState] = None
    # Highest Z printed so far in the job, the trigger line excluded (in a sequential print
    # an earlier object may stand much taller than this layer). Always set by the tracker.
    printed_top: Optional[float] = None


class LayerTracker:
    """Follows one print job's G-code and reports completed target layers.

    One tracker per job, fed from one thread (OctoPrint's comm thread). Other threads may
    read ``layer``, ``layer_z``, ``max_printed_z``, ``vase_mode``, ``marker_mode`` and
    ``captured_layers()``; ``state`` finishes reading lazily kept X/Y words, so read it
    from the feeding thread (a trigger's ``state_before`` is a frozen copy, safe anywhere).
    """

    def __init__(self, targets: LayerTargets, family: Optional[str] = None) -> None:
        self._targets = targets
        self._family = family
        try:
            every_n = int(targets.every_n)
        except (TypeError, ValueError, OverflowError):
            every_n = 0
        self._every_n = max(every_n, 0)
        self._z_targets: List[float] = sorted(set(_valid_heights(targets.z_heights)))
        self._z_used: List[bool] = [False] * len(self._z_targets)
        try:
            step = float(targets.min_layer_height)
        except (TypeError, ValueError, OverflowError):
            step = MIN_STEP
        if not MIN_STEP <= step < LIMIT:  # also NaN
            step = MIN_STEP
        self._rise = step - EPS  # a new layer: at least this much higher
        self._drop = step + EPS  # a re-base: more than this much lower
        self._vase_rise = max(step, 0.05) + EPS

        # motion state
        self._x: Optional[float] = None
        self._y: Optional[float] = None
        self._px: Optional[str] = None  # X word ("X12.5") not read yet, see _move
        self._py: Optional[str] = None
        self._z: Optional[float] = None
        self._e: Optional[float] = None
        self._abs_xyz = True
        self._abs_e = True  # how E words are read; see _set_mode
        self._modes = ModeHistory()
        self._f: Optional[float] = None
        self._fw_retraction = False
        self._retracted = False

        # layers
        self._layer = 0
        self._layer_z: Optional[float] = None
        self._max_z = float("-inf")
        self._top_before = self._max_z  # _max_z before the extruding move being read
        self._vase = False
        self._vase_run = 0
        self._markers = False
        self._marker_count = 0
        self._captured: List[int] = []
        # the motion state before the line that started the current layer (the toolpath
        # of a captured layer is read from there, see analysis.toolpath)
        self._layer_start: Optional[MotionState] = None
        self._errors = 0  # unexpected internal errors swallowed by feed (tests check it)

    # ------------------------------------------------------------------ public API

    @property
    def targets(self) -> LayerTargets:
        return self._targets

    @property
    def state(self) -> MotionState:
        return self._snapshot()

    @property
    def layer(self) -> int:
        """Number of the layer being printed (0 before the first extrusion)."""
        return self._layer

    @property
    def layer_z(self) -> Optional[float]:
        """Height of the layer being printed."""
        return self._layer_z

    @property
    def layer_start_state(self) -> Optional[MotionState]:
        """The motion state before the line that started the current layer (its first
        extruding move, or its marker); None before the first layer. Set once per layer."""
        return self._layer_start

    @property
    def max_printed_z(self) -> Optional[float]:
        """Highest Z at which the print has extruded (any mode, purge lines included)."""
        return None if self._max_z == float("-inf") else self._max_z

    @property
    def vase_mode(self) -> bool:
        return self._vase

    @property
    def marker_mode(self) -> bool:
        """True once an ``@LAYERCAPTURE`` marker has been seen: markers decide layers."""
        return self._markers

    def captured_layers(self) -> Tuple[int, ...]:
        """Layers for which a trigger was returned, in order."""
        return tuple(self._captured)

    def pending_z_heights(self) -> Tuple[float, ...]:
        """The Z targets no layer has used yet, lowest first (for the live status)."""
        return tuple(z for z, used in zip(self._z_targets, self._z_used) if not used)

    def feed(self, line: str) -> Optional[LayerTrigger]:
        """Take one G-code line; a trigger when it is the first move of the layer after a
        completed target layer (hold the line back until the capture is done)."""
        try:
            c = line[:1]
            if c == "G" or c == "g":
                pass  # the command table decides
            elif c == "M" or c == "m":
                if not line.startswith("8", 1):
                    return None
            elif c in SLOW_FIRST:
                line = clean(line)
                if not line:
                    return None
            else:
                return None
            parts = line.split()
            kind = COMMANDS.get(parts[0]) if parts else None
            if kind is None:
                if parts and parts[0][1:].isdigit():
                    return None  # some other command
                compact = compact_parts(line)
                if compact is None:
                    return None
                parts = compact
                kind = COMMANDS.get(parts[0])
                if kind is None:
                    return None
            if kind <= K_ARC:
                return self._move(parts, kind == K_ARC, line, True)
            if kind == K_ABS:
                self._set_mode(XYZ_ABSOLUTE)
            elif kind == K_REL:
                self._set_mode(XYZ_RELATIVE)
            elif kind == K_EABS:
                self._set_mode(E_ABSOLUTE)
            elif kind == K_EREL:
                self._set_mode(E_RELATIVE)
            elif kind == K_RETRACT or kind == K_RECOVER:
                self._firmware_retraction(parts, kind == K_RETRACT)
            elif kind == K_SETPOS:
                self._set_position(line)
            elif kind == K_HOME:
                self._home(line)
            elif kind == K_PROBE:
                self._x = self._y = self._z = None
                self._px = self._py = None
            return None
        except Exception:  # never let a line break the print
            self._errors += 1
            return None

    def feed_marker(self, params: str) -> Optional[LayerTrigger]:
        """Take the parameters of an ``@LAYERCAPTURE [layer_num] [layer_z]`` at-command."""
        try:
            return self._marker(params)
        except Exception:
            self._errors += 1
            return None

    # ------------------------------------------------------------------ internals

    def _snapshot(self) -> MotionState:
        if self._px is not None or self._py is not None:
            self._resolve()
        return MotionState(
            self._x,
            self._y,
            self._z,
            self._e,
            self._abs_xyz,
            self._modes.absolute_e(self._family),
            self._f,
            self._modes,
            self._fw_retraction,
            self._retracted,
        )

    def _set_mode(self, command: str) -> None:
        self._modes = self._modes.after(command)
        self._abs_xyz = not self._modes.xyz_relative
        self._abs_e = self._modes.reading_absolute_e(self._family)

    def _firmware_retraction(self, parts: List[str], retract: bool) -> None:
        if any(p[:1] in "PpLl" for p in parts[1:]):
            return  # G10 P/L: tool offsets or temperatures (RepRapFirmware, CNC)
        self._fw_retraction = True
        self._retracted = retract

    def _move(self, parts: List[str], arc: bool, line: str, retry: bool) -> Optional[LayerTrigger]:
        # X and Y are kept as text in absolute mode and read only when the state is needed
        # (float() is most of the cost of a line); E, Z and F are read at once.
        xs = ys = z = e = f = None
        centre = False
        for p in parts:
            k = p[0]
            if k == "X" or k == "x":
                xs = p
            elif k == "Y" or k == "y":
                ys = p
            elif k in EZF:
                text = p[1:]
                try:
                    if "e" in text or "E" in text:  # "Z1E2" is Z1 E2 (Marlin), no exponent
                        raise ValueError(text)
                    v = float(text)
                except ValueError:
                    if retry:  # "E1*45", "E1;...", "Z1E2" and other glued forms
                        compact = compact_parts(line)
                        if compact is not None and compact[0] == parts[0]:
                            return self._move(compact, arc, line, False)
                    continue
                if not -LIMIT < v < LIMIT:
                    continue
                if k == "E" or k == "e":
                    e = v
                elif k == "Z" or k == "z":
                    z = v
                else:
                    f = v
            elif k in CENTRE:
                centre = True
            elif k == ";":
                break

        sz, se = self._z, self._e
        if self._abs_xyz:
            nz = sz if z is None else z
        else:
            nz = sz if z is None or sz is None else sz + z
        extruding = False
        ne = se
        if e is not None:
            if self._abs_e:
                extruding = e > (0.0 if se is None else se)
                ne = e
            else:
                extruding = e > 0.0
                ne = None if se is None else se + e

        trigger = None
        if extruding and nz is not None and (xs is not None or ys is not None or (arc and centre)):
            self._top_before = self._max_z
            if nz > self._max_z:
                self._max_z = nz
            if self._abs_xyz:
                spiral = False  # rising slightly while extruding: a spiral, never a trigger
                if z is not None and sz is not None:
                    rise = nz - sz
                    if EPS < rise <= self._vase_rise:
                        spiral = True
                        self._vase_run += 1
                        if self._vase_run >= VASE_MIN_MOVES:
                            self._vase = True
                    elif self._vase_run:
                        self._vase_run = 0
                elif self._vase_run:
                    self._vase_run = 0
                lz = self._layer_z
                if lz is None or nz - lz >= self._rise or lz - nz > self._drop:
                    trigger = self._new_height(nz, lz, spiral)  # reads the state before the move

        if self._abs_xyz:
            if xs is not None:
                self._px = xs
            if ys is not None:
                self._py = ys
        elif xs is not None or ys is not None:
            self._resolve()
            if xs is not None:
                sx, x = self._x, axis_value(xs)
                self._x = None if sx is None or x is None else sx + x
            if ys is not None:
                sy, y = self._y, axis_value(ys)
                self._y = None if sy is None or y is None else sy + y
        self._z, self._e = nz, ne
        if f is not None and f > 0:
            self._f = f
        return trigger

    def _resolve(self) -> None:
        """Read the X/Y values kept as text."""
        if self._px is not None:
            self._x = axis_value(self._px)
            self._px = None
        if self._py is not None:
            self._y = axis_value(self._py)
            self._py = None

    def _new_height(self, nz: float, lz: Optional[float], spiral: bool) -> Optional[LayerTrigger]:
        """An extruding move at a height other than the current layer's (state not yet
        updated with the move)."""
        self._layer_z = nz
        if lz is None:
            if self._layer == 0:
                self._layer_start = self._snapshot()
                self._layer = 1
            return None
        if nz < lz and self._layer <= 1:  # purge line above the first layer: re-base
            return None
        if self._markers:
            return None
        completed = self._layer
        self._layer_start = self._snapshot()
        self._layer = completed + 1
        if self._vase or spiral:
            return None
        return self._trigger(completed, lz, nz, "motion", self._top_before)

    def _trigger(
        self, completed: int, z: float, next_z: float, source: str, printed_top: float
    ) -> Optional[LayerTrigger]:
        if completed < 1 or completed in self._captured:
            return None
        reasons: List[str] = []
        n = self._every_n
        if n > 0 and completed % n == 0:
            reasons.append("every layer" if n == 1 else f"every {n} layers")
        for i, target in enumerate(self._z_targets):
            if target > z + EPS:
                break  # sorted: the rest are higher
            if not self._z_used[i]:
                self._z_used[i] = True
                reasons.append(f"z >= {target}")
        if not reasons:
            return None
        self._captured.append(completed)
        return LayerTrigger(
            layer=completed,
            z=z,
            next_z=next_z,
            source=source,
            reasons=tuple(reasons),
            state_before=self._snapshot(),
            printed_top=None if printed_top == float("-inf") else printed_top,
        )

    def _set_position(self, line: str) -> None:
        """G92 (rare: read with the tolerant tokenizer)."""
        words = compact_parts(line) or []
        for word in words[1:]:
            k = word[0].upper()
            if k not in "XYZE":
                continue
            v = finite(word[1:])
            if v is None:
                continue
            if k == "X":
                self._x, self._px = v, None
            elif k == "Y":
                self._y, self._py = v, None
            elif k == "Z":
                self._z = v
            else:
                self._e = v

    def _home(self, line: str) -> None:
        """G28: the named axes, or all when none is named, become unknown."""
        rest = HEAD.sub("", clean(line), count=1).upper()
        named = {axis for axis in "XYZ" if axis in rest} or {"X", "Y", "Z"}
        if "X" in named:
            self._x = self._px = None
        if "Y" in named:
            self._y = self._py = None
        if "Z" in named:
            self._z = None

    def _marker(self, params: str) -> Optional[LayerTrigger]:
        self._markers = True
        tokens = params.split() if isinstance(params, str) else []
        if tokens and tokens[0].upper().lstrip("@") == "LAYERCAPTURE":
            tokens = tokens[1:]
        index = _layer_index(tokens[0]) if tokens else None
        marker_z = finite(tokens[1]) if index is not None and len(tokens) > 1 else None
        if index is None:
            index = self._marker_count
        self._marker_count = index + 1
        if self._layer < index + 1:
            self._layer_start = self._snapshot()
            self._layer = index + 1
        if index < 1 or self._vase:
            return None
        if self._layer_z is not None:
            z = self._layer_z
        elif marker_z is not None:
            z = marker_z
        else:
            z = self._z if self._z is not None else 0.0
        if marker_z is not None:
            next_z = marker_z
        elif self._z is not None and self._z > z:
            next_z = self._z
        else:
            next_z = z
        return self._trigger(index, z, next_z, "marker", self._max_z)


def _valid_heights(values: Optional[Iterable[float]]) -> List[float]:
    heights: List[float] = []
    if values is None:
        return heights
    try:
        items = re.split(r"[,;\s]+", values) if isinstance(values, str) else list(values)
    except TypeError:
        return heights
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError, OverflowError):
            continue
        if -LIMIT < value < LIMIT:
            heights.append(value)
    return heights
