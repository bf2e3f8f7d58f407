from __future__ import annotations

import time

import pytest

from octoprint_layercapture.settings import (
    DEFAULTS,
    Bounds,
    InvalidSettings,
    SettingsError,
    validate,
)
from octoprint_layercapture.web import api

BED = Bounds(0.0, 0.0, 200.0, 200.0, 200.0)


@pytest.mark.parametrize(
    "args, expected",
    [
        ({}, (0, api.DEFAULT_PAGE)),
        ({"offset": "40", "limit": "20"}, (40, 20)),
        ({"offset": "", "limit": str(api.MAX_PAGE)}, (0, api.MAX_PAGE)),
    ],
)
def test_page_parameters(args, expected):
    assert api.parse_page(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        {"offset": "-1"},
        {"offset": "1.5"},
        {"offset": "abc"},
        {"limit": "0"},
        {"limit": str(api.MAX_PAGE + 1)},
        {"limit": "1e3"},
        {"offset": "0x10"},
    ],
)
def test_bad_page_parameters_are_a_400(args):
    with pytest.raises(api.ApiError) as info:
        api.parse_page(args)
    assert info.value.status == 400
    assert next(iter(args)) in info.value.message


@pytest.mark.parametrize("value", ["..", "../../etc", "0123456789abcdeZ", "", "/etc/passwd"])
def test_bad_print_ids_are_unknown_prints(value):
    with pytest.raises(api.ApiError) as info:
        api.check_print_id(value)
    assert info.value.status == 404


@pytest.mark.parametrize(
    "gcode, start, expected",
    [
        ("box.gcode", "2024-01-15T10:00:00", "layercapture-box-20240115_100000.zip"),
        (
            "sub/dir/My Part (v2).gcode",
            "2024-01-15T10:00:00",
            "layercapture-My_Part_v2-20240115_100000.zip",
        ),
        ('"; rm -rf x.gcode', None, "layercapture-rm_-rf_x-0123456789abcdef.zip"),
        ("../../.gcode", None, "layercapture-print-0123456789abcdef.zip"),
        ("", "2024-01-15T10:00:00", "layercapture-print-20240115_100000.zip"),
    ],
)
def test_zip_names_are_safe(gcode, start, expected):
    assert api.zip_name(gcode, start, "0123456789abcdef") == expected


def settings(**values):
    return {**DEFAULTS, "grid_center_x": 100.0, "grid_center_y": 100.0, **values}


@pytest.mark.parametrize(
    ("body", "kind", "index", "camera"),
    [
        ({}, "all", None, None),
        ({"target": "all"}, "all", None, None),
        ({"target": "grid"}, "grid", None, None),
        ({"target": "position", "index": 4}, "position", 4, None),
        ({"target": "position", "index": 99}, "position", 99, None),  # the renderer checks it
        ({"target": "grid", "camera": "nozzle"}, "grid", None, "nozzle"),
        ({"target": "position", "index": 4, "camera": "top"}, "position", 4, "top"),
    ],
)
def test_render_requests(body, kind, index, camera):
    target = api.parse_render_request(body)
    assert (target.kind, target.index, target.camera) == (kind, index, camera)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (None, "expected a JSON object"),
        ([], "expected a JSON object"),
        ({"target": "movie"}, "target must be one of 'all', 'grid', 'position'"),
        ({"target": None}, "target must be one of"),
        ({"target": "position"}, "index must be a whole number"),
        ({"target": "position", "index": "4"}, "index must be a whole number"),
        ({"target": "position", "index": True}, "index must be a whole number"),
        ({"target": "position", "index": 1.5}, "index must be a whole number"),
        ({"target": "grid", "index": 2}, "only for target 'position'"),
        ({"target": "all", "fps": 60}, "unknown field(s): fps"),
        ({"target": "all", "camera": 2}, "camera must be a camera's name"),
    ],
)
def test_bad_render_requests_are_a_400(body, fragment):
    with pytest.raises(api.ApiError) as refused:
        api.parse_render_request(body)
    assert refused.value.status == 400 and fragment in refused.value.message


def test_preview_of_a_grid_inside_the_bed():
    preview = api.grid_preview(settings(), BED)
    assert preview is not None
    assert [(p["x"], p["y"], p["inside"]) for p in preview["points"][:3]] == [
        (80.0, 80.0, True),
        (100.0, 80.0, True),
        (120.0, 80.0, True),
    ]
    assert len(preview["points"]) == 9 and sorted(preview["order"]) == list(range(9))
    assert preview["bounds"] == {
        "min_x": 0.0,
        "min_y": 0.0,
        "max_x": 200.0,
        "max_y": 200.0,
        "max_z": 200.0,
        "radius": None,
    }
    assert preview["bed_center"] == {"x": 100.0, "y": 100.0}


