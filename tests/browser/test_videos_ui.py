"""A print's videos and the viewer's compare modes in a real browser on a real OctoPrint.

One server and one logged-in page for the module; a 6-layer square is printed once (layers
2 and 4 captured, 3x3, fake camera) and the tests run in file order on it: render the videos
from the tab and play one, step and compare layers, open a deep link, see the message for a
missing ffmpeg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from capture_checks import wait_for_captured_layers
from harness import OctoPrintServer
from small_prints import QUICK_CAPTURE, write_square_print
from video_checks import FFMPEG, require_ffmpeg

SETTINGS = QUICK_CAPTURE
PRINT_NAME = "video_square.gcode"
TAB = "#tab_plugin_layercapture"
VIEWER = "#layercapture_viewer"


@pytest.fixture(scope="module")
def ui_server_options() -> Dict[str, Any]:
    require_ffmpeg()
    return {"plugin_settings": SETTINGS, "config_overrides": {"webcam": {"ffmpeg": FFMPEG}}}


@pytest.fixture(scope="module")
def print_id(ui_server: OctoPrintServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    mark = ui_server.mark()
    ui_server.start_print(write_square_print(tmp_path_factory.mktemp("g"), PRINT_NAME, layers=6))
    wait_for_captured_layers(ui_server, 2, since=mark, timeout=60)
    ui_server.wait_print_done(timeout=60, since=mark)
    prints = ui_server.get_json("/plugin/layercapture/prints")["prints"]
    return str(next(p["id"] for p in prints if p["gcode_file"] == PRINT_NAME))


@pytest.fixture(autouse=True)
def _no_page_errors(ui: Any) -> Iterator[None]:
    before = len(ui.errors)
    yield
    assert ui.errors[before:] == []


def open_print(ui: Any) -> Any:
    page = ui.page
    link = page.locator(f"{TAB}_link a")
    if not link.is_visible():  # OctoPrint moved the tab into its overflow menu
        page.click("#tabs .tabdrop > a.dropdown-toggle")
    link.click()
    page.click(f'{TAB} .lc-print a.lc-open-print:text("{PRINT_NAME}")')
    page.wait_for_selector(f'{TAB} .lc-layer[data-layer="4"] .lc-cell img')
    page.wait_for_selector(f"{TAB} .lc-videos", state="visible")
    return page


def test_videos_render_from_the_tab_and_play_inline(
    ui: Any, print_id: str, screenshots: Path
) -> None:
    page = open_print(ui)
    assert page.is_visible(f"{TAB} .lc-render")
    page.evaluate(
        """() => {
            const node = document.querySelector("#tab_plugin_layercapture .lc-render-text");
            window.lcRender = [];
            new MutationObserver(() => window.lcRender.push(node.textContent))
                .observe(node, {childList: true, characterData: true, subtree: true});
        }"""
    )
    # what the print has, from the server, positions numbered as everywhere in the tab
    options = page.eval_on_selector_all(
        f"{TAB} .lc-render-target option", "(os) => os.map((o) => o.textContent)"
    )
    assert options == ["All videos", "Grid video"] + [f"Position {n}" for n in range(1, 10)]
    page.select_option(f"{TAB} .lc-render-target", "all")
    page.click(f"{TAB} .lc-render")
    page.wait_for_function(
        "() => document.querySelectorAll('#tab_plugin_layercapture .lc-video-item').length === 10",
        timeout=120_000,
    )
    texts = page.evaluate("() => window.lcRender")
    assert any(" of 20 frames" in t for t in texts), texts  # progress: 10 videos x 2 layers
    assert page.inner_text(f"{TAB} .lc-render-text").startswith("Rendered 10 videos in ")
    first = page.locator(f"{TAB} .lc-video-item").first
    assert first.get_attribute("data-kind") == "grid"
    assert "Grid video" in first.inner_text() and "2 frames" in first.inner_text()
    # the player holds the grid video: its metadata loads and it has a duration
    page.wait_for_function(
        """() => {
            const video = document.querySelector("#tab_plugin_layercapture .lc-video-player");
            return video && video.readyState >= 1 && video.duration > 0;
        }""",
        timeout=30_000,
    )
    size = page.evaluate(
        """() => { const v = document.querySelector("#tab_plugin_layercapture .lc-video-player");
                   return [v.videoWidth, v.videoHeight, v.duration]; }"""
    )
    assert size[:2] == [1920, 1440] and 0 < size[2] < 1  # 2 frames at 25 fps
    five = page.locator(f'{TAB} .lc-video-item[data-index="4"] .lc-video-play')
    assert five.inner_text() == "Position 5 (row 2, column 2 from the front left)"
    five.click()
    page.wait_for_function(
        """() => { const v = document.querySelector("#tab_plugin_layercapture .lc-video-player");
                   return v.src.includes("_pos_04.mp4") && v.readyState >= 1
                       && v.videoWidth === 640 && v.duration > 0; }"""
    )
    href = page.get_attribute(f'{TAB} .lc-video-item[data-index="4"] .lc-video-download', "href")
    assert href is not None and href.endswith(f"video_{print_id}_pos_04.mp4")
    page.locator(f"{TAB} .lc-videos").screenshot(path=str(screenshots / "gallery_videos.png"))


def test_the_viewer_steps_through_the_layers_and_compares_two(
    ui: Any, print_id: str, screenshots: Path
) -> None:
    page = open_print(ui)
    page.click(f'{TAB} .lc-layer[data-layer="4"] .lc-cell[data-index="4"] a')
    viewer = page.locator(VIEWER)
    viewer.wait_for(state="visible")
    page.wait_for_function(
        f"() => document.querySelector('{VIEWER} .lc-step-text').textContent"
        ".startsWith('Layer 4: 2 of 2 at position 5')"
    )
    assert page.evaluate("() => location.hash") == f"{TAB}?print={print_id}&layer=4&pos=5"
    assert not viewer.locator(".lc-step-next").is_enabled()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        f"() => document.querySelector('{VIEWER} h3').textContent === 'Layer 2, position 5 of 9'"
    )
    assert page.evaluate("() => location.hash") == f"{TAB}?print={print_id}&layer=2&pos=5"
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"() => document.querySelector('{VIEWER} h3').textContent === 'Layer 4, position 5 of 9'"
    )

    viewer.locator(".lc-mode-side").click()
    page.wait_for_function(
        f"""() => [...document.querySelectorAll("{VIEWER} .lc-compare-side img")]
            .every((img) => img.complete && img.naturalWidth === 640)"""
    )
    captions = viewer.locator(".lc-compare-side p").all_inner_texts()
    assert captions == ["Layer 4", "Layer 2"]
    assert not viewer.locator(".lc-full-image").is_visible()
    srcs = [viewer.locator(f".lc-compare-{x}").get_attribute("src") for x in "ab"]
    assert "layer_0004_pos_04" in srcs[0] and "layer_0002_pos_04" in srcs[1]
    assert page.evaluate("() => location.hash").endswith("&compare=2&mode=side")
    viewer.screenshot(path=str(screenshots / "viewer_side_by_side.png"))

    viewer.locator(".lc-mode-diff").click()
    canvas = viewer.locator(".lc-diff-canvas")
    page.wait_for_function(
        f"() => Number(document.querySelector('{VIEWER} .lc-diff-canvas').dataset.percent) > 0"
    )
    assert canvas.evaluate("(c) => [c.width, c.height]") == [640, 480]
    changed = float(canvas.get_attribute("data-percent") or "nan")
    assert 0 < changed < 100  # the layer stack and the overlay changed, the bed did not
    assert "differs by more than 32" in viewer.locator(".lc-diff-text").inner_text()
    # red where they differ: the canvas holds pixels of the difference colour
    red = canvas.evaluate(
        """(c) => { const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 0; i < d.length; i += 4)
                        if (d[i] === 255 && d[i + 2] === 40) n++;
                    return n / (c.width * c.height) * 100; }"""
    )
    assert abs(red - changed) < 0.01
    viewer.screenshot(path=str(screenshots / "viewer_difference.png"))
    slider = viewer.locator(".lc-diff-threshold")
    slider.fill("255")  # nothing differs by more than everything
    page.wait_for_function(
        f"() => document.querySelector('{VIEWER} .lc-diff-canvas').dataset.percent === '0'"
    )
    slider.fill("0")
    page.wait_for_function(
        f"([max]) => Number(document.querySelector('{VIEWER} .lc-diff-canvas').dataset.percent)"
        " > max",
        arg=[changed],
    )
    viewer.locator(".lc-mode-single").click()
    viewer.locator(".modal-footer .btn-primary").click()
    viewer.wait_for(state="hidden")
    assert page.evaluate("() => location.hash") == TAB


def test_a_deep_link_opens_the_print_layer_position_and_mode(ui: Any, print_id: str) -> None:
    page = ui.page
    link = f"{TAB}?print={print_id}&layer=4&pos=2&compare=2&mode=side"
    page.goto(ui.server.url + "/" + link, wait_until="domcontentloaded")
    page.wait_for_function(
        "() => window.OctoPrint && OctoPrint.coreui && OctoPrint.coreui.startedUp", timeout=60_000
    )
    viewer = page.locator(VIEWER)
    viewer.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(
        f"() => document.querySelector('{VIEWER} h3').textContent === 'Layer 4, position 2 of 9'"
    )
    assert page.evaluate("() => OctoPrint.coreui.selectedTab") == TAB
    assert viewer.locator(".lc-mode-side").get_attribute("class").split().count("active") == 1
    assert viewer.locator(".lc-compare-side p").all_inner_texts() == ["Layer 4", "Layer 2"]
    assert page.evaluate("() => location.hash") == link
    viewer.locator(".modal-footer .btn-primary").click()
    viewer.wait_for(state="hidden")


def test_without_ffmpeg_the_tab_says_which_setting_to_fix(ui: Any, print_id: str) -> None:
    server: OctoPrintServer = ui.server
    response = server.api("POST", "/api/settings", json={"webcam": {"ffmpegPath": ""}})
    assert response.status_code == 200
    try:
        page = ui.page
        page.reload(wait_until="domcontentloaded")
        page.wait_for_function("() => OctoPrint.coreui && OctoPrint.coreui.startedUp")
        open_print(ui)
        error = page.locator(f"{TAB} .lc-ffmpeg-error")
        error.wait_for(state="visible")
        assert error.inner_text().startswith("OctoPrint has no ffmpeg set: set it in ")
        assert "Path to FFMPEG" in error.inner_text()
        assert not page.is_visible(f"{TAB} .lc-render")
        assert page.locator(f"{TAB} .lc-video-item").count() == 10  # still there, still playable
    finally:
        server.api("POST", "/api/settings", json={"webcam": {"ffmpegPath": FFMPEG}})
