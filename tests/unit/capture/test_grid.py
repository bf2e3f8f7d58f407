from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octoprint_layercapture.capture.grid import (
    GridPlan,
    GridPoint,
    path_length,
    plan_grid,
    travel_distance,
)
from octoprint_layercapture.settings import Bounds

BED = Bounds(0.0, 0.0, 235.0, 235.0, 250.0)
CORNERS = [(0, 0), (235, 0), (0, 235), (235, 235)]


def by_index(plan: GridPlan):
    return {p.index: p for p in plan.points}


def test_default_3x3_grid_positions_are_row_major_from_front_left():
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
    assert plan.count == 9
    assert len(plan.points) == 9
    assert plan.skipped == ()
    assert plan.capture_z == 5.6
    assert not plan.z_raised_for_clearance
    points = by_index(plan)
    assert sorted(points) == list(range(9))
    for index, p in points.items():
        assert (p.row, p.col) == divmod(index, 3)
        assert p.x == 105 + 20 * p.col
        assert p.y == 85 + 20 * p.row
        assert p.z == 5.6
    assert (points[0].x, points[0].y) == (105, 85)  # front-left
    assert (points[2].x, points[2].y) == (145, 85)  # front-right
    assert (points[6].x, points[6].y) == (105, 125)  # back-left
    assert (points[4].x, points[4].y) == (125, 105)  # centre


def test_snake_visiting_order_without_start():
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
    assert [p.index for p in plan.points] == [0, 1, 2, 5, 4, 3, 6, 7, 8]


def test_5x5_snake_order():
    plan = plan_grid(125, 105, 10, 5, 0.2, 5, BED)
    order = [p.index for p in plan.points]
    assert order[:10] == [0, 1, 2, 3, 4, 9, 8, 7, 6, 5]
    assert order[-5:] == [20, 21, 22, 23, 24]
    # consecutive points are always neighbours: no jump across the grid
    for a, b in zip(plan.points, plan.points[1:]):
        assert math.dist((a.x, a.y), (b.x, b.y)) == pytest.approx(10)


def test_1x1_grid_is_the_centre():
    plan = plan_grid(125, 105, 20, 1, 3.0, 5, BED)
    assert plan.points == (GridPoint(0, 0, 0, 125.0, 105.0, 8.0),)
    assert plan.count == 1


def test_1x1_grid_accepts_zero_spacing():
    assert len(plan_grid(125, 105, 0, 1, 3.0, 5, BED).points) == 1


def test_out_of_bounds_points_are_skipped_with_reasons():
    plan = plan_grid(225, 105, 20, 3, 0.6, 5, BED)
    assert [s.index for s in plan.skipped] == [2, 5, 8]
    assert plan.skipped[0].reason == "X 245.0 is beyond bed max X 235.0"
    assert (plan.skipped[0].x, plan.skipped[0].y, plan.skipped[0].z) == (245.0, 85.0, 5.6)
    assert sorted(by_index(plan)) == [0, 1, 3, 4, 6, 7]
    assert plan.count == 9


def test_points_below_min_and_both_axes():
    plan = plan_grid(5, 5, 10, 3, 0.2, 5, BED)
    reasons = {s.index: s.reason for s in plan.skipped}
    assert reasons[0] == "X -5.0 is below bed min X 0.0; Y -5.0 is below bed min Y 0.0"
    assert reasons[1] == "Y -5.0 is below bed min Y 0.0"
    assert reasons[3] == "X -5.0 is below bed min X 0.0"
    assert sorted(by_index(plan)) == [4, 5, 7, 8]


def test_points_on_the_edge_are_inside():
    plan = plan_grid(20, 20, 20, 3, 0.2, 5, Bounds(0, 0, 40, 40))
    assert len(plan.points) == 9
    assert plan.skipped == ()


def test_snake_keeps_going_around_skipped_points():
    plan = plan_grid(225, 105, 20, 3, 0.6, 5, BED)
    assert [p.index for p in plan.points] == [0, 1, 4, 3, 6, 7]


def test_capture_z_above_max_z_skips_everything():
    plan = plan_grid(125, 105, 20, 3, 255.0, 5, BED)
    assert plan.points == ()
    assert len(plan.skipped) == 9
    assert {s.reason for s in plan.skipped} == {"capture Z 260.0 is above max Z 250.0"}


def test_capture_z_at_max_z_is_allowed():
    plan = plan_grid(125, 105, 20, 3, 245.0, 5, BED)
    assert len(plan.points) == 9


def test_max_z_and_xy_reasons_are_combined():
    plan = plan_grid(225, 105, 20, 3, 255.0, 5, BED)
    reasons = {s.index: s.reason for s in plan.skipped}
    assert reasons[2] == "X 245.0 is beyond bed max X 235.0; capture Z 260.0 is above max Z 250.0"


