"""Firmware flavours: captures on printers that answer M114 and M400 differently.

One server for the module, with the harness's firmware-quirks test plugin (for what the
Virtual Printer has no setting for: no M400, a G4 that waits for moves, busy lines while
waiting). Each flavour sets the Virtual Printer, the quirks and the plugin settings through
the REST settings API, reconnects (the Virtual Printer reads its settings on connect) and
prints tests/fixtures/prusa_tiny.gcode: 7 layers, every 3rd layer captures layers 3 and 6,
3x3 grid, fake camera. The server runs with Python's deprecation warnings on, which
OctoPrint writes to its log.

The two last flavours can never confirm a move: the print must still complete, with the
head back where it stopped and an error in the metadata that says why, found within seconds
rather than after the 30 s movement timeout.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import pytest
from capture_checks import (
    METADATA_RE,
    TOLERANCE,
    apply_settings,
    capture_files,
    check_motion,
    near,
    replay,
    split_blocks,
    wait_for_captured_layers,
)
from harness import OctoPrintServer, names_the_plugin

from octoprint_layercapture.camera_settings import camera_entry

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "prusa_tiny.gcode"
LAYERS = [3, 6]
PRINT_TIMEOUT = 90.0
CONFIRM_TAG = "layercapture:confirm:"

SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "capture_every_n_layers": 3,
    "capture_z_heights": [],
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
    "stop_mode": "pause",
    "wait_for_moves": "M400",
    "movement_speed": 1200,  # 20 mm take 0.1 s on the Virtual Printer: long enough to tell
    "movement_timeout": 30.0,
}
QUIRKS: Dict[str, Any] = {"without_m400": False, "g4_waits_for_moves": False, "busy_interval": 0.0}
# What the flavours change on the Virtual Printer; the rest keep the defaults read at start.
VIRTUAL_PRINTER_KEYS = (
    "okBeforeCommandOutput",
    "reprapfwM114",
    "firmwareName",
    "m114FormatString",
    "sendBusy",
)

# RepRapFirmware 3's M114 answer. The Virtual Printer's ``reprapfwM114`` setting exists but
# changes nothing (OctoPrint 1.10 to 2.0rc7): the format string makes the difference.
RRF_M114 = (
    "X:{x:.3f} Y:{y:.3f} Z:{z:.3f} E:{e[current]:.1f} E0:{e[0]:.1f} Count {a} {b} {c} "
    "Machine {x:.3f} {y:.3f} {z:.3f} Bed comp 0.000"
)


@dataclass(frozen=True)
class Flavour:
    name: str
    virtual_printer: Mapping[str, Any] = field(default_factory=dict)
    quirks: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    error: Optional[str] = None  # no move can be confirmed; every failure says this

    def setting(self, key: str) -> Any:
        return self.settings.get(key, SETTINGS[key])


FLAVOURS = [
    Flavour("marlin"),
    Flavour(
        "reprapfirmware",
        {
            "reprapfwM114": True,
            "firmwareName": "RepRapFirmware for Duet 3 MB6HC",
            "m114FormatString": RRF_M114,
        },
    ),
    Flavour("ok-before-output", {"okBeforeCommandOutput": True}),
    # busy lines every 50 ms while M400 waits for 20 mm moves at 10 mm/s (0.2 s simulated)
    Flavour("busy", {"sendBusy": True}, {"busy_interval": 0.05}, {"movement_speed": 600}),
    # Smoothieware-style report without E, which OctoPrint's own parser refuses (so hold
    # mode: OctoPrint's pause would wait 10 s for a position it can't read)
    Flavour(
        "no-e-report-hold",
        {"m114FormatString": "C: X:{x:.4f} Y:{y:.4f} Z:{z:.4f}"},
        settings={"stop_mode": "hold"},
    ),
    Flavour(
        "no-m400-g4",
        quirks={"without_m400": True, "g4_waits_for_moves": True},
        settings={"wait_for_moves": "G4 P0"},
    ),
    Flavour("no-m400-poll", quirks={"without_m400": True}, settings={"wait_for_moves": "poll"}),
    Flavour(
        "no-m400-but-m400-set",
        quirks={"without_m400": True},
        error="the printer does not know M400: it answered 'echo:Unknown command: \"M400\"'; "
        "set wait_for_moves to 'G4 P0' or 'poll'",
    ),
    Flavour(
        "garbled-m114-hold",
        {"m114FormatString": "Position {x}/{y}/{z}"},
        settings={"stop_mode": "hold"},
        error="the printer answered M114 with 'ok Position ",
    ),
]


@dataclass
class FlavourRun:
    flavour: Flavour
    metadata: List[Dict[str, Any]]  # sorted by layer
    records: List[Dict[str, Any]]  # sent lines with tags, from the print's start
    received: List[Dict[str, Any]]
    log: str  # octoprint.log from the print's start
    seconds: float


@pytest.fixture(scope="module")
def octoprint_server_options() -> Dict[str, Any]:
    return {
        "firmware_quirks": True,
        "env": {"PYTHONWARNINGS": "default::DeprecationWarning,default::PendingDeprecationWarning"},
    }


@pytest.fixture(scope="module")
def virtual_printer_defaults(octoprint_server: OctoPrintServer) -> Dict[str, Any]:
    current = octoprint_server.plugin_settings_now("virtual_printer")
    return {key: current[key] for key in VIRTUAL_PRINTER_KEYS}


def run_flavour(
    server: OctoPrintServer, flavour: Flavour, defaults: Mapping[str, Any]
) -> FlavourRun:
    virtual_printer = {**defaults, **flavour.virtual_printer}
    response = server.api(
        "POST",
        "/api/settings",
        json={
            "plugins": {
                "virtual_printer": virtual_printer,
                "lc_test_firmware": {**QUIRKS, **flavour.quirks},
            }
        },
    )
    assert response.status_code == 200, response.text
    stored = server.plugin_settings_now("virtual_printer")
    assert {k: stored[k] for k in virtual_printer} == virtual_printer
    apply_settings(server, {**SETTINGS, **flavour.settings})
    server.wait_for_state("Operational", 30)
    server.disconnect()
    server.connect()
    known = capture_files(server)
    log_offset = server.log_size()
    started = time.monotonic()
    mark = server.mark()
    server.start_print(FIXTURE)
    server.wait_print_done(timeout=PRINT_TIMEOUT)
    seconds = time.monotonic() - started
    try:
        wait_for_captured_layers(server, len(LAYERS), since=mark, timeout=15.0)
    except AssertionError:
        pass  # the layer check says what is missing
    files = capture_files(server) - known
    metadata = sorted(
        (json.loads(p.read_text(encoding="utf-8")) for p in files if METADATA_RE.match(p.name)),
        key=lambda meta: int(meta["layer"]),
    )
    return FlavourRun(
        flavour,
        metadata,
        [r for r in server.sent_lines(since=started) if r["tags"]],
        server.received_lines(since=started),
        server.log_text(since=log_offset),
        seconds,
    )


@pytest.fixture(scope="module", params=FLAVOURS, ids=[f.name for f in FLAVOURS])
def flavour_run(
    request: pytest.FixtureRequest,
    octoprint_server: OctoPrintServer,
    virtual_printer_defaults: Dict[str, Any],
) -> Iterator[FlavourRun]:
    yield run_flavour(octoprint_server, request.param, virtual_printer_defaults)


def confirm_groups(run: FlavourRun) -> List[List[Dict[str, Any]]]:
    """The plugin's confirmations, each the lines sent under one confirm tag, in order."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for record in run.records:
        tag = next((t for t in record["tags"] if t.startswith(CONFIRM_TAG)), None)
        if tag is not None:
            groups.setdefault(tag, []).append(record)
    return list(groups.values())


