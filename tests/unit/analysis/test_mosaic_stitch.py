"""Stitching fake toolhead shots, checked against a direct drawing of the same bed area."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from mosaic_support import MOUNTING, placement_errors, polylines, raster, scene, shots

from octoprint_layercapture.analysis.mosaic.departure import departure_map, heat_overlay
from octoprint_layercapture.analysis.mosaic.registration import grey
from octoprint_layercapture.analysis.mosaic.stitch import StitchOptions, stitch
from octoprint_layercapture.cameras.toolhead import FakeToolheadOptions, shot_offset

DEFECT = FakeToolheadOptions(defect="unprinted", defect_x=107.0, defect_y=94.0, defect_size=5.0)


def within_bounds(errors) -> bool:
    return statistics.median(errors) <= 1.0 and max(errors) <= 3.0


def test_shots_at_their_true_places_make_the_bed() -> None:
    of = scene(3)
    steps = []
    mosaic = stitch(
        shots(of),
        MOUNTING,
        toolpath=raster(polylines(of)),
        progress=lambda done, total: steps.append((done, total)),
    )
    errors = placement_errors(mosaic, of)
    assert within_bounds(errors), errors
    assert max(errors) < 0.5
    assert all(math.hypot(*p.correction) < 0.05 for p in mosaic.placements)
    assert steps[-1][0] == steps[-1][1] and len(steps) > 9
    assert mosaic.coverage.mean() > 0.8
    lattice = mosaic.lattice
    assert mosaic.image.size == lattice.size and lattice.scale == 16.0


@pytest.mark.parametrize(("size", "spacing"), [(3, 15.0), (5, 9.0)])
def test_refinement_undoes_placement_noise_of_up_to_a_millimetre(size: int, spacing: float) -> None:
    options = FakeToolheadOptions(placement_noise=1.0)
    of = scene(3)
    tiles = shots(of, size, spacing, options=options)
    plain = stitch(tiles, MOUNTING, StitchOptions(register=False))
    assert not within_bounds(placement_errors(plain, of))
    mosaic = stitch(tiles, MOUNTING, toolpath=raster(polylines(of)))
    errors = placement_errors(mosaic, of)
    assert within_bounds(errors), errors
    for placement in mosaic.placements:
        truth = shot_offset(options, 3, placement.index)
        assert math.dist(placement.correction, truth) < 0.1, (placement, truth)
    report = mosaic.registration()
    assert report["pairs_used"] >= size * size - 1 and report["median_residual_px"] < 1.0


def test_without_the_toolpath_only_the_overall_place_is_unknown() -> None:
    options = FakeToolheadOptions(placement_noise=1.0)
    of = scene(3)
    mosaic = stitch(shots(of, options=options), MOUNTING)
    assert mosaic.toolpath_offset is None
    errors = placement_errors(mosaic, of)
    # every shot is off by the same amount: the noise's mean, which overlaps cannot see
    assert max(errors) - min(errors) < 1.0


def test_corrections_never_exceed_the_bound() -> None:
    of = scene(3)
    tiles = shots(of, options=FakeToolheadOptions(placement_noise=1.0))
    mosaic = stitch(tiles, MOUNTING, StitchOptions(max_correction=0.3))
    assert all(math.hypot(*p.correction) <= 0.3 + 1e-9 for p in mosaic.placements)
    assert any(p.bounded for p in mosaic.placements)


def test_shots_of_another_size_than_the_mounting_says_are_refused() -> None:
    tiles = shots(scene(3), 1)
    with pytest.raises(ValueError, match="640x480 pixels, the mounting says 800x480"):
        stitch(tiles, type(MOUNTING)(**{**MOUNTING.to_dict(), "image_width": 800}))
    with pytest.raises(ValueError, match="no shots"):
        stitch([], MOUNTING)


def test_the_departure_map_finds_an_unprinted_square_within_a_millimetre() -> None:
    of = scene(3, DEFECT)
    mosaic = stitch(shots(of, options=DEFECT), MOUNTING, toolpath=raster(polylines(of)))
    found = departure_map(grey(mosaic.image), mosaic.coverage, mosaic.lattice, polylines(of))
    assert found.error is None and len(found.regions) == 1
    region = found.regions[0]
    assert region.kind == "unprinted"
    assert math.dist(region.centre, (107.0, 94.0)) <= 1.0
    assert 4.0 <= region.area <= 30.0
    assert 0 < found.score < 0.1
    heat = np.asarray(heat_overlay(found, mosaic.lattice))
    col, row = mosaic.lattice.px(107.0, 94.0)
    assert heat[int(row), int(col), 0] > 150 and heat[int(row), int(col), 3] > 0
    assert heat[10, 10, 3] == 0


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_a_layer_as_planned_has_no_departure(layer: int) -> None:
    noisy = FakeToolheadOptions(placement_noise=0.8)
    of = scene(layer)
    tiles = shots(of, options=noisy, layer=layer)
    mosaic = stitch(tiles, MOUNTING, toolpath=raster(polylines(of)))
    found = departure_map(grey(mosaic.image), mosaic.coverage, mosaic.lattice, polylines(of))
    assert found.error is None and found.regions == [] and found.score == 0
    assert found.toolpath_seen == pytest.approx(1.0)


def test_a_layer_that_does_not_stand_out_is_not_judged() -> None:
    of = scene(3)
    mosaic = stitch(shots(of), MOUNTING)
    dark = np.full(mosaic.coverage.shape, 60.0)
    found = departure_map(dark, mosaic.coverage, mosaic.lattice, polylines(of))
    assert found.score is None and "does not stand out" in (found.error or "")
    nothing = departure_map(dark, mosaic.coverage, mosaic.lattice, [])
    assert nothing.error == "the layer's toolpath has no extrusion to compare with"
