from __future__ import annotations

import threading

import pytest

from octoprint_layercapture.capture.estimate import (
    ReportedLimits,
    motion_limits,
    trapezoid_seconds,
)
from octoprint_layercapture.capture.status import (
    SNAPSHOT_GUESS_S,
    STOP_AND_CONTINUE_GUESS_S,
    LiveStatus,
    next_every_n,
    plan_layer_time,
    planned_layer_seconds,
)
from octoprint_layercapture.settings import DEFAULTS, Bounds, validate

BED = Bounds(0.0, 0.0, 200.0, 200.0, 200.0)


@pytest.mark.parametrize(
    "layer, every_n, captured, expected",
    [
        (0, 3, (), 3),
        (1, 3, (), 3),
        (3, 3, (), 3),  # layer 3 is printing: its capture is still ahead
        (3, 3, (3,), 6),
        (4, 3, (3,), 6),
        (7, 1, (1, 2, 3, 4, 5, 6), 7),
        (5, 0, (), None),
    ],
)
def test_next_every_n(layer, every_n, captured, expected):
    assert next_every_n(layer, every_n, captured) == expected


def test_planned_seconds_grow_with_the_grid_and_the_delays():
    def planned(**values):
        return planned_layer_seconds(
            validate({**DEFAULTS, "grid_center_x": 100, "grid_center_y": 100, **values}, BED),
            BED,
        )

    one = planned(grid_size=1, retract_length=0, z_offset=5, z_speed=600, capture_delay=0)
    # 1 point at the centre: Z up and down 2 x 5 mm, asked at 10 mm/s but at most Marlin's
    # stock 5 mm/s and 100 mm/s², + one snapshot + stop/continue
    z = trapezoid_seconds(5.0, 5.0, 100.0)
    assert one == pytest.approx(2 * z + SNAPSHOT_GUESS_S + STOP_AND_CONTINUE_GUESS_S, abs=0.01)
    fast_z = motion_limits(ReportedLimits(max_feedrate={"x": 300, "y": 300, "z": 20, "e": 25}))
    faster = planned_layer_seconds(
        validate({**DEFAULTS, "grid_center_x": 100, "grid_center_y": 100, "grid_size": 1,
                  "retract_length": 0, "capture_delay": 0}, BED),
        BED,
        fast_z,
    )  # fmt: skip
    assert faster == pytest.approx(
        2 * trapezoid_seconds(5.0, 10.0, 100.0) + SNAPSHOT_GUESS_S + STOP_AND_CONTINUE_GUESS_S,
        abs=0.01,
    )
    nine = planned(grid_size=3, retract_length=0, capture_delay=0)
    assert nine > one + 8 * SNAPSHOT_GUESS_S
    assert planned(grid_size=3, retract_length=0, capture_delay=1.0) == pytest.approx(
        nine + 9.0, abs=0.02
    )


def test_the_plan_says_what_it_is_made_of():
    values = validate(
        {**DEFAULTS, "grid_center_x": 100, "grid_center_y": 100, "capture_delay": 0.5}, BED
    )
    plan = plan_layer_time(values, BED)
    assert plan.total_s == planned_layer_seconds(values, BED)
    assert plan.settle_s == pytest.approx(9 * 0.5)
    assert plan.guessed_s == pytest.approx(9 * SNAPSHOT_GUESS_S + STOP_AND_CONTINUE_GUESS_S)
    # Z up and down 5 mm at (stock Marlin's) 5 mm/s, the 1 mm retract, XY at 100 mm/s
    assert plan.moves_s > 2.0 + 1 / 25
    parts = plan.parts()
    assert parts["moves_s"] + parts["settle_s"] + parts["guessed_s"] == pytest.approx(
        plan.total_s, abs=0.02
    )
    assert set(parts) == {"moves_s", "settle_s", "guessed_s", "limits"}
    assert "Marlin's stock values" in parts["limits"]


def test_planned_seconds_when_every_point_is_outside():
    values = validate({**DEFAULTS, "grid_center_x": 100, "grid_center_y": 100}, None)
    assert planned_layer_seconds(values, Bounds(0, 0, 10, 10)) == STOP_AND_CONTINUE_GUESS_S


def test_a_print_from_waiting_to_captured_keeps_its_facts():
    status = LiveStatus()
    status.begin_print("box.gcode", 4.5)
    snap = status.update({"state": "waiting", "layer": 0})
    assert snap["state"] == "waiting" and snap["estimate_s"] == 4.5
    assert snap["estimate_source"] == "plan" and snap["gcode_file"] == "box.gcode"
    assert status.set_progress(2, 3, None)["next_layer"] == 3
    assert status.set_progress(2, 3, None) is None  # unchanged: nothing to send
    snap = status.update(
        {"state": "capturing", "layer": 3, "phase": "moving", "index": 4, "count": 9}
    )
    assert (snap["index"], snap["count"], snap["current_layer"]) == (4, 9, 2)
    snap = status.update(
        {"state": "captured", "layer": 3, "images": 9, "failures": [], "total_s": 2.0}
    )
    assert "phase" not in snap and "index" not in snap
    assert (snap["estimate_s"], snap["estimate_source"]) == (2.0, "measured")
    snap = status.update(
        {"state": "captured", "layer": 6, "images": 8, "failures": ["snapshot timed out"],
         "total_s": 3.0}
    )  # fmt: skip
    assert snap["estimate_s"] == 2.5 and snap["measured_layers"] == 2
    assert snap["last_error"] == {"message": "snapshot timed out", "layer": 6}
    snap = status.update({"state": "idle", "reason": "PrintDone"})
    assert snap["state"] == "idle" and "next_layer" not in snap
    assert snap["last_error"]["layer"] == 6 and snap["estimate_s"] == 2.5  # until next print
    status.begin_print("other.gcode", None)
    snap = status.snapshot()
    assert snap["last_error"] is None and "estimate_s" not in snap


def test_errors_become_the_last_error():
    status = LiveStatus()
    snap = status.update({"state": "unsupported", "message": "SD card prints are not captured"})
    assert snap["last_error"]["message"] == "SD card prints are not captured"
    snap = status.update({"state": "error", "layer": 9})
    assert snap["last_error"] == {"message": "capture failed", "layer": 9}


def test_updates_from_several_threads():
    status = LiveStatus()
    status.begin_print("x.gcode", 1.0)

    def capture(layer: int) -> None:
        for _ in range(50):
            status.update({"state": "capturing", "layer": layer, "index": 1, "count": 9})
            status.update({"state": "captured", "layer": layer, "total_s": 1.0, "images": 9})

    threads = [threading.Thread(target=capture, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert status.snapshot()["measured_layers"] == 200