def test_preview_marks_points_outside_the_bounds_and_explicit_edges_win():
    preview = api.grid_preview(settings(grid_center_x=190.0, bed_max_y=130.0, grid_size=5), BED)
    assert preview is not None
    outside = {(p["x"], p["y"]) for p in preview["points"] if not p["inside"]}
    xs, ys = (150.0, 170.0, 190.0, 210.0, 230.0), (60.0, 80.0, 100.0, 120.0, 140.0)
    assert outside == {(x, y) for x in xs for y in ys if x > 200.0 or y > 130.0}
    assert all(p["reason"] for p in preview["points"] if not p["inside"])
    assert preview["bounds"]["max_y"] == 130.0
    assert preview["profile_bounds"]["max_y"] == 200.0
    assert preview["bed_center"] == {"x": 100.0, "y": 65.0}
    assert set(preview["order"]) == {p["index"] for p in preview["points"] if p["inside"]}


def test_preview_without_bounds_and_with_unusable_grid_values():
    preview = api.grid_preview(settings(), None)
    assert preview is not None and preview["bounds"] is None and preview["bed_center"] is None
    assert all(p["inside"] for p in preview["points"])
    for bad in ({"grid_size": 4}, {"grid_spacing": -1}, {"grid_center_x": "abc"}):
        assert api.grid_preview(settings(**bad), BED) is None


# ---- zip downloads -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("ftp://admin:hunter2@cam/snap", "'ftp://***@cam/snap'"),
        ("  rtsp://cam/live?user=admin&pwd=hunter2 ", "'rtsp://cam/live?user=***&pwd=***'"),
        ("admin:hunter2@cam", "'***@cam'"),
        ({"password": "hunter2"}, "a dict"),
        (["hunter2"], "a list"),
    ],
)
def test_rejected_camera_urls_are_shown_masked(value, shown):
    cameras = [
        {"name": "main", "type": "snapshot", "url": value},
        {"name": "nozzle", "type": "stream", "url": value},
    ]
    data = {**DEFAULTS, "cameras": cameras, "grid_size": "x"}
    with pytest.raises(InvalidSettings) as info:
        validate(data)
    errors = api.settings_errors(info.value.errors, data)
    by_key = {e["key"]: e["message"] for e in errors}
    assert set(by_key) == {"cameras.0.url", "cameras.1.url", "grid_size"}
    for key in ("cameras.0.url", "cameras.1.url"):
        assert "hunter2" not in by_key[key] and by_key[key].endswith(shown), by_key[key]
    assert by_key["grid_size"] == next(e.message for e in info.value.errors if e.key == "grid_size")
    # a camera test's URL too
    test_errors = [SettingsError("camera.url", f"must be a URL, got {value!r}")]
    (masked,) = api.settings_errors(test_errors, {"camera": {"url": value}})
    assert "hunter2" not in masked["message"] and masked["message"].endswith(shown)


def test_a_zip_of_one_camera_names_it_and_only_a_camera_of_the_print():
    summary = {"cameras": ["main", "nozzle"]}
    assert api.zip_camera(None, summary) is None and api.zip_camera("", summary) is None
    assert api.zip_camera("nozzle", summary) == "nozzle"
    with pytest.raises(api.ApiError) as error:
        api.zip_camera("side", summary)
    assert error.value.status == 400
    assert error.value.message == "this print has no camera 'side' (its cameras: 'main', 'nozzle')"
    with pytest.raises(api.ApiError, match="none with a name"):
        api.zip_camera("main", {"cameras": [""]})  # a print from before version 3
    name = api.zip_name("box.gcode", "2024-01-15T10:00:00", "0123456789abcdef", "nozzle")
    assert name == "layercapture-box-20240115_100000-nozzle.zip"


def test_a_toolhead_camera_draws_each_shots_footprint() -> None:
    mounting = {"mode": "toolhead", "scale": 10.0, "image_width": 200, "image_height": 100}
    preview = api.grid_preview(settings(camera_mounting=mounting), BED)
    assert preview is not None
    first = preview["points"][0]
    xs = [c[0] for c in first["footprint"]]
    ys = [c[1] for c in first["footprint"]]
    assert (max(xs) - min(xs), max(ys) - min(ys)) == pytest.approx((20.0, 10.0))
    assert (sum(xs) / 4, sum(ys) / 4) == pytest.approx((first["x"], first["y"]))
    fixed = api.grid_preview(settings(), BED)
    assert fixed is not None and "footprint" not in fixed["points"][0]


def test_masking_shows_urls_without_their_credentials():
    assert api.masked_value("http://admin:secret@cam/snap") == "'http://***@cam/snap'"
    assert api.masked_value("a b:c@d e") == "'a ***@d e'"
    assert api.masked_value(12) == "a int"


def test_masking_a_long_value_takes_linear_time():
    # the settings API's hostile-input test sends values of 100 kB; a pattern that tries
    # every start again took a minute on them and held the request
    started = time.monotonic()
    for value in ("a" * 200_000, "a" * 100_000 + "@x", "a:" * 100_000):
        api.masked_value(value)
    assert time.monotonic() - started < 1.0
