"""Independent reference for the layers of a G-code file, used by the tests.

This module deliberately does not import ``octoprint_layercapture``: it reads a whole G-code
file, slicer comments included, and works out what the plugin is expected to find, so the
tests compare the plugin against a second implementation instead of against itself.

Definitions (they follow the spec, section 1):

- An *extrusion* is a ``G0``/``G1``/``G2``/``G3`` move that moves X or Y and pushes filament
  (the E position grows). Retractions, unretractions (E-only moves), travels and z-hops are not
  extrusions.
- Layer k (1-based) is the k-th distinct height at which the print extrudes; a height counts as
  new when it is at least ``min_layer_height`` above the previous layer. When the file carries
  PrusaSlicer/Slic3r/OrcaSlicer ``;LAYER_CHANGE`` + ``;Z:`` comments the layer heights are read
  from them (layers without any extrusion are dropped); otherwise the Z of the first extrusion
  at each new height is used, and an extrusion below the current layer starts a new layer (a
  sequential print's next object), except on the first layer (a purge line: the first
  layer's height is reset).
- A layer ends on the last line before the first extrusion of the next layer; the last layer
  ends at the end of the file.
- ``end_e`` is the extruder position a Marlin-like firmware reports at that point: it follows
  M82/M83 (and G90/G91, which switch E too, as in Marlin), adds relative moves and is set by
  ``G92``. ``last_extrusion_e`` is the same counter right after the layer's last extrusion.
- ``total_extruded`` ignores ``G92`` resets: the sum of every E change (retractions subtract)
  up to the layer's last extrusion. It grows from layer to layer whatever the E mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

PathLike = Union[str, Path]

EPSILON = 1e-6
DEFAULT_MIN_LAYER_HEIGHT = 0.05

_WORD = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))?")
_MOVES = {"G0", "G1", "G2", "G3"}


class ExpectedLayer(NamedTuple):
    """One layer as the tests expect it: ``(number, z, end_e)``."""

    number: int
    z: float
    end_e: float


@dataclass(frozen=True)
class LayerDetail:
    """Everything the reference knows about one layer (line indexes are 0-based)."""

    number: int
    z: float
    start_line: int
    first_extrusion_line: int
    last_extrusion_line: int
    end_line: int
    end_e: float
    last_extrusion_e: float
    total_extruded: float

    def as_expected(self) -> ExpectedLayer:
        return ExpectedLayer(self.number, self.z, self.end_e)


@dataclass
class Analysis:
    """The result of reading one file."""

    layers: List[LayerDetail] = field(default_factory=list)
    used_comments: bool = False
    layer_change_comments: int = 0
    # (line index, z) of every extrusion, in file order
    extrusions: List[Tuple[int, float]] = field(default_factory=list)

    @property
    def highest_printed_z(self) -> float:
        return max((z for _, z in self.extrusions), default=0.0)

    def highest_printed_z_before(self, line_index: int) -> float:
        """Highest Z of any extrusion on a line before ``line_index`` (0 if none)."""
        return max((z for i, z in self.extrusions if i < line_index), default=0.0)


@dataclass
class _Machine:
    """A Marlin-like position counter (no kinematics, just the numbers)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    e: float = 0.0
    xyz_relative: bool = False
    e_relative: bool = False
    total_e: float = 0.0

    def move(self, words: dict[str, Optional[float]]) -> Tuple[bool, bool]:
        """Apply a move; return (moved in X/Y, E grew)."""
        old_x, old_y = self.x, self.y
        for axis in ("X", "Y", "Z"):
            value = words.get(axis)
            if value is None:
                continue
            current = getattr(self, axis.lower())
            setattr(self, axis.lower(), current + value if self.xyz_relative else value)
        e_grew = False
        value = words.get("E")
        if value is not None:
            new_e = self.e + value if self.e_relative else value
            delta = new_e - self.e
            self.total_e += delta
            self.e = new_e
            e_grew = delta > EPSILON
        moved_xy = abs(self.x - old_x) > EPSILON or abs(self.y - old_y) > EPSILON
        return moved_xy, e_grew

    def set_position(self, words: dict[str, Optional[float]]) -> None:
        """G92: set the given axes (all of them when none is given)."""
        axes = [a for a in ("X", "Y", "Z", "E") if a in words]
        if not axes:
            axes = ["X", "Y", "Z", "E"]
        for axis in axes:
            setattr(self, axis.lower(), words.get(axis) or 0.0)

    def home(self, words: dict[str, Optional[float]]) -> None:
        axes = [a for a in ("X", "Y", "Z") if a in words] or ["X", "Y", "Z"]
        for axis in axes:
            setattr(self, axis.lower(), 0.0)


