"""Acceptance of the capture engine on a real OctoPrint with its virtual printer.

One server for the module; each print below runs once (a module-scoped parametrized
fixture) with its settings saved through the REST settings API, and every test checks one
aspect of every print: which layers were captured (against tests/support/expected_layers.py), the
files and their names, the metadata (schema, timings), the measured positions and E, and the
G-code the printer actually received (Z safety, the held-back line, the return).

About E: OctoPrint 1.11's virtual printer ignores M82/M83 (E is absolute under G90), so in
an M83 file it reports the last E word instead of the firmware counter the reference models.
The printer's reports are compared with a replay of the sent lines that knows this, and the
replayed firmware counter with the reference's ``end_e``; for M82 files both are the same
number and the report is compared with ``end_e`` directly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple

import jsonschema
import pytest
from capture_checks import (
    DAY_RE,
    E_TOLERANCE,
    METADATA_RE,
    TOLERANCE,
    Block,
    Step,
    apply_settings,
    capture_files,
    check_layer_files,
    check_motion,
    check_timings,
    code_of,
    near,
    replay,
    reported_e_candidates,
    same_line,
    set_profile_height,
    split_blocks,
    wait_for_captured_layers,
)
from expected_layers import (
    Analysis,
    analyse,
    expected_capture_layers,
    layer_markers,
)
from harness import OctoPrintServer
from safety_support import (
    DOCUMENTED_SCRIPTS,
    NO_SCRIPTS,
    RELATIVE_SCRIPTS,
    check_scripted_block,
    scripted_block,
)

from octoprint_layercapture.camera_settings import camera_entry
from octoprint_layercapture.schemas import load_schema

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
SCHEMA = load_schema("metadata")
BED = (0.0, 0.0, 200.0, 200.0)  # OctoPrint's default printer profile
PRINT_TIMEOUT = 120.0

BASE_SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "z_offset": 5.0,
    "bed_min_x": None,
    "bed_min_y": None,
    "bed_max_x": None,
    "bed_max_y": None,
    "capture_every_n_layers": 3,
    "capture_z_heights": [],
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
    "create_thumbnails": True,
    "retract_length": 1.0,
    "stop_mode": "pause",
    "capture_folder": "layercapture",
}


@dataclass(frozen=True)
class RunSpec:
    name: str
    fixture: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    max_z: Optional[float] = None  # printer profile height during this print
    scripts: Mapping[str, str] = field(default_factory=dict)  # OctoPrint's G-code scripts

    def setting(self, key: str) -> Any:
        return self.settings.get(key, BASE_SETTINGS[key])

    @property
    def markers(self) -> bool:
        return "markers" in self.fixture


RUNS = [
    RunSpec("pause-zhop", "prusa_box_zhop.gcode"),
    RunSpec("pause-variable", "prusa_variable_first.gcode", {"retract_length": 0.0}),
    RunSpec("pause-slic3r", "slic3r_box.gcode"),
    # 5x5 up to the explicit bed edge X/Y 140; a 6.5 mm high profile skips layers 9 and 12
    # (capture Z 6.8 and 7.4) completely
    RunSpec(
        "pause-markers-5x5-maxz",
        "prusa_markers.gcode",
        {"retract_length": 0.0, "grid_size": 5, "bed_max_x": 140.0, "bed_max_y": 140.0},
        max_z=6.5,
    ),
    RunSpec("hold-zhop", "prusa_box_zhop.gcode", {"stop_mode": "hold", "retract_length": 0.0}),
    RunSpec(
        "hold-variable-zlist",
        "prusa_variable_first.gcode",
        {"stop_mode": "hold", "capture_every_n_layers": 0, "capture_z_heights": [0.6, 2.2, 3.0]},
    ),
    # a 6 mm tower printed first, then a 3.2 mm box: the box's captures must travel above
    # the finished tower (the grid's back row passes over it)
    RunSpec("pause-sequential", "prusa_sequential.gcode", {"capture_every_n_layers": 5}),
    # the user's pause and resume scripts (OctoPrint's documented ones, and a relative
    # variant): the head returns to where the pause script parked it
    RunSpec("pause-zhop-documented-scripts", "prusa_box_zhop.gcode", scripts=DOCUMENTED_SCRIPTS),
    RunSpec(
        "pause-variable-relative-scripts",
        "prusa_variable_first.gcode",
        {"retract_length": 0.0, "capture_every_n_layers": 4},
        scripts=RELATIVE_SCRIPTS,
    ),
    RunSpec(
        "hold-sequential",
        "prusa_sequential.gcode",
        {"stop_mode": "hold", "capture_every_n_layers": 7, "retract_length": 0.0},
    ),
]


@dataclass
class PrintRun:
    spec: RunSpec
    analysis: Analysis
    lines: List[str]
    expected: List[int]
    metadata: List[Tuple[Path, Dict[str, Any]]]  # sorted by layer
    root: Path  # uploads/layercapture
    new_files: Set[Path]
    steps: List[Step]
    blocks: List[Block]
    seconds: float

    def layer(self, number: int) -> Any:
        return self.analysis.layers[number - 1]

    def stop_line(self, layer: int) -> int:
        """Index of the file line the job stops before: the next layer's first extrusion
        (held back), or the marker ending ``layer``."""
        if self.spec.markers:
            return next(i for i, num, _z in layer_markers(self.lines) if num == layer)
        return int(self.layer(layer + 1).first_extrusion_line)

    def code_line(self, index: int, step: int) -> str:
        """The nearest line with code before (step -1) or after (step 1) ``index``."""
        index += step
        while not code_of(self.lines[index]) or code_of(self.lines[index]).startswith("@"):
            index += step
        return code_of(self.lines[index])

    def pairs(self) -> List[Tuple[Dict[str, Any], Block]]:
        if len(self.blocks) != len(self.metadata):  # e.g. a file line inside a sequence
            pytest.fail(
                f"{len(self.blocks)} plugin sequences in the sent lines, "
                f"{len(self.metadata)} metadata files"
            )
        return [(meta, block) for (_path, meta), block in zip(self.metadata, self.blocks)]


def run_print(server: OctoPrintServer, spec: RunSpec) -> PrintRun:
    path = FIXTURES / spec.fixture
    analysis = analyse(path)
    expected = expected_capture_layers(
        analysis.layers, spec.setting("capture_every_n_layers"), spec.setting("capture_z_heights")
    )
    server.wait_for_state("Operational", 30)  # a print that just ended may still finish
    known = capture_files(server)
    started = time.monotonic()
    mark = server.mark()
    upload = server.start_print(path)
    assert upload.get("effective_print") is not False, f"the print did not start: {upload}"
    server.wait_print_done(timeout=PRINT_TIMEOUT)
    seconds = time.monotonic() - started
    # each layer's metadata is written right after its job continued: wait for the last
    try:
        wait_for_captured_layers(server, len(expected), since=mark, timeout=15.0)
    except AssertionError:
        pass  # the layer checks below say what is missing
    new_files = capture_files(server) - known
    metadata = sorted(
        (
            (p, json.loads(p.read_text(encoding="utf-8")))
            for p in new_files
            if METADATA_RE.match(p.name)
        ),
        key=lambda item: int(item[1]["layer"]),
    )
    # resent lines (the virtual printer's simulated errors) come without tags: skip them
    records = [r for r in server.sent_lines(since=started) if r["tags"]]
    steps = replay(records)
    return PrintRun(
        spec,
        analysis,
        path.read_text(encoding="utf-8").splitlines(),
        expected,
        metadata,
        server.uploads_dir / "layercapture",
        new_files,
        steps,
        split_blocks(steps),
        seconds,
    )


@pytest.fixture(scope="module", params=RUNS, ids=[r.name for r in RUNS])
def capture_run(
    request: pytest.FixtureRequest, octoprint_server: OctoPrintServer
) -> Iterator[PrintRun]:
    spec: RunSpec = request.param
    server = octoprint_server
    apply_settings(server, {**BASE_SETTINGS, **spec.settings})
    restore = set_profile_height(server, spec.max_z) if spec.max_z is not None else None
    if spec.scripts:
        server.set_gcode_scripts(spec.scripts)
    try:
        yield run_print(server, spec)
    finally:
        if restore is not None:
            set_profile_height(server, restore)
        if spec.scripts:
            server.set_gcode_scripts(NO_SCRIPTS)


# ---- which layers, which files ------------------------------------------------------------


def test_captured_layers_are_the_expected_ones(capture_run: PrintRun) -> None:
    run = capture_run
    layers = [int(meta["layer"]) for _path, meta in run.metadata]
    assert layers == run.expected, f"captured {layers}, expected {run.expected}"
    for _path, meta in run.metadata:
        assert meta["z_height"] == pytest.approx(run.layer(meta["layer"]).z, abs=1e-6)
        assert meta["gcode_file"] == run.spec.fixture
        assert meta["settings"]["stop_mode"] == run.spec.setting("stop_mode")
    run.pairs()  # one sequence per captured layer in what the printer was sent


def test_each_layer_has_its_images_thumbnails_and_metadata(capture_run: PrintRun) -> None:
    run = capture_run
    by_folder: Dict[Path, List[str]] = {}
    for path in run.new_files:
        by_folder.setdefault(path.parent, []).append(path.name)
    problems: List[str] = []
    accounted: Set[Path] = set()
    for path, meta in run.metadata:
        folder = path.parent
        assert folder.parent == run.root and DAY_RE.match(folder.name), folder
        stamp = METADATA_RE.match(path.name)
        assert stamp is not None, path.name
        assert folder.name.replace("-", "") == stamp["stamp"][:8], (folder.name, path.name)
        prefix = f"layer_{int(meta['layer']):04d}_"
        names = [n for n in by_folder[folder] if n.startswith(prefix)]
        accounted.update(folder / n for n in names)
        problems += check_layer_files(folder, meta, names)
        points = int(run.spec.setting("grid_size")) ** 2
        if run.spec.max_z is None:
            assert not meta["skipped"] and len(meta["images"]) == points == 9, meta["layer"]
    assert not problems, "\n".join(problems)
    assert accounted == run.new_files, f"unexpected files: {run.new_files - accounted}"


def test_skipped_positions_are_named_and_never_visited(capture_run: PrintRun) -> None:
    run = capture_run
    for meta, block in run.pairs():
        skipped = meta["skipped"]
        if run.spec.max_z is None or meta["z_height"] + 5.0 <= run.spec.max_z:
            assert not skipped, f"layer {meta['layer']}: skipped {skipped}"
            continue
        points = int(run.spec.setting("grid_size")) ** 2
        assert sorted(s["index"] for s in skipped) == list(range(points))
        for s in skipped:
            assert "above max Z" in s["reason"] and f"{run.spec.max_z:g}" in s["reason"], s
        assert meta["images"] == []
        assert any("no grid position" in f["message"] for f in meta["failures"])
        moved = [s.line for s in block.steps if s.plugin and (s.moves_xy or s.moves_z)]
        assert moved == [], f"layer {meta['layer']}: the head moved although all were skipped"
    if run.spec.max_z is not None:
        assert any(meta["skipped"] for meta, _ in run.pairs()), "nothing was skipped"
        assert all(s.after.z <= run.spec.max_z for s in run.steps if s.plugin)


# ---- metadata ----------------------------------------------------------------------------


def test_metadata_matches_the_schema_and_timings_add_up(capture_run: PrintRun) -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for path, meta in capture_run.metadata:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(meta)]
        assert not errors, f"{path.name}:\n" + "\n".join(errors)
        assert not check_timings(meta["timings"]), (path.name, check_timings(meta["timings"]))
        if meta["images"]:
            assert meta["failures"] == [], (path.name, meta["failures"])


# ---- positions and E -------------------------------------------------------------------


def test_measured_positions_and_e_match_the_gcode(capture_run: PrintRun) -> None:
    run = capture_run
    min_x, min_y, max_x, max_y = BED
    max_x = run.spec.setting("bed_max_x") or max_x
    max_y = run.spec.setting("bed_max_y") or max_y
    relative_e = any(code_of(line).upper() == "M83" for line in run.lines)
    source = "pause_event" if run.spec.setting("stop_mode") == "pause" else "position_report"
    for meta, block in run.pairs():
        layer, start = int(meta["layer"]), block.start
        expected_e = (
            run.layer(layer).last_extrusion_e if run.spec.markers else run.layer(layer).end_e
        )
        # the job stopped exactly at the end of the layer (firmware E counter of the sent
        # lines; a user's script that switches modes makes that counter meaningless, as it
        # would without the plugin: the relative one ends with G90, absolute E on Marlin 2)
        if not run.spec.scripts:
            assert start.e == pytest.approx(expected_e, abs=E_TOLERANCE), f"layer {layer}"
        stop = meta["stop_position"]
        assert stop is not None and stop["source"] == source, (layer, stop)
        for axis in ("x", "y", "z"):
            assert near(stop[axis], getattr(start, axis), TOLERANCE), (layer, axis, stop, start)
        # what the virtual printer reported when the job stopped
        candidates = reported_e_candidates(run.steps[: block.start_index])
        if not run.spec.scripts:
            assert any(near(stop["e"], e, E_TOLERANCE) for e in candidates), (layer, candidates)
        if not relative_e and not run.spec.scripts:
            assert stop["e"] == pytest.approx(expected_e, abs=E_TOLERANCE), (layer, stop)
        for image in meta["images"]:
            where, measured = image["position"], image["measured"]
            assert measured is not None, image["path"]
            for axis in ("x", "y", "z"):
                assert near(measured[axis], where[axis], TOLERANCE), (image["path"], axis)
            assert min_x <= where["x"] <= max_x and min_y <= where["y"] <= max_y, image
            assert where["z"] == pytest.approx(meta["capture_z"]), image
            arrived = [
                s
                for s in block.steps
                if s.plugin
                and s.moves_xy
                and near(s.after.x, where["x"], 0.001)
                and near(s.after.y, where["y"], 0.001)
            ]
            assert arrived, f"{image['path']}: no move to its position was sent"
            if run.spec.scripts:
                # the user's pause script moved E its own way (the virtual printer's E
                # model differs from a firmware's there); check_scripted_block checks E
                continue
            # after our own E moves (the retract) the report follows them, else the stop's
            ours = block.steps[: block.steps.index(arrived[0]) + 1]
            after_e = arrived[0].after.e_vp if any(s.sets_e for s in ours) else stop["e"]
            assert measured["e"] == pytest.approx(after_e, abs=E_TOLERANCE), image
            if run.spec.setting("retract_length") == 0:
                assert measured["e"] == pytest.approx(stop["e"], abs=E_TOLERANCE), image
                if not relative_e:
                    assert measured["e"] == pytest.approx(expected_e, abs=E_TOLERANCE), image


# ---- what the printer was sent ---------------------------------------------------------


def test_sequences_are_safe_and_hold_back_the_next_layer(capture_run: PrintRun) -> None:
    run = capture_run
    held = not run.spec.markers
    problems: List[str] = []
    for meta, block in run.pairs():
        layer = int(meta["layer"])
        stop_line = run.stop_line(layer)
        allowed = [(i["position"]["x"], i["position"]["y"]) for i in meta["images"]]
        allowed.append((block.start.x, block.start.y))
        top = run.analysis.highest_printed_z_before(stop_line)
        if run.spec.scripts:
            # back to the park, then the user's resume script; compared with the scripts alone
            scripted = scripted_block(block, code_of(run.lines[stop_line]))
            found = check_scripted_block(scripted, top, allowed)
        else:
            found = check_motion(block, held, top, allowed, max_z=run.spec.max_z)
        problems += [f"layer {layer}: {p}" for p in found]
        # the job stopped right before ``stop_line`` and went on right after it
        before = run.code_line(stop_line, -1)
        if not same_line(block.previous_file_line or "", before):
            problems.append(f"layer {layer}: last file line {block.previous_file_line!r}")
        if held:
            held_line = code_of(run.lines[stop_line])
            if not same_line(block.plugin_steps[-1].line, held_line):
                problems.append(f"layer {layer}: sent last {block.plugin_steps[-1].line!r}")
        after = run.code_line(stop_line, 1)
        if not same_line(block.next_file_line or "", after):
            problems.append(f"layer {layer}: next file line {block.next_file_line!r} != {after!r}")
        window = block.window(held)
        if any(s.after.e > s.before.e + 1e-9 and s.moves_xy for s in window):
            problems.append(f"layer {layer}: an extruding move during the sequence")
    assert not problems, "\n".join(problems)


def test_sequence_timing_has_no_fixed_sleeps(
    capture_run: PrintRun, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per-layer sequence time against the virtual printer's simulated move time (report);
    with both delays 0 nothing waits between a confirmed move and the snapshot."""
    run = capture_run
    rows = []
    for meta, block in run.pairs():
        timings = meta["timings"]
        simulated = block.simulated_move_seconds(held=not run.spec.markers)
        rows.append((int(meta["layer"]), len(meta["images"]), timings, simulated))
        assert timings["settle"] <= 0.1, (meta["layer"], timings)
        # the head waits only for the printer: a fixed wait per move would show up here
        confirms = len(meta["images"]) + 2
        slack = 0.5 + 0.1 * confirms  # generous: other servers share the two cores
        spent = timings["moves"] + timings["return"]
        assert spent <= simulated + slack, (meta["layer"], timings, simulated)
    summary = "; ".join(
        f"L{layer} {images} img total {t['total']:.3f} s (stop {t['stop']:.3f}, moves "
        f"{t['moves']:.3f}, capture {t['capture']:.3f}, return {t['return']:.3f}, "
        f"resume {t['resume']:.3f}) simulated moves {sim:.3f} s"
        for layer, images, t, sim in rows
    )
    record_property("sequence_timings", summary)
    record_property("print_seconds", round(run.seconds, 1))
    with capsys.disabled():
        print(f"\n[{run.spec.name}] print {run.seconds:.1f} s; {summary}")
