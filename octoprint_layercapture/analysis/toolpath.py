"""A layer's toolpath: its extrusion moves as polylines in bed millimetres, and an SVG.

Read from the layer's lines of the printed file (comments included, see
:mod:`.gcode_file`), on the image writer's thread, starting from the motion state the layer
tracker had when the layer's first line came (:attr:`LayerTracker.layer_start_state`).

Rules (those of :mod:`..capture.layers`, so the toolpath is what the tracker called the layer):

* An *extrusion move* is a G0/G1/G2/G3 with X or Y (arcs: also I/J or R) whose E delta is
  positive (M83: ``E > 0``; M82: ``E`` above the current E). Travels, retractions,
  z-hops and moves in relative XYZ mode with an unknown start are not drawn (relative moves
  still move the position when it is known).
* Modes follow the firmware family as the tracker does (:class:`capture.firmware.ModeHistory`);
  G92 sets the named axes; G28/G29 make the homed axes unknown; G10/G11 move nothing.
* Consecutive extrusion moves that continue one another with the same width, feature type
  and height form one polyline. Arcs become straight pieces of at most
  :data:`ARC_STEP_MM` (E shared out evenly).
* ``width`` is the slicer's stated extrusion width (PrusaSlicer, SuperSlicer, OrcaSlicer
  ``;WIDTH:``), None when the file states none; ``type`` the feature type of the slicer's
  ``;TYPE:`` comment (PrusaSlicer ``Perimeter``, Cura ``WALL-OUTER``...), None without one.
* ``extruded_e`` is the sum of the E deltas of the extrusion moves (mm of filament, before
  the flow factor); ``path_length`` the sum of their XY lengths.

Points are rounded to 0.001 mm. Pure module (stdlib only).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..capture.firmware import MODE_COMMANDS, ModeHistory

TOOLPATH_SCHEMA_VERSION = 1
ARC_STEP_MM = 0.5
MAX_ARC_PIECES = 720
DIGITS = 3  # 1 um
_TOKEN = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))")
_WIDTH = re.compile(r"^\s*WIDTH\s*:\s*([0-9]*\.?[0-9]+)", re.I)
_TYPE = re.compile(r"^\s*TYPE\s*:\s*(.{1,40})$", re.I)
_MOVES = {"G0": False, "G1": False, "G2": True, "G3": True}
_LIMIT = 1e9


@dataclass(frozen=True)
class PathStart:
    """The motion state before the layer's first line (None: unknown)."""

    x: Optional[float]
    y: Optional[float]
    z: Optional[float]
    e: Optional[float]
    absolute_xyz: bool = True
    modes: ModeHistory = field(default_factory=ModeHistory)
    width: Optional[float] = None  # the slicer's ;WIDTH: in force
    kind: Optional[str] = None  # the slicer's ;TYPE: in force


@dataclass
class Polyline:
    kind: Optional[str]
    width: Optional[float]
    z: float
    xy: List[float]  # x0, y0, x1, y1, ...
    e: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "type": self.kind,
            "width": self.width,
            "z": round(self.z, DIGITS),
            "e": round(self.e, 5),
            "xy": [round(v, DIGITS) for v in self.xy],
        }


@dataclass
class Toolpath:
    polylines: List[Polyline] = field(default_factory=list)
    extruded_e: float = 0.0
    path_length: float = 0.0
    moves: int = 0  # extrusion moves (an arc counts once)

    def bounds(self) -> Optional[Dict[str, float]]:
        xs = [v for p in self.polylines for v in p.xy[0::2]]
        ys = [v for p in self.polylines for v in p.xy[1::2]]
        if not xs:
            return None
        return {
            "min_x": round(min(xs), DIGITS),
            "min_y": round(min(ys), DIGITS),
            "max_x": round(max(xs), DIGITS),
            "max_y": round(max(ys), DIGITS),
        }

    def widths(self) -> List[float]:
        return sorted({p.width for p in self.polylines if p.width is not None})


def _number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if -_LIMIT < value < _LIMIT else None


