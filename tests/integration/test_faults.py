"""Fault matrix on a real OctoPrint + virtual printer, in both stop modes.

Each test prints tests/fixtures/prusa_tiny.gcode (captures at layers 3 and 6), injects one
fault while the sequence of layer 3 runs and checks the common promises of
:mod:`integration.fault_support`: the job ends as it should, the head is safe, no file is
half-written or lost, and the failure is reported in the log, the metadata and the UI.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Iterator

import pytest
from capture_checks import code_of, replay, split_blocks
from fault_support import (
    FAULT_SETTINGS,
    TINY,
    FaultRun,
    capturing,
    check_failure_reported,
    check_head_safe,
    check_no_partial_files,
    files_below,
    layer_block,
    run_with_fault,
    tiny_filesystem,
)
from harness import OctoPrintServer
from harness.camera_servers import SnapshotServer
from safety_support import (
    DOCUMENTED_SCRIPTS,
    NO_SCRIPTS,
    RELATIVE_SCRIPTS,
    check_scripted_block,
    scripted_block,
)

from octoprint_layercapture.camera_settings import camera_entry

pytestmark = pytest.mark.integration
MODES = ["pause", "hold"]


def job(command: str, **extra: Any) -> Callable[[OctoPrintServer], None]:
    def act(server: OctoPrintServer) -> None:
        response = server.api("POST", "/api/job", json={"command": command, **extra})
        assert response.status_code == 204, response.text

    return act


def terminal(*lines: str) -> Callable[[OctoPrintServer], None]:
    def act(server: OctoPrintServer) -> None:
        response = server.api("POST", "/api/printer/command", json={"commands": list(lines)})
        assert response.status_code == 204, response.text

    return act


def check_common(run: FaultRun, layer: int = 3, returned: bool = True) -> None:
    check_no_partial_files(run)
    check_head_safe(run, layer, returned=returned)


@pytest.fixture
def server(octoprint_server: OctoPrintServer) -> Iterator[OctoPrintServer]:
    yield octoprint_server
    # a failed or disconnecting test must not spoil the next one
    state = octoprint_server.state()
    if state in ("Printing", "Paused", "Pausing", "Resuming"):
        octoprint_server.api("POST", "/api/job", json={"command": "cancel"})
        octoprint_server.wait_for_state("Operational", 30)
    elif state != "Operational":
        octoprint_server.connect()


# ---- the user ----------------------------------------------------------------------------

# the user's own pause/resume scripts: none, OctoPrint's documented ones, a relative variant
SCRIPTS = [NO_SCRIPTS, DOCUMENTED_SCRIPTS, RELATIVE_SCRIPTS]
SCRIPT_IDS = ["no-scripts", "documented-scripts", "relative-scripts"]


@pytest.fixture(params=SCRIPTS, ids=SCRIPT_IDS)
def scripts(request: pytest.FixtureRequest, server: OctoPrintServer) -> Iterator[Dict[str, str]]:
    server.set_gcode_scripts(request.param)
    yield request.param
    server.set_gcode_scripts(NO_SCRIPTS)


def check_returned(run: FaultRun, layer: int, scripts: Dict[str, str]) -> None:
    """Back where the job stopped, or (pause mode with scripts) where the pause script
    parked the head, the user's resume script then running as without the plugin."""
    if not any(scripts.values()) or run.meta(layer)["settings"]["stop_mode"] == "hold":
        check_common(run, layer)
        return
    check_no_partial_files(run)
    block = layer_block(run, layer)
    stop_line = run.analysis.layers[layer].first_extrusion_line
    top = run.analysis.highest_printed_z_before(stop_line)
    allowed = [(i["position"]["x"], i["position"]["y"]) for i in run.meta(layer)["images"]]
    scripted = scripted_block(block, code_of(run.lines[stop_line]))
    assert scripted.pause_script and scripted.resume_script
    problems = check_scripted_block(scripted, top, allowed)
    assert not problems, "\n".join(problems)


def test_user_resume_during_a_pause_sequence_waits_for_the_head(
    server: OctoPrintServer, scripts: Dict[str, str]
):
    # OctoPrint stays PAUSING while the head is away (the plugin holds the job there, so
    # its lines carry checksums), and ignores pause and resume clicks until then
    run = run_with_fault(
        server, {"stop_mode": "pause"}, job("pause", action="resume"), capturing(index=2)
    )
    for layer in (3, 6):
        check_returned(run, layer, scripts)
        assert len(run.meta(layer)["images"]) == 9 and run.failures(layer) == []


