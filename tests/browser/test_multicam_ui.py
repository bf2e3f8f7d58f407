"""Several cameras in a real browser on a real OctoPrint (issue 18): the settings panel's
list of cameras (add, validate, test, remove, save) and the tab's camera selector.

One server and one logged-in page for the module; the tests run in file order: the panel
saves a second (fake) camera, a print is captured with both, then the tab shows it.
"""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import pytest
from gallery_tree import build_print
from small_prints import write_square_print
from ui_pages import PANEL, TAB, UI_SETTINGS, open_settings, open_tab, wait_thumbnails

from octoprint_layercapture.camera_settings import camera_entry

SETTINGS = UI_SETTINGS
PRINT_NAME = "two_cameras.gcode"


@pytest.fixture(scope="module")
def ui_server_options() -> Dict[str, Any]:
    return {"plugin_settings": SETTINGS}


def row(number: int) -> str:
    return f"{PANEL} .lc-camera[data-lc-camera='{number}']"


def open_cameras(ui: Any) -> Any:
    page = open_settings(ui)
    page.locator(f"{PANEL} .lc-group-camera").scroll_into_view_if_needed()
    return page


def field_error(page: Any, number: int, part: str) -> Any:
    return page.locator(f"{row(number)} .{part} .lc-field-error")


def fill(page: Any, selector: str, value: str) -> None:
    page.fill(selector, value)
    page.press(selector, "Tab")


