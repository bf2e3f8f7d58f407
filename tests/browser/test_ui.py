"""The settings panel and the Layer Capture tab in a real browser on a real OctoPrint.

One server and one logged-in page for the module; the tests run in file order and build
on each other (settings first, then a print, then its gallery, zip and deletion).
"""

from __future__ import annotations

import base64
import json
import re
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import pytest
from fake_frames import pixels_differing_below_overlay, probe_reference
from gallery_tree import build_print
from harness import VIEWER, OctoPrintServer
from small_prints import write_square_print
from ui_pages import PANEL, TAB, UI_SETTINGS, open_settings, open_tab, wait_thumbnails

SETTINGS = {**UI_SETTINGS, "capture_delay": 0.2}
PRINT_NAME = "ui_square.gcode"


@pytest.fixture(scope="module")
def ui_server_options() -> Dict[str, Any]:
    return {"plugin_settings": SETTINGS}


def link_display(page: Any) -> str:
    return str(
        page.evaluate(
            "() => getComputedStyle(document.querySelector('#tab_plugin_layercapture_link'))"
            ".display"
        )
    )


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

    estimate = page.locator(f"{PANEL} .lc-estimate-planned")
    estimate.wait_for(state="visible")
    three_by_three = estimate.inner_text()
    assert three_by_three.startswith("Planned with these settings: about ")
    assert not page.locator(f"{PANEL} .lc-estimate-measured").is_visible()  # nothing printed
    page.select_option(f"{PANEL} .lc-grid-size", "5")
    wait_points(page, 25, 0)
    # more points, more time: the estimate follows the unsaved grid
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel);"
        " return e && e.innerText && e.innerText !== old; }",
        arg=[f"{PANEL} .lc-estimate-planned", three_by_three],
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
    # the fake camera is on in this module's settings: a drawn JPEG comes back, with the
    # head at the grid centre in the form (unsaved), not at the saved or default one
    for field, value in (("lc-center-x", "60"), ("lc-center-y", "80")):
        page.fill(f"{PANEL} .{field}", value)
        page.press(f"{PANEL} .{field}", "Tab")
    camera.scroll_into_view_if_needed()
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
    drawn = base64.b64decode(image.get_attribute("src").split(",", 1)[1])
    z_offset = float(ui.server.plugin_settings_now()["z_offset"])
    assert pixels_differing_below_overlay(drawn, probe_reference(60, 80, z_offset)) == 0
    saved = SETTINGS["grid_center_x"], SETTINGS["grid_center_y"]
    assert pixels_differing_below_overlay(drawn, probe_reference(*saved, z_offset)) > 100
    camera.screenshot(path=str(screenshots / "settings_panel_camera_test.png"))
    # unsaved form values are what the test uses: a snapshot URL where nothing listens
    first = f"{PANEL} .lc-camera[data-lc-camera='1']"
    page.select_option(f"{first} .lc-camera-type", "snapshot")
    url = "http://127.0.0.1:9/snapshot"
    page.fill(f"{first} .lc-camera-url-input", url)
    page.press(f"{first} .lc-camera-url-input", "Tab")
    page.click(f"{PANEL} .lc-test-camera")
    result = page.locator(f"{PANEL} .lc-camera-result.text-error")
    result.wait_for(state="visible")
    assert f"snapshot URL {url}: connection refused" in result.inner_text()
    assert not image.is_visible()
    page.click('[data-test-id="settings-close-button"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="hidden")
    assert ui.server.plugin_settings_now()["cameras"] == SETTINGS["cameras"], "nothing saved"


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
        """() => ["Waiting for layer 2", "Capturing layer 2: moving to the next position",
                  "Captured layer 2", "Capturing layer 4", "Captured layer 4"]
            .every((want) => window.lcTexts.some((text) => text.startsWith(want)))""",
        timeout=60_000,
    )
    server.wait_print_done(timeout=60, since=mark)
    page.wait_for_selector(f'{TAB} .lc-print a.lc-open-print:text("{PRINT_NAME}")')
    texts = page.evaluate("() => window.lcTexts")
    # progress counts pictures (in visiting order), it names no position
    assert any("taking picture 9 of 9" in t for t in texts), texts
    estimate = page.inner_text(f"{TAB} .lc-estimate")
    assert "measured over 2 layers" in estimate, estimate
    page.locator(TAB).screenshot(path=str(screenshots / "tab_status.png"))


def seconds_in(text: str) -> List[float]:
    return [float(value) for value in re.findall(r"(\d+(?:\.\d+)?) s\b", text)]


def test_the_settings_panel_labels_the_planned_and_the_measured_time(
    ui: Any, screenshots: Path
) -> None:
    page = open_settings(ui)
    measured = page.locator(f"{PANEL} .lc-estimate-measured")
    measured.wait_for(state="visible")
    planned_text = page.inner_text(f"{PANEL} .lc-estimate-planned")
    measured_text = measured.inner_text()
    # which is the plan, what it is made of, which was measured and on what
    assert planned_text.startswith("Planned with these settings: about ")
    total, moves, settle, guessed = seconds_in(planned_text)
    assert total == pytest.approx(moves + settle + guessed, abs=0.15)
    assert settle == pytest.approx(9 * SETTINGS["capture_delay"], abs=0.05)
    assert "settle delays" in planned_text and "guessed for the camera" in planned_text
    assert measured_text.startswith("Measured on the last print: ")
    assert "(mean of 2 layers, with the settings of that print)" in measured_text
    (per_layer,) = seconds_in(measured_text)
    # the virtual printer moves in a tenth of the time: the two differ, and the panel says why
    assert per_layer < 0.8 * total
    why = page.locator(f"{PANEL} .lc-estimate-why")
    assert why.is_visible() and why.inner_text().startswith("The two differ: the plan counts")
    page.locator('[data-test-id="settings-dialog"]').screenshot(
        path=str(screenshots / "settings_panel_estimate.png")
    )
    page.click('[data-test-id="settings-close-button"]')
    page.wait_for_selector('[data-test-id="settings-dialog"]', state="hidden")


