"""Safety on real printers (issue 13), on a real OctoPrint with its virtual printer.

The virtual printer has no pause scripts, no firmware limits and Marlin's mode rules; real
printers have all of those. These tests give OctoPrint the user's G-code scripts (through its
settings API), files whose modes trip up firmware families, a plugin whose PrintStarted
handler is slow, and the harness's firmware plugin for soft limits that answer ``!!`` (as
Klipper does) or clamp in silence (as Marlin does). Each test asserts on the G-code OctoPrint
sent, replayed as a firmware would run it.

One server for the module (firmware quirks installed, serial.log on); every test restores
what it changed. They print tests/fixtures/prusa_tiny.gcode (7 layers of 0.2 mm) or a file
derived from it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import pytest
from capture_checks import (
    METADATA_RE,
    apply_settings,
    capture_files,
    code_of,
    replay,
    split_blocks,
    wait_for_captured_layers,
)
from expected_layers import analyse
from harness import OctoPrintServer
from safety_support import (
    DOCUMENTED_SCRIPTS,
    FAMILIES,
    NO_SCRIPTS,
    RELATIVE_SCRIPTS,
    Modes,
    check_scripted_block,
    modes_after,
    scripted_block,
    serial_log_sends,
    to_relative_e,
    unnumbered_moves,
    with_firmware_retraction,
    with_relative_z_hops,
    without_e_mode,
)

from octoprint_layercapture.camera_settings import camera_entry

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "prusa_tiny.gcode"
MODES = ["pause", "hold"]
PRINT_TIMEOUT = 90.0

SETTINGS: Dict[str, Any] = {
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
    "bed_max_z": None,
    "capture_every_n_layers": 3,
    "capture_z_heights": [],
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
    "retract_length": 1.0,
    "stop_mode": "pause",
    "firmware": "auto",
    "pause_timeout": 60.0,
    "snapshot_timeout": 5.0,
    "snapshot_retries": 1,
}
QUIRKS: Dict[str, Any] = {
    "without_m400": False,
    "g4_waits_for_moves": False,
    "busy_interval": 0.0,
    "limits": "",
    "out_of_range": "error",
    "report_m211": False,
    "misreport_x_above_z": None,
    "lose_x_above_z": None,
}


@pytest.fixture(scope="module")
def octoprint_server_options() -> Dict[str, Any]:
    return {"firmware_quirks": True, "serial_log": True}


RECONNECT_AFTER: List[OctoPrintServer] = []  # servers whose firmware told the plugin limits


@pytest.fixture
def server(octoprint_server: OctoPrintServer) -> Iterator[OctoPrintServer]:
    yield octoprint_server
    # leave the module's server as the next test expects it
    state = octoprint_server.state()
    if state in ("Printing", "Paused", "Pausing", "Resuming"):
        octoprint_server.api("POST", "/api/job", json={"command": "cancel"})
        octoprint_server.wait_for_state("Operational", 30)
    octoprint_server.set_gcode_scripts({**NO_SCRIPTS, "beforePrintStarted": ""})
    set_quirks(octoprint_server, {}, reconnect=octoprint_server in RECONNECT_AFTER)
    if octoprint_server in RECONNECT_AFTER:
        RECONNECT_AFTER.remove(octoprint_server)
    if octoprint_server.state() != "Operational":
        octoprint_server.connect()


def set_quirks(server: OctoPrintServer, quirks: Mapping[str, Any], reconnect: bool = False) -> None:
    response = server.api(
        "POST", "/api/settings", json={"plugins": {"lc_test_firmware": {**QUIRKS, **quirks}}}
    )
    assert response.status_code == 200, response.text
    if reconnect:  # the plugin asks for soft limits when the firmware introduces itself
        server.wait_for_state("Operational", 30)
        server.disconnect()
        server.connect()
        if quirks.get("report_m211"):
            RECONNECT_AFTER.append(server)


@dataclass
class SafetyRun:
    server: OctoPrintServer
    lines: List[str]  # of the printed file
    metadata: List[Dict[str, Any]]  # sorted by layer
    steps: List[Any]
    blocks: List[Any]
    received: List[str]
    log: str
    serial: List[str]  # serial.log's Send: lines during the print
    seconds: float

    def layers(self) -> List[int]:
        return [int(m["layer"]) for m in self.metadata]

    def held_line(self, layer: int) -> str:
        analysis = analyse(self.lines)
        return code_of(self.lines[analysis.layers[layer].first_extrusion_line])

    def printed_top(self, layer: int) -> float:
        analysis = analyse(self.lines)
        return analysis.highest_printed_z_before(analysis.layers[layer].first_extrusion_line)


def write_gcode(tmp_path: Path, name: str, lines: List[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_print(
    server: OctoPrintServer,
    settings: Mapping[str, Any],
    fixture: Path = TINY,
    *,
    layers: int = 2,
    on_left_paused: Optional[Any] = None,
) -> SafetyRun:
    apply_settings(server, {**SETTINGS, **settings})
    server.wait_for_state("Operational", 30)
    known = capture_files(server)
    serial_log = server.basedir / "logs" / "serial.log"
    serial_offset = serial_log.stat().st_size if serial_log.exists() else 0
    log_offset = server.log_size()
    started = time.monotonic()
    mark = server.mark()
    server.start_print(fixture)
    if on_left_paused is not None:
        on_left_paused(server, mark)
    server.wait_print_done(timeout=PRINT_TIMEOUT)
    seconds = time.monotonic() - started
    if layers:
        wait_for_captured_layers(server, layers, since=mark)
    files = capture_files(server) - known
    metadata = sorted(
        (json.loads(p.read_text(encoding="utf-8")) for p in files if METADATA_RE.match(p.name)),
        key=lambda meta: int(meta["layer"]),
    )
    steps = replay([r for r in server.sent_lines(since=started) if r["tags"]])
    with open(serial_log, "rb") as handle:
        handle.seek(serial_offset)
        serial = serial_log_sends(handle.read().decode("utf-8", errors="replace"))
    return SafetyRun(
        server,
        fixture.read_text(encoding="utf-8").splitlines(),
        metadata,
        steps,
        split_blocks(steps),
        [r["line"] for r in server.received_lines(since=started)],
        server.log_text(since=log_offset),
        serial,
        seconds,
    )


def grid_points(settings: Mapping[str, Any]) -> List[tuple]:
    cx, cy, step = settings["grid_center_x"], settings["grid_center_y"], settings["grid_spacing"]
    return [(cx + dx * step, cy + dy * step) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


# ---- the user's pause and resume scripts ------------------------------------------------------


@pytest.mark.parametrize(
    "scripts", [DOCUMENTED_SCRIPTS, RELATIVE_SCRIPTS], ids=["documented", "relative"]
)
def test_pause_scripts_run_as_they_would_without_the_plugin(
    server: OctoPrintServer, scripts: Dict[str, str]
) -> None:
    server.set_gcode_scripts(scripts)
    run = run_print(server, {"stop_mode": "pause"})
    assert run.layers() == [3, 6]
    problems: List[str] = []
    for meta, block in zip(run.metadata, run.blocks):
        layer = int(meta["layer"])
        assert len(meta["images"]) == 9 and meta["failures"] == [], meta["failures"]
        scripted = scripted_block(block, run.held_line(layer))
        assert scripted.pause_script and scripted.resume_script, "the user's scripts ran"
        found = check_scripted_block(scripted, run.printed_top(layer), grid_points(SETTINGS))
        problems += [f"layer {layer}: {p}" for p in found]
        # the head went back to where the pause script parked it, measured there
        park = meta["return_position"]
        assert (park["x"], park["y"], park["z"]) == pytest.approx(
            (scripted.park.x, scripted.park.y, scripted.park.z), abs=0.01
        )
        # the unretract rides on the last Z move (down to the park, or up to it when the
        # script parked higher than the capture height): no blob left standing still
        last_z = [s for s in scripted.ours if s.moves_z][-1]
        assert "E" in last_z.line, last_z.line
    assert not problems, "\n".join(problems)
    # lines sent while paused carry line numbers and checksums too
    assert unnumbered_moves(run.serial) == []


@pytest.mark.parametrize("mode", MODES)
def test_every_line_carries_a_checksum_where_the_printer_insists(
    server: OctoPrintServer, mode: str
) -> None:
    """The virtual printer's forceChecksum refuses lines without one (a line garbled on the
    way, e.g. ``G0 Z20.6`` read as ``G0 Z2.6``, is then asked again, never run)."""
    response = server.api(
        "POST", "/api/settings", json={"plugins": {"virtual_printer": {"forceChecksum": True}}}
    )
    assert response.status_code == 200
    try:
        run = run_print(server, {"stop_mode": mode})
    finally:
        server.api(
            "POST", "/api/settings", json={"plugins": {"virtual_printer": {"forceChecksum": False}}}
        )
    assert run.layers() == [3, 6]
    for meta in run.metadata:
        assert len(meta["images"]) == 9 and meta["failures"] == [], meta["failures"]
    # (OctoPrint sends its idle temperature polls without one: those the printer refuses)
    assert unnumbered_moves(run.serial) == []


def test_a_pause_that_completes_late_is_resumed(server: OctoPrintServer) -> None:
    # the pause script dwells longer than the plugin waits for the pause
    server.set_gcode_scripts({"afterPrintPaused": "G4 S4", "beforePrintResumed": ""})
    run = run_print(
        server,
        {
            "stop_mode": "pause",
            "pause_timeout": 1.0,
            "capture_every_n_layers": 0,
            "capture_z_heights": [0.6],
        },
        layers=1,
    )
    [meta] = run.metadata
    assert meta["images"] == []
    assert any("did not stop within 1 s" in f["message"] for f in meta["failures"])
    assert "resuming the job now, without a capture" in run.log


@pytest.mark.parametrize("mode", MODES)
def test_a_head_left_away_is_brought_back_before_the_job_goes_on(
    server: OctoPrintServer, mode: str
) -> None:
    # the printer's reports are 3 mm off in X once the head has been above Z 5.2 (the
    # capture's travel height is 5.6, the file's start lifts to Z 5): the grid moves and the
    # way back can't be confirmed, so the head is lifted back up and the job is left paused
    set_quirks(server, {"lose_x_above_z": 5.2})
    resumed: List[float] = []

    def resume_when_left_paused(srv: OctoPrintServer, mark: int) -> None:
        srv.events.wait_for(
            lambda m: (
                m.kind == "plugin"
                and ((m.payload or {}).get("status") or {}).get("state") == "captured"
            ),
            60,
            since=mark,
            description="the capture giving up",
        )
        srv.wait_for_state("Paused", 15)
        resumed.append(time.monotonic())
        set_quirks(srv, {})
        response = srv.api("POST", "/api/job", json={"command": "pause", "action": "resume"})
        assert response.status_code == 204, response.text

    run = run_print(
        server,
        {
            "stop_mode": mode,
            "capture_every_n_layers": 0,
            "capture_z_heights": [0.6],
            "movement_timeout": 2.0,
        },
        layers=1,
        on_left_paused=resume_when_left_paused,
    )
    [meta] = run.metadata
    assert any("stays up" in f["message"] for f in meta["failures"]), meta["failures"]
    [block] = run.blocks
    held = run.held_line(3)
    [held_step] = [s for s in block.steps if " ".join(s.line.split()) == held]
    assert held_step.t > resumed[0], "the held line waited for the resume"
    start = block.start
    at = held_step.before
    assert (at.x, at.y, at.z) == pytest.approx((start.x, start.y, start.z), abs=0.001), (
        "the job went on with the head away"
    )
    assert at.e == pytest.approx(start.e, abs=1e-4)


# ---- modes as each firmware family reads them ------------------------------------------------


def plugin_lines(run: SafetyRun, held_lines: List[str]) -> List[str]:
    held = {" ".join(h.split()) for h in held_lines}
    return [s.line for s in run.steps if s.plugin and " ".join(s.line.split()) not in held]


def modes_at(run: SafetyRun, index: int) -> Modes:
    return modes_after(s.line for s in run.steps[:index])


@pytest.mark.parametrize("mode", MODES)
def test_modes_come_back_as_every_firmware_family_reads_them(
    server: OctoPrintServer, mode: str, tmp_path: Path
) -> None:
    # M83, then a relative hop with G91 ... G90 at each layer change: on Marlin 2 E is now
    # absolute, on Klipper, Prusa and RepRapFirmware still relative
    lines = with_relative_z_hops(to_relative_e(TINY.read_text(encoding="utf-8").splitlines()))
    run = run_print(
        server,
        {"stop_mode": mode, "firmware": "klipper"},
        write_gcode(tmp_path, "hops.gcode", lines),
    )
    assert run.layers() == [3, 6]
    for meta, block in zip(run.metadata, run.blocks):
        # the held line is the plugin's last (the reference reads files as Marlin 2 does)
        held_index = block.start_index + max(i for i, s in enumerate(block.steps) if s.plugin)
        before, after = modes_at(run, block.start_index), modes_at(run, held_index)
        for family in FAMILIES:
            assert after.e_relative(family) == before.e_relative(family), (meta["layer"], family)
        assert after.xyz_relative == before.xyz_relative
        assert len(meta["images"]) == 9


@pytest.mark.parametrize("mode", MODES)
def test_an_e_mode_set_outside_the_file_is_left_alone(
    server: OctoPrintServer, mode: str, tmp_path: Path
) -> None:
    # the E mode is set by a start macro the file doesn't show (here: OctoPrint's start
    # script; the virtual printer ignores M82/M83, so the print itself is unaffected): the
    # plugin can't give back a mode it doesn't know, so it changes none and retracts not
    server.set_gcode_scripts({"beforePrintStarted": "M83"})
    lines = without_e_mode(TINY.read_text(encoding="utf-8").splitlines())
    run = run_print(server, {"stop_mode": mode}, write_gcode(tmp_path, "macro.gcode", lines))
    assert run.layers() == [3, 6]
    ours = plugin_lines(run, [run.held_line(3), run.held_line(6)])
    assert ours, "the plugin sent its moves"
    assert not [line for line in ours if line.split()[0] in ("M82", "M83")], ours
    assert not [line for line in ours if any(w.startswith("E") for w in line.split()[1:])]


@pytest.mark.parametrize("mode", MODES)
def test_a_file_with_firmware_retraction_is_retracted_with_g10(
    server: OctoPrintServer, mode: str, tmp_path: Path
) -> None:
    lines = with_firmware_retraction(to_relative_e(TINY.read_text(encoding="utf-8").splitlines()))
    run = run_print(server, {"stop_mode": mode}, write_gcode(tmp_path, "fwretract.gcode", lines))
    assert run.layers() == [3, 6]
    ours = plugin_lines(run, [run.held_line(3), run.held_line(6)])
    assert ours.count("G10") == 2 and ours.count("G11") == 2, ours
    assert not [line for line in ours if any(w.startswith("E") for w in line.split()[1:])]
    assert "M83" not in ours and "M82" not in ours


# ---- arming before the first line -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_slow_print_started_handler_misses_nothing(
    make_server: Any, mode: str, tmp_path: Path
) -> None:
    server = make_server(slow_print_started=2.0, name=f"slow-start-{mode}")
    lines = to_relative_e(TINY.read_text(encoding="utf-8").splitlines())
    run = run_print(server, {"stop_mode": mode}, write_gcode(tmp_path, "m83.gcode", lines))
    assert "aaa_lc_slow_start: sleeping 2 s in PrintStarted" in run.log
    assert run.layers() == [3, 6]
    for meta in run.metadata:
        assert len(meta["images"]) == 9
    ours = plugin_lines(run, [run.held_line(3), run.held_line(6)])
    assert "M82" not in ours, "the file's M83 was seen"
    assert "M83" in ours


# ---- firmware limits --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_limits_the_user_sets_keep_a_klipper_printer_from_erroring(
    server: OctoPrintServer, mode: str
) -> None:
    # Klipper reports no limits: a move beyond them answers "!! Move out of range", which
    # OctoPrint treats as a fatal error. The user sets the bed's bounds and max Z.
    limits = {"x": [0, 170], "y": [0, 170], "z": [0, 6]}
    set_quirks(server, {"limits": json.dumps(limits), "out_of_range": "error"})
    run = run_print(
        server,
        {
            "stop_mode": mode,
            "grid_center_x": 150.0,
            "grid_center_y": 150.0,
            "bed_max_x": 170.0,
            "bed_max_y": 170.0,
            "bed_max_z": 6.0,
        },
    )
    assert not [line for line in run.received if line.startswith("!!")]
    layer3, layer6 = run.metadata
    assert len(layer3["images"]) == 9 and layer3["failures"] == []
    # layer 6 would capture at Z 6.2: nothing moves, every position says why
    assert layer6["images"] == [] and len(layer6["skipped"]) == 9
    assert all("above max Z 6" in s["reason"] for s in layer6["skipped"])


def test_marlin_soft_limits_are_read_from_m211(server: OctoPrintServer) -> None:
    # Marlin clamps a move beyond its soft limits in silence: the report never matches
    set_quirks(
        server,
        {
            "limits": json.dumps({"x": [0, 150], "y": [0, 200], "z": [0, 200]}),
            "out_of_range": "clamp",
            "report_m211": True,
        },
        reconnect=True,
    )
    run = run_print(server, {"grid_center_x": 140.0, "grid_spacing": 15.0})
    assert "Firmware soft limits" in server.log_text()
    for meta in run.metadata:
        assert meta["failures"] == [], meta["failures"]
        assert len(meta["images"]) == 6
        assert sorted(s["index"] for s in meta["skipped"]) == [2, 5, 8]
        assert all("beyond bed max X 150" in s["reason"] for s in meta["skipped"])


def test_a_grid_off_a_round_bed_is_refused(server: OctoPrintServer) -> None:
    profile_id = server.get_json("/api/connection")["current"]["printerProfile"]
    before = server.get_json(f"/api/printerprofiles/{profile_id}")["volume"]
    response = server.api(
        "PATCH",
        f"/api/printerprofiles/{profile_id}",
        json={"profile": {"volume": {"formFactor": "circular", "origin": "lowerleft"}}},
    )
    assert response.status_code == 200, response.text
    try:
        stored = server.plugin_settings_now()
        refused = server.api(
            "POST",
            "/plugin/layercapture/settings/validate",
            json={**SETTINGS, "grid_size": 5, "grid_spacing": 40.0},
        )
        assert refused.status_code == 400
        errors = refused.json()["errors"]
        assert any("round bed" in e["message"] for e in errors), errors
        server.save_plugin_settings({"grid_size": 5, "grid_spacing": 40.0})
        assert server.plugin_settings_now() == stored, "nothing was saved"
    finally:
        server.api(
            "PATCH",
            f"/api/printerprofiles/{profile_id}",
            json={"profile": {"volume": {k: before[k] for k in ("formFactor", "origin")}}},
        )


# ---- a dead camera ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_dead_camera_skips_the_rest_of_the_layer(server: OctoPrintServer, mode: str) -> None:
    # nothing listens on port 9: every snapshot is refused at once
    run = run_print(
        server,
        {
            "stop_mode": mode,
            "cameras": [camera_entry(type="snapshot", url="http://127.0.0.1:9/s.jpg")],
            "snapshot_retries": 0,
        },
    )
    for meta in run.metadata:
        assert meta["images"] == []
        messages = [f["message"] for f in meta["failures"]]
        assert len(messages) == 3, messages
        assert "2 camera failures in a row: the remaining 7 positions" in messages[-1]
