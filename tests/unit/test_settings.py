from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octoprint_layercapture import settings as s
from octoprint_layercapture.camera_settings import camera_entry
from octoprint_layercapture.capture.profile import bounds_from_profile

BED = s.Bounds(0.0, 0.0, 200.0, 200.0, 200.0)


def errors_for(data, bounds=BED):
    with pytest.raises(s.InvalidSettings) as info:
        s.validate(data, bounds)
    return {e.key: e.message for e in info.value.errors}


def test_defaults_validate_and_round_trip():
    values = s.validate({}, s.Bounds(0, 0, 250, 210))
    assert values.grid_size == 3
    assert values.stop_mode == "pause"
    assert s.to_storable(values) == {**s.DEFAULTS, "capture_z_heights": []}


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("grid_size", 4, "1, 3 or 5"),
        ("grid_size", 2.5, "whole number"),
        ("grid_spacing", 0, "greater than 0"),
        ("grid_spacing", -1, "greater than 0"),
        ("image_quality", 0, "at least 1"),
        ("image_quality", 101, "at most 100"),
        ("capture_delay", -0.1, "at least 0"),
        ("snapshot_timeout", -1, "greater than 0"),
        ("pause_timeout", 0, "greater than 0"),
        ("capture_z_heights", "0.6, abc", "'abc' is not a number"),
        ("capture_z_heights", [-1], "above 0"),
        ("stop_mode", "teleport", "'pause' or 'hold'"),
        ("wait_for_moves", "G4", "one of 'M400', 'G4 P0', 'poll'"),
        ("wait_for_moves", "sleep", "one of 'M400', 'G4 P0', 'poll'"),
        ("wait_for_moves", None, "one of"),
        ("wait_for_moves", 400, "one of"),
        ("enabled", "yes", "true or false"),
        ("grid_center_x", "left", "must be a number"),
        ("grid_center_x", math.nan, "finite"),
        ("snapshot_url", "http://cam/snap", "replaced by the list 'cameras'"),
        ("use_fake_camera", True, "replaced by the list 'cameras'"),
        ("cameras", [], "at least one camera"),
        ("cameras", "fake", "must be a list of cameras"),
        ("cameras", [{"name": f"c{i}", "type": "fake"} for i in range(5)], "at most 4 cameras"),
        ("capture_folder", "../outside", "relative folder"),
        ("capture_folder", "/abs", "relative folder"),
        ("capture_folder", "", "relative folder"),
        ("capture_every_n_layers", -3, "at least 0"),
        ("not_a_setting", 1, "not a Layer Capture setting"),
        ("video_fps", 0, "at least 1"),
        ("video_fps", 121, "at most 120"),
        ("video_fps", 2.5, "whole number"),
        ("video_hold_seconds", -1, "at least 0"),
        ("video_hold_seconds", 61, "at most 60"),
        ("video_render_after_print", "often", "true or false"),
        ("video_render_while_printing", 1, "true or false"),
    ],
)
def test_invalid_values_are_refused_with_a_message(key, value, fragment):
    errors = errors_for({key: value})
    assert key in errors
    assert fragment in errors[key]


@pytest.mark.parametrize(
    ("value", "stored"),
    [("M400", "M400"), ("m400", "M400"), ("G4 P0", "G4 P0"), (" g4  p0 ", "G4 P0"),
     ("poll", "poll"), ("POLL", "poll")],
)  # fmt: skip
def test_wait_for_moves_is_stored_in_its_canonical_spelling(value, stored):
    values = s.validate({"wait_for_moves": value}, BED)
    assert values.wait_for_moves == stored
    assert s.to_storable(values)["wait_for_moves"] == stored


def cameras_errors(*entries):
    return errors_for({"cameras": list(entries)})


@pytest.mark.parametrize(
    ("entry", "key", "fragment"),
    [
        ({"name": "Nozzle", "type": "fake"}, "cameras.0.name", "lowercase letters, digits"),
        ({"name": "top_cam", "type": "fake"}, "cameras.0.name", "file names carry it"),
        ({"name": "a" * 17, "type": "fake"}, "cameras.0.name", "1 to 16"),
        ({"type": "fake"}, "cameras.0.name", "got ''"),
        ({"name": "top", "type": "rtsp"}, "cameras.0.type", "one of 'webcam', 'snapshot'"),
        ({"name": "top", "type": "snapshot"}, "cameras.0.url", "needs its URL"),
        ({"name": "top", "type": "stream", "url": ""}, "cameras.0.url", "needs its URL"),
        ({"name": "top", "type": "snapshot", "url": "file:///etc/passwd"}, "cameras.0.url",
         "http:// or https://"),
        ({"name": "top", "type": "stream", "url": 5}, "cameras.0.url", "must be text"),
        ({"name": "top", "type": "fake", "mounting": "toolhead"}, "cameras.0.mounting",
         "'fixed'"),
        ({"name": "top", "type": "fake", "zoom": 2}, "cameras.0.zoom", "not a camera setting"),
        ("http://cam/snap", "cameras.0", "must be an object"),
    ],
)  # fmt: skip
def test_invalid_cameras_are_refused_per_field(entry, key, fragment):
    errors = cameras_errors(entry)
    assert key in errors, errors
    assert fragment in errors[key]