class _Reader:
    def __init__(self, start: PathStart, family: Optional[str]) -> None:
        self.family = family
        self.x, self.y, self.z, self.e = start.x, start.y, start.z, start.e
        self.modes = start.modes
        self.abs_xyz = start.absolute_xyz
        self.abs_e = start.modes.reading_absolute_e(family)
        self.width = start.width
        self.kind = start.kind
        self.path = Toolpath()

    def line(self, raw: str) -> None:
        code, _, comment = raw.partition(";")
        if comment:
            self._comment(comment)
        code = code.split("*", 1)[0].strip().upper()
        if not code:
            return
        if code[0] == "N":
            code = re.sub(r"^N\s*-?\d+\s*", "", code)
        words = _TOKEN.findall(code)
        if not words or words[0][0] not in "GMT":
            return
        letter, number = words[0]
        try:
            command = f"{letter}{int(float(number))}"
        except ValueError:
            return
        values: Dict[str, float] = {}
        for key, text in words[1:]:
            value = _number(text)
            if value is not None:
                values.setdefault(key, value)
        if command in _MOVES:
            self._move(values, _MOVES[command], command == "G2")
        elif command in MODE_COMMANDS:
            self.modes = self.modes.after(command)
            self.abs_xyz = not self.modes.xyz_relative
            self.abs_e = self.modes.reading_absolute_e(self.family)
        elif command == "G92":
            for axis in "XYZE":
                if axis in values:
                    setattr(self, axis.lower(), values[axis])
        elif command == "G28":
            named = [a for a in "XYZ" if a in code[3:]] or ["X", "Y", "Z"]
            for axis in named:
                setattr(self, axis.lower(), None)
        elif command == "G29":
            self.x = self.y = self.z = None

    def _comment(self, comment: str) -> None:
        width = _WIDTH.match(comment)
        if width is not None:
            value = _number(width.group(1))
            self.width = value if value and value > 0 else None
            return
        kind = _TYPE.match(comment.strip())
        if kind is not None:
            self.kind = kind.group(1).strip() or None

    def _axis(self, values: Dict[str, float], axis: str, now: Optional[float]) -> Optional[float]:
        if axis not in values:
            return now
        if self.abs_xyz:
            return values[axis]
        return None if now is None else now + values[axis]

    def _move(self, values: Dict[str, float], arc: bool, clockwise: bool) -> None:
        x0, y0, z0, e0 = self.x, self.y, self.z, self.e
        x1 = self._axis(values, "X", x0)
        y1 = self._axis(values, "Y", y0)
        z1 = self._axis(values, "Z", z0)
        delta = 0.0
        if "E" in values:
            if self.abs_e:
                delta = values["E"] - (0.0 if e0 is None else e0)
                self.e = values["E"]
            else:
                delta = values["E"]
                self.e = None if e0 is None else e0 + values["E"]
        self.x, self.y, self.z = x1, y1, z1
        has_xy = "X" in values or "Y" in values
        centre = arc and ("I" in values or "J" in values or "R" in values)
        if delta <= 0 or not (has_xy or centre):
            return
        if x0 is None or y0 is None or x1 is None or y1 is None or z1 is None:
            return
        points = [(x1, y1)]
        if arc:
            points = _arc_points((x0, y0), (x1, y1), values, clockwise) or points
        self.path.moves += 1
        self.path.extruded_e += delta
        share = delta / len(points)
        previous = (x0, y0)
        for point in points:
            self._segment(previous, point, z1, share)
            previous = point

    def _segment(
        self, start: Tuple[float, float], end: Tuple[float, float], z: float, e: float
    ) -> None:
        self.path.path_length += math.hypot(end[0] - start[0], end[1] - start[1])
        lines = self.path.polylines
        last = lines[-1] if lines else None
        if (
            last is not None
            and last.kind == self.kind
            and last.width == self.width
            and abs(last.z - z) < 1e-6
            and abs(last.xy[-2] - start[0]) < 1e-9
            and abs(last.xy[-1] - start[1]) < 1e-9
        ):
            last.xy.extend(end)
            last.e += e
            return
        lines.append(Polyline(self.kind, self.width, z, [start[0], start[1], end[0], end[1]], e))


