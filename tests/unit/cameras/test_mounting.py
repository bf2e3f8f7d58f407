from __future__ import annotations

import math

import pytest

from octoprint_layercapture.cameras.mounting import (
    CameraMounting,
    decompose,
    parse_mounting,
    similarity,
)


@pytest.mark.parametrize("rotation", [0.0, 2.5, -37.0, 90.0, 179.0])
@pytest.mark.parametrize("mirrored", [False, True])
def test_the_matrix_decomposes_into_what_built_it(rotation: float, mirrored: bool) -> None:
    scale, found, flipped = decompose(similarity(17.3, rotation, mirrored))
    assert scale == pytest.approx(17.3)
    assert found == pytest.approx(rotation)
    assert flipped is mirrored


def test_pixels_and_bed_points_map_both_ways() -> None:
    mounting = CameraMounting("toolhead", 3.0, -2.0, 16.0, 12.0, True, 640, 480)
    head = (100.0, 50.0)
    # the image centre lies at the camera's offset from the nozzle
    assert mounting.to_bed(head, (320.0, 240.0)) == pytest.approx((103.0, 48.0))
    for point in ((100.0, 50.0), (90.5, 61.25), (120.0, 40.0)):
        assert mounting.to_bed(head, mounting.to_pixel(head, point)) == pytest.approx(point)


def test_an_unturned_camera_has_x_to_the_right_and_y_up() -> None:
    mounting = CameraMounting("toolhead", scale=10.0)
    u, v = mounting.to_pixel((0.0, 0.0), (1.0, 2.0))
    assert (u - 320, v - 240) == pytest.approx((10.0, -20.0))
    mirrored = CameraMounting("toolhead", scale=10.0, mirrored=True)
    assert mirrored.to_pixel((0.0, 0.0), (1.0, 0.0))[0] == pytest.approx(310.0)


def test_the_footprint_is_the_image_on_the_bed() -> None:
    mounting = CameraMounting("toolhead", scale=16.0, rotation=30.0)
    corners = mounting.footprint((100.0, 100.0))
    assert mounting.footprint_size() == (40.0, 30.0)
    sides = [math.dist(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    assert sides == pytest.approx([40.0, 30.0, 40.0, 30.0])
    assert sum(x for x, _ in corners) / 4 == pytest.approx(100.0)


def test_parsing_reports_every_problem_and_keeps_good_values() -> None:
    mounting, errors = parse_mounting(
        {
            "mode": "helmet",
            "scale": 0,
            "rotation": "a",
            "mirrored": "yes",
            "image_width": 64.5,
            "offset_x": 4,
            "colour": 1,
        }
    )
    assert dict(errors) == {
        "colour": "is not a mounting value",
        "mode": "must be 'fixed' or 'toolhead', got 'helmet'",
        "scale": "must be between 0.5 and 500, got 0",
        "rotation": "must be a number, got 'a'",
        "mirrored": "must be true or false, got 'yes'",
        "image_width": "must be a whole number of pixels, got 64.5",
    }
    assert mounting.offset_x == 4.0 and mounting.mode == "fixed"
    assert parse_mounting("toolhead")[1][0][0] == ""
    good, none = parse_mounting({"mode": "toolhead", "mirrored": "true", "image_width": 1280.0})
    assert none == [] and good.mirrored and good.image_width == 1280 and good.on_toolhead