def test_no_bounds_skips_nothing():
    plan = plan_grid(1000, -1000, 50, 5, 900.0, 5, None)
    assert len(plan.points) == 25
    assert plan.skipped == ()


def test_bounds_without_max_z_never_skip_for_z():
    plan = plan_grid(125, 105, 20, 3, 5000.0, 5, Bounds(0, 0, 235, 235))
    assert len(plan.points) == 9


@pytest.mark.parametrize(
    ("offset", "clearance", "expected_z", "raised"),
    [
        (5.0, 1.0, 8.0, False),
        (1.0, 1.0, 4.0, False),
        (0.0, 1.0, 4.0, True),
        (0.5, 1.0, 4.0, True),
        (-2.0, 1.0, 4.0, True),
        (0.0, 0.0, 3.0, False),
        (2.0, 3.0, 6.0, True),
    ],
)
def test_capture_z_respects_the_minimum_clearance(offset, clearance, expected_z, raised):
    plan = plan_grid(125, 105, 20, 3, 3.0, offset, BED, min_clearance=clearance)
    assert plan.capture_z == expected_z
    assert plan.z_raised_for_clearance is raised
    assert all(p.z == expected_z for p in plan.points)


def test_rounding_never_brings_capture_z_below_the_clearance():
    plan = plan_grid(125, 105, 20, 1, 0.12345, 0.0, BED, min_clearance=1.0)
    assert plan.capture_z == 1.124
    assert plan.capture_z >= 0.12345 + 1.0


def test_coordinates_are_rounded_to_three_decimals():
    plan = plan_grid(100.12345, 50.98765, 0.1, 3, 0.2 + 0.1, 5, BED)
    for p in plan.points:
        assert p.x == round(p.x, 3) and p.y == round(p.y, 3)
    assert plan.capture_z == 5.3
    assert by_index(plan)[0].x == 100.023
    assert by_index(plan)[8].y == 51.088


def test_plan_records_its_inputs():
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
    assert (plan.size, plan.spacing, plan.center_x, plan.center_y) == (3, 20.0, 125.0, 105.0)
    assert (plan.layer_z, plan.z_offset) == (0.6, 5.0)
    assert plan.point(4) == GridPoint(4, 1, 1, 125.0, 105.0, 5.6)
    assert plan.point(99) is None


@pytest.mark.parametrize(
    ("start", "first", "order"),
    [
        ((0, 0), 0, [0, 1, 2, 5, 4, 3, 6, 7, 8]),
        ((235, 0), 2, [2, 1, 0, 3, 4, 5, 8, 7, 6]),
        ((0, 235), 6, [6, 7, 8, 5, 4, 3, 0, 1, 2]),
        ((235, 235), 8, [8, 7, 6, 3, 4, 5, 2, 1, 0]),
        ((146, 80), 2, None),
    ],
)
def test_snake_starts_at_the_best_corner_for_the_start(start, first, order):
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED, start_xy=start)
    assert plan.points[0].index == first
    if order is not None:
        assert [p.index for p in plan.points] == order
    # whatever the order: every position once, indexes still row-major
    assert sorted(p.index for p in plan.points) == list(range(9))
    for p in plan.points:
        assert (p.row, p.col) == divmod(p.index, 3)


def test_start_at_the_centre_keeps_the_default_order():
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED, start_xy=(125, 105))
    assert [p.index for p in plan.points] == [0, 1, 2, 5, 4, 3, 6, 7, 8]


def test_start_corner_takes_skipped_points_into_account():
    # the front-right corner (index 2) is off the bed: the nearest visited one starts
    plan = plan_grid(225, 105, 20, 3, 0.6, 5, BED, start_xy=(235, 0))
    assert plan.points[0].index == 1
    assert sorted(p.index for p in plan.points) == [0, 1, 3, 4, 6, 7]


def test_travel_distance():
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
    # start at the front-left point: 8 hops of 20 mm, then back from the back-right corner
    expected = 8 * 20 + math.hypot(40, 40)
    assert travel_distance(plan, (105, 85)) == pytest.approx(expected)
    assert travel_distance(plan, (105, 65)) == pytest.approx(20 + 160 + math.hypot(40, 60))


def test_travel_distance_of_an_empty_plan_is_zero():
    plan = plan_grid(125, 105, 20, 3, 255.0, 5, BED)
    assert travel_distance(plan, (0, 0)) == 0.0


