"""The plugin's pages in OctoPrint's UI, for the browser tests (Playwright pages)."""

from __future__ import annotations

from typing import Any, Dict

from octoprint_layercapture.camera_settings import camera_entry

PANEL = "#settings_plugin_layercapture"
TAB = "#tab_plugin_layercapture"
# the browser tests' settings: the fake camera, a 3x3 grid over the middle of the virtual
# printer's bed, every 2nd layer, hold mode
UI_SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "cameras": [camera_entry(type="fake")],
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "capture_every_n_layers": 2,
    "capture_delay": 0.0,
    "retract_length": 0.0,
    "stop_mode": "hold",
}


def open_settings(ui: Any) -> Any:
    """Opens OctoPrint's settings at the Layer Capture panel, once its grid is drawn."""
    page = ui.page
    page.click('[data-test-id="settings-open"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="visible")
    page.click(f"{PANEL}_link a")
    page.wait_for_selector(f"{PANEL} .lc-drawing circle.lc-point")
    return page


def open_tab(ui: Any) -> Any:
    """Shows the Layer Capture tab (from OctoPrint's overflow menu if it is there)."""
    page = ui.page
    link = page.locator(f"{TAB}_link a")
    if not link.is_visible():  # OctoPrint moved the tab into its overflow menu
        page.click("#tabs .tabdrop > a.dropdown-toggle")
    link.click()
    page.wait_for_selector(f"{TAB} .lc-status-text", state="visible")
    return page


def wait_thumbnails(page: Any) -> None:
    """Until every thumbnail of the open layer has loaded."""
    page.wait_for_function(
        """() => [...document.querySelectorAll("#tab_plugin_layercapture .lc-cell img")]
            .every((img) => img.complete && img.naturalWidth > 0)"""
    )