def test_camera_names_are_unique():
    errors = cameras_errors(
        {"name": "main", "type": "fake"},
        {"name": "top", "type": "fake"},
        {"name": "main", "type": "snapshot", "url": "http://cam/snap"},
    )
    assert errors == {
        "cameras.2.name": "'main' is the name of camera 1 already: each camera needs a name "
        "of its own"
    }


def test_cameras_validate_and_round_trip():
    cameras = [
        {"name": "main", "type": "webcam", "webcam": "", "url": "", "mounting": "fixed"},
        {"name": "nozzle", "type": "snapshot", "webcam": "", "url": " http://cam/snap ",
         "mounting": "fixed"},
        {"name": "top-2", "type": "stream", "url": "https://cam/stream"},
        {"name": "4", "type": "fake"},
    ]  # fmt: skip
    values = s.validate({"cameras": cameras}, BED)
    assert [(c.name, c.type, c.url) for c in values.cameras] == [
        ("main", "webcam", ""),
        ("nozzle", "snapshot", "http://cam/snap"),
        ("top-2", "stream", "https://cam/stream"),
        ("4", "fake", ""),
    ]
    stored = s.to_storable(values)["cameras"]
    assert stored[2] == {
        "name": "top-2",
        "type": "stream",
        "webcam": "",
        "url": "https://cam/stream",
        "mounting": "fixed",
    }
    assert s.validate({"cameras": stored}, BED).cameras == values.cameras


def test_the_default_is_the_one_camera_of_before():
    (camera,) = s.validate({}, BED).cameras
    assert (camera.name, camera.type, camera.webcam) == ("main", "webcam", "")


@pytest.mark.parametrize(
    ("old", "camera", "unused"),
    [
        ({}, None, []),
        ({"webcam": "garage"}, {"type": "webcam", "webcam": "garage", "url": ""}, []),
        ({"snapshot_url": "http://cam/snap", "webcam": "garage"},
         {"type": "snapshot", "webcam": "garage", "url": "http://cam/snap"}, []),
        ({"stream_url": " http://cam/stream ", "snapshot_url": "http://cam/snap"},
         {"type": "stream", "webcam": "", "url": "http://cam/stream"}, ["snapshot_url"]),
        ({"use_fake_camera": True, "snapshot_url": "http://cam/snap"},
         {"type": "fake", "webcam": "", "url": "http://cam/snap"}, []),
        ({"use_fake_camera": False, "stream_url": "", "snapshot_url": "", "webcam": ""},
         {"type": "webcam", "webcam": "", "url": ""}, []),
    ],
)  # fmt: skip
def test_migrate_the_single_camera_of_version_2_to_the_first_of_the_list(old, camera, unused):
    """First match wins as before (fake, stream, snapshot URL, webcam): the one camera
    behaves the same, and as the first camera its files keep their names."""
    dropped: list = []
    migrated = s.migrate({"grid_size": 5, **old}, 2, dropped)
    if camera is None:
        assert migrated == {"grid_size": 5}
    else:
        expected = {"name": "main", "mounting": "fixed", **camera}
        assert migrated == {"grid_size": 5, "cameras": [expected]}
        s.validate(migrated, BED)
    assert dropped == unused
    assert s.migrate(old, None) == s.migrate(old, 2), "a config without a version too"


def test_migrate_version_4_keeps_its_cameras():
    data = {"cameras": [{"name": "top", "type": "fake"}]}
    assert s.migrate(data, 4) == data


@pytest.mark.parametrize("version", [None, 1, 2, 3])
def test_migrate_chains_the_video_version_and_then_the_cameras_list(version):
    """2 -> 3 adds the video settings (nothing to change), 3 -> 4 turns the one camera into
    the list: settings of any older version end with one camera ``main`` (today's names)
    and keep their video values."""
    old = {"grid_size": 5, "snapshot_url": "http://cam/snap", "webcam": "garage"}
    if version == 3:
        old = {**old, "video_fps": 30, "video_hold_seconds": 2.0}
    migrated = s.migrate(old, version)
    camera = {"name": "main", "type": "snapshot", "webcam": "garage", "url": "http://cam/snap"}
    assert migrated == {
        **{key: value for key, value in old.items() if key not in ("snapshot_url", "webcam")},
        "cameras": [{**camera, "mounting": "fixed"}],
    }
    values = s.validate(migrated, BED)
    assert [c.name for c in values.cameras] == ["main"]
    assert values.video_fps == (30 if version == 3 else 25)
    assert values.camera_mounting.mode == "fixed"  # and 4 -> 5's defaults
    assert s.SETTINGS_VERSION == 5