def _parse(line: str) -> Tuple[str, dict[str, Optional[float]]]:
    """Split a line into its command and parameters; ("", {}) for comments and blanks."""
    code = line.split(";", 1)[0].strip().upper()
    if not code or code.startswith("@"):
        return "", {}
    words = _WORD.findall(code)
    if not words:
        return "", {}
    letter, number = words[0]
    command = letter + (str(int(float(number))) if number else "")
    params: dict[str, Optional[float]] = {}
    for letter, number in words[1:]:
        params[letter] = float(number) if number else None
    return command, params


def _read_lines(source: Union[PathLike, Sequence[str]]) -> List[str]:
    if isinstance(source, (str, Path)):
        return Path(source).read_text(encoding="utf-8", errors="replace").splitlines()
    return list(source)


@dataclass
class _Candidate:
    z: float
    start_line: int
    first_extrusion_line: int = -1
    last_extrusion_line: int = -1
    last_extrusion_e: float = 0.0
    total_extruded: float = 0.0


def analyse(
    source: Union[PathLike, Sequence[str]],
    min_layer_height: float = DEFAULT_MIN_LAYER_HEIGHT,
    use_comments: Optional[bool] = None,
) -> Analysis:
    """Read a G-code file (or its lines) and work out its layers.

    ``use_comments``: None reads ``;LAYER_CHANGE``/``;Z:`` comments when the file has them,
    True insists on them, False ignores them and uses the extrusion heights.
    """
    lines = _read_lines(source)
    comment_count = sum(1 for line in lines if line.strip().upper() == ";LAYER_CHANGE")
    by_comments = comment_count > 0 if use_comments is None else use_comments

    machine = _Machine()
    candidates: List[_Candidate] = []
    # (line index, E counter after that line) for every line, to find end_e afterwards
    e_after: List[float] = []
    extrusions: List[Tuple[int, float]] = []
    pending_change: Optional[int] = None  # line of a ;LAYER_CHANGE waiting for its ;Z:

    for index, raw in enumerate(lines):
        stripped = raw.strip()
        if by_comments and stripped.startswith(";"):
            upper = stripped.upper()
            if upper == ";LAYER_CHANGE":
                pending_change = index
            elif upper.startswith(";Z:") and pending_change is not None:
                z = float(stripped[3:])
                candidates.append(_Candidate(z=z, start_line=pending_change))
                pending_change = None
        command, words = _parse(raw)
        if command in _MOVES:
            moved_xy, e_grew = machine.move(words)
            if moved_xy and e_grew:
                extrusions.append((index, machine.z))
                if not by_comments:
                    last = candidates[-1] if candidates else None
                    rise = last is not None and machine.z >= last.z + min_layer_height - EPSILON
                    # below the current layer after the first: a sequential print's next
                    # object (on the first layer: a purge line, the layer's height is reset)
                    drop = last is not None and machine.z < last.z - min_layer_height - EPSILON
                    if last is None or rise or (drop and len(candidates) > 1):
                        candidates.append(_Candidate(z=machine.z, start_line=index))
                    elif drop:
                        last.z = machine.z
                if candidates:
                    current = candidates[-1]
                    if current.first_extrusion_line < 0:
                        current.first_extrusion_line = index
                    current.last_extrusion_line = index
                    current.last_extrusion_e = machine.e
                    current.total_extruded = machine.total_e
        elif command == "G92":
            machine.set_position(words)
        elif command == "G28":
            machine.home(words)
        elif command == "G90":
            machine.xyz_relative = False
            machine.e_relative = False
        elif command == "G91":
            machine.xyz_relative = True
            machine.e_relative = True
        elif command == "M82":
            machine.e_relative = False
        elif command == "M83":
            machine.e_relative = True
        e_after.append(machine.e)

    printed = [c for c in candidates if c.first_extrusion_line >= 0]
    layers: List[LayerDetail] = []
    for number, candidate in enumerate(printed, start=1):
        if number < len(printed):
            end_line = printed[number].first_extrusion_line - 1
        else:
            end_line = len(lines) - 1
        layers.append(
            LayerDetail(
                number=number,
                z=round(candidate.z, 6),
                start_line=candidate.start_line,
                first_extrusion_line=candidate.first_extrusion_line,
                last_extrusion_line=candidate.last_extrusion_line,
                end_line=end_line,
                end_e=round(e_after[end_line], 6),
                last_extrusion_e=round(candidate.last_extrusion_e, 6),
                total_extruded=round(candidate.total_extruded, 6),
            )
        )
    return Analysis(
        layers=layers,
        used_comments=by_comments,
        layer_change_comments=comment_count,
        extrusions=extrusions,
    )