# ---- every flavour -----------------------------------------------------------------------


def test_the_print_completes_with_layers_3_and_6_handled(flavour_run: FlavourRun) -> None:
    run = flavour_run
    assert [int(meta["layer"]) for meta in run.metadata] == LAYERS
    for meta in run.metadata:
        if run.flavour.error is None:
            assert meta["failures"] == [], (meta["layer"], meta["failures"])
            assert len(meta["images"]) == 9, meta["layer"]
        else:
            assert meta["images"] == [], meta["layer"]
            assert meta["failures"], meta["layer"]
            for failure in meta["failures"]:
                assert run.flavour.error in failure["message"], failure


def test_the_head_returns_safely(flavour_run: FlavourRun) -> None:
    run = flavour_run
    blocks = split_blocks(replay(run.records))
    assert len(blocks) == len(LAYERS)
    problems: List[str] = []
    for meta, block in zip(run.metadata, blocks):
        allowed = [(i["position"]["x"], i["position"]["y"]) for i in meta["images"]]
        allowed.append((block.start.x, block.start.y))
        if run.flavour.error is not None:  # the first grid point was commanded, not shot
            allowed.append((80.0, 80.0))
        found = check_motion(block, True, float(meta["z_height"]), allowed)
        problems += [f"layer {meta['layer']}: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_confirmations_send_the_configured_wait(flavour_run: FlavourRun) -> None:
    wait = flavour_run.flavour.setting("wait_for_moves")
    expected = ["M114"] if wait == "poll" else [wait, "M114"]
    groups = confirm_groups(flavour_run)
    assert groups, "no confirmation was sent"
    for group in groups:
        assert [r["line"] for r in group] == expected


def test_no_deprecation_warnings_or_hook_errors_about_the_plugin(flavour_run: FlavourRun) -> None:
    bad = [
        line
        for line in flavour_run.log.splitlines()
        if names_the_plugin(line)
        and (
            "deprecat" in line.lower()
            or " - ERROR - " in line
            or "Error while processing hook" in line
        )
    ]
    assert not bad, "\n".join(bad)


# ---- flavours that capture ---------------------------------------------------------------


def capturing(run: FlavourRun) -> FlavourRun:
    if run.flavour.error is not None:
        pytest.skip("this flavour cannot confirm any move")
    return run


def test_measured_positions_are_the_commanded_ones(flavour_run: FlavourRun) -> None:
    run = capturing(flavour_run)
    for meta in run.metadata:
        assert meta["stop_position"]["source"] in ("pause_event", "position_report")
        for image in meta["images"]:
            where, measured = image["position"], image["measured"]
            assert measured is not None, image["path"]
            for axis in ("x", "y", "z"):
                assert near(measured[axis], where[axis], TOLERANCE), (image["path"], axis)


def test_each_move_is_waited_for_before_its_position_is_read(flavour_run: FlavourRun) -> None:
    """M400, and G4 on a printer whose G4 waits for moves: the position report answering
    the confirmation comes only once the Virtual Printer has finished the move (it sleeps
    10 % of the move time). Its time, not the M114's: a printer that says "ok" before it
    runs a command acknowledges M400 at once. M114 polling can't show this: the Virtual
    Printer, like Marlin, reports a move's target as soon as the move starts."""
    run = capturing(flavour_run)
    if run.flavour.setting("wait_for_moves") == "poll":
        pytest.skip("M114 polling confirms the reported target, not the end of the move")
    steps = {id(r): s for r, s in zip(run.records, replay(run.records))}
    checked = 0
    for group in confirm_groups(run):
        move = run.records[run.records.index(group[0]) - 1]
        step = steps[id(move)]
        if not step.moves_xy or step.vp_seconds < 0.05:
            continue
        report = next(r for r in run.received if r["t"] >= group[-1]["t"] and "X:" in r["line"])
        waited = report["t"] - move["t"]
        assert waited >= 0.8 * step.vp_seconds, (move["line"], waited, step.vp_seconds)
        checked += 1
    assert checked >= 8, f"only {checked} long moves to tell"


# ---- what each special flavour is about -----------------------------------------------------


def test_busy_lines_came_while_the_moves_were_awaited(flavour_run: FlavourRun) -> None:
    run = flavour_run
    if not run.flavour.quirks.get("busy_interval"):
        pytest.skip("only the busy flavour")
    windows = [(g[0]["t"], g[-1]["t"]) for g in confirm_groups(run)]
    busy = [r for r in run.received if "busy" in r["line"]]
    during = [r for r in busy if any(start <= r["t"] <= end for start, end in windows)]
    assert len(during) >= 5, f"{len(during)} busy lines during our waits ({len(busy)} in all)"


def test_an_answer_that_is_no_report_ends_the_wait_within_seconds(
    flavour_run: FlavourRun,
) -> None:
    run = flavour_run
    if run.flavour.error is None:
        pytest.skip("only the flavours that cannot confirm")
    for meta in run.metadata:
        slow = [f for f in meta["failures"] if f["duration_s"] > 5.0]
        assert not slow, slow  # the movement timeout is 30 s
        assert meta["timings"]["total"] < 15.0, meta["timings"]
        assert meta["stop_position"] is not None
    warned = re.findall(r"layer \d+: .*" + re.escape(run.flavour.error[:30]), run.log)
    assert warned, "the error is not in octoprint.log"
