"""The toolhead mounting in the settings panel (issue 19) in a real browser: the mounting
under the first camera, one footprint per grid shot on the bed drawing, *Calibrate* against
the fake toolhead camera whose true mounting differs from the form's (the virtual printer
connected and idle), 'Use these values' filling the fields, and a bad scale's field error.
"""

from __future__ import annotations

import re
from typing import Any, Dict

import pytest
from ui_pages import PANEL, UI_SETTINGS, open_settings

from octoprint_layercapture.settings import DEFAULTS

# what the fake toolhead camera really is (Calibrate must find it), not what the form says
TRUE = {**DEFAULTS["camera_mounting"], "mode": "toolhead", "scale": 14.5, "rotation": 3.5}
SETTINGS: Dict[str, Any] = {
    **UI_SETTINGS,
    "enabled": False,
    "pre_capture_delay": 0.0,
    "fake_toolhead": {
        **DEFAULTS["fake_toolhead"],
        "defect": "none",
        "placement_noise": 0.0,
        "pixel_noise": 3.0,
        "bed_texture": True,
        "true_mounting": TRUE,
    },
}
MEASURED = re.compile(r"scale (?P<scale>[-\d.]+) px/mm, rotation (?P<rotation>[-\d.]+)°")


@pytest.fixture(scope="module")
def ui_server_options() -> Dict[str, Any]:
    return {"plugin_settings": SETTINGS}


def footprints(page: Any) -> int:
    return int(page.locator(f"{PANEL} .lc-drawing polygon.lc-footprint").count())


def test_the_mounting_draws_footprints_and_calibrate_fills_the_fields(ui: Any) -> None:
    page = open_settings(ui)
    first = page.locator(f'{PANEL} .lc-camera[data-lc-camera="1"]')
    mode = first.locator(".lc-mounting-mode")
    assert mode.input_value() == "fixed" and footprints(page) == 0
    assert page.locator(f"{PANEL} .lc-mounting-mode").count() == 1  # the first camera's only
    mode.select_option("toolhead")
    scale = first.locator(".lc-mounting-scale")
    rotation = first.locator(".lc-mounting-rotation")
    scale.fill("16")
    rotation.fill("0")
    rotation.press("Tab")
    # one footprint per shot of the 3x3 grid, from the server's preview of the form
    page.wait_for_function(
        "(s) => document.querySelectorAll(s).length === 9",
        arg=f"{PANEL} .lc-drawing polygon.lc-footprint",
    )
    assert footprints(page) == 9

    first.locator(".lc-calibrate-x").fill("100")
    first.locator(".lc-calibrate-y").fill("100")
    first.locator(".lc-calibrate-z").fill("10")
    first.locator(".lc-calibrate-button").click()
    status = first.locator(".lc-calibrate-status")
    page.wait_for_function(
        "(s) => { const e = document.querySelector(s);"
        " return e && /^(Measured|Calibrate failed|Calibrate refused)/.test(e.innerText); }",
        arg=f'{PANEL} .lc-camera[data-lc-camera="1"] .lc-calibrate-status',
        timeout=120_000,
    )
    text = status.inner_text()
    found = MEASURED.search(text)
    assert found is not None, text
    measured_scale, measured_rotation = float(found["scale"]), float(found["rotation"])
    assert abs(measured_scale / TRUE["scale"] - 1) < 0.01, text
    assert abs(measured_rotation - TRUE["rotation"]) < 0.5, text
    assert "not mirrored" in text
    # the printer is idle again: the head is back and nothing is printing
    assert ui.server.state() == "Operational"

    first.locator(".lc-calibrate-apply").click()
    assert float(scale.input_value()) == pytest.approx(measured_scale)
    assert float(rotation.input_value()) == pytest.approx(measured_rotation)
    assert not first.locator(".lc-mounting-mirrored").is_checked()
    assert mode.input_value() == "toolhead"

    # a bad scale: its own field error, the other mounting fields none
    scale.fill("0")
    scale.press("Tab")
    error = page.locator(f"{PANEL} .control-group.error:has(.lc-mounting-scale) .lc-field-error")
    error.wait_for(state="visible")
    assert error.inner_text().strip()
    assert page.locator(f"{PANEL} .control-group.error:has(.lc-mounting-rotation)").count() == 0
    scale.fill(found["scale"])
    scale.press("Tab")
    error.wait_for(state="detached")
