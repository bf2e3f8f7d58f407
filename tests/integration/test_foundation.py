"""Foundation: the plugin loads cleanly into a real OctoPrint, its settings are validated
and persisted, its API is protected, and the virtual printer prints through the harness."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml
from harness import OctoPrintServer, names_the_plugin

from octoprint_layercapture.settings import DEFAULTS

pytestmark = pytest.mark.integration

PLUGIN = "layercapture"
LOG_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - (?P<logger>\S+) - (?P<level>[A-Z]+) - "
)


def log_records(text: str) -> List[Tuple[str, str, str]]:
    """(logger, level, full text incl. continuation lines such as tracebacks)."""
    records: List[List[str]] = []
    for line in text.splitlines():
        match = LOG_RECORD.match(line)
        if match:
            records.append([match["logger"], match["level"], line])
        elif records:
            records[-1][2] += "\n" + line
    return [(r[0], r[1], r[2]) for r in records]


def stored_plugin_settings(server: OctoPrintServer) -> Dict[str, Any]:
    """plugins.layercapture as config.yaml on disk has it (absent = {})."""
    config = yaml.safe_load(server.config_path.read_text(encoding="utf-8")) or {}
    return dict((config.get("plugins") or {}).get(PLUGIN) or {})


# ---- start-up (first in the module: later tests provoke warnings on purpose) ---------------


def test_startup_log_has_no_warnings_about_the_plugin(octoprint_server: OctoPrintServer) -> None:
    log = octoprint_server.startup_log
    listed = re.search(r"^\|\s*(?P<flag>[!#*]?)\s*Layer Capture \(", log, re.MULTILINE)
    assert listed, "Layer Capture missing from OctoPrint's plugin list:\n" + log[-4000:]
    assert listed["flag"] == "", f"plugin is disabled/blacklisted/incompatible: {listed[0]!r}"
    assert "Error loading plugin layercapture" not in log
    bad = [
        text
        for _logger, level, text in log_records(log)
        if level in ("WARNING", "ERROR", "CRITICAL")
        and (names_the_plugin(text) or "lc_test_recorder" in text)
    ]
    assert not bad, "warnings/errors at start-up:\n" + "\n".join(bad)


# ---- plugin loaded ---------------------------------------------------------------------


def test_plugin_settings_defaults_are_served(octoprint_server: OctoPrintServer) -> None:
    served = octoprint_server.plugin_settings_now(PLUGIN)
    assert set(served) - {"_config_version"} == set(DEFAULTS)
    for key, default in DEFAULTS.items():
        assert served[key] == default, f"{key}: served {served[key]!r}, default {default!r}"


def test_status_endpoint_answers_admin(octoprint_server: OctoPrintServer) -> None:
    response = octoprint_server.api("GET", f"/plugin/{PLUGIN}/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body.get("status"), dict)
    assert "state" in body["status"]


# ---- permissions -------------------------------------------------------------------------


def test_viewer_lacks_the_view_permission(octoprint_server: OctoPrintServer) -> None:
    admin = octoprint_server.api("GET", "/api/currentuser").json()
    viewer = octoprint_server.api_as("viewer", "GET", "/api/currentuser").json()
    assert admin["name"] == "admin" and viewer["name"] == "viewer"
    assert viewer["groups"] == ["users"]
    assert "PLUGIN_LAYERCAPTURE_VIEW" not in viewer["permissions"]
    # admins hold ADMIN, which implies every permission
    assert "ADMIN" in admin["permissions"]


@pytest.mark.parametrize(
    ("user", "method", "path", "allowed"),
    [
        (None, "GET", "/status", {401, 403}),
        ("viewer", "GET", "/status", {403}),
        (None, "POST", "/settings/validate", {400, 403}),
        ("viewer", "POST", "/settings/validate", {403}),
    ],
)
def test_plugin_api_refuses_unauthorised_requests(
    octoprint_server: OctoPrintServer, user: Any, method: str, path: str, allowed: set
) -> None:
    kwargs = {"json": {"grid_spacing": 17}} if method == "POST" else {}
    response = octoprint_server.api_as(user, method, f"/plugin/{PLUGIN}{path}", **kwargs)
    assert response.status_code in allowed, (response.status_code, response.text[:300])


def test_validate_accepts_valid_settings(octoprint_server: OctoPrintServer) -> None:
    response = octoprint_server.api(
        "POST", f"/plugin/{PLUGIN}/settings/validate", json={"grid_spacing": 17}
    )
    assert response.status_code == 200, response.text
    assert response.json()["errors"] == []  # "preview" (the grid drawing) comes too


# ---- settings ----------------------------------------------------------------------------


def test_settings_round_trip_and_survive_restart(make_server: Any) -> None:
    server: OctoPrintServer = make_server(connect=False)
    change = {"grid_spacing": 15.5, "capture_z_heights": [0.6, 3]}
    response = server.save_plugin_settings(change)
    assert response.status_code == 200, response.text

    served = server.plugin_settings_now()
    assert served["grid_spacing"] == 15.5
    assert served["capture_z_heights"] == [0.6, 3.0]
    assert served["grid_size"] == DEFAULTS["grid_size"]  # untouched keys keep defaults
    on_disk = stored_plugin_settings(server)
    assert on_disk.get("grid_spacing") == 15.5
    assert on_disk.get("capture_z_heights") == [0.6, 3.0]

    server.restart()
    served = server.plugin_settings_now()
    assert served["grid_spacing"] == 15.5
    assert served["capture_z_heights"] == [0.6, 3.0]


def test_default_printer_profile_is_200_by_200(octoprint_server: OctoPrintServer) -> None:
    """The invalid-grid case below relies on this bed."""
    profiles = octoprint_server.get_json("/api/printerprofiles")["profiles"]
    default = next(p for p in profiles.values() if p.get("default"))
    volume = default["volume"]
    assert (volume["width"], volume["depth"], volume["origin"]) == (200, 200, "lowerleft")
    assert not volume.get("custom_box")


VALID_CHANGE = {"grid_spacing": 17.0}
VALID_CHANGE_FOR_SPACING = {"z_offset": 7.5}

INVALID_CASES = [
    pytest.param({"grid_size": 4}, {"grid_size"}, VALID_CHANGE, id="grid_size-4"),
    pytest.param(
        {"grid_spacing": -1}, {"grid_spacing"}, VALID_CHANGE_FOR_SPACING, id="grid_spacing-neg"
    ),
    pytest.param({"image_quality": 0}, {"image_quality"}, VALID_CHANGE, id="quality-0"),
    pytest.param({"image_quality": 101}, {"image_quality"}, VALID_CHANGE, id="quality-101"),
    pytest.param({"capture_delay": -1}, {"capture_delay"}, VALID_CHANGE, id="delay-neg"),
    pytest.param(
        {"capture_z_heights": "1, abc"}, {"capture_z_heights"}, VALID_CHANGE, id="z-list-abc"
    ),
    pytest.param({"stop_mode": "teleport"}, {"stop_mode"}, VALID_CHANGE, id="stop-teleport"),
    # centre X 5 with 20 mm spacing puts a column at X -15, outside the 200x200 bed
    pytest.param(
        {"grid_center_x": 5, "grid_spacing": 20},
        {"grid_center_x", "grid_spacing"},
        VALID_CHANGE_FOR_SPACING,
        id="grid-off-bed",
    ),
]


@pytest.mark.parametrize(("invalid", "error_keys", "valid"), INVALID_CASES)
def test_invalid_settings_are_refused_and_nothing_is_saved(
    octoprint_server: OctoPrintServer,
    invalid: Dict[str, Any],
    error_keys: set,
    valid: Dict[str, Any],
) -> None:
    server = octoprint_server
    before = server.plugin_settings_now()
    before_on_disk = stored_plugin_settings(server)
    for key, value in valid.items():
        assert before[key] != value, "the valid change must differ from the current value"
    log_offset = server.log_size()
    mark = server.mark()

    response = server.save_plugin_settings({**invalid, **valid})
    assert response.status_code in (200, 400), response.text
    server.wait_for_log("Refused invalid Layer Capture settings", since=log_offset)
    rejected = server.wait_for_plugin_message(
        10, lambda data: data.get("type") == "settings_rejected", since=mark
    )
    assert {e["key"] for e in rejected.payload["errors"]} & error_keys, rejected.payload

    after = server.plugin_settings_now()
    assert after == before, "settings changed although the request was refused"
    assert stored_plugin_settings(server) == before_on_disk

    response = server.api("POST", f"/plugin/{PLUGIN}/settings/validate", json={**invalid, **valid})
    assert response.status_code == 400, response.text
    errors = response.json()["errors"]
    assert isinstance(errors, list) and errors
    named = {error["key"] for error in errors}
    assert named & error_keys, f"errors {errors} do not name any of {error_keys}"
    assert not named & set(valid), f"the valid change was reported as an error: {errors}"
    assert all(error.get("message") for error in errors)


# ---- virtual printer ---------------------------------------------------------------------

MOVES = [
    "G0 Z1 F600",
    "G1 X20 Y20 F3000",
    "G1 X60 Y20",
    "G1 X60 Y60 Z1.2",
    "G0 X10 Y10",
]


def test_virtual_printer_prints_a_small_file(
    octoprint_server: OctoPrintServer, tmp_path: Path
) -> None:
    server = octoprint_server
    assert server.state() == "Operational"
    gcode = tmp_path / "foundation_moves.gcode"
    gcode.write_text(
        "; tiny test file: moves only, no heating, no extrusion\n"
        "G90\nM82\nG28\n" + "\n".join(MOVES) + "\nM400\n",
        encoding="utf-8",
    )
    sent_before = len(server.sent_lines())

    server.start_print(gcode)
    started = server.wait_for_event("PrintStarted", 30)
    done = server.wait_print_done(timeout=60)

    assert started.payload["name"] == gcode.name
    assert done.payload["name"] == gcode.name
    assert started.index < done.index
    server.wait_for_state("Operational", 15)

    sent = [r["line"] for r in server.sent_lines()[sent_before:]]
    positions = [sent.index(move) for move in MOVES]  # ValueError names a missing move
    assert positions == sorted(positions), f"moves sent out of order: {sent}"
    file_tagged = [r for r in server.sent_lines()[sent_before:] if r["line"] in MOVES]
    assert all("source:file" in r["tags"] for r in file_tagged), file_tagged
