"""*Calibrate* (issue 19) on a real OctoPrint with its virtual printer.

The fake toolhead camera's true mounting (``fake_toolhead.true_mounting``: 14.5 px/mm,
turned 3.5 degrees) differs from the saved one (16 px/mm, 0 degrees): Calibrate, run
outside a print over the fake camera's speckled bed, must recover the true scale within 1 %
and rotation within 0.5 degrees, with every line it sent inside the bed's bounds, the lift
before any XY move and the head back where it started. Refused while printing (409), on a
blank bed (the reason), and for bad input (400, nothing sent).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests
from capture_checks import PLUGIN_TAG, apply_settings, parse
from harness import ADMIN, OctoPrintServer
from harness.server import OPERATOR, VIEW_MANAGE

from octoprint_layercapture.camera_settings import camera_entry
from octoprint_layercapture.settings import DEFAULTS

pytestmark = pytest.mark.integration

BASE = "/plugin/layercapture"
TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "prusa_mosaic.gcode"
BED = {"min_x": 0.0, "max_x": 200.0, "min_y": 0.0, "max_y": 200.0, "max_z": 200.0}
SAVED = {
    "mode": "toolhead",
    "offset_x": 0.0,
    "offset_y": 0.0,
    "scale": 16.0,
    "rotation": 0.0,
    "mirrored": False,
    "image_width": 480,
    "image_height": 360,
}
TRUE = {**SAVED, "scale": 14.5, "rotation": 3.5}
FAKE: Dict[str, Any] = {
    **DEFAULTS["fake_toolhead"],
    "defect": "none",
    "placement_noise": 0.0,
    "pixel_noise": 3.0,
    "bed_texture": True,
    "true_mounting": TRUE,
}
SETTINGS: Dict[str, Any] = {
    "enabled": False,
    "cameras": [camera_entry(type="fake")],
    "capture_delay": 0.0,
    "pre_capture_delay": 0.0,
    "camera_mounting": SAVED,
    "fake_toolhead": FAKE,
}


def _calibrate(server: OctoPrintServer, body: Any, timeout: float = 60.0) -> Dict[str, Any]:
    response = server.api("POST", f"{BASE}/calibrate", json=body)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server.get_json(f"{BASE}/calibrate")["calibration"]
        if state["state"] in ("done", "failed"):
            return dict(state)
        time.sleep(0.1)
    raise AssertionError(f"calibration still running after {timeout} s: {state}")


def _plugin_lines(server: OctoPrintServer, since: float) -> List[str]:
    return [str(r["line"]) for r in server.sent_lines(since=since) if PLUGIN_TAG in r["tags"]]


def _check_safe(lines: List[str]) -> None:
    """Every move inside the bed, absolute, the first XY move only after a lift."""
    assert [parse(line)[0] for line in lines[:3]] == ["M400", "M114", "G90"], lines[:3]
    lifted = False
    for line in lines:
        command, words = parse(line)
        assert command in ("G90", "G0", "M400", "M114"), line
        if command != "G0":
            continue
        x, y, z = words.get("X"), words.get("Y"), words.get("Z")
        if x is not None:
            assert BED["min_x"] <= x <= BED["max_x"], line
        if y is not None:
            assert BED["min_y"] <= y <= BED["max_y"], line
        if z is not None:
            assert 0.0 <= z <= BED["max_z"], line
            lifted = True
        if x is not None or y is not None:
            assert lifted, f"{line}: an XY move before the lift"


def _position(server: OctoPrintServer) -> Dict[str, float]:
    """Where the virtual printer reports the head (M114 through OctoPrint)."""
    mark = time.monotonic()
    server.api("POST", "/api/printer/command", json={"commands": ["M400", "M114"]})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reports = server.positions(since=mark)
        if reports:
            payload = reports[-1]["payload"]
            return {k: float(payload[k]) for k in ("x", "y", "z")}
        time.sleep(0.05)
    raise AssertionError("no position report")


@pytest.fixture(scope="module")
def server(octoprint_server: OctoPrintServer) -> OctoPrintServer:
    apply_settings(octoprint_server, SETTINGS)
    # a known start, away from the calibration spot
    octoprint_server.api(
        "POST", "/api/printer/command", json={"commands": ["G90", "G0 X20 Y30 Z2 F6000"]}
    )
    return octoprint_server


def test_calibrate_recovers_the_true_mounting_safely_and_comes_back(
    server: OctoPrintServer,
) -> None:
    start = _position(server)
    mark = time.monotonic()
    state = _calibrate(server, {"x": 100, "y": 100, "z": 10, "step": 2})
    assert state["state"] == "done", state
    result = state["result"]
    assert result["ok"], result
    assert abs(result["scale"] / TRUE["scale"] - 1) < 0.01, result
    assert abs(result["rotation"] - TRUE["rotation"]) < 0.5, result
    assert result["mirrored"] is False
    assert result["residual_px"] < 1.0
    assert len(result["measurements"]) == 5
    lines = _plugin_lines(server, mark)
    _check_safe(lines)
    moves = [parse(line)[1] for line in lines if parse(line)[0] == "G0"]
    xy = [(w["X"], w["Y"]) for w in moves if w.get("X") is not None]
    assert xy[:6] == [(100, 100), (102, 100), (100, 102), (98, 100), (100, 98), (102, 102)]
    assert xy[-1] == (start["x"], start["y"])  # back above the start ...
    assert moves[-1].get("Z") == start["z"]  # ... and down to its Z, last
    assert sum(1 for line in lines if line.startswith("M114") or " M114" in line) >= 9
    end = _position(server)
    assert end == pytest.approx(start, abs=0.01)
    assert result["start"] == pytest.approx(start, abs=0.01)


def test_a_blank_bed_is_refused_with_the_reason(server: OctoPrintServer) -> None:
    apply_settings(server, {"fake_toolhead": {**FAKE, "bed_texture": False}})
    try:
        state = _calibrate(server, {"x": 100, "y": 100, "z": 10})
    finally:
        apply_settings(server, {"fake_toolhead": FAKE})
    assert state["state"] == "done"
    assert state["result"]["ok"] is False
    assert "too little texture" in state["result"]["reason"]


@pytest.mark.parametrize(
    "body, key",
    [
        ({"x": 100, "y": 100}, "z"),
        ({"x": "a", "y": 100, "z": 5}, "x"),
        ({"x": 100, "y": 100, "z": 500}, "z"),
        ({"x": 199, "y": 100, "z": 5}, "x"),  # the +2 mm shot would leave the bed
        ({"x": 100, "y": 100, "z": 5, "step": 0}, "step"),
        ({"x": 100, "y": 100, "z": 5, "speed": 9}, "speed"),
    ],
)
def test_bad_input_is_refused_and_sends_nothing(
    server: OctoPrintServer, body: Dict[str, Any], key: str
) -> None:
    mark = time.monotonic()
    response = server.api("POST", f"{BASE}/calibrate", json=body)
    assert response.status_code == 400, response.text
    assert key in [e["key"] for e in response.json()["errors"]], response.text
    time.sleep(0.3)
    assert _plugin_lines(server, mark) == []


def test_refused_while_printing(server: OctoPrintServer, tmp_path: Path) -> None:
    gcode = tmp_path / "calibrate_print.gcode"
    gcode.write_bytes(FIXTURE.read_bytes())
    server.start_print(gcode)
    try:
        server.wait_for_state("printing", 30)
        mark = time.monotonic()
        response = server.api("POST", f"{BASE}/calibrate", json={"x": 100, "y": 100, "z": 10})
        assert response.status_code == 409, response.text
        assert "print is running" in response.json()["error"]
        assert _plugin_lines(server, mark) == []
    finally:
        server.api("POST", "/api/job", json={"command": "cancel"})
        server.wait_for_state("operational", 60)


def test_needs_manage_captures_and_settings_and_a_csrf_token(server: OctoPrintServer) -> None:
    users = server.add_web_users()
    body = {"x": 100, "y": 100, "z": 10}
    mark = time.monotonic()
    for name in (VIEW_MANAGE, OPERATOR):  # Manage without Settings; Settings-less operator
        assert name in users
        for method in ("GET", "POST"):
            response = server.api_as(name, method, f"{BASE}/calibrate", json=body)
            assert response.status_code == 403, (name, method, response.text)
    session = requests.Session()
    session.get(f"{server.url}/login/", timeout=30)
    token = session.cookies.get(f"csrf_token_P{server.port}")
    login = session.post(
        f"{server.url}/api/login",
        json={"user": ADMIN, "pass": server.users[ADMIN].password, "remember": False},
        headers={"X-CSRF-Token": token},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    forged = session.post(f"{server.url}{BASE}/calibrate", json=body, timeout=30)
    assert forged.status_code == 400  # no CSRF token: refused before the route
    time.sleep(0.3)
    assert _plugin_lines(server, mark) == []
