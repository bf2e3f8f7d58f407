"""The settings panel and the Layer Capture tab in a real browser on a real OctoPrint.

One server and one logged-in page for the module; the tests run in file order and build
on each other (settings first, then a print, then its gallery, zip and deletion).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from harness import VIEWER, OctoPrintServer
from small_prints import write_square_print

SETTINGS = {
    "enabled": True,
    "use_fake_camera": True,
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "capture_every_n_layers": 2,
    "capture_delay": 0.2,
    "retract_length": 0.0,
    "stop_mode": "hold",
}
PRINT_NAME = "ui_square.gcode"
PANEL = "#settings_plugin_layercapture"
TAB = "#tab_plugin_layercapture"


@pytest.fixture(scope="module")
def ui_server_options() -> Dict[str, Any]:
    return {"plugin_settings": SETTINGS}


@pytest.fixture(autouse=True)
def _no_page_errors(ui: Any) -> Iterator[None]:
    """Every test also checks that no script error happened in the page meanwhile."""
    before = len(ui.errors)
    yield
    assert ui.errors[before:] == []


def open_settings(ui: Any) -> Any:
    page = ui.page
    page.click('[data-test-id="settings-open"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="visible")
    page.click(f"{PANEL}_link a")
    page.wait_for_selector(f"{PANEL} .lc-drawing circle.lc-point")
    return page


def link_display(page: Any) -> str:
    return str(
        page.evaluate(
            "() => getComputedStyle(document.querySelector('#tab_plugin_layercapture_link'))"
            ".display"
        )
    )


def open_tab(ui: Any) -> Any:
    page = ui.page
    link = page.locator(f"{TAB}_link a")
    if not link.is_visible():  # OctoPrint moved the tab into its overflow menu
        page.click("#tabs .tabdrop > a.dropdown-toggle")
    link.click()
    page.wait_for_selector(f"{TAB} .lc-status-text", state="visible")
    return page


def wait_points(page: Any, total: int, outside: int) -> None:
    page.wait_for_function(
        """([total, outside]) => {
            const svg = document.querySelector("#settings_plugin_layercapture .lc-drawing");
            return svg.querySelectorAll("circle").length === total
                && svg.querySelectorAll("circle.lc-point-outside").length === outside;
        }""",
        arg=[total, outside],
    )


def field_error(page: Any, key: str) -> Any:
    return page.locator(f'{PANEL} .control-group[data-lc-key="{key}"] .lc-field-error')


def test_settings_panel_draws_the_grid_and_follows_changes(ui: Any, screenshots: Path) -> None:
    page = open_settings(ui)
    wait_points(page, 9, 0)
    assert page.locator(f"{PANEL} .lc-bed").count() == 1  # the 200 x 200 default profile
    dialog = page.locator('[data-test-id="settings-dialog"]')
    dialog.screenshot(path=str(screenshots / "settings_panel_grid.png"))
    page.locator(f"{PANEL} .lc-group-camera").scroll_into_view_if_needed()
    dialog.screenshot(path=str(screenshots / "settings_panel_camera.png"))
    page.locator(f"{PANEL} .lc-group-motion").scroll_into_view_if_needed()
    dialog.screenshot(path=str(screenshots / "settings_panel_movement.png"))
    page.locator(f"{PANEL} .lc-group-grid").scroll_into_view_if_needed()

    estimate = page.locator(f"{PANEL} .lc-estimate")
    estimate.wait_for(state="visible")
    three_by_three = estimate.inner_text()
    assert "Each captured layer adds about" in three_by_three
    page.select_option(f"{PANEL} .lc-grid-size", "5")
    wait_points(page, 25, 0)
    # more points, more time: the estimate follows the unsaved grid
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel);"
        " return e && e.innerText && e.innerText !== old; }",
        arg=[f"{PANEL} .lc-estimate", three_by_three],
    )
    # a 5 x 5 grid 60 mm apart reaches 20 mm past both edges of the bed
    page.fill(f"{PANEL} .lc-grid-spacing", "60")
    page.press(f"{PANEL} .lc-grid-spacing", "Tab")
    wait_points(page, 25, 16)
    field_error(page, "grid_spacing").wait_for(state="visible")
    assert "outside the bed" in field_error(page, "grid_spacing").inner_text()
    dialog.screenshot(path=str(screenshots / "settings_panel_outside.png"))

    page.fill(f"{PANEL} .lc-grid-spacing", "20")
    page.fill(f"{PANEL} .lc-center-x", "5")
    page.press(f"{PANEL} .lc-center-x", "Tab")
    wait_points(page, 25, 10)  # the two left columns fall off the bed
    page.click(f"{PANEL} .lc-centre-on-bed")
    wait_points(page, 25, 0)
    assert page.input_value(f"{PANEL} .lc-center-x") == "100"
    assert page.input_value(f"{PANEL} .lc-center-y") == "100"
    field_error(page, "grid_spacing").wait_for(state="hidden")

    page.click('[data-test-id="settings-close-button"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="hidden")
    assert ui.server.plugin_settings_now()["grid_size"] == 3  # closed without saving


def test_test_camera_shows_the_image_or_the_exact_error(ui: Any, screenshots: Path) -> None:
    page = open_settings(ui)
    camera = page.locator(f"{PANEL} .lc-group-camera")
    camera.scroll_into_view_if_needed()
    # the fake camera is on in this module's settings: a drawn JPEG comes back
    page.click(f"{PANEL} .lc-test-camera")
    image = page.locator(f"{PANEL} .lc-camera-image")
    image.wait_for(state="visible")
    assert (
        page.evaluate(
            "sel => document.querySelector(sel).naturalWidth", f"{PANEL} .lc-camera-image"
        )
        == 640
    )
    assert "fake camera: 640x480" in page.inner_text(f"{PANEL} .lc-camera-result")
    camera.screenshot(path=str(screenshots / "settings_panel_camera_test.png"))
    # unsaved form values are what the test uses: a snapshot URL where nothing listens
    page.uncheck(f"{PANEL} .lc-group-camera input[type=checkbox] >> nth=0")
    url = "http://127.0.0.1:9/snapshot"
    page.fill(f"{PANEL} [data-lc-key=snapshot_url] input", url)
    page.press(f"{PANEL} [data-lc-key=snapshot_url] input", "Tab")
    page.click(f"{PANEL} .lc-test-camera")
    result = page.locator(f"{PANEL} .lc-camera-result.text-error")
    result.wait_for(state="visible")
    assert f"snapshot URL {url}: connection refused" in result.inner_text()
    assert not image.is_visible()
    page.click('[data-test-id="settings-close-button"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="hidden")
    assert ui.server.plugin_settings_now()["snapshot_url"] == "", "nothing was saved"


def test_an_invalid_value_shows_its_error_and_nothing_is_sent(ui: Any) -> None:
    page = open_settings(ui)
    saves: List[str] = []
    page.on(
        "request",
        lambda r: (
            saves.append(r.url) if r.method == "POST" and r.url.endswith("/api/settings") else None
        ),
    )
    page.fill(f"{PANEL} .lc-image-quality", "150")
    page.click('[data-test-id="settings-save"]')
    error = field_error(page, "image_quality")
    error.wait_for(state="visible")
    assert "at most 100" in error.inner_text()
    assert page.locator(f"{PANEL} .lc-errors").is_visible()
    assert page.locator('[data-test-id="settings-dialog"]').is_visible()
    assert saves == []
    assert ui.server.plugin_settings_now()["image_quality"] == 90

    page.fill(f"{PANEL} .lc-image-quality", "80")
    page.click('[data-test-id="settings-save"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="hidden")
    assert len(saves) == 1
    assert ui.server.plugin_settings_now()["image_quality"] == 80


def test_the_tab_shows_the_live_status_of_a_print(
    ui: Any, tmp_path: Path, screenshots: Path
) -> None:
    assert link_display(ui.page) != "none"
    page = open_tab(ui)
    server: OctoPrintServer = ui.server
    assert page.inner_text(f"{TAB} .lc-status-text").startswith("Idle")
    # every text the status line shows, however briefly
    page.evaluate(
        """() => {
            const node = document.querySelector("#tab_plugin_layercapture .lc-status-text");
            window.lcTexts = [node.textContent];
            new MutationObserver(() => window.lcTexts.push(node.textContent))
                .observe(node, {childList: true, characterData: true, subtree: true});
        }"""
    )
    mark = server.mark()
    server.start_print(write_square_print(tmp_path, PRINT_NAME, layers=6))
    page.wait_for_function(
        """() => ["Waiting for layer 2", "Capturing layer 2: moving to position",
                  "Captured layer 2", "Capturing layer 4", "Captured layer 4"]
            .every((want) => window.lcTexts.some((text) => text.startsWith(want)))""",
        timeout=60_000,
    )
    server.wait_print_done(timeout=60, since=mark)
    page.wait_for_selector(f'{TAB} .lc-print a.lc-open-print:text("{PRINT_NAME}")')
    texts = page.evaluate("() => window.lcTexts")
    assert any("position 9 of 9" in t for t in texts), texts
    estimate = page.inner_text(f"{TAB} .lc-estimate")
    assert "measured over 2 layers" in estimate, estimate
    page.locator(TAB).screenshot(path=str(screenshots / "tab_status.png"))


def test_the_gallery_lays_out_the_grid_and_opens_a_full_image(ui: Any, screenshots: Path) -> None:
    page = ui.page
    page.click(f'{TAB} .lc-print a.lc-open-print:text("{PRINT_NAME}")')
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="4"] .lc-cell img')
    layers = page.locator(f"{TAB} .lc-layer")
    assert layers.count() == 2
    page.wait_for_function(
        """() => [...document.querySelectorAll("#tab_plugin_layercapture .lc-cell img")]
            .every((img) => img.complete && img.naturalWidth > 0)"""
    )
    assert page.locator(f"{TAB} .lc-cell img").count() == 18

    def box(index: int) -> Any:
        cell = page.locator(f'{TAB} .lc-layer[data-layer="2"] .lc-cell[data-index="{index}"]')
        return cell.bounding_box()

    # row-major from the front-left: 0 is bottom-left, 2 bottom-right, 6 top-left
    assert box(0)["y"] > box(3)["y"] > box(6)["y"]
    assert box(0)["x"] < box(1)["x"] < box(2)["x"]
    assert box(6)["x"] == box(0)["x"]
    page.locator(f"{TAB} .lc-gallery").screenshot(path=str(screenshots / "gallery.png"))

    page.click(f'{TAB} .lc-layer[data-layer="2"] .lc-cell[data-index="4"] a')
    viewer = page.locator("#layercapture_viewer")  # OctoPrint moves modals
    viewer.wait_for(state="visible")
    page.wait_for_function(
        """() => {
            const img = document.querySelector("#layercapture_viewer .lc-full-image");
            return img && img.complete && img.naturalWidth > 320;
        }"""
    )
    viewer.locator(".lc-metadata th", has_text="Measured X / Y / Z / E").wait_for()
    rows = dict(
        zip(
            viewer.locator(".lc-metadata th").all_inner_texts(),
            viewer.locator(".lc-metadata td").all_inner_texts(),
        )
    )
    assert rows["Layer"] == "2"
    assert rows["Commanded X / Y / Z"].startswith("100.00 / 100.00 / ")
    assert rows["Position"].startswith("#4 (row 1, column 1)")
    assert rows["G-code file"] == PRINT_NAME
    assert rows["Measured X / Y / Z / E"].startswith("100.00 / 100.00 / ")  # from the file
    assert rows["Camera"] == "fake camera"
    page.wait_for_function(  # the dialog fades in
        "() => getComputedStyle(document.querySelector('#layercapture_viewer')).opacity === '1'"
    )
    viewer.screenshot(path=str(screenshots / "gallery_image.png"))
    viewer.locator(".modal-footer .btn-primary").click()
    viewer.wait_for(state="hidden")


def test_the_zip_download_holds_the_print(ui: Any, tmp_path: Path) -> None:
    page = ui.page
    root = ui.server.uploads_dir / "layercapture"
    row = page.locator(f"{TAB} .lc-print", has_text=PRINT_NAME)
    with page.expect_download() as info:
        row.locator(".lc-download").click()
    download = info.value
    assert download.suggested_filename.startswith("layercapture-ui_square-")
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        images = [n for n in names if n.endswith(".jpg")]
        metadata = [n for n in names if "_metadata_" in n]
        toolpaths = [n for n in names if "_toolpath_" in n]  # a JSON and an SVG per layer
        assert (len(images), len(metadata), len(toolpaths)) == (18, 2, 4)
        for name in images + metadata + toolpaths:
            relative = name.split("/", 1)[1]
            assert archive.read(name) == (root / relative).read_bytes(), name
        layers = sorted(json.loads(archive.read(n))["layer"] for n in metadata)
        assert layers == [2, 4]


def test_the_dataset_button_downloads_the_imagefolder_zip(ui: Any, tmp_path: Path) -> None:
    page = ui.page
    row = page.locator(f"{TAB} .lc-print", has_text=PRINT_NAME)
    with page.expect_download() as info:
        row.locator(".lc-export").click()
    download = info.value
    name = download.suggested_filename
    assert name.startswith("layercapture-ui_square-") and name.endswith("-dataset.zip")
    path = tmp_path / name
    download.save_as(str(path))
    with zipfile.ZipFile(path) as archive:
        top = name[: -len(".zip")]
        rows = archive.read(f"{top}/metadata.jsonl").decode().splitlines()
        assert len(rows) == 18
        manifest = json.loads(archive.read(f"{top}/dataset.json"))
        assert manifest["format"] == "imagefolder" and manifest["images"] == 18


def test_deleting_asks_first_and_removes_the_print(ui: Any) -> None:
    page = ui.page
    root = ui.server.uploads_dir / "layercapture"
    before = list(root.rglob("layer_*"))
    assert before
    row = page.locator(f"{TAB} .lc-print", has_text=PRINT_NAME)
    row.locator(".lc-delete").click()
    dialog = page.locator("#layercapture_confirm_delete")
    dialog.wait_for(state="visible")
    assert PRINT_NAME in dialog.inner_text()
    assert all(p.exists() for p in before)  # nothing happens before the confirmation
    dialog.locator(".lc-confirm-delete-button").click()
    page.wait_for_selector(f"{TAB} .lc-empty", state="visible")
    assert list(root.rglob("layer_*")) == []
    assert page.locator(f"{TAB} .lc-layer").count() == 0


def test_a_user_without_the_view_permission_gets_no_tab(ui: Any) -> None:
    ui.page.context.clear_cookies()
    ui.login(VIEWER)
    page = ui.page
    assert page.evaluate("() => OctoPrint.coreui.startedUp")
    assert link_display(page) == "none"  # hidden, not just folded into the overflow menu
    assert not page.locator(f"{TAB} .lc-status").is_visible()
    status = page.evaluate(
        "() => OctoPrint.plugins.layercapture.getStatus().then(() => 200, (xhr) => xhr.status)"
    )
    assert status == 403
