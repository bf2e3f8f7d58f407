"""Helpers for the real-printer safety tests: the user's G-code scripts, G-code files
derived from the fixtures, a model of how each firmware family reads motion modes, and the
checks of a capture sequence that ran between a pause script and a resume script.

Nothing here imports the plugin: the tests compare what the printer was sent with what a
firmware would do with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from capture_checks import (
    SENT_TOLERANCE,
    Block,
    State,
    Step,
    advance,
    code_of,
    near,
    parse,
)

PLUGIN_TAG = "plugin:layercapture"
PAUSE_SCRIPT_TAG = "script:afterPrintPaused"
RESUME_SCRIPT_TAG = "script:beforePrintResumed"
CLEARANCE = 1.0  # the plugin's travel clearance (moves.TRAVEL_CLEARANCE)

# OctoPrint's documented example scripts (docs/features/gcode_scripts.rst), with an M400
# before each mode switch (the Virtual Printer applies G90/G91/M82 before the queued moves
# ahead of them have run; real firmware runs them in order) and ``Z5`` for ``Z+5`` (its
# parser skips a number with a plus sign).
DOCUMENTED_SCRIPTS = {
    "afterPrintPaused": "\n".join(
        [
            "{% if pause_position.x is not none %}",
            "G91",
            "M83",
            "G1 Z5 E-5 F4500",
            "M400",
            "M82",
            "G90",
            "G1 X0 Y0",
            "{% endif %}",
        ]
    ),
    "beforePrintResumed": "\n".join(
        [
            "{% if pause_position.x is not none %}",
            "M83",
            "G1 E-5 F4500",
            "G1 E5 F4500",
            "G1 E5 F4500",
            "M400",
            "M82",
            "G90",
            "G92 E{{ pause_position.e }}",
            "G1 X{{ pause_position.x }} Y{{ pause_position.y }} Z{{ pause_position.z }} F4500",
            "{% if pause_position.f is not none %}G1 F{{ pause_position.f }}{% endif %}",
            "{% endif %}",
        ]
    ),
}

# A forum recipe: lift 10 mm relatively, and lower 10 mm relatively on resume.
RELATIVE_SCRIPTS = {
    "afterPrintPaused": "M400\nG91\nG1 E-2 F2400\nG1 Z10 F600\nM400\nG90",
    "beforePrintResumed": "G91\nG1 Z-10 F600\nG1 E2 F2400\nM400\nG90",
}

NO_SCRIPTS = {"afterPrintPaused": "", "beforePrintResumed": ""}


# ---- files derived from the fixtures ---------------------------------------------------------

_E_WORD = re.compile(r"(?<![A-Z])E\s*(-?[0-9]*\.?[0-9]+)", re.IGNORECASE)


def to_relative_e(lines: Sequence[str]) -> List[str]:
    """An absolute-E (M82) file as the same print in relative E: M83 on its first line and
    in place of its M82 (after its G90, as PrusaSlicer writes it: Marlin's G90 sets E too)."""
    out = ["M83 ; relative extrusion from the start"]
    e = 0.0
    for line in lines:
        command, words = parse(line)
        if command == "M82":
            out.append("M83")
            continue
        if command == "G92" and "E" in words:
            e = words["E"] or 0.0
            continue
        if command in ("G0", "G1", "G2", "G3") and words.get("E") is not None:
            value = float(words["E"] or 0.0)
            delta = value - e
            e = value
            line = _E_WORD.sub(f"E{delta:.5f}", code_of(line), count=1)
        out.append(line)
    return out


def without_e_mode(lines: Sequence[str]) -> List[str]:
    """The file without any M82/M83: its E mode comes from outside (a start macro)."""
    return [line for line in lines if parse(line)[0] not in ("M82", "M83")]


def with_relative_z_hops(lines: Sequence[str]) -> List[str]:
    """A relative Z hop before each layer change (``G91 / G1 Z1 / G90``), which on
    Marlin 2 also switches E to absolute, and on Klipper/Prusa/RRF does not."""
    out: List[str] = []
    for line in lines:
        if line.strip().upper() == ";LAYER_CHANGE":
            out += ["G91", "G1 Z1 F600", "M400", "G90"]
        out.append(line)
    return out


def with_firmware_retraction(lines: Sequence[str]) -> List[str]:
    """A relative-E file whose E-only moves become G10 (retract) and G11 (recover)."""
    out = []
    for line in lines:
        command, words = parse(line)
        xyz = any(words.get(axis) is not None for axis in "XYZ")
        if command == "G1" and words.get("E") is not None and not xyz:
            out.append("G10" if float(words["E"] or 0) < 0 else "G11")
        else:
            out.append(line)
    return out


# ---- how firmware families read motion modes ---------------------------------------------------


@dataclass(frozen=True)
class Modes:
    """Motion modes as each firmware family keeps them."""

    xyz_relative: bool = False
    e_flag_relative: Optional[bool] = None  # M82/M83 only
    marlin_e_relative: Optional[bool] = None  # also set by G90/G91 (Marlin 2)

    def after(self, line: str) -> Modes:
        command, _ = parse(line)
        if command == "G90":
            return replace(self, xyz_relative=False, marlin_e_relative=False)
        if command == "G91":
            return replace(self, xyz_relative=True, marlin_e_relative=True)
        if command in ("M82", "M83"):
            relative = command == "M83"
            return replace(self, e_flag_relative=relative, marlin_e_relative=relative)
        return self

    def e_relative(self, family: str) -> Optional[bool]:
        if family == "marlin":
            return self.marlin_e_relative
        if family in ("klipper", "marlin_legacy"):
            return True if self.xyz_relative else self.e_flag_relative
        return self.e_flag_relative  # reprapfirmware


FAMILIES = ("marlin", "klipper", "reprapfirmware")


def modes_after(lines: Iterable[str], start: Modes = Modes()) -> Modes:
    modes = start
    for line in lines:
        modes = modes.after(line)
    return modes


# ---- a sequence between the user's pause and resume scripts -----------------------------------


def is_plugin(step: Step) -> bool:
    return step.plugin


def user_script(step: Step, tag: str) -> bool:
    return tag in step.tags and PLUGIN_TAG not in step.tags


def replay_from(state: State, lines: Iterable[str]) -> State:
    for line in lines:
        state, _ = advance(state, line)
    return state


def same_place(a: State, b: State) -> bool:
    return all(near(getattr(a, axis), getattr(b, axis), SENT_TOLERANCE) for axis in "xyz")


@dataclass
class ScriptedBlock:
    """One capture in pause mode with the user's scripts: the lines by who sent them."""

    block: Block
    pause_script: List[Step]
    resume_script: List[Step]
    ours: List[Step]
    held: Optional[Step]  # the held first line of the next layer (sent with the resume)

    @property
    def park(self) -> State:
        """Where the pause script left the head."""
        return self.pause_script[-1].after if self.pause_script else self.block.start


def scripted_block(block: Block, held_line: Optional[str]) -> ScriptedBlock:
    steps = block.steps
    pause = [s for s in steps if user_script(s, PAUSE_SCRIPT_TAG)]
    resume = [s for s in steps if user_script(s, RESUME_SCRIPT_TAG)]
    ours = [s for s in steps if is_plugin(s)]
    held = None
    if held_line is not None:
        matching = [s for s in ours if " ".join(s.line.split()) == " ".join(held_line.split())]
        held = matching[-1] if matching else None
        ours = [s for s in ours if s is not held]
    return ScriptedBlock(block, pause, resume, ours, held)


def check_scripted_block(
    scripted: ScriptedBlock, printed_top: float, allowed_xy: Sequence[Tuple[float, float]]
) -> List[str]:
    """Problems with one pause-mode capture run between the user's scripts (empty: safe).

    * every XY move while the head is away is at or above the printed top, ours at least
      the clearance above it, and ours only go to grid points or the park position;
    * the user's resume script starts where their pause script left the head;
    * the job's next line starts where, and with the modes and E, it would without the
      plugin: the stop position put through both scripts alone.
    """
    problems: List[str] = []
    block = scripted.block
    for step in block.steps:
        if step is scripted.held or not step.moves_xy:
            continue
        low = min(step.before.z, step.after.z)
        limit = printed_top + (CLEARANCE if is_plugin(step) else 0.0) - 1e-6
        if low < limit:
            who = "plugin" if is_plugin(step) else "script"
            problems.append(f"{who} XY move {step.line!r} at Z {low:g} < {limit:g}")
    park = scripted.park
    targets = [*allowed_xy, (park.x, park.y)]
    for step in scripted.ours:
        if step.moves_xy and not any(
            near(step.after.x, x, SENT_TOLERANCE) and near(step.after.y, y, SENT_TOLERANCE)
            for x, y in targets
        ):
            problems.append(f"plugin XY move {step.line!r} to neither a grid point nor the park")
    if scripted.resume_script:
        first = scripted.resume_script[0].before
        if not same_place(first, park):
            problems.append(
                f"the resume script started at X{first.x:g} Y{first.y:g} Z{first.z:g}, "
                f"not where the pause script parked the head (X{park.x:g} Y{park.y:g} "
                f"Z{park.z:g})"
            )
    if scripted.held is not None:
        without = replay_from(
            block.start, [s.line for s in [*scripted.pause_script, *scripted.resume_script]]
        )
        actual = scripted.held.before
        if not same_place(actual, without):
            problems.append(
                f"the job went on at X{actual.x:g} Y{actual.y:g} Z{actual.z:g}; without the "
                f"plugin it would at X{without.x:g} Y{without.y:g} Z{without.z:g}"
            )
        if not near(actual.e, without.e, 1e-4):
            problems.append(
                f"the job went on with E {actual.e:g}, without the plugin {without.e:g}"
            )
        for mode in ("xyz_relative", "e_relative"):
            if getattr(actual, mode) != getattr(without, mode):
                problems.append(f"{mode} is {getattr(actual, mode)} when the job goes on")
    else:
        problems.append("the held line was not sent in this sequence")
    return problems


def serial_log_sends(text: str) -> List[str]:
    """The ``Send:`` lines of OctoPrint's serial.log, as sent (line numbers and checksums)."""
    sends = []
    for line in text.splitlines():
        marker = line.find("Send: ")
        if marker >= 0:
            sends.append(line[marker + len("Send: ") :].strip())
    return sends


def unnumbered_moves(sends: Iterable[str]) -> List[str]:
    """G0/G1 lines sent without a line number and checksum."""
    return [
        line
        for line in sends
        if re.match(r"^G[01]\b", line) and not re.match(r"^N\d+ .*\*\d+$", line)
    ]


def e_words(lines: Iterable[str]) -> Dict[str, int]:
    """How often each line with an E word occurs."""
    counts: Dict[str, int] = {}
    for line in lines:
        if parse(line)[1].get("E") is not None:
            counts[line] = counts.get(line, 0) + 1
    return counts