def _arc_points(
    start: Tuple[float, float],
    end: Tuple[float, float],
    values: Dict[str, float],
    clockwise: bool,
) -> List[Tuple[float, float]]:
    """The arc from ``start`` to ``end`` as points after ``start`` (empty: unreadable)."""
    (x0, y0), (x1, y1) = start, end
    if "I" in values or "J" in values:
        cx, cy = x0 + values.get("I", 0.0), y0 + values.get("J", 0.0)
    else:
        r = values["R"]
        dx, dy = x1 - x0, y1 - y0
        chord = math.hypot(dx, dy)
        if chord == 0 or abs(r) < chord / 2:
            return []
        h = math.sqrt(r * r - chord * chord / 4)
        # the centre is to the right of the chord for clockwise arcs with R > 0
        sign = (1 if clockwise else -1) * (1 if r > 0 else -1)
        cx = (x0 + x1) / 2 + sign * h * dy / chord
        cy = (y0 + y1) / 2 - sign * h * dx / chord
    radius = math.hypot(x0 - cx, y0 - cy)
    if radius == 0:
        return []
    a0 = math.atan2(y0 - cy, x0 - cx)
    a1 = math.atan2(y1 - cy, x1 - cx)
    sweep = a1 - a0
    if clockwise and sweep >= 0:
        sweep -= 2 * math.pi
    elif not clockwise and sweep <= 0:
        sweep += 2 * math.pi
    pieces = max(1, min(MAX_ARC_PIECES, math.ceil(abs(sweep) * radius / ARC_STEP_MM)))
    points = [
        (
            cx + radius * math.cos(a0 + sweep * i / pieces),
            cy + radius * math.sin(a0 + sweep * i / pieces),
        )
        for i in range(1, pieces)
    ]
    points.append((x1, y1))
    return points


def read_toolpath(lines: Iterable[str], start: PathStart, family: Optional[str]) -> Toolpath:
    """The extrusion moves of ``lines`` (a layer's lines of the file, comments included)."""
    reader = _Reader(start, family)
    for raw in lines:
        reader.line(raw)
    return reader.path


def toolpath_document(
    path: Toolpath, layer: int, z_height: float, gcode: Dict[str, Any]
) -> Dict[str, Any]:
    """The layer's toolpath file (schema ``toolpath``, see docs/metadata.md)."""
    return {
        "schema_version": TOOLPATH_SCHEMA_VERSION,
        "layer": layer,
        "z_height": z_height,
        "units": "mm",
        "gcode": gcode,
        "extruded_e": round(path.extruded_e, 5),
        "path_length": round(path.path_length, DIGITS),
        "moves": path.moves,
        "bounds": path.bounds(),
        "polylines": [p.to_dict() for p in path.polylines],
    }


# fixed colours for the feature types slicers name; anything else is drawn grey
_COLOURS = (
    ("external", "#d62728"),
    ("outer", "#d62728"),
    ("overhang", "#9467bd"),
    ("perimeter", "#ff7f0e"),
    ("wall", "#ff7f0e"),
    ("solid", "#8c564b"),
    ("top", "#e377c2"),
    ("bottom", "#8c564b"),
    ("infill", "#1f77b4"),
    ("fill", "#1f77b4"),
    ("support", "#2ca02c"),
    ("bridge", "#17becf"),
    ("skirt", "#7f7f7f"),
)
DEFAULT_WIDTH = 0.4
MARGIN_MM = 2.0


def _colour(kind: Optional[str]) -> str:
    name = (kind or "").lower()
    return next((colour for word, colour in _COLOURS if word in name), "#555555")


def toolpath_svg(path: Toolpath) -> str:
    """An SVG of the layer seen from above (bed coordinates, Y up), strokes as wide as the
    extrusion. Only numbers and fixed colours are written: no text from the G-code."""
    box = path.bounds()
    if box is None:
        box = {"min_x": 0.0, "min_y": 0.0, "max_x": 1.0, "max_y": 1.0}
    min_x, min_y = box["min_x"] - MARGIN_MM, box["min_y"] - MARGIN_MM
    width = box["max_x"] - box["min_x"] + 2 * MARGIN_MM
    height = box["max_y"] - box["min_y"] + 2 * MARGIN_MM
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="{min_x:.3f} {-(min_y + height):.3f} {width:.3f} {height:.3f}" '
        f'width="{max(width, 1.0) * 4:.0f}" height="{max(height, 1.0) * 4:.0f}">',
        f'<rect x="{min_x:.3f}" y="{-(min_y + height):.3f}" width="{width:.3f}" '
        f'height="{height:.3f}" fill="#ffffff"/>',
        '<g transform="scale(1,-1)" fill="none" stroke-linecap="round" stroke-linejoin="round">',
    ]
    for line in path.polylines:
        points = " ".join(
            f"{line.xy[i]:.3f},{line.xy[i + 1]:.3f}" for i in range(0, len(line.xy), 2)
        )
        stroke = line.width if line.width is not None else DEFAULT_WIDTH
        out.append(
            f'<polyline points="{points}" stroke="{_colour(line.kind)}" '
            f'stroke-width="{stroke:.3f}"/>'
        )
    out.append("</g></svg>")
    return "\n".join(out) + "\n"
