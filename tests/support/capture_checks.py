"""Helpers for the capture acceptance tests: replay what the printer was sent, cut it into
capture sequences, and check motion, files and metadata.

The replay is a tiny G-code interpreter that keeps two extruder counters side by side:

* ``e``: what a Marlin-like firmware counts (M82/M83 choose the E mode, G90/G91 set it too,
  G92 sets it), the same model as ``tests/support/expected_layers.py``;
* ``e_vp``: what OctoPrint 1.11's virtual printer counts. It ignores M82/M83: E is absolute
  under G90 and relative under G91, so in an M83 file it reports the last E word.

It imports nothing from the plugin. At the end: small REST set-up helpers for the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from harness import OctoPrintServer

PLUGIN_TAG = "plugin:layercapture"
# the plugin's question for the firmware's soft limits on connecting (not a capture)
SOFT_LIMITS_TAG = "layercapture:soft-limits"
FILE_TAG = "source:file"
TOLERANCE = 0.01  # mm, commanded vs reported (the plugin's own tolerance)
SENT_TOLERANCE = 0.001  # mm, values the printer was sent (at most three decimals)
E_TOLERANCE = 1e-4
PHASES = ("stop", "moves", "settle", "capture", "return", "resume")

# SPEC section 5: layer 4 digits, position 2 digits, Z with "_" for the point, local time
IMAGE_RE = re.compile(
    r"^layer_(?P<layer>\d{4})_pos_(?P<index>\d{2})_z_(?P<z>\d+_\d{2})"
    r"_(?P<stamp>\d{8}_\d{6})(?P<thumb>_thumb)?\.jpg$"
)
METADATA_RE = re.compile(r"^layer_(?P<layer>\d{4})_metadata_(?P<stamp>\d{8}_\d{6})\.json$")
# the layer's toolpath and its preview (metadata schema version 2), named like the metadata
TOOLPATH_RE = re.compile(r"^layer_(?P<layer>\d{4})_toolpath_(?P<stamp>\d{8}_\d{6})\.(json|svg)$")
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_WORD = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))?")
_MOVES = {"G0", "G1", "G2", "G3"}


def code_of(line: str) -> str:
    """A file line as OctoPrint sends it: comment and surrounding blanks removed."""
    return line.split(";", 1)[0].strip()


def same_line(a: str, b: str) -> bool:
    return " ".join(a.upper().split()) == " ".join(b.upper().split())


def parse(line: str) -> Tuple[str, Dict[str, Optional[float]]]:
    """("G1", {"X": 10.0, "E": None, ...}); ("", {}) for blanks and @-commands."""
    text = code_of(line).upper()
    words = _WORD.findall(text) if text and not text.startswith("@") else []
    if not words:
        return "", {}
    letter, number = words[0]
    command = letter + (str(int(float(number))) if number else "")
    return command, {k: (float(v) if v else None) for k, v in words[1:]}


@dataclass(frozen=True)
class State:
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    e: float = 0.0  # Marlin's counter
    e_vp: float = 0.0  # the virtual printer's counter
    f: Optional[float] = None
    xyz_relative: bool = False
    e_relative: bool = False
    vp_relative: bool = False  # the virtual printer's single G90/G91 flag


_MODES: Dict[str, Dict[str, bool]] = {
    "G90": {"xyz_relative": False, "e_relative": False, "vp_relative": False},
    "G91": {"xyz_relative": True, "e_relative": True, "vp_relative": True},
    "M82": {"e_relative": False},
    "M83": {"e_relative": True},
}


def advance(state: State, line: str) -> Tuple[State, float]:
    """The state after ``line`` and the seconds the virtual printer sleeps for it: 10 % of
    the largest per-axis distance / feed rate, where a negative distance counts as zero."""
    command, w = parse(line)
    if command in _MOVES:
        f = w.get("F") if w.get("F") is not None else state.f
        per_second = (f or 0.0) / 60.0 or float("inf")
        changes: Dict[str, Any] = {"f": f}
        seconds = 0.0
        for axis in ("x", "y", "z"):
            value = w.get(axis.upper())
            if value is None:
                continue
            old = getattr(state, axis)
            changes[axis] = old + value if state.xyz_relative else value
            seconds = max(seconds, (changes[axis] - old) / per_second)
        value = w.get("E")
        if value is not None:
            changes["e"] = state.e + value if state.e_relative else value
            changes["e_vp"] = state.e_vp + value if state.vp_relative else value
            seconds = max(seconds, (changes["e_vp"] - state.e_vp) / per_second)
        return replace(state, **changes), 0.1 * seconds
    if command == "G92":
        axes = [a for a in ("X", "Y", "Z", "E") if a in w] or ["X", "Y", "Z", "E"]
        changes = {a.lower(): w.get(a) or 0.0 for a in axes}
        if "e" in changes:
            changes["e_vp"] = changes["e"]
        return replace(state, **changes), 0.0
    if command == "G28":
        axes = [a for a in ("X", "Y", "Z") if a in w] or ["X", "Y", "Z"]
        changes = {a.lower(): 0.0 for a in axes}
        if len(axes) == 3:
            changes["e_vp"] = 0.0  # the virtual printer zeroes E on a plain G28
        return replace(state, **changes), 0.0
    if command in _MODES:
        return replace(state, **_MODES[command]), 0.0
    return state, 0.0


@dataclass(frozen=True)
class Step:
    """One line the printer was sent, with the tracked state around it."""

    line: str
    tags: FrozenSet[str]
    t: float
    before: State
    after: State
    vp_seconds: float

    @property
    def plugin(self) -> bool:
        """A line of a capture sequence."""
        return PLUGIN_TAG in self.tags and SOFT_LIMITS_TAG not in self.tags

    @property
    def from_file(self) -> bool:
        return FILE_TAG in self.tags

    @property
    def moves_xy(self) -> bool:
        b, a = self.before, self.after
        return abs(a.x - b.x) > 1e-9 or abs(a.y - b.y) > 1e-9

    @property
    def moves_z(self) -> bool:
        return abs(self.after.z - self.before.z) > 1e-9

    @property
    def e_delta(self) -> float:
        return self.after.e - self.before.e

    @property
    def sets_e(self) -> bool:
        command, words = parse(self.line)
        return command in _MOVES and "E" in words

    @property
    def moves(self) -> bool:
        return self.moves_xy or self.moves_z or abs(self.e_delta) > 1e-9


def replay(records: Iterable[Mapping[str, Any]]) -> List[Step]:
    """Sent lines (the recorder's "sent" records, oldest first) as tracked steps."""
    steps: List[Step] = []
    state = State()
    for record in records:
        after, seconds = advance(state, str(record["line"]))
        steps.append(
            Step(str(record["line"]), frozenset(record["tags"]), record["t"], state, after, seconds)
        )
        state = after
    return steps


@dataclass
class Block:
    """A run of sent lines without a file line in it that holds plugin lines: one capture
    sequence (a file line sent in the middle of a sequence splits it in two)."""

    steps: List[Step]
    previous_file_line: Optional[str]
    next_file_line: Optional[str]
    start_index: int  # of its first step in the replay

    @property
    def start(self) -> State:
        return self.steps[0].before

    @property
    def plugin_steps(self) -> List[Step]:
        return [s for s in self.steps if s.plugin]

    def window(self, held: bool) -> List[Step]:
        """From the plugin's first line up to (without) the held line, or to its last line."""
        plugin = [i for i, s in enumerate(self.steps) if s.plugin]
        return self.steps[plugin[0] : plugin[-1] + (0 if held else 1)]

    def simulated_move_seconds(self, held: bool) -> float:
        return sum(s.vp_seconds for s in self.window(held))


def split_blocks(steps: Sequence[Step]) -> List[Block]:
    blocks: List[Block] = []
    current: List[Step] = []
    previous: Optional[str] = None
    for index, step in enumerate([*steps, None]):
        if step is not None and not step.from_file:
            current.append(step)
            continue
        if any(s.plugin for s in current):
            following = None if step is None else step.line
            blocks.append(Block(current, previous, following, index - len(current)))
        current = []
        if step is not None:
            previous = step.line
    return blocks


VP_QUEUE = 4  # moves the virtual printer holds in its queue


def reported_e_candidates(before: Sequence[Step]) -> List[float]:
    """The E values the virtual printer may report once the steps ``before`` have run.

    It runs G92 at once but moves from a queue, so a G92 sent after the last move with E
    can overtake that move while it still waits: the report then shows the move's E."""
    candidates = [before[-1].after.e_vp if before else 0.0]
    for index in range(len(before) - 1, -1, -1):
        command, words = parse(before[index].line)
        if command in _MOVES and "E" in words:
            break
        if command == "G92" and ("E" in words or not words):
            queued = [s for s in before[:index] if parse(s.line)[0] in _MOVES][-VP_QUEUE - 1 :]
            with_e = [s for s in queued if "E" in parse(s.line)[1]]
            candidates += [with_e[-1].after.e_vp] if with_e else []
            break
    return candidates


def near(a: Optional[float], b: Optional[float], tolerance: float) -> bool:
    return a is not None and b is not None and abs(a - b) <= tolerance


def check_motion(
    block: Block,
    held: bool,
    highest_printed_z: float,
    allowed_xy: Sequence[Tuple[float, float]],
    max_z: Optional[float] = None,
    clearance: float = 1.0,
) -> List[str]:
    """Problems with one sequence's motion (an empty list when it is safe)."""
    problems: List[str] = []
    start = block.start
    limit = highest_printed_z + clearance - 1e-6
    window = block.window(held)
    for s in window:
        if s.moves_xy and min(s.before.z, s.after.z) < limit:
            problems.append(f"XY move {s.line!r} at Z {s.before.z:g}->{s.after.z:g} < {limit:g}")
        if s.moves_xy and not any(
            near(s.after.x, x, SENT_TOLERANCE) and near(s.after.y, y, SENT_TOLERANCE)
            for x, y in allowed_xy
        ):
            problems.append(f"XY move {s.line!r} goes to neither a grid point nor the stop")
        if max_z is not None and s.after.z > max_z + 1e-6:
            problems.append(f"{s.line!r} goes above max Z {max_z:g}")
    moving = [s for s in window if s.moves]
    xyz = [s for s in moving if s.moves_xy or s.moves_z]
    if moving:
        first = moving[0]
        lift = first.moves_z and not first.moves_xy and first.after.z > first.before.z
        retract = not (first.moves_xy or first.moves_z) and first.e_delta < 0
        if not (lift or retract):
            problems.append(f"first move {first.line!r} is neither a Z lift nor a retract")
    if xyz:
        first, last = xyz[0], xyz[-1]
        if first.moves_xy or first.after.z < limit:
            problems.append(f"first XYZ move {first.line!r} is not a lift above {limit:g}")
        if last.moves_xy or not last.after.z < last.before.z:
            problems.append(f"last XYZ move {last.line!r} is not the Z lowering")
        after_last = window[window.index(last) + 1 :]
        for s in after_last:
            if s.moves and (s.moves_xy or s.moves_z or s.e_delta < 0):
                problems.append(f"{s.line!r} after the Z lowering is not an unretract")
    end = window[-1].after if window else start
    if not (near(end.x, start.x, SENT_TOLERANCE) and near(end.y, start.y, SENT_TOLERANCE)):
        problems.append(f"head not back: X/Y {end.x:g}/{end.y:g}, stop {start.x:g}/{start.y:g}")
    if not near(end.z, start.z, SENT_TOLERANCE):
        problems.append(f"head not back: Z {end.z:g}, stop Z {start.z:g}")
    if not near(end.e, start.e, E_TOLERANCE):
        problems.append(f"E not restored: {end.e:g}, was {start.e:g}")
    modes = ("xyz_relative", "e_relative", "f")
    if any(getattr(end, m) != getattr(start, m) for m in modes):
        was = {m: getattr(start, m) for m in modes}
        now = {m: getattr(end, m) for m in modes}
        problems.append(f"modes not restored: {now}, were {was}")
    return problems


def check_layer_files(folder: Path, meta: Mapping[str, Any], names: Sequence[str]) -> List[str]:
    """Problems with one layer's files: ``names`` are the layer's files in ``folder``."""
    problems: List[str] = []
    layer = int(meta["layer"])
    z_text = f"{float(meta['z_height']):.2f}".replace(".", "_")
    skipped = {int(s["index"]) for s in meta["skipped"]}
    count = int(meta["settings"]["grid_size"]) ** 2
    wanted = sorted(set(range(count)) - skipped)
    parsed = {n: IMAGE_RE.match(n) for n in names}
    images = [n for n, m in parsed.items() if m is not None and not m["thumb"]]
    thumbs = [n for n, m in parsed.items() if m is not None and m["thumb"]]
    jsons = [n for n in names if METADATA_RE.match(n)]
    toolpaths = [n for n in names if TOOLPATH_RE.match(n)]
    other = sorted(set(names) - set(images) - set(thumbs) - set(jsons) - set(toolpaths))
    if other:
        problems.append(f"layer {layer}: files with unexpected names {other}")
    if len(jsons) != 1:
        problems.append(f"layer {layer}: {len(jsons)} metadata files")
    toolpath = meta.get("toolpath") or {}
    listed_toolpaths = sorted(n for n in (toolpath.get("path"), toolpath.get("svg")) if n)
    if sorted(toolpaths) != listed_toolpaths:
        problems.append(f"layer {layer}: toolpath files {toolpaths}, metadata {listed_toolpaths}")
    for kind, group in (("images", images), ("thumbnails", thumbs)):
        found = sorted(int(IMAGE_RE.match(n)["index"]) for n in group)  # type: ignore[index]
        if found != wanted:
            problems.append(f"layer {layer}: {kind} for positions {found}, wanted {wanted}")
    for name in images + thumbs:
        m = IMAGE_RE.match(name)
        assert m is not None
        if int(m["layer"]) != layer or m["z"] != z_text:
            problems.append(f"{name}: layer/Z part differs from layer {layer} Z {z_text}")
        data = (folder / name).read_bytes()
        if not data.startswith(b"\xff\xd8") or len(data) < 100:
            problems.append(f"{name}: not a JPEG")
    listed = sorted(i["path"] for i in meta["images"])
    if listed != sorted(images):
        problems.append(f"layer {layer}: metadata lists {listed}, folder has {sorted(images)}")
    thumbs_listed = sorted(i["thumbnail"] for i in meta["images"])
    if thumbs_listed != sorted(thumbs):
        problems.append(f"layer {layer}: metadata thumbnails {thumbs_listed} != {sorted(thumbs)}")
    return problems


def check_timings(timings: Mapping[str, float], epsilon: float = 0.002) -> List[str]:
    missing = [k for k in (*PHASES, "total") if k not in timings]
    if missing:
        return [f"timings lack {missing}"]
    phases = sum(float(timings[k]) for k in PHASES)
    total = float(timings["total"])
    problems = []
    if phases > total + epsilon:
        problems.append(f"phases add up to {phases:.4f} s > total {total:.4f} s")
    if total > phases + 0.05:
        problems.append(f"total {total:.4f} s exceeds the phases' {phases:.4f} s by > 0.05 s")
    return problems


# ---- waiting for captures -------------------------------------------------------------------


def wait_for_captured_layers(
    server: OctoPrintServer, count: int, since: int, timeout: float = 30.0
) -> Set[Any]:
    """Waits until ``count`` different layers were reported "captured" (the worker reports
    it once the layer's metadata is written); returns those layers. The plugin pushes its
    whole status again as the print goes on, so one capture may be seen several times:
    layers are counted, not messages. Raises AssertionError on timeout."""
    layers: Set[Any] = set()

    def enough(message: Any) -> bool:
        if message.kind == "plugin" and message.name == "layercapture":
            status = (message.payload or {}).get("status") or {}
            if status.get("state") == "captured":
                layers.add(status.get("layer"))
        return len(layers) >= count

    server.events.wait_for(enough, timeout, since=since, description=f"{count} captured layers")
    return layers


# ---- server set-up --------------------------------------------------------------------------


def capture_files(server: OctoPrintServer) -> Set[Path]:
    root = server.uploads_dir / "layercapture"
    return {p for p in root.rglob("*") if p.is_file()} if root.is_dir() else set()


def apply_settings(server: OctoPrintServer, values: Mapping[str, Any]) -> None:
    response = server.save_plugin_settings(values)
    assert response.status_code == 200, response.text
    stored = server.plugin_settings_now()
    for key, value in values.items():
        assert stored[key] == value, f"setting {key} stored as {stored[key]!r}, sent {value!r}"


def set_profile_height(server: OctoPrintServer, height: float) -> float:
    """Sets the current printer profile's height; returns the previous one."""
    profile_id = server.get_json("/api/connection")["current"]["printerProfile"]
    before = server.get_json(f"/api/printerprofiles/{profile_id}")["volume"]["height"]
    response = server.api(
        "PATCH",
        f"/api/printerprofiles/{profile_id}",
        json={"profile": {"volume": {"height": height}}},
    )
    assert response.status_code == 200, response.text
    return float(before)
