from __future__ import annotations

import io
import math

import numpy as np
import pytest
from mosaic_support import FIXTURE, MOUNTING, scene
from PIL import Image

from octoprint_layercapture.analysis.mosaic.registration import grey, phase_correlate
from octoprint_layercapture.cameras.mounting import CameraMounting
from octoprint_layercapture.cameras.toolhead import (
    BELOW,
    CURRENT,
    Defect,
    FakeToolheadOptions,
    Scene,
    parse_options,
    render_bed,
    render_view,
    shot_offset,
)
from octoprint_layercapture.cameras.toolhead_camera import ToolheadFakeCamera, printed_so_far
from octoprint_layercapture.capture.ports import Position, ShotRequest


def test_the_scene_is_the_file_up_to_the_layer() -> None:
    three = scene(3)
    assert [layer.z for layer in three.layers] == [0.3, 0.6, 0.9]
    box = three.current.bounds()
    assert box is not None and all(81.5 < v < 118.5 for v in box)
    assert len(scene(4).layers) == 4


def test_the_current_layer_is_the_brightest_and_old_layers_darker() -> None:
    picture = np.asarray(render_bed(scene(3), (95.0, 95.0, 105.0, 105.0), 10.0))
    assert tuple(int(v) for v in picture.reshape(-1, 3).max(axis=0)) == CURRENT
    colours = {tuple(int(v) for v in p) for p in picture.reshape(-1, 3)}
    assert BELOW in colours  # layer 2 shows between layer 3's sparse lines
    first = np.asarray(render_bed(scene(1), (95.0, 95.0, 105.0, 105.0), 10.0))
    # layer 1 is solid: nothing but the current layer's colour
    assert (first.reshape(-1, 3) == CURRENT).all(axis=1).mean() > 0.9


def test_an_unprinted_square_shows_the_layer_below() -> None:
    defect = Defect("unprinted", 100.0, 100.0, 5.0)
    with_defect = scene(3, FakeToolheadOptions(defect="unprinted", defect_x=100, defect_y=100))
    assert with_defect.defect == defect
    rect = (90.0, 90.0, 110.0, 110.0)
    plain = grey(render_bed(scene(3), rect, 10.0))
    holed = grey(render_bed(with_defect, rect, 10.0))
    inside, outside = (slice(80, 120), slice(80, 120)), (slice(0, 40), slice(0, 40))
    assert (holed[inside] > 180).sum() == 0 < (plain[inside] > 180).sum()
    assert np.array_equal(holed[outside], plain[outside])
    thin = scene(3, FakeToolheadOptions(defect="under_extrusion", defect_x=100, defect_y=100))
    under = grey(render_bed(thin, rect, 10.0))
    assert 0 < (under[inside] > 150).sum() < 0.7 * (plain[inside] > 150).sum()


def test_a_defect_only_on_the_layers_asked_for() -> None:
    options = FakeToolheadOptions(defect="unprinted", defect_layers=(3,))
    assert options.defect_for(3) is not None and options.defect_for(2) is None
    assert FakeToolheadOptions().defect_for(3) is None


def test_moving_the_head_moves_the_picture_by_minus_a_d() -> None:
    mounting = CameraMounting("toolhead", scale=12.0, rotation=20.0, mirrored=True)
    of = scene(3)
    before = grey(render_view(of, mounting, (90.0, 95.0)))
    after = grey(render_view(of, mounting, (91.0, 94.5)))
    a00, a01, a10, a11 = mounting.matrix()
    expected = (-(a00 * 1.0 + a01 * -0.5), -(a10 * 1.0 + a11 * -0.5))
    shift = phase_correlate(before, after)
    assert (shift.dx, shift.dy) == pytest.approx(expected, abs=0.25)


def test_noise_and_placement_are_small_and_repeatable() -> None:
    options = FakeToolheadOptions(placement_noise=1.0)
    offsets = [shot_offset(options, 3, i) for i in range(50)]
    assert all(math.hypot(*o) <= 1.0 for o in offsets) and len(set(offsets)) == 50
    assert offsets[7] == shot_offset(options, 3, 7)
    assert shot_offset(FakeToolheadOptions(), 3, 7) == (0.0, 0.0)
    of = Scene()
    clean = grey(render_view(of, MOUNTING, (50.0, 50.0)))
    noisy = grey(render_view(of, MOUNTING, (50.0, 50.0), pixel_noise=3.0, seed=4))
    assert 2.0 < float(np.std(noisy - clean)) < 4.0
    again = grey(render_view(of, MOUNTING, (50.0, 50.0), pixel_noise=3.0, seed=4))
    assert np.array_equal(noisy, again)


def test_the_camera_draws_at_the_measured_position() -> None:
    loads = []

    def load(layer: int, z: float) -> Scene:
        loads.append((layer, z))
        return printed_so_far(FIXTURE, None, None, z, FakeToolheadOptions(), layer)

    camera = ToolheadFakeCamera(MOUNTING, FakeToolheadOptions(pixel_noise=0.0), 90, load)
    request = ShotRequest(3, 0.9, 4, 9, 100.0, 100.0, 5.9)
    commanded = camera.take(request)
    measured = camera.take(
        ShotRequest(3, 0.9, 4, 9, 100.0, 100.0, 5.9, measured=Position(101.0, 100, 5.9))
    )
    assert loads == [(3, 0.9)]  # once per layer
    assert commanded.camera == "fake toolhead camera"
    with Image.open(io.BytesIO(commanded.data)) as a, Image.open(io.BytesIO(measured.data)) as b:
        assert a.size == (640, 480)
        shift = phase_correlate(grey(a), grey(b))
    assert shift.dx == pytest.approx(-16.0 * math.cos(math.radians(2.0)), abs=0.5)


def test_options_report_every_problem() -> None:
    _options, errors = parse_options(
        {
            "defect": "hole",
            "defect_size": 0,
            "defect_layers": [0, "a"],
            "pixel_noise": "x",
            "true_mounting": {"scale": -1},
            "extra": 1,
        }
    )
    keys = {key for key, _ in errors}
    assert keys == {
        "defect",
        "defect_size",
        "defect_layers",
        "pixel_noise",
        "true_mounting.scale",
        "extra",
    }
    good, none = parse_options({"defect": "unprinted", "defect_layers": [5, 3, 3]})
    assert none == [] and good.defect_layers == (3, 5)
    assert parse_options(FakeToolheadOptions().to_dict()) == (FakeToolheadOptions(), [])
