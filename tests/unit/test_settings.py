from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octoprint_layercapture import settings as s
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
        ("snapshot_url", "file:///etc/passwd", "http"),
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
    assert migrated == stored and s.SETTINGS_VERSION == 4
    values = s.validate(migrated, BED)
    assert (values.video_fps, values.video_hold_seconds) == (25, 0.0)
    assert not values.video_render_after_print and not values.video_render_while_printing
    assert values.camera_mounting.mode == "fixed"  # and version 4's defaults


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


def test_migrate_to_version_4_turns_a_mounting_word_into_the_mapping():
    assert s.SETTINGS_VERSION == 4
    for version in (2, 3):  # through 2 -> 3 (videos, nothing to change) -> 4
        migrated = s.migrate({"camera_mounting": "toolhead", "grid_size": 5}, version)
        assert migrated["camera_mounting"] == {**s.DEFAULTS["camera_mounting"], "mode": "toolhead"}
        assert migrated["grid_size"] == 5
        assert s.migrate({"grid_size": 5}, version) == {"grid_size": 5}
    word = {"camera_mounting": "toolhead"}
    assert s.migrate(word, 4) == word  # a current version's value is validated, not migrated
