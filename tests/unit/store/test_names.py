from __future__ import annotations

from datetime import date, datetime

import pytest

from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.store.names import (
    ImageName,
    day_folder,
    image_name,
    is_camera_name,
    is_day_folder_name,
    is_temp_video_name,
    metadata_name,
    parse_image_name,
    parse_metadata_name,
    parse_video_name,
    temp_video_name,
    thumbnail_name,
    video_frames_name,
    video_name,
)

WHEN = datetime(2024, 1, 15, 10, 30, 0)
PID = "0123456789abcdef"
SCHEMA = load_schema("metadata")
SPEC_KEYS = [
    "layer",
    "z_height",
    "timestamp",
    "gcode_file",
    "print_start_time",
    "images",
    "settings",
]


def test_image_name_matches_the_spec_example():
    assert image_name(3, 0, 0.6, WHEN) == "layer_0003_pos_00_z_0_60_20240115_103000.jpg"


def test_thumbnail_and_metadata_names_match_the_spec():
    name = image_name(3, 0, 0.6, WHEN)
    assert thumbnail_name(name) == "layer_0003_pos_00_z_0_60_20240115_103000_thumb.jpg"
    assert metadata_name(3, WHEN) == "layer_0003_metadata_20240115_103000.json"


@pytest.mark.parametrize(
    ("layer", "index", "z", "expected"),
    [
        (15, 4, 3.0, "layer_0015_pos_04_z_3_00_"),
        (150, 24, 10.25, "layer_0150_pos_24_z_10_25_"),
        (1, 0, 0.0, "layer_0001_pos_00_z_0_00_"),
        (12345, 3, 123.456, "layer_12345_pos_03_z_123_46_"),
        (2, 1, 0.2 + 0.1, "layer_0002_pos_01_z_0_30_"),
        (2, 1, -1e-9, "layer_0002_pos_01_z_0_00_"),
    ],
)
def test_image_name_fields(layer, index, z, expected):
    assert image_name(layer, index, z, WHEN) == expected + "20240115_103000.jpg"


@pytest.mark.parametrize(
    ("layer", "index", "z"),
    [(-1, 0, 1.0), (1, -1, 1.0), (1, 0, -0.6), (1, 0, float("nan")), (1.5, 0, 1.0)],
)
def test_image_name_refuses_impossible_values(layer, index, z):
    with pytest.raises(ValueError):
        image_name(layer, index, z, WHEN)


def test_thumbnail_name_refuses_non_images():
    for name in ("x.png", "layer_0001_pos_00_z_0_20_20240115_103000_thumb.jpg"):
        with pytest.raises(ValueError):
            thumbnail_name(name)


def test_day_folder(tmp_path):
    assert day_folder(tmp_path, WHEN) == tmp_path / "2024-01-15"
    assert day_folder(tmp_path, date(2024, 2, 3)) == tmp_path / "2024-02-03"
    assert is_day_folder_name("2024-01-15")
    assert not is_day_folder_name("2024-13-01")
    assert not is_day_folder_name("notes")


def test_parse_image_name_round_trips():
    name = image_name(150, 24, 10.25, WHEN)
    parsed = parse_image_name(name)
    assert parsed == ImageName(150, 24, 10.25, "20240115_103000", False)
    assert parsed.when == WHEN
    thumb = parse_image_name(thumbnail_name(name))
    assert thumb is not None and thumb.is_thumbnail and thumb.index == 24


def test_cameras_after_the_first_carry_their_name():
    assert image_name(3, 0, 0.6, WHEN) == "layer_0003_pos_00_z_0_60_20240115_103000.jpg"
    named = image_name(3, 0, 0.6, WHEN, camera="nozzle")
    assert named == "layer_0003_pos_00_cam_nozzle_z_0_60_20240115_103000.jpg"
    assert parse_image_name(named) == ImageName(3, 0, 0.6, "20240115_103000", False, "nozzle")
    thumb = parse_image_name(thumbnail_name(image_name(7, 12, 1.4, WHEN, camera="top-2")))
    assert thumb == ImageName(7, 12, 1.4, "20240115_103000", True, "top-2")
    assert parse_image_name(image_name(3, 0, 0.6, WHEN)).camera is None
    for name in ("a" * 16, "0", "z-9"):
        assert is_camera_name(name) and parse_image_name(image_name(1, 1, 1, WHEN, name))


@pytest.mark.parametrize("camera", ["", "Nozzle", "top_cam", "a" * 17, "-top", "x/y", "x.y"])
def test_names_unfit_for_file_names_are_refused(camera):
    assert not is_camera_name(camera)
    with pytest.raises(ValueError):
        image_name(3, 0, 0.6, WHEN, camera=camera)