def layer_numbers(page: Any) -> List[int]:
    return [
        int(n)
        for n in page.eval_on_selector_all(f"{TAB} .lc-layer", "ls => ls.map(l => l.dataset.layer)")
    ]


def open_layers(page: Any) -> List[int]:
    return [
        int(n)
        for n in page.eval_on_selector_all(
            f"{TAB} .lc-layer.lc-layer-open", "ls => ls.map(l => l.dataset.layer)"
        )
    ]


def test_the_gallery_lays_out_the_grid_and_opens_a_full_image(ui: Any, screenshots: Path) -> None:
    page = ui.page
    page.click(f'{TAB} .lc-print a.lc-open-print:text("{PRINT_NAME}")')
    # newest layer first and open, the other collapsed to its heading
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="4"] .lc-cell img')
    assert layer_numbers(page) == [4, 2]
    assert open_layers(page) == [4]
    wait_thumbnails(page)
    assert page.locator(f"{TAB} .lc-cell img").count() == 9
    page.locator(TAB).screenshot(path=str(screenshots / "tab_gallery.png"))
    page.click(f'{TAB} .lc-layer[data-layer="2"] .lc-layer-head')
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="2"] .lc-cell img')
    assert open_layers(page) == [2], "one layer open at a time"
    wait_thumbnails(page)
    assert page.locator(f"{TAB} .lc-cell img").count() == 9

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
    viewer.locator(".lc-metadata th", has_text="Job stopped at").wait_for()  # metadata read
    rows = dict(
        zip(
            viewer.locator(".lc-metadata th").all_inner_texts(),
            viewer.locator(".lc-metadata td").all_inner_texts(),
        )
    )
    assert rows["Layer"] == "2"
    assert rows["Commanded X / Y / Z"].startswith("100.00 / 100.00 / ")
    # one numbering: 1 to 9 from the front left; the file name keeps its 0-based index
    assert viewer.locator(".modal-header h3").inner_text() == "Layer 2, position 5 of 9"
    assert rows["Position"] == "5 of 9: row 2, column 2 from the front left"
    assert "_pos_04_" in rows["File"]
    assert rows["G-code file"] == PRINT_NAME
    # E only where the job stopped, not at the photo position (retracted there)
    assert rows["Measured X / Y / Z"].startswith("100.00 / 100.00 / ")  # from the file
    assert [name for name in rows if name.endswith("/ E")] == ["Job stopped at X / Y / Z / E"]
    assert len(rows["Job stopped at X / Y / Z / E"].split(" / ")) == 4
    assert rows["Camera"] == "fake camera"
    page.wait_for_function(  # the dialog fades in
        "() => getComputedStyle(document.querySelector('#layercapture_viewer')).opacity === '1'"
    )
    # the image sits in the middle of the dialog
    body = viewer.locator(".modal-body").bounding_box()
    picture = viewer.locator(".lc-full-image").bounding_box()
    assert picture["width"] < body["width"] - 100, "a dialog wider than the image"
    middle = body["x"] + body["width"] / 2
    assert abs(picture["x"] + picture["width"] / 2 - middle) < 2
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


def test_a_long_print_is_paged_newest_first_with_one_layer_open(ui: Any) -> None:
    page = open_tab(ui)
    built = build_print(
        ui.server.uploads_dir / "layercapture",
        "long_print.gcode",
        datetime(2026, 1, 15, 10, 0, 0),
        layers=25,  # layers 3, 6, ..., 75
        skip_index=4,
    )
    page.click(f"{TAB} .lc-rescan")
    page.click(f'{TAB} .lc-print a.lc-open-print:text("{built.gcode_file}")')
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="75"].lc-layer-open .lc-cell')
    pager = page.locator(f"{TAB} .lc-layer-pager")
    assert layer_numbers(page) == list(range(75, 45, -3))
    assert open_layers(page) == [75]
    assert pager.locator("span").inner_text() == "layers 1-10 of 25, newest first"
    assert pager.locator(".lc-newer").is_disabled()
    # the skipped position is named as everywhere else: 5 of 9, not index 4
    empty = page.locator(f'{TAB} .lc-layer[data-layer="75"] .lc-cell[data-index="4"]')
    assert empty.inner_text() == "5"
    assert empty.get_attribute("title") == "Position 5 of 9: X is beyond bed max X"
    tall = page.evaluate("() => document.querySelector('#tab_plugin_layercapture').scrollHeight")

    pager.locator(".lc-older").click()
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="45"].lc-layer-open')
    assert layer_numbers(page) == list(range(45, 15, -3))
    assert open_layers(page) == [45]
    pager.locator(".lc-older").click()
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="15"].lc-layer-open')
    assert layer_numbers(page) == [15, 12, 9, 6, 3]
    assert pager.locator("span").inner_text() == "layers 21-25 of 25, newest first"
    assert pager.locator(".lc-older").is_disabled()
    page.click(f'{TAB} .lc-layer[data-layer="15"] .lc-layer-head')  # closes the open one
    page.wait_for_function(
        "() => !document.querySelector('#tab_plugin_layercapture .lc-layer-open')"
    )
    pager.locator(".lc-newer").click()
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="45"].lc-layer-open')
    # ten headings and one grid: the page stays short (9 expanded layers were ~4,000 px)
    assert tall < 1500, tall


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