def expected_layers(
    source: Union[PathLike, Sequence[str]],
    min_layer_height: float = DEFAULT_MIN_LAYER_HEIGHT,
    use_comments: Optional[bool] = None,
) -> List[ExpectedLayer]:
    """The layers of a file as ``(number, z, end_e)`` tuples, number 1-based."""
    analysis = analyse(source, min_layer_height, use_comments)
    return [layer.as_expected() for layer in analysis.layers]


def expected_capture_layers(
    layers: Sequence[Union[ExpectedLayer, LayerDetail, Tuple[int, float, float]]],
    every_n: int,
    z_heights: Iterable[float] = (),
) -> List[int]:
    """Layer numbers a capture is expected for, sorted.

    Every ``every_n``-th layer (0 switches it off) plus, for each Z target, the first layer
    whose Z is >= the target. The last layer is never captured: a layer is captured when the
    next one starts extruding, and the last layer has no next one.
    """
    rows = [
        (row.number, row.z) if isinstance(row, LayerDetail) else (int(row[0]), float(row[1]))
        for row in layers
    ]
    if not rows:
        return []
    wanted = set()
    if every_n > 0:
        wanted.update(number for number, _ in rows if number % every_n == 0)
    for target in z_heights:
        for number, z in rows:
            if z >= float(target) - EPSILON:
                wanted.add(number)
                break
    last = rows[-1][0]
    return sorted(number for number in wanted if number != last)


def highest_printed_z(source: Union[PathLike, Sequence[str]]) -> float:
    """The highest Z at which the file extrudes anything."""
    return analyse(source, use_comments=False).highest_printed_z


def highest_printed_z_before(source: Union[PathLike, Sequence[str]], line_index: int) -> float:
    """The highest Z of any extrusion on a line before ``line_index`` (0-based)."""
    return analyse(source, use_comments=False).highest_printed_z_before(line_index)


def layer_markers(source: Union[PathLike, Sequence[str]]) -> List[Tuple[int, int, float]]:
    """``@LAYERCAPTURE <layer_num> <layer_z>`` lines as (line index, layer_num, z).

    ``layer_num`` is kept as written (PrusaSlicer's ``[layer_num]`` counts from 0).
    """
    found: List[Tuple[int, int, float]] = []
    for index, raw in enumerate(_read_lines(source)):
        parts = raw.split(";", 1)[0].split()
        if len(parts) >= 3 and parts[0].upper() == "@LAYERCAPTURE":
            found.append((index, int(parts[1]), float(parts[2])))
    return found