@pytest.mark.parametrize(
    "name",
    [
        "layer_0003_pos_00_cam__z_0_60_20240115_103000.jpg",
        "layer_0003_pos_00_cam_Top_z_0_60_20240115_103000.jpg",
        "layer_0003_pos_00_cam_a_b_z_0_60_20240115_103000.jpg",
        "layer_0003_pos_00_cam_aaaaaaaaaaaaaaaaa_z_0_60_20240115_103000.jpg",
        "layer_0003_metadata_20240115_103000.json",
        "layer_0003_pos_00_z_0_60_20240115_103000.png",
        "layer_003_pos_00_z_0_60_20240115_103000.jpg",
        "layer_0003_pos_00_z_0_6_20240115_103000.jpg",
        "layer_0003_pos_00_z_0_60_20241315_103000.jpg",
        "../layer_0003_pos_00_z_0_60_20240115_103000.jpg",
        "layer_0003_pos_00_z_0_60_20240115_103000.jpg.tmp",
        "",
    ],
)
def test_parse_image_name_rejects_other_names(name):
    assert parse_image_name(name) is None


def test_parse_metadata_name():
    parsed = parse_metadata_name(metadata_name(3, WHEN))
    assert parsed is not None and parsed.layer == 3 and parsed.when == WHEN
    assert parse_metadata_name("layer_0003_pos_00_z_0_60_20240115_103000.jpg") is None


def test_mosaic_names_share_the_layers_time_and_are_told_apart() -> None:
    from octoprint_layercapture.store.names import is_mosaic_name, mosaic_name

    when = datetime(2024, 1, 15, 10, 30, 0)
    names = [mosaic_name(3, when, part) for part in ("image", "toolpath", "departure")]
    assert names == [
        "layer_0003_mosaic_20240115_103000.jpg",
        "layer_0003_mosaic_20240115_103000_toolpath.png",
        "layer_0003_mosaic_20240115_103000_departure.png",
    ]
    assert all(is_mosaic_name(n) for n in names)
    assert parse_image_name(names[0]) is None and parse_metadata_name(names[0]) is None
    for wrong in (
        "layer_0003_mosaic_20240115_103000.png",
        "layer_0003_mosaic_20241315_103000.jpg",
        "../layer_0003_mosaic_20240115_103000.jpg",
        "layer_0003_pos_00_z_0_60_20240115_103000.jpg",
    ):
        assert not is_mosaic_name(wrong), wrong
    with pytest.raises(ValueError, match="part must be one of"):
        mosaic_name(3, when, "heat")


def test_names_read_back_and_nothing_else_parses():
    grid, four = video_name(PID, None), video_name(PID, 4)
    assert (grid, four) == (f"video_{PID}_grid.mp4", f"video_{PID}_pos_04.mp4")
    assert video_frames_name(four) == f"video_{PID}_pos_04.json"
    parsed = parse_video_name(video_frames_name(four))
    assert parsed is not None and (parsed.print_id, parsed.index, parsed.kind) == (
        PID,
        4,
        "position",
    )
    assert parsed.is_frames_file
    assert parse_video_name(grid).kind == "grid"  # type: ignore[union-attr]
    for other in (
        "video_XYZ_grid.mp4",
        f"video_{PID}_pos_4.mp4",
        f"video_{PID}_grid.mkv",
        f".video_{PID}_grid.mp4.ab12.tmp",
        f"video_{PID}_grid.mp4/../x",
        "layer_0003_metadata_20240101_090000.json",
    ):
        assert parse_video_name(other) is None, other
    with pytest.raises(ValueError):
        video_frames_name("video.json")
    with pytest.raises(ValueError):
        video_name(PID, -1)


def test_videos_of_cameras_after_the_first_carry_their_name():
    assert video_name(PID, 4, "nozzle") == f"video_{PID}_pos_04_cam_nozzle.mp4"
    assert video_name(PID, None, "top-2") == f"video_{PID}_grid_cam_top-2.mp4"
    parsed = parse_video_name(video_frames_name(video_name(PID, 4, "nozzle")))
    assert parsed is not None and (parsed.index, parsed.camera, parsed.is_frames_file) == (
        4,
        "nozzle",
        True,
    )
    assert parse_video_name(video_name(PID, None)).camera is None  # type: ignore[union-attr]
    assert parse_video_name(f"video_{PID}_grid_cam_Nozzle.mp4") is None
    with pytest.raises(ValueError):
        video_name(PID, 4, "top_cam")


def test_a_video_renders_to_a_temporary_name_beside_it():
    temp = temp_video_name(video_name(PID, 4), "ab12cd34")
    assert temp == f".video_{PID}_pos_04.mp4.ab12cd34.tmp"
    assert is_temp_video_name(temp) and parse_video_name(temp) is None
    assert not is_temp_video_name(".layer_0003_pos_00_z_0_60_20240101_090000.jpg.x.tmp")
