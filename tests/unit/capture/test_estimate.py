from __future__ import annotations

import math

import pytest

from octoprint_layercapture.capture.estimate import (
    STOCK,
    Move,
    ReportedLimits,
    motion_limits,
    move_seconds,
    parse_reported_limits,
    profile_feedrates,
    sequence_moves,
    sequence_seconds,
    trapezoid_seconds,
)

MARLIN_M503 = [
    "echo:; Maximum feedrates (units/s):",
    "echo:  M203 X500.00 Y500.00 Z12.00 E120.00",
    "echo:; Maximum Acceleration (units/s2):",
    "echo:  M201 X2000.00 Y2000.00 Z200.00 E5000.00",
    "echo:; Acceleration (units/s2): P<print_accel> R<retract_accel> T<travel_accel>",
    "echo:  M204 P1250.00 R1500.00 T1000.00",
    "ok",
]


def test_a_long_move_cruises_and_pays_one_ramp():
    # 100 mm at 100 mm/s, 1000 mm/s²: ramps of 5 mm each way, 0.1 s each; 90 mm cruising
    assert trapezoid_seconds(100, 100, 1000) == pytest.approx(0.9 + 0.2)


def test_a_short_move_never_reaches_its_speed():
    # 4 mm at 1000 mm/s²: accelerate 2 mm, decelerate 2 mm
    assert trapezoid_seconds(4, 100, 1000) == pytest.approx(2 * math.sqrt(0.002 * 2))


def test_nothing_to_move_takes_no_time():
    assert trapezoid_seconds(0, 100, 1000) == 0
    assert move_seconds(Move(0, 0, 0, 0, 6000), STOCK) == 0


def test_an_axis_limit_slows_the_whole_move():
    # a Z move at F6000 runs at Z's 5 mm/s and 100 mm/s² on stock Marlin
    assert move_seconds(Move(0, 0, 5, 0, 6000), STOCK) == pytest.approx(
        trapezoid_seconds(5, 5, 100)
    )
    # a diagonal XY move: the feed rate applies to its length
    assert move_seconds(Move(30, 40, 0, 0, 6000), STOCK) == pytest.approx(
        trapezoid_seconds(50, 100, 3000)
    )


def test_the_unretract_rides_on_the_lowering_at_its_z_length():
    lower = Move(0, 0, -5, 1.0, 600)
    assert move_seconds(lower, STOCK) == pytest.approx(trapezoid_seconds(5, 5, 100))
    # a pure E move uses the retract acceleration
    retract = Move(0, 0, 0, -1.0, 2100)
    assert move_seconds(retract, STOCK) == pytest.approx(trapezoid_seconds(1, 25, 3000))


def test_marlins_report_is_read():
    reported = parse_reported_limits(MARLIN_M503)
    assert reported.max_feedrate == {"x": 500, "y": 500, "z": 12, "e": 120}
    assert reported.max_acceleration == {"x": 2000, "y": 2000, "z": 200, "e": 5000}
    assert (reported.travel_acceleration, reported.retract_acceleration) == (1000, 1500)
    assert reported.print_acceleration == 1250


@pytest.mark.parametrize(
    "lines",
    [[], ["ok"], ["echo:  M203 X500 Y500"], ["echo:  M201 X0 Y0 Z0 E0"], ["M203 Xnan"]],
)
def test_incomplete_or_nonsense_reports_say_nothing(lines):
    reported = parse_reported_limits(lines)
    assert reported.max_feedrate is None and reported.max_acceleration is None


def test_limits_prefer_the_firmware_then_the_profile_then_stock_marlin():
    profile = {"axes": {a: {"speed": s} for a, s in zip("xyze", (9000, 9000, 300, 600))}}
    speeds = profile_feedrates(profile)
    assert speeds == {"x": 150, "y": 150, "z": 5, "e": 10}
    assert motion_limits(None, None) == STOCK
    from_profile = motion_limits(None, speeds)
    assert from_profile.max_feedrate == speeds
    assert from_profile.max_acceleration == STOCK.max_acceleration
    assert "profile" in from_profile.describe()
    reported = parse_reported_limits(MARLIN_M503)
    from_firmware = motion_limits(reported, speeds)
    assert from_firmware.max_feedrate["z"] == 12 and from_firmware.travel_acceleration == 1000
    assert "M203" in from_firmware.describe()
    only_m204 = motion_limits(ReportedLimits(travel_acceleration=800.0), None)
    assert only_m204.travel_acceleration == 800 and only_m204.retract_acceleration == 3000


@pytest.mark.parametrize(
    "profile",
    [None, {}, {"axes": {}}, {"axes": {"x": {"speed": "fast"}}}, {"axes": {"x": {"speed": 0}}}],
)
def test_a_profile_without_usable_speeds_gives_none(profile):
    assert profile_feedrates(profile) is None


def test_sequence_moves_follow_the_capture_path():
    moves = sequence_moves(
        (10.0, 20.0, 0.6),
        [(30.0, 20.0), (30.0, 40.0)],
        5.6,
        movement_speed=6000,
        z_speed=600,
        retract_length=1.0,
        retract_speed=2100,
    )
    assert moves == [
        Move(0, 0, 0, -1.0, 2100),
        Move(0, 0, 5.0, 0, 600),
        Move(20.0, 0.0, 0, 0, 6000),
        Move(0.0, 20.0, 0, 0, 6000),
        Move(-20.0, -20.0, 0, 0, 6000),
        Move(0, 0, -5.0, 1.0, 600),
    ]
    # stock Marlin: Z at 5 mm/s dominates the 1x... path
    seconds = sequence_seconds(moves, STOCK)
    z = 2 * trapezoid_seconds(5.0, 5.0, 100.0)
    assert seconds > z
    assert seconds == pytest.approx(sum(move_seconds(m, STOCK) for m in moves))
