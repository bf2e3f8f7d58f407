from __future__ import annotations

import numpy as np
import pytest
from mosaic_support import scene

from octoprint_layercapture.analysis.mosaic.calibration import (
    MAX_RESIDUAL_PX,
    calibrate,
    displacements,
    fit_mounting,
)
from octoprint_layercapture.analysis.mosaic.registration import (
    MIN_TEXTURE,
    grey,
    phase_correlate,
    texture,
)
from octoprint_layercapture.cameras.mounting import CameraMounting, similarity
from octoprint_layercapture.cameras.toolhead import Scene, render_view


def frames(of: Scene, mounting: CameraMounting, head, step: float = 2.0, noise: float = 3.0):
    reference = grey(render_view(of, mounting, head, noise, 0))
    shots = [
        (d, grey(render_view(of, mounting, (head[0] + d[0], head[1] + d[1]), noise, i + 1)))
        for i, d in enumerate(displacements(step))
    ]
    return reference, shots


def test_known_shifts_are_measured_to_a_tenth_of_a_pixel() -> None:
    rng = np.random.default_rng(5)
    picture = rng.normal(128, 30, (240, 320))
    for dx, dy in ((7, -3), (-20, 11), (0, 0)):
        moved = np.roll(picture, (dy, dx), axis=(0, 1))
        shift = phase_correlate(picture, moved)
        assert (shift.dx, shift.dy) == pytest.approx((dx, dy), abs=0.1)
        assert shift.peak > 0.5 and shift.trusted


@pytest.mark.parametrize(
    ("scale", "rotation", "mirrored"),
    [(16.0, 0.0, False), (17.3, 2.5, True), (11.0, -91.0, False), (24.0, 45.0, True)],
)
@pytest.mark.parametrize("where", ["bare bed", "printed part"])
def test_calibration_recovers_scale_rotation_and_mirroring(
    scale: float, rotation: float, mirrored: bool, where: str
) -> None:
    mounting = CameraMounting("toolhead", scale=scale, rotation=rotation, mirrored=mirrored)
    of, head = (Scene(), (40.0, 60.0)) if where == "bare bed" else (scene(3), (88.0, 92.0))
    result = calibrate(*frames(of, mounting, head))
    assert result.ok, result.reason
    assert result.scale == pytest.approx(scale, rel=0.01)
    assert abs((result.rotation - rotation + 180) % 360 - 180) < 0.5
    assert result.mirrored is mirrored
    assert result.residual_px is not None and result.residual_px < MAX_RESIDUAL_PX
    assert len(result.to_dict()["measurements"]) == 5


def test_a_blank_surface_is_refused_for_its_lack_of_texture() -> None:
    rng = np.random.default_rng(1)
    blank = np.full((480, 640), 120.0) + rng.normal(0, 3, (480, 640))
    assert texture(blank) < MIN_TEXTURE
    result = calibrate(blank, [((2.0, 0.0), blank), ((0.0, 2.0), blank)])
    assert not result.ok and result.reason.startswith("too little texture")
    assert result.scale is None


def test_a_shift_too_large_to_measure_is_refused() -> None:
    mounting = CameraMounting("toolhead", scale=16.0)
    reference, _ = frames(Scene(), mounting, (50.0, 50.0))
    far = [((30.0, 0.0), grey(render_view(Scene(), mounting, (80.0, 50.0), 3.0, 9)))]
    result = calibrate(reference, far)
    assert not result.ok and "could not be measured" in result.reason


def test_the_fit_needs_both_axes_and_reports_its_residual() -> None:
    with pytest.raises(ValueError, match="both axes"):
        fit_mounting([(1.0, 0.0), (2.0, 0.0)], [(-10.0, 0.0), (-20.0, 0.0)])
    a = np.asarray(similarity(10.0, 30.0, False)).reshape(2, 2)
    moves = [(1.0, 0.0), (0.0, 1.0), (-1.0, 1.0)]
    shifts = [tuple(-(a @ np.asarray(d))) for d in moves]
    scale, rotation, mirrored, residual = fit_mounting(moves, shifts)
    assert (scale, rotation, mirrored) == pytest.approx((10.0, 30.0, False))
    assert residual == pytest.approx(0.0, abs=1e-9)
    skewed = [shifts[0], shifts[1], (shifts[2][0] + 4.0, shifts[2][1])]
    assert fit_mounting(moves, skewed)[3] > 1.0