camera_entries = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.one_of(st.sampled_from(["main", "top", "a-b", ""]), st.text(max_size=20)),
            "type": st.sampled_from(["webcam", "snapshot", "stream", "fake", "x"]),
        },
        optional={
            "url": st.one_of(st.just("http://cam/snap"), st.text(max_size=20), st.integers()),
            "webcam": st.one_of(st.text(max_size=10), st.none()),
            "mounting": st.sampled_from(["fixed", "toolhead"]),
        },
    ),
    st.text(max_size=5),
    st.none(),
)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(camera_entries, max_size=6))
def test_camera_lists_never_crash_and_accepted_names_fit_file_names(cameras):
    from octoprint_layercapture.store.names import is_camera_name

    try:
        values = s.validate({"cameras": cameras}, BED)
    except s.InvalidSettings as exc:
        assert exc.errors and all(e.key.startswith("cameras") for e in exc.errors)
        return
    names = [c.name for c in values.cameras]
    assert 1 <= len(names) <= 4 and len(set(names)) == len(names)
    assert all(is_camera_name(name) for name in names)
    for camera in values.cameras:
        assert camera.type not in ("snapshot", "stream") or camera.url.startswith("http")


def test_grid_outside_the_bed_is_refused():
    errors = errors_for({"grid_center_x": 5.0, "grid_center_y": 100.0})
    assert "grid points lie outside the bed" in errors["grid_spacing"]


def test_explicit_bed_edges_override_the_profile():
    values = s.validate({"bed_max_x": 300, "grid_center_x": 270, "grid_center_y": 100}, BED)
    assert values.bounds(BED) == s.Bounds(0, 0, 300, 200, 200)


def test_bed_min_must_be_below_max():
    errors = errors_for({"bed_min_x": 100, "bed_max_x": 50})
    assert "greater than bed_min_x" in errors["bed_max_x"]


def test_all_errors_are_reported_at_once():
    errors = errors_for({"grid_size": 4, "image_quality": 0, "stop_mode": "x"})
    assert set(errors) == {"grid_size", "image_quality", "stop_mode"}


def test_values_are_coerced():
    values = s.validate(
        {"grid_size": "5", "image_quality": 80.0, "capture_z_heights": "3, 0.6;10 0.6"},
        s.Bounds(0, 0, 300, 300),
    )
    assert values.grid_size == 5
    assert values.image_quality == 80
    assert values.capture_z_heights == (0.6, 3.0, 10.0)


def test_without_bounds_the_grid_is_not_checked():
    assert s.validate({"grid_center_x": -500.0}, None).grid_center_x == -500.0


def test_migrate_from_the_per_axis_version():
    old = {"grid_size_x": 5, "grid_size_y": 5, "grid_spacing_x": 10, "z_offset_base": 3}
    migrated = s.migrate(old, None)
    assert migrated == {"grid_size": 5, "grid_spacing": 10, "z_offset": 3}
    s.validate(migrated, BED)


def test_migrate_keeps_current_keys_when_both_exist():
    assert s.migrate({"grid_size": 3, "grid_size_x": 5}, 1) == {"grid_size": 3}


def test_version_2_settings_keep_their_values_and_take_the_video_defaults():
    stored = {"grid_size": 5, "grid_spacing": 10.0, "stop_mode": "hold"}
    migrated = s.migrate(stored, 2)
    assert migrated == stored and s.SETTINGS_VERSION == 5
    values = s.validate(migrated, BED)
    assert (values.video_fps, values.video_hold_seconds) == (25, 0.0)
    assert not values.video_render_after_print and not values.video_render_while_printing
    assert values.camera_mounting.mode == "fixed"  # and version 5's defaults


def test_version_3_settings_keep_their_video_values_and_take_the_mosaic_defaults():
    stored = {"grid_size": 5, "video_fps": 30, "video_render_after_print": True}
    migrated = s.migrate(stored, 3)
    assert migrated == stored
    values = s.validate(migrated, BED)
    assert (values.video_fps, values.video_render_after_print) == (30, True)
    assert values.camera_mounting.mode == "fixed"
    assert values.mosaic_max_correction == s.DEFAULTS["mosaic_max_correction"]
    assert values.departure_warning_score == s.DEFAULTS["departure_warning_score"]