def test_the_panel_adds_checks_tests_and_saves_a_second_camera(ui: Any, screenshots: Path) -> None:
    page = open_cameras(ui)
    assert page.locator(f"{PANEL} .lc-camera").count() == 1
    assert not page.locator(f"{row(1)} .lc-remove-camera").is_visible(), "one camera is kept"
    page.click(f"{PANEL} .lc-add-camera")
    page.wait_for_selector(row(2))
    assert page.input_value(f"{row(2)} .lc-camera-name-input") == "cam2"
    # a snapshot camera without its URL: the live check names that field of that camera
    url_error = field_error(page, 2, "lc-camera-url")
    url_error.wait_for(state="visible")
    assert url_error.inner_text() == "Camera 2 URL: a snapshot camera needs its URL"
    assert page.locator(f"{PANEL} .lc-errors").is_visible()
    page.select_option(f"{row(2)} .lc-camera-type", "fake")
    url_error.wait_for(state="hidden")
    # names are unique: they go into the file names
    fill(page, f"{row(2)} .lc-camera-name-input", "main")
    name_error = field_error(page, 2, "lc-camera-name")
    name_error.wait_for(state="visible")
    assert "'main' is the name of camera 1 already" in name_error.inner_text()
    fill(page, f"{row(2)} .lc-camera-name-input", "Nozzle Cam")
    page.wait_for_function(
        "sel => document.querySelector(sel).innerText.includes('lowercase letters')",
        arg=f"{row(2)} .lc-camera-name .lc-field-error",
    )
    fill(page, f"{row(2)} .lc-camera-name-input", "nozzle")
    name_error.wait_for(state="hidden")
    # Test camera per camera: the answer shows under the camera tested
    page.click(f"{row(2)} .lc-test-camera")
    page.locator(f"{row(2)} .lc-camera-image").wait_for(state="visible")
    assert "fake camera: 640x480" in page.inner_text(f"{row(2)} .lc-camera-result")
    assert page.locator(f"{row(1)} .lc-camera-result").count() == 0
    # at most four cameras
    page.click(f"{PANEL} .lc-add-camera")
    page.click(f"{PANEL} .lc-add-camera")
    page.wait_for_selector(row(4))
    assert page.locator(f"{PANEL} .lc-add-camera").is_disabled()
    assert "at most 4 cameras" in page.inner_text(f"{PANEL} .lc-group-camera")
    page.locator('[data-test-id="settings-dialog"]').screenshot(
        path=str(screenshots / "settings_panel_cameras.png")
    )
    page.click(f"{row(4)} .lc-remove-camera")
    page.click(f"{row(3)} .lc-remove-camera")
    page.wait_for_function(
        "sel => document.querySelectorAll(sel).length === 2", arg=f"{PANEL} .lc-camera"
    )
    page.locator(f"{PANEL} .lc-errors").wait_for(state="hidden")
    page.click('[data-test-id="settings-save"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="hidden")
    assert ui.server.plugin_settings_now()["cameras"] == [
        camera_entry(type="fake"),
        camera_entry(name="nozzle", type="fake"),
    ]


def thumbnails(page: Any) -> List[str]:
    wait_thumbnails(page)
    return [
        str(src).rsplit("/", 1)[-1]
        for src in page.eval_on_selector_all(f"{TAB} .lc-cell img", "imgs => imgs.map(i => i.src)")
    ]


def test_the_tab_shows_one_camera_at_a_time_with_a_selector(
    ui: Any, tmp_path: Path, screenshots: Path
) -> None:
    page = open_tab(ui)
    server = ui.server
    mark = server.mark()
    server.start_print(write_square_print(tmp_path, PRINT_NAME, layers=5))  # layers 2, 4
    server.wait_print_done(timeout=60, since=mark)
    page.click(f"{TAB} .lc-refresh")
    page.click(f'{TAB} .lc-print a.lc-open-print:text("{PRINT_NAME}")')
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="4"] .lc-cell img')
    selector = page.locator(f"{TAB} .lc-camera-select")
    selector.wait_for(state="visible")
    assert selector.locator("button").all_inner_texts() == ["main", "nozzle"]
    assert selector.locator("button.active").inner_text() == "main"
    first = thumbnails(page)
    assert len(first) == 9 and not any("_cam_" in name for name in first), first
    head = page.inner_text(f'{TAB} .lc-layer[data-layer="4"] .lc-layer-head')
    assert "18 images" in head and "(9 of camera main)" in head, head
    selector.locator('button[data-camera="nozzle"]').click()
    page.wait_for_function(
        """() => [...document.querySelectorAll("#tab_plugin_layercapture .lc-cell img")]
            .every((img) => img.src.includes("_cam_nozzle_"))"""
    )
    second = thumbnails(page)
    assert len(second) == 9 and all("_cam_nozzle_" in name for name in second), second
    assert selector.locator("button.active").inner_text() == "nozzle"
    page.locator(f"{TAB} .lc-gallery").screenshot(path=str(screenshots / "tab_cameras.png"))
    # the full image of the chosen camera, and its metadata
    page.click(f'{TAB} .lc-layer[data-layer="4"] .lc-cell[data-index="4"] a')
    viewer = page.locator("#layercapture_viewer")
    viewer.wait_for(state="visible")
    assert viewer.locator(".modal-header h3").inner_text() == (
        "Layer 4, position 5 of 9 (camera nozzle)"
    )
    assert "_pos_04_cam_nozzle_" in str(viewer.locator(".lc-full-image").get_attribute("src"))
    viewer.locator(".lc-metadata th", has_text="Captured at").wait_for()
    rows = dict(
        zip(
            viewer.locator(".lc-metadata th").all_inner_texts(),
            viewer.locator(".lc-metadata td").all_inner_texts(),
        )
    )
    assert rows["Camera name"] == "nozzle" and rows["Camera"] == "fake camera"
    viewer.locator(".modal-footer .btn-primary").click()
    viewer.wait_for(state="hidden")
    # the zip of this camera: its images and the layers' metadata, nothing of the other
    with page.expect_download() as info:
        page.click(f"{TAB} .lc-camera-zip")
    download = info.value
    assert download.suggested_filename.endswith("-nozzle.zip")
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    root = server.uploads_dir / "layercapture"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        images = [n for n in names if n.endswith(".jpg")]
        assert len(images) == 18 and all("_cam_nozzle_" in n for n in images), images
        assert len([n for n in names if "_metadata_" in n]) == 2
        for name in images:
            assert archive.read(name) == (root / name.split("/", 1)[1]).read_bytes()


def test_a_print_of_one_camera_has_no_selector(ui: Any) -> None:
    page = ui.page
    built = build_print(
        ui.server.uploads_dir / "layercapture", "one_camera.gcode", datetime(2024, 3, 1, 9), 1
    )
    page.click(f"{TAB} .lc-rescan")
    page.click(f'{TAB} .lc-print a.lc-open-print:text("{built.gcode_file}")')
    page.wait_for_selector(f"{TAB} .lc-layer .lc-cell img")
    assert len(thumbnails(page)) == 9
    assert not page.locator(f"{TAB} .lc-camera-select").is_visible()