def test_user_pause_during_a_hold_sequence_is_respected(
    server: OctoPrintServer, scripts: Dict[str, str]
):
    # with scripts, the user's pause (completed once the head is back) parks the head and
    # their resume script brings it back before the held line goes out
    mark = server.events.mark()

    def pause_then_resume_when_left_paused(srv: OctoPrintServer) -> None:
        job("pause", action="pause")(srv)
        # the sequence returns the head and leaves the job paused; the user resumes it
        srv.events.wait_for(
            lambda m: (
                m.kind == "plugin"
                and (m.payload.get("status") or {}).get("outcome") == "left_paused_by_user"
            ),
            30,
            since=mark,
            description="the sequence leaving the job paused",
        )
        srv.wait_for_state("Paused", 15)
        job("pause", action="resume")(srv)

    run = run_with_fault(
        server, {"stop_mode": "hold"}, pause_then_resume_when_left_paused, capturing(index=2)
    )
    check_common(run)
    check_failure_reported(run, 3, "paused the job by hand")
    assert len(run.meta(6)["images"]) == 9
    if any(scripts.values()):
        # the held line went out only after the user's resume script brought the head back
        block = layer_block(run, 3)
        stop_line = run.analysis.layers[3].first_extrusion_line
        scripted = scripted_block(block, code_of(run.lines[stop_line]))
        assert scripted.pause_script and scripted.resume_script and scripted.held is not None
        start, at = block.start, scripted.held.before
        assert (at.x, at.y, at.z) == pytest.approx((start.x, start.y, start.z), abs=0.001)


@pytest.mark.parametrize(
    ("mode", "scripts"),
    [
        ("pause", NO_SCRIPTS),
        ("hold", NO_SCRIPTS),
        ("pause", DOCUMENTED_SCRIPTS),
        ("pause", RELATIVE_SCRIPTS),
    ],
    ids=["pause", "hold", "pause-documented-scripts", "pause-relative-scripts"],
    indirect=["scripts"],
)
def test_user_cancel_during_a_sequence_stops_moving(
    server: OctoPrintServer, mode: str, scripts: Dict[str, str]
):
    run = run_with_fault(
        server,
        {"stop_mode": mode},
        job("cancel"),
        capturing(index=2),
        expect_end="PrintCancelled",
        sequences=1,
    )
    check_no_partial_files(run)
    check_head_safe(run, 3, returned=False)
    check_failure_reported(run, 3, "cancelled: nothing more sent")
    assert run.meta(3)["images"], "images taken before the cancel are kept"
    assert [int(m["layer"]) for _p, m in run.metadata] == [3]


# ---- the printer -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_m400_answered_late_returns_the_head_and_continues(server: OctoPrintServer, mode: str):
    run = run_with_fault(
        server,
        {"stop_mode": mode, "movement_timeout": 1.5},
        terminal("!!DEBUG:sleep_after_next M400 3"),
        capturing(index=2),
    )
    check_common(run)
    check_failure_reported(run, 3, "move not confirmed")
    assert len(run.meta(6)["images"]) == 9


@pytest.mark.parametrize("mode", MODES)
def test_printer_disconnect_during_a_sequence_aborts_it(server: OctoPrintServer, mode: str):
    def disconnect(srv: OctoPrintServer) -> None:
        response = srv.api("POST", "/api/connection", json={"command": "disconnect"})
        assert response.status_code == 204, response.text

    run = run_with_fault(
        server,
        {"stop_mode": mode},
        disconnect,
        capturing(index=2),
        expect_end="Disconnected",  # OctoPrint ends a paused or held job without PrintFailed
        sequences=1,
    )
    check_no_partial_files(run)
    check_head_safe(run, 3, returned=False)
    check_failure_reported(run, 3, "disconnected: nothing more sent")


@pytest.mark.parametrize("mode", MODES)
def test_a_second_trigger_during_a_sequence_is_skipped(server: OctoPrintServer, mode: str):
    run = run_with_fault(
        server,
        {"stop_mode": mode},
        terminal("@LAYERCAPTURE 6 1.4"),  # "layer 6 is complete": a target
        capturing(index=2),
        sequences=1,
    )
    check_common(run)
    assert "the previous capture is still running, skipped" in run.log
    assert len(run.meta(3)["images"]) == 9
    assert len(run.blocks) == 1


# ---- the camera ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshots() -> Iterator[SnapshotServer]:
    with SnapshotServer() as running:
        yield running


@pytest.mark.parametrize("mode", MODES)
def test_camera_garbage_errors_and_hangs_are_recorded_and_the_print_goes_on(
    server: OctoPrintServer, snapshots: SnapshotServer, mode: str
):
    # layer 3, one behaviour per position in visiting order (a good image between two
    # failures: two in a row would skip the layer's rest); layer 6 gets good images
    snapshots.script[:] = ["jpeg", "html", "jpeg", "hang", "jpeg", "status/500", "jpeg"]
    snapshots.script += ["truncated", "reset"]
    url = snapshots.url("script")
    try:
        run = run_with_fault(
            server,
            {
                "stop_mode": mode,
                "cameras": [camera_entry(type="snapshot", url=url)],
                "snapshot_timeout": 1.0,
                "snapshot_retries": 0,
            },
        )
    finally:
        snapshots.release_hangs()
    check_common(run)
    check_common(run, layer=6)
    failures = run.failures(3)
    assert len(failures) == 5, failures
    for text in (
        "not a JPEG",
        "timed out after 1 s",
        "HTTP 500",
        "before the image was complete",
        "closed the connection without answering",
    ):
        check_failure_reported(run, 3, text)
    assert len(run.meta(3)["images"]) == 4 and len(run.meta(6)["images"]) == 9
    for image in run.meta(3)["images"]:
        stored = (run.metadata[0][0].parent / image["path"]).read_bytes()
        assert stored == snapshots.jpeg, "camera bytes are stored as received"