def test_migrate_current_version_is_unchanged():
    data = {"grid_spacing": 12.0}
    assert s.migrate(data, s.SETTINGS_VERSION) == data


def test_profile_bounds_lowerleft_center_and_custom_box():
    volume = {"width": 200, "depth": 180, "height": 150, "origin": "lowerleft"}
    assert bounds_from_profile({"volume": volume}) == s.Bounds(0, 0, 200, 180, 150)
    centred = {**volume, "origin": "center"}
    assert bounds_from_profile({"volume": centred}) == s.Bounds(-100, -90, 100, 90, 150)
    box = {"x_min": -5, "x_max": 210, "y_min": 0, "y_max": 190, "z_max": 140}
    assert bounds_from_profile({"volume": {**volume, "custom_box": box}}) == s.Bounds(
        -5, 0, 210, 190, 140
    )
    assert bounds_from_profile({"volume": {}}) is None
    assert bounds_from_profile(None) is None


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(s.DEFAULTS)),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=30),
            st.lists(st.floats(), max_size=5),
        ),
        max_size=8,
    )
)
def test_validator_never_crashes_and_accepted_grids_fit(data):
    try:
        values = s.validate(data, BED)
    except s.InvalidSettings as exc:
        assert exc.errors
        return
    bounds = values.bounds(BED)
    offsets = s.grid_offsets(values.grid_size, values.grid_spacing)
    for dx in offsets:
        for dy in offsets:
            assert bounds.contains_xy(values.grid_center_x + dx, values.grid_center_y + dy)


def test_the_camera_mounting_is_one_mapping_checked_field_by_field():
    values = s.validate(s.DEFAULTS)
    assert values.camera_mounting.mode == "fixed" and not values.camera_mounting.on_toolhead
    with pytest.raises(s.InvalidSettings) as caught:
        s.validate(
            {
                **s.DEFAULTS,
                "camera_mounting": {"mode": "toolhead", "scale": 0},
                "fake_toolhead": {"defect": "crack"},
                "departure_warning_score": 2,
            }
        )
    keys = {e.key for e in caught.value.errors}
    assert keys == {"camera_mounting.scale", "fake_toolhead.defect", "departure_warning_score"}
    stored = s.to_storable(s.validate({**s.DEFAULTS, "camera_mounting": {"mode": "toolhead"}}))
    assert stored["camera_mounting"] == {**s.DEFAULTS["camera_mounting"], "mode": "toolhead"}
    assert stored["fake_toolhead"] == s.DEFAULTS["fake_toolhead"]


def test_a_form_may_send_part_of_a_mapping_setting():
    stored = {**s.DEFAULTS, "camera_mounting": {**s.DEFAULTS["camera_mounting"], "scale": 20.0}}
    merged = s.merge_form(stored, {"camera_mounting": {"rotation": 3.0}})
    assert merged["camera_mounting"]["scale"] == 20.0
    assert merged["camera_mounting"]["rotation"] == 3.0


@pytest.mark.parametrize("version", [None, 2, 3, 4])
def test_migrate_to_version_5_chains_videos_cameras_and_the_mounting(version):
    """2 -> 3 (videos, nothing to change), 3 -> 4 (the one camera becomes the list), 4 -> 5
    (a hand-written mounting word becomes the mapping; the mosaic keys take defaults)."""
    assert s.SETTINGS_VERSION == 5
    old = {"camera_mounting": "toolhead", "grid_size": 5, "video_fps": 30}
    if version == 4:
        old["cameras"] = [camera_entry(type="fake")]
    else:
        old["use_fake_camera"] = True
    migrated = s.migrate(old, version)
    assert migrated == {
        "camera_mounting": {**s.DEFAULTS["camera_mounting"], "mode": "toolhead"},
        "grid_size": 5,
        "video_fps": 30,
        "cameras": [camera_entry(type="fake")],
    }
    values = s.validate(migrated, BED)
    assert values.camera_mounting.on_toolhead and values.video_fps == 30
    assert values.mounting_of(values.cameras[0]).on_toolhead
    assert values.mosaic_max_correction == s.DEFAULTS["mosaic_max_correction"]
    assert s.migrate({"grid_size": 5}, version) == {"grid_size": 5}


def test_only_the_first_camera_takes_the_toolhead_mounting():
    cameras = [camera_entry(type="fake"), camera_entry("side", type="fake")]
    values = s.validate(
        {**s.DEFAULTS, "cameras": cameras, "camera_mounting": {"mode": "toolhead"}}, BED
    )
    first, side = values.cameras
    assert values.mounting_of(first).on_toolhead and not values.mounting_of(side).on_toolhead
    word = {"camera_mounting": "toolhead"}
    assert s.migrate(word, 5) == word  # a current version's value is validated, not migrated