def test_start_corner_shortens_travel():
    start = (230, 230)
    near = plan_grid(125, 105, 20, 3, 0.6, 5, BED, start_xy=start)
    default = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
    first_leg = math.dist(start, (near.points[0].x, near.points[0].y))
    assert first_leg < math.dist(start, (default.points[0].x, default.points[0].y))
    assert travel_distance(near, start) <= travel_distance(default, start) + 1e-9


def test_start_corner_minimises_the_round_trip():
    for start in [(0, 0), (300, 20), (125, 400), (110, 90), (-50, 200), (150, 100)]:
        plans = [plan_grid(125, 105, 20, 3, 0.6, 5, BED, start_xy=c) for c in CORNERS]
        chosen = plan_grid(125, 105, 20, 3, 0.6, 5, BED, start_xy=start)
        best = min(travel_distance(p, start) for p in plans)
        assert travel_distance(chosen, start) == pytest.approx(best)


def test_of_two_equal_round_trips_the_nearer_corner_starts():
    start = (140, 120)
    fl = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
    assert fl.points[0].index == 0
    # opposite corners always tie on the round trip (the 3x3 snake ends diagonally
    # across); near the back-right corner, BR and FL tie and the nearer BR starts
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED, start_xy=start)
    assert plan.points[0].index == 8
    assert travel_distance(plan, start) == pytest.approx(travel_distance(fl, start))


def test_path_length():
    assert path_length([(0, 0), (3, 4), (3, 0)]) == 9
    assert path_length([(1, 1)]) == 0
    assert path_length([]) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": -3},
        {"size": 2.5},
        {"size": True},
        {"spacing": 0},
        {"spacing": -1},
        {"spacing": math.nan},
        {"center_x": math.inf},
        {"layer_z": math.nan},
        {"min_clearance": -1},
    ],
)
def test_invalid_input_is_refused(kwargs):
    args = {
        "center_x": 125,
        "center_y": 105,
        "spacing": 20,
        "size": 3,
        "layer_z": 0.6,
        "z_offset": 5,
        "bounds": BED,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        plan_grid(**args)


def test_non_numeric_input_is_refused():
    with pytest.raises(TypeError):
        plan_grid("125", 105, 20, 3, 0.6, 5, BED)


def test_plan_is_frozen():
    plan = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
    with pytest.raises(AttributeError):
        plan.capture_z = 0  # type: ignore[misc]


coord = st.floats(min_value=-500, max_value=500, allow_nan=False, allow_infinity=False)


@st.composite
def bounds_strategy(draw):
    x0, x1 = sorted((draw(coord), draw(coord)))
    y0, y1 = sorted((draw(coord), draw(coord)))
    max_z = draw(st.none() | st.floats(min_value=1, max_value=500))
    return Bounds(x0, y0, x1, y1, max_z)


@settings(max_examples=300, deadline=None)
@given(
    cx=coord,
    cy=coord,
    spacing=st.floats(min_value=0.001, max_value=200),
    size=st.sampled_from([1, 3, 5]),
    bounds=bounds_strategy(),
    layer_z=st.floats(min_value=0, max_value=400),
    offset=st.floats(min_value=-10, max_value=100),
    clearance=st.floats(min_value=0, max_value=20),
    start=st.none() | st.tuples(coord, coord),
)
def test_property_planned_points_are_safe(
    cx, cy, spacing, size, bounds, layer_z, offset, clearance, start
):
    plan = plan_grid(cx, cy, spacing, size, layer_z, offset, bounds, clearance, start)
    assert plan.capture_z >= layer_z + clearance
    assert plan.capture_z >= layer_z + offset - 0.0005
    for p in plan.points:
        assert bounds.contains_xy(p.x, p.y)
        assert p.z == plan.capture_z
        if bounds.max_z is not None:
            assert p.z <= bounds.max_z
        assert (p.row, p.col) == divmod(p.index, size)
    indexes = [p.index for p in plan.points] + [s.index for s in plan.skipped]
    assert sorted(indexes) == list(range(size * size))
    assert all(s.reason for s in plan.skipped)
    # the snake only ever moves on to the same or a neighbouring row
    rows = [p.row for p in plan.points]
    assert all(abs(a - b) <= 1 for a, b in zip(rows, rows[1:]))
    if start is not None:
        others = [
            plan_grid(cx, cy, spacing, size, layer_z, offset, bounds, clearance, c)
            for c in (None, *_corners_of(plan))
        ]
        best = min(travel_distance(o, start) for o in others)
        assert travel_distance(plan, start) <= best + 1e-6


def _corners_of(plan: GridPlan):
    if not plan.points:
        return []
    xs = [p.x for p in plan.points]
    ys = [p.y for p in plan.points]
    return [(x, y) for x in (min(xs) - 1e4, max(xs) + 1e4) for y in (min(ys) - 1e4, max(ys) + 1e4)]