@pytest.mark.parametrize("mode", MODES)
def test_a_camera_that_refuses_connections_costs_no_print(
    server: OctoPrintServer, snapshots: SnapshotServer, mode: str
):
    run = run_with_fault(
        server,
        {
            "stop_mode": mode,
            "cameras": [camera_entry(type="snapshot", url=snapshots.refused_url())],
            "snapshot_timeout": 1.0,
            "snapshot_retries": 1,
            "grid_size": 1,
        },
    )
    check_common(run)
    check_failure_reported(run, 3, "connection refused (2 attempts)")
    assert run.meta(3)["images"] == [] and run.meta(6)["images"] == []


# ---- the disk ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_read_only_capture_folder_loses_nothing_and_continues(server: OctoPrintServer, mode: str):
    folder = server.uploads_dir / f"lc-readonly-{mode}"
    with tiny_filesystem(folder, 64, read_only=True):
        run = run_with_fault(server, {"stop_mode": mode, "capture_folder": folder.name})
        assert run.metadata == []
        check_no_partial_files(run)
        check_head_safe(run, 3)
        check_failure_reported(run, 3, "read-only file system", in_metadata=False)
        assert "could not write the metadata" in run.log


@pytest.mark.parametrize("mode", MODES)
def test_disk_full_keeps_what_was_written_whole(server: OctoPrintServer, mode: str):
    folder = server.uploads_dir / f"lc-full-{mode}"
    with tiny_filesystem(folder, 160):
        run = run_with_fault(server, {"stop_mode": mode, "capture_folder": folder.name})
        check_no_partial_files(run)
        check_head_safe(run, 3)
        check_failure_reported(run, 3, "no space left on device", in_metadata=False)
        saved = list(folder.rglob("*.jpg"))
        assert saved, "the first images fit on the disk"
        listed = {i["path"] for _p, m in run.metadata for i in m["images"]}
        assert listed <= {p.name for p in saved}


# ---- OctoPrint itself ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_shutdown_during_a_sequence_is_clean(make_server: Callable[..., OctoPrintServer], mode):
    server = make_server(plugin_settings={**FAULT_SETTINGS, "stop_mode": mode})
    mark = server.mark()
    printing = time.monotonic()  # (on connecting the plugin asked for soft limits)
    server.start_print(TINY)
    server.events.wait_for(
        lambda m: m.kind == "plugin" and capturing(index=2)(m.payload.get("status") or {}),
        60,
        since=mark,
        description="the sequence of layer 3",
    )
    started = time.monotonic()
    server.stop()
    # OctoPrint's log handler drops what is logged during its shutdown, so the evidence is
    # the metadata written on the way out and the lines the printer was sent
    assert server.exit_code() == 0, server.diagnostics()
    root = server.uploads_dir / "layercapture"
    assert [p for p in files_below(root) if p.name.endswith(".tmp")] == []
    metadata = [json.loads(p.read_text()) for p in files_below(root) if "_metadata_" in p.name]
    assert len(metadata) == 1, "the interrupted layer's metadata is written on the way out"
    assert any("shutdown: nothing more sent" in f["message"] for f in metadata[0]["failures"])
    blocks = split_blocks(replay([r for r in server.sent_lines(since=printing) if r["tags"]]))
    assert len(blocks) == 1
    low = [s.line for s in blocks[0].steps if s.plugin and s.moves_xy and s.after.z < 1.6]
    assert low == [], f"XY travel below the print's top + clearance: {low}"
    assert time.monotonic() - started < 15, "the worker let OctoPrint shut down promptly"


@pytest.mark.parametrize("mode", MODES)
def test_m400_never_answered_recovers(make_server: Callable[..., OctoPrintServer], mode: str):
    # OctoPrint itself recovers from a missing "ok" after its communication timeout
    server = make_server(config_overrides={"serial": {"timeout": {"communication": 4}}})
    # below the 1 s after which the virtual printer's idle "wait" line releases OctoPrint
    run = run_with_fault(
        server,
        {"stop_mode": mode, "movement_timeout": 0.8},
        terminal("!!DEBUG:dont_answer"),
        capturing(index=2),
    )
    check_common(run)
    check_failure_reported(run, 3, "not confirmed")
