"""The toolhead mosaic in the Layer Capture tab, in a real browser on a real OctoPrint:
a print of the mosaic fixture with the fake toolhead camera and an unprinted square in
layer 3; the layer opens on its mosaic, the overlays switch on and off, the warning shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

from octoprint_layercapture.camera_settings import camera_entry

TESTS = Path(__file__).resolve().parents[1]
FIXTURE = TESTS / "fixtures" / "prusa_mosaic.gcode"
TAB = "#tab_plugin_layercapture"
SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 15.0,
    "grid_size": 3,
    "capture_every_n_layers": 0,
    "capture_z_heights": [0.9],
    "capture_delay": 0.0,
    "stop_mode": "hold",
    "camera_mounting": {"mode": "toolhead", "scale": 16.0, "rotation": 2.0},
    "fake_toolhead": {"defect": "unprinted", "defect_x": 107.0, "defect_y": 94.0},
    "departure_warning_score": 0.005,
}


@pytest.fixture(scope="module")
def ui_server_options() -> Dict[str, Any]:
    return {"plugin_settings": SETTINGS}


def loaded(page: Any, selector: str) -> bool:
    return bool(
        page.evaluate(
            "(s) => { const i = document.querySelector(s); return !!i && i.complete"
            " && i.naturalWidth > 0 && getComputedStyle(i).display !== 'none'; }",
            selector,
        )
    )


def test_a_toolhead_layer_opens_on_its_mosaic_with_switchable_overlays(
    ui: Any, tmp_path: Path, screenshots: Path
) -> None:
    server = ui.server
    page = ui.page
    link = page.locator(f"{TAB}_link a")
    if not link.is_visible():
        page.click("#tabs .tabdrop > a.dropdown-toggle")
    link.click()
    gcode = tmp_path / "ui_mosaic.gcode"
    gcode.write_bytes(FIXTURE.read_bytes())
    mark = server.mark()
    server.start_print(gcode)
    server.wait_print_done(timeout=120)
    # the warning comes with the mosaic's push, to the open tab
    notice = page.locator(f"{TAB} .lc-mosaic-notice", has_text="departs from its toolpath")
    notice.wait_for(state="visible", timeout=60_000)
    assert notice.inner_text().startswith("Layer 3 departs from its toolpath (score ")
    assert server.events.plugin_messages("layercapture", since=mark)
    page.click(f'{TAB} .lc-print a.lc-open-print:text("ui_mosaic.gcode")')
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="3"] .lc-mosaic-image')
    image = f'{TAB} .lc-layer[data-layer="3"] .lc-mosaic-image'
    toolpath = f'{TAB} .lc-layer[data-layer="3"] .lc-mosaic-toolpath'
    departure = f'{TAB} .lc-layer[data-layer="3"] .lc-mosaic-departure'
    page.wait_for_function(
        "(s) => { const i = document.querySelector(s);"
        " return i && i.complete && i.naturalWidth > 0; }",
        arg=image,
    )
    assert loaded(page, image) and loaded(page, toolpath) and loaded(page, departure)
    # the overlays lie exactly over the picture
    boxes = [page.locator(s).bounding_box() for s in (image, toolpath, departure)]
    for box in boxes[1:]:
        assert all(abs(box[k] - boxes[0][k]) < 0.5 for k in ("x", "y", "width", "height"))
    text = page.locator(f'{TAB} .lc-layer[data-layer="3"] .lc-mosaic-text').inner_text()
    assert "Departure score" in text and "1 regions" in text
    page.locator(f"{TAB} .lc-layer[data-layer='3'] .lc-mosaic").screenshot(
        path=str(screenshots / "mosaic.png")
    )
    page.click(f'{TAB} .lc-layer[data-layer="3"] .lc-show-toolpath')
    assert not loaded(page, toolpath) and loaded(page, departure)
    page.click(f'{TAB} .lc-layer[data-layer="3"] .lc-show-departure')
    assert not loaded(page, departure)
    page.click(f'{TAB} .lc-layer[data-layer="3"] .lc-show-toolpath')
    assert loaded(page, toolpath)
    # the shots' grid is still there under the mosaic
    assert page.locator(f'{TAB} .lc-layer[data-layer="3"] .lc-cell img').count() == 9
