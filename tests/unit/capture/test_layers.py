"""Layer detection (octoprint_layercapture.capture.layers): pure, no OctoPrint needed."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octoprint_layercapture.capture.firmware import ModeHistory
from octoprint_layercapture.capture.layers import (
    VASE_MIN_MOVES,
    LayerTargets,
    LayerTracker,
    LayerTrigger,
    MotionState,
)

Fired = List[Tuple[int, LayerTrigger]]  # (line index, trigger)


def targets(every_n: int = 0, z_heights: Sequence[float] = (), min_h: float = 0.05):
    return LayerTargets(every_n=every_n, z_heights=tuple(z_heights), min_layer_height=min_h)


def run(lines: Sequence[str], tgt: LayerTargets) -> Tuple[LayerTracker, Fired]:
    """Feed lines like the plugin does (``@LAYERCAPTURE`` lines go to feed_marker)."""
    tracker = LayerTracker(tgt)
    fired: Fired = []
    for index, line in enumerate(lines):
        if line.upper().startswith("@LAYERCAPTURE"):
            trigger = tracker.feed_marker(line[len("@LAYERCAPTURE") :].strip())
        else:
            trigger = tracker.feed(line)
        if trigger is not None:
            fired.append((index, trigger))
    assert tracker._errors == 0
    return tracker, fired


def layers_of(fired: Fired) -> List[int]:
    return [trigger.layer for _, trigger in fired]


class Job:
    """A small slicer-like file: start G-code, square layers, end G-code.

    ``first_extrusion[k]`` is the line index of layer k's first extruding move (1-based k).
    """

    def __init__(
        self,
        heights: Sequence[float],
        *,
        relative_e: bool = True,
        zhop: float = 0.0,
        purge_z: Optional[float] = None,
        reset_e_each_layer: bool = False,
        markers: Optional[str] = None,  # None, "params" or "bare"
    ) -> None:
        self.lines: List[str] = []
        self.first_extrusion: Dict[int, int] = {}
        self.relative_e = relative_e
        self.e = 0.0
        add = self.lines.append
        add("M140 S60")
        add("M104 S215")
        add("G28")
        add("G90")
        add("M83" if relative_e else "M82")
        add("G92 E0")
        add("G1 Z5 F3000")
        if purge_z is not None:
            add(f"G1 X5 Y5 Z{purge_z:g} F3000")
            add(self.extrude(5, 100, 9.0, "F1000"))
            add(self.extrude(5.4, 100, 3.0))
            add(self.retract(-0.8))
        for number, z in enumerate(heights, start=1):
            if markers == "params":
                add(f"@LAYERCAPTURE {number - 1} {z:g}")
            elif markers == "bare":
                add("@LAYERCAPTURE")
            if reset_e_each_layer:
                add("G92 E0")
                self.e = 0.0
            if zhop:
                add(self.retract(-0.8))
                add(f"G1 Z{z + zhop:.3f} F720")
                add("G1 X20 Y20 F9000")
                add(f"G1 Z{z:.3f} F720")
                add(self.retract(0.8))
            else:
                add(f"G1 Z{z:.3f} F720")
                add("G1 X20 Y20 F9000")
            self.first_extrusion[number] = len(self.lines)
            add(self.extrude(60, 20, 1.5, "F1800"))
            add(self.extrude(60, 60, 1.5))
            add(self.extrude(20, 60, 1.5))
            add(self.extrude(20, 20, 1.5))
            add("G1 X40 Y40 F9000")
        add(self.retract(-2))
        add("G91")
        add("G1 Z10 F600")
        add("G90")
        add("G1 X0 Y200 F3000")
        add("M104 S0")
        add("M84")

    def extrude(self, x: float, y: float, amount: float, extra: str = "") -> str:
        self.e += amount
        value = amount if self.relative_e else self.e
        return f"G1 X{x:g} Y{y:g} E{value:.5f} {extra}".rstrip()

    def retract(self, amount: float) -> str:
        self.e += amount
        value = amount if self.relative_e else self.e
        return f"G1 E{value:.5f} F2100"


def heights(first: float, step: float, count: int) -> List[float]:
    return [round(first + step * i, 4) for i in range(count)]


# ---------------------------------------------------------------- layer counting


def test_layer_three_of_point_two_layers_is_at_z_point_six():
    job = Job(heights(0.2, 0.2, 10))
    tracker, fired = run(job.lines, targets(every_n=3))
    first = fired[0][1]
    assert (first.layer, first.z, first.next_z) == (3, 0.6, 0.8)
    assert first.source == "motion"
    assert first.reasons == ("every 3 layers",)
    assert tracker.layer == 10
    assert tracker.layer_z == pytest.approx(2.0)


def test_first_layer_height_differs():
    job = Job([0.3, *heights(0.5, 0.2, 8)])
    _, fired = run(job.lines, targets(every_n=3))
    assert [(t.layer, t.z) for _, t in fired] == [(3, 0.7), (6, pytest.approx(1.3))]


def test_every_three_triggers_on_first_extrusion_of_next_layer():
    job = Job(heights(0.2, 0.2, 10))
    tracker, fired = run(job.lines, targets(every_n=3))
    assert layers_of(fired) == [3, 6, 9]
    for index, trigger in fired:
        assert index == job.first_extrusion[trigger.layer + 1]
    assert tracker.captured_layers() == (3, 6, 9)


def test_state_includes_trigger_line_and_state_before_does_not():
    job = Job(heights(0.2, 0.2, 4))
    tracker = LayerTracker(targets(every_n=3))
    index = job.first_extrusion[4]
    for line in job.lines[:index]:
        assert tracker.feed(line) is None
    before = tracker.state
    trigger = tracker.feed(job.lines[index])  # "G1 X60 Y20 E1.5 F1800" at Z 0.8
    assert trigger is not None and trigger.layer == 3
    assert trigger.state_before == before
    assert (before.x, before.y, before.z) == (20.0, 20.0, 0.8)
    assert before.feedrate == 9000.0
    after = tracker.state
    assert (after.x, after.y, after.z, after.feedrate) == (60.0, 20.0, 0.8, 1800.0)
    assert after.e == pytest.approx(before.e + 1.5)
    assert tracker.layer == 4


def test_last_layer_and_end_lift_never_trigger():
    job = Job(heights(0.2, 0.2, 6))
    tracker, fired = run(job.lines, targets(every_n=3))
    assert layers_of(fired) == [3]  # layer 6 is the last: nothing starts after it
    assert tracker.layer == 6
    assert tracker.state.z == pytest.approx(11.2)  # the G91 end lift was tracked
    assert tracker.max_printed_z == pytest.approx(1.2)


def test_every_layer_and_off():
    job = Job(heights(0.2, 0.2, 5))
    _, fired = run(job.lines, targets(every_n=1))
    assert layers_of(fired) == [1, 2, 3, 4]
    assert fired[0][1].reasons == ("every layer",)
    _, fired = run(job.lines, targets(every_n=0))
    assert fired == []


def test_nothing_before_the_first_extrusion():
    tracker = LayerTracker(targets(every_n=1))
    for line in ("G28", "G1 Z0.2 F600", "G1 X10 Y10", "G1 Z0.4", "G1 X20 Y20 Z0.6"):
        assert tracker.feed(line) is None
    assert tracker.layer == 0
    assert tracker.layer_z is None
    assert tracker.max_printed_z is None


# ---------------------------------------------------------------- z-hops, travel, retracts


def test_zhop_equal_to_a_later_layer_height_never_triggers():
    # hops of 0.4: a hop from 0.2 goes to 0.6, the height of layer 3
    job = Job(heights(0.2, 0.2, 10), zhop=0.4)
    tracker, fired = run(job.lines, targets(every_n=3))
    assert layers_of(fired) == [3, 6, 9]
    assert [t.z for _, t in fired] == pytest.approx([0.6, 1.2, 1.8])
    for index, trigger in fired:
        assert index == job.first_extrusion[trigger.layer + 1]
    assert tracker.layer == 10


def test_zhop_with_travel_and_unretract_at_hop_height():
    lines = [
        "M83",
        "G1 Z0.2",
        "G1 X10 Y10 E1",
        "G1 E-1",
        "G1 Z0.8",  # hop
        "G1 X50 Y50",  # travel at hop height
        "G1 E1",  # unretract at hop height (no XY): not a layer
        "G1 Z0.2",
        "G1 X60 Y50 E1",  # still layer 1
        "G1 Z0.4",
        "G1 X10 Y10 E1",  # layer 2
    ]
    tracker, fired = run(lines, targets(every_n=1))
    assert [(t.layer, t.z) for _, t in fired] == [(1, 0.2)]
    assert fired[0][0] == 10
    assert tracker.layer == 2
    assert tracker.max_printed_z == pytest.approx(0.4)


def test_retracts_travels_and_wipes_do_not_make_layers():
    lines = [
        "M83",
        "G1 Z0.2",
        "G1 X10 Y10 E1",
        "G1 Z1.0",
        "G1 E0.8",  # unretract, no XY
        "G1 X12 Y12 E-0.5",  # wipe: negative E
        "G1 X30 Y30 E0",  # zero E
        "G0 X40 Y40",  # travel
    ]
    tracker, fired = run(lines, targets(every_n=1))
    assert fired == []
    assert tracker.layer == 1
    assert tracker.layer_z == pytest.approx(0.2)


def test_g0_with_e_and_arcs_extrude():
    lines = [
        "M83",
        "G0 Z0.2",
        "G0 X10 Y10 E1",  # G0 with E counts
        "G0 Z0.4",
        "G2 I5 J0 E2",  # full circle: no X/Y but a centre
        "G0 Z0.6",
        "G3 X20 Y10 R5 E1",
        "G0 Z0.8",
        "G2 E1",  # arc without end or centre: ignored
        "G1 I5 J5 E1",  # I/J on a line move: not an XY move
    ]
    tracker, fired = run(lines, targets(every_n=1))
    assert layers_of(fired) == [1, 2]
    assert tracker.layer == 3


# ---------------------------------------------------------------- modes


def test_relative_z_moves_with_g91():
    lines = [
        "G90",
        "M83",
        "G1 Z0.2",
        "G1 X10 Y10 E1",
        "G91",
        "G1 Z0.2",  # relative Z: 0.4
        "G1 X5 Y0 E1",  # relative move: never a layer
        "G90",
        "M83",
        "G1 X20 Y20 E1",  # absolute extrusion at 0.4: layer 2
        "G91",
        "G1 Z0.2",
        "G90",
        "G1 X30 Y30 E1",  # 0.6: layer 3, layer 2 complete
    ]
    tracker, fired = run(lines, targets(every_n=1))
    assert [(i, t.layer, t.z) for i, t in fired] == [(9, 1, 0.2), (13, 2, pytest.approx(0.4))]
    state = tracker.state
    assert state.z == pytest.approx(0.6)
    assert (state.x, state.y) == (30.0, 30.0)
    assert state.absolute_xyz
    # M83 then G90: Marlin 2 reads absolute E, Klipper/Prusa/RRF relative: unknown family
    assert state.absolute_e is None
    assert state.modes == ModeHistory("G90", "M83", e_last=False)


def test_g91_tracks_position_and_e_mode():
    tracker = LayerTracker(targets())
    for line in ("G92 X10 Y20 Z1 E5", "G91", "G1 X1.5 Y-2 Z0.5 E1", "G1 X-.5"):
        tracker.feed(line)
    state = tracker.state
    assert (state.x, state.y, state.z, state.e) == (11.0, 18.0, 1.5, 6.0)
    assert not state.absolute_xyz
    assert state.absolute_e is None  # G91 alone: E relative except on RepRapFirmware
    assert tracker.layer == 0  # relative extrusion never makes a layer
    assert tracker.max_printed_z == pytest.approx(1.5)  # but it is printed material
    tracker.feed("M82")
    assert not tracker.state.absolute_xyz
    assert tracker.state.absolute_e is None  # M82 under G91: relative on Klipper/Prusa


def test_relative_move_from_unknown_position_stays_unknown():
    tracker = LayerTracker(targets())
    tracker.feed("G91")
    tracker.feed("G1 Z5 X3")
    state = tracker.state
    assert (state.x, state.y, state.z) == (None, None, None)


@pytest.mark.parametrize("relative_e", [True, False])
def test_absolute_and_relative_e_files_agree(relative_e):
    job = Job(heights(0.2, 0.2, 10), relative_e=relative_e, zhop=0.4)
    tracker, fired = run(job.lines, targets(every_n=3))
    assert layers_of(fired) == [3, 6, 9]
    assert fired[-1][1].state_before.absolute_e is (not relative_e)
    # the end G-code's G90: absolute E for Marlin 2, still relative for the others
    assert tracker.state.absolute_e is (True if not relative_e else None)
    assert tracker.state.e == pytest.approx(job.e)


def test_g92_e0_resets_absolute_e():
    job = Job(heights(0.2, 0.2, 7), relative_e=False, reset_e_each_layer=True)
    tracker, fired = run(job.lines, targets(every_n=3))
    assert layers_of(fired) == [3, 6]
    assert tracker.layer == 7


def test_absolute_e_needs_e_to_grow():
    lines = ["M82", "G92 E10", "G1 Z0.2", "G1 X1 Y1 E11", "G1 Z0.4", "G1 X2 Y2 E11"]
    tracker, _ = run(lines, targets(every_n=1))
    assert tracker.layer == 1  # E11 -> E11 is no extrusion
    tracker.feed("G1 X3 Y3 E10.5")  # going back is a retraction
    assert tracker.layer == 1
    assert tracker.feed("G1 X4 Y4 E10.6") is not None  # grows again: layer 2 at 0.4
    assert tracker.layer == 2


def test_g92_sets_positions_and_g28_makes_them_unknown():
    tracker = LayerTracker(targets())
    tracker.feed("G92 X1 Y2 Z3 E4")
    assert tracker.state == MotionState(1.0, 2.0, 3.0, 4.0, True, None, None)
    tracker.feed("G92")  # no axis: nothing, like Marlin
    assert tracker.state.x == 1.0
    tracker.feed("G28 X")
    assert (tracker.state.x, tracker.state.y, tracker.state.z) == (None, 2.0, 3.0)
    tracker.feed("G28 W")  # Prusa: no axis named -> all
    assert (tracker.state.x, tracker.state.y, tracker.state.z, tracker.state.e) == (
        None,
        None,
        None,
        4.0,
    )
    tracker.feed("G1 X5 Y6 Z7")
    tracker.feed("G29")
    assert (tracker.state.x, tracker.state.y, tracker.state.z) == (None, None, None)


def test_feedrate_and_defaults():
    tracker = LayerTracker(targets())
    assert tracker.state == MotionState(None, None, None, None, True, None, None)
    tracker.feed("G1 F1200")
    tracker.feed("G0 X1 F0")  # F0 is not a feed rate
    assert tracker.state.feedrate == 1200.0
    assert tracker.targets == targets()


# ---------------------------------------------------------------- Z targets


def test_z_targets_with_variable_layer_heights():
    # 0.3, 0.5, 0.62, 0.74, ... 0.12 steps up to 3.14, then 0.3 steps
    zs = [0.3, 0.5, *heights(0.62, 0.12, 23), *heights(3.34, 0.3, 5)]
    assert zs[-1] == pytest.approx(4.54)
    job = Job(zs)
    _, fired = run(job.lines, targets(z_heights=(0.6, 3.0, 10)))
    got = [(t.layer, t.z, t.reasons) for _, t in fired]
    assert got == [
        (3, 0.62, ("z >= 0.6",)),
        (23, pytest.approx(3.02), ("z >= 3.0",)),
    ]  # 10 is above the last layer: never
    for index, trigger in fired:
        assert index == job.first_extrusion[trigger.layer + 1]


def test_pending_z_heights_shrink_as_targets_are_used():
    zs = [0.3, 0.5, *heights(0.62, 0.12, 23), *heights(3.34, 0.3, 5)]
    tracker = LayerTracker(targets(z_heights=(3.0, 0.6, 10)))
    assert tracker.pending_z_heights() == (0.6, 3.0, 10.0)
    pending = []
    for line in Job(zs).lines:
        if tracker.feed(line) is not None:
            pending.append(tracker.pending_z_heights())
    assert pending == [(3.0, 10.0), (10.0,)]


def test_z_target_equal_to_a_layer_height_and_several_reasons():
    job = Job(heights(0.2, 0.2, 10))
    _, fired = run(job.lines, targets(every_n=3, z_heights=(0.6, 0.55, 1.0, 0.05)))
    got = [(t.layer, t.reasons) for _, t in fired]
    assert got == [
        (1, ("z >= 0.05",)),
        (3, ("every 3 layers", "z >= 0.55", "z >= 0.6")),
        (5, ("z >= 1.0",)),
        (6, ("every 3 layers",)),
        (9, ("every 3 layers",)),
    ]


def test_z_targets_fire_once_and_accept_any_iterable():
    job = Job(heights(0.2, 0.2, 8))
    _, fired = run(job.lines, targets(z_heights=(0.4, 0.4)))
    assert [(t.layer, t.reasons) for _, t in fired] == [(2, ("z >= 0.4",))]
    tracker = LayerTracker(LayerTargets(0, [0.6, "1.0", "junk", float("nan")], 0.05))  # type: ignore[arg-type]
    assert tracker._z_targets == [0.6, 1.0]
    assert LayerTracker(LayerTargets(0, "0.6, 3", 0.05))._z_targets == [0.6, 3.0]  # type: ignore[arg-type]


def test_last_layer_meeting_a_target_does_not_fire():
    job = Job(heights(0.2, 0.2, 5))
    _, fired = run(job.lines, targets(z_heights=(1.0,)))
    assert fired == []


# ---------------------------------------------------------------- min layer height


def test_small_z_wobble_is_the_same_layer():
    lines = ["M83", "G1 Z0.2", "G1 X1 Y1 E1", "G1 Z0.22", "G1 X2 Y2 E1", "G1 Z0.18"]
    lines += ["G1 X3 Y3 E1", "G1 Z0.24", "G1 X4 Y4 E1", "G1 Z0.4", "G1 X5 Y5 E1"]
    tracker, fired = run(lines, targets(every_n=1))
    assert [(i, t.layer, t.z, t.next_z) for i, t in fired] == [(10, 1, 0.2, 0.4)]
    assert tracker.layer == 2


@pytest.mark.parametrize(
    ("min_h", "expected_layers"),
    [(0.05, 6), (0.1, 3), (0.15, 2), (0.5, 1)],
)
def test_min_layer_height_filters_rises(min_h, expected_layers):
    job = Job(heights(0.1, 0.05, 6))  # 0.05 mm steps
    tracker, _ = run(job.lines, targets(every_n=1, min_h=min_h))
    assert tracker.layer == expected_layers


@pytest.mark.parametrize("min_h", [0.0, -1.0, float("nan"), float("inf"), "x"])
def test_odd_min_layer_height_does_not_break(min_h):
    job = Job(heights(0.2, 0.2, 4))
    tracker, fired = run(job.lines, LayerTargets(1, (), min_h))  # type: ignore[arg-type]
    assert tracker.layer == 4
    assert layers_of(fired) == [1, 2, 3]


def test_exact_min_rise_counts_despite_float_noise():
    lines = ["M83", "G1 Z0.2", "G1 X1 Y1 E1", "G1 Z0.25", "G1 X2 Y2 E1"]
    tracker, _ = run(lines, targets(every_n=1, min_h=0.05))
    assert tracker.layer == 2


# ---------------------------------------------------------------- start G-code


def test_purge_line_above_the_first_layer_does_not_shift_the_count():
    job = Job(heights(0.2, 0.2, 7), purge_z=0.3)
    tracker, fired = run(job.lines, targets(every_n=3))
    assert [(t.layer, t.z) for _, t in fired] == [(3, 0.6), (6, pytest.approx(1.2))]
    assert tracker.layer == 7
    assert tracker.max_printed_z == pytest.approx(1.4)


def test_purge_line_at_the_first_layer_height():
    job = Job(heights(0.2, 0.2, 7), purge_z=0.2)
    _, fired = run(job.lines, targets(every_n=3))
    assert [(t.layer, t.z) for _, t in fired] == [(3, 0.6), (6, pytest.approx(1.2))]


def test_lower_extrusion_rebases_without_counting():
    lines = ["M83", "G1 Z0.6", "G1 X1 Y1 E1", "G1 Z0.2", "G1 X2 Y2 E1", "G1 Z0.4"]
    lines += ["G1 X3 Y3 E1"]
    tracker, fired = run(lines, targets(every_n=1))
    assert [(t.layer, t.z, t.next_z) for _, t in fired] == [(1, 0.2, 0.4)]
    assert tracker.layer == 2
    assert tracker.max_printed_z == pytest.approx(0.6)


# ---------------------------------------------------------------- markers


def test_markers_with_params_decide():
    job = Job(heights(0.2, 0.2, 8), markers="params")
    tracker, fired = run(job.lines, targets(every_n=3, z_heights=(1.0,)))
    got = [(t.layer, t.z, t.next_z, t.source, t.reasons) for _, t in fired]
    assert got == [
        (3, 0.6, 0.8, "marker", ("every 3 layers",)),
        (5, 1.0, 1.2, "marker", ("z >= 1.0",)),
        (6, pytest.approx(1.2), 1.4, "marker", ("every 3 layers",)),
    ]
    for index, trigger in fired:
        assert job.lines[index] == f"@LAYERCAPTURE {trigger.layer} {trigger.next_z:g}"
        assert trigger.state_before is not None
        assert trigger.state_before.z == pytest.approx(trigger.z)
    assert tracker.marker_mode
    assert tracker.layer == 8
    assert tracker.captured_layers() == (3, 5, 6)


def test_markers_stop_motion_triggers():
    job = Job(heights(0.2, 0.2, 10))
    # a single marker early on: from then on only markers trigger
    lines = [*job.lines[:7], "@LAYERCAPTURE 0 0.2", *job.lines[7:]]
    tracker, fired = run(lines, targets(every_n=3))
    assert fired == []
    assert tracker.layer == 1  # markers count layers now
    assert tracker.layer_z == pytest.approx(2.0)  # motion still tracks heights
    assert tracker.state.z == pytest.approx(12.0)


def test_markers_without_params_are_counted():
    job = Job(heights(0.2, 0.2, 8), markers="bare")
    tracker, fired = run(job.lines, targets(every_n=3))
    assert [(t.layer, t.z, t.source) for _, t in fired] == [
        (3, 0.6, "marker"),
        (6, pytest.approx(1.2), "marker"),
    ]
    # the marker comes before the layer's Z move: next_z is not known yet
    assert fired[0][1].next_z == pytest.approx(0.6)
    assert tracker.layer == 8


def test_marker_before_any_extrusion_uses_marker_z():
    tracker = LayerTracker(targets(every_n=1))
    assert tracker.feed_marker("0 0.2") is None
    trigger = tracker.feed_marker("1 0.4")
    assert trigger is not None
    assert (trigger.layer, trigger.z, trigger.next_z) == (1, 0.4, 0.4)
    assert tracker.feed_marker("1 0.4") is None  # a layer is captured once
    trigger = tracker.feed_marker("")  # counts on from the last number
    assert trigger is not None and trigger.layer == 2
    assert trigger.z == 0.0  # nothing known at all


@pytest.mark.parametrize(
    "params",
    ["", "abc", "-3 1", "1.5 x", "nan nan", "inf", "1e400", "9" * 5000, "3 abc", "\x00", "  "],
)
def test_garbage_marker_params_never_raise(params):
    tracker = LayerTracker(targets(every_n=1, z_heights=(0.5,)))
    tracker.feed_marker(params)
    tracker.feed_marker(params)
    assert tracker.marker_mode
    assert tracker._errors == 0
    assert tracker.layer >= 1


def test_marker_accepts_its_own_name_and_float_index():
    tracker = LayerTracker(targets(every_n=2))
    trigger = tracker.feed_marker("@LAYERCAPTURE 2.0 0.6")
    assert trigger is not None and (trigger.layer, trigger.next_z) == (2, 0.6)


# ---------------------------------------------------------------- vase mode


def vase_lines(bottom_layers: int, spiral_turns: int, segments: int = 20) -> List[str]:
    lines = ["M83"]
    for k in range(1, bottom_layers + 1):
        z = round(0.2 * k, 4)
        lines += [f"G1 Z{z}", "G1 X10 Y10", "G1 X30 Y10 E1", "G1 X30 Y30 E1", "G1 X10 Y30 E1"]
    z = 0.2 * bottom_layers
    for _turn in range(spiral_turns):
        for seg in range(segments):
            z += 0.2 / segments
            angle = 2 * math.pi * (seg + 1) / segments
            x, y = 20 + 10 * math.cos(angle), 20 + 10 * math.sin(angle)
            lines.append(f"G1 X{x:.3f} Y{y:.3f} Z{z:.4f} E0.05")
    return lines


def test_vase_mode_is_detected_and_stops_triggers():
    lines = vase_lines(bottom_layers=4, spiral_turns=10)
    tracker, fired = run(lines, targets(every_n=1))
    assert tracker.vase_mode
    assert layers_of(fired) == [1, 2, 3]  # the solid bottom layers, but the last
    assert tracker.max_printed_z == pytest.approx(0.8 + 2.0)
    assert tracker.layer >= 4  # keeps counting, never goes back
    assert tracker.feed_marker("30 6.0") is None  # markers are off too


def test_vase_mode_needs_consecutive_rising_moves():
    lines = ["M83", "G1 Z0.2", "G1 X0 Y0"]
    z = 0.2
    for i in range(VASE_MIN_MOVES * 3):
        if i % (VASE_MIN_MOVES - 1) == 0:
            lines.append(f"G1 X{i} Y1 E0.1")  # flat extrusion breaks the run
        z += 0.001
        lines.append(f"G1 X{i} Y0 Z{z:.4f} E0.1")
    tracker, _ = run(lines, targets(every_n=1))
    assert not tracker.vase_mode


def test_ordinary_layers_with_z_on_the_extrusion_are_not_vase():
    lines = ["M83"] + [f"G1 X{k} Y{k} Z{0.2 * k:.2f} E1" for k in range(1, 30)]
    tracker, fired = run(lines, targets(every_n=1))
    assert not tracker.vase_mode
    assert tracker.layer == 29
    assert len(fired) == 28


# ---------------------------------------------------------------- syntax


def test_syntax_variants():
    lines = [
        "m83",
        "N10 G1 Z0.2*33",
        "g1 x10 y10 e.5",
        "G01 X-.5 Y10.5 E.02 F1200 ; a comment",
        "N11 G1 Z0.4 ; comment *12",
        "G1X20Y20E0.5",  # no blanks
        "  G1 Z0.6",
        "G1 X1;glued comment",
        "G1 X30 Y30 E1*77",  # checksum without N
    ]
    tracker, fired = run(lines, targets(every_n=1))
    assert [(i, t.layer, t.z) for i, t in fired] == [(5, 1, 0.2), (8, 2, 0.4)]
    state = tracker.state
    assert (state.x, state.y, state.z) == (30.0, 30.0, 0.6)
    assert state.feedrate == 1200.0
    assert not state.absolute_e
    assert state.e is None  # never set by G92 or M82


def test_partly_glued_words():
    tracker = LayerTracker(targets())
    tracker.feed("G92 X0 Y0 Z0 E0;comment")
    tracker.feed("G1 Y20 Z1E2")  # E is a word, never an exponent (as in Marlin)
    state = tracker.state
    assert (state.x, state.y, state.z, state.e) == (0.0, 20.0, 1.0, 2.0)
    tracker.feed("G1 X10Y30 E3")  # a glued X word gives its own number
    assert (tracker.state.x, tracker.state.e) == (10.0, 3.0)
    tracker.feed("G1 X1e2")
    assert tracker.state.x == 1.0


def test_other_commands_are_ignored():
    tracker = LayerTracker(targets(every_n=1))
    tracker.feed("G92 X1 Y2 Z3 E4")
    before = tracker.state
    for line in ("G4 P100", "G10 P0 S200", "G10 L2 X0", "G21", "G29.1", "M84", "T0", "G", "M"):
        assert tracker.feed(line) is None
    for line in ("", ";comment", "@pause", "M117 G1 X9 E9", "G1.5 X9", "N5", "  ", "*12"):
        assert tracker.feed(line) is None
    assert tracker.state == before


def test_odd_values_are_ignored_or_unknown():
    tracker = LayerTracker(targets())
    tracker.feed("G92 X1 Y2 Z3 E4")
    tracker.feed("G1 Znan Einf F-5 X Yabc")
    state = tracker.state
    assert (state.z, state.e, state.feedrate) == (3.0, 4.0, None)
    assert state.x is None and state.y is None  # unreadable X/Y: position unknown
    tracker.feed("G1 X1.5.5 Y5")
    assert (tracker.state.x, tracker.state.y) == (1.5, 5.0)
    tracker.feed("G1 X-- Y1" + "0" * 12)
    assert (tracker.state.x, tracker.state.y) == (None, None)


def test_trigger_defaults_state_before():
    trigger = LayerTrigger(layer=3, z=0.6, next_z=0.8, source="motion", reasons=("r",))
    assert trigger.state_before is None
    assert LayerTargets() == LayerTargets(3, (), 0.05)


# ---------------------------------------------------------------- fuzz

_WORDS = st.builds(
    lambda letter, value: f"{letter}{value}",
    st.sampled_from("XYZEFIJRSPTNxyzef*;"),
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.decimals(min_value=-500, max_value=500, places=3).map(str),
        st.text("0123456789.-+e", max_size=6),
    ),
)
_COMMANDS = "G0 G1 G2 G3 G28 G29 G90 G91 G92 M82 M83 g1 G01 G4 M104 T1 @LAYERCAPTURE"
_COMMAND = st.sampled_from([*_COMMANDS.split(), "N3 G1", ""])
_GCODE_LINE = st.builds(
    lambda cmd, words, sep: cmd + sep + sep.join(words),
    _COMMAND,
    st.lists(_WORDS, max_size=6),
    st.sampled_from([" ", "", "  ", "\t"]),
)


def _check_never_decreases(lines: List[str], tgt: LayerTargets) -> None:
    tracker = LayerTracker(tgt)
    last = 0
    for line in lines:
        if line.startswith("@LAYERCAPTURE"):
            trigger = tracker.feed_marker(line[13:])
        else:
            trigger = tracker.feed(line)
        assert tracker.layer >= last
        if trigger is not None:
            assert trigger.layer >= 1
            assert trigger.state_before is not None
        last = tracker.layer
        tracker.state  # noqa: B018 - reading the state must not raise either
    assert tracker._errors == 0
    captured = tracker.captured_layers()
    assert len(set(captured)) == len(captured)


_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TARGETS = st.builds(
    LayerTargets,
    st.integers(-2, 4),
    st.lists(st.floats(-1, 5), max_size=3).map(tuple),
    st.sampled_from([0.0, 0.05, 0.1, 1.0]),
)


@_FUZZ
@given(st.lists(st.text(max_size=40), max_size=40), _TARGETS)
def test_fuzz_random_text(lines, tgt):
    _check_never_decreases(lines, tgt)


@_FUZZ
@given(st.lists(_GCODE_LINE, max_size=60), _TARGETS)
def test_fuzz_gcode_like_lines(lines, tgt):
    _check_never_decreases(lines, tgt)


@_FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["G1", "G0", "G91", "G90", "M82", "M83", "G92 E0", "@LAYERCAPTURE"]),
            st.floats(0, 3).map(lambda z: round(z, 2)),
            st.floats(-1, 2).map(lambda e: round(e, 2)),
        ),
        max_size=80,
    ),
    _TARGETS,
)
def test_fuzz_plausible_prints(moves, tgt):
    lines = []
    for command, z, e in moves:
        if command in ("G1", "G0"):
            lines.append(f"{command} Z{z}")
            lines.append(f"{command} X{z * 10} Y5 E{e}")
        elif command == "@LAYERCAPTURE":
            lines.append(f"@LAYERCAPTURE {int(z * 5)} {z}")
        else:
            lines.append(command)
    _check_never_decreases(lines, tgt)


@st.composite
def hopping_prints(draw):
    """A print of random layer heights whose travels hop to random heights, some of them the
    heights of later layers, some by G91 relative moves; extrusions only happen at layer Z."""
    count = draw(st.integers(2, 12))
    steps = draw(st.lists(st.sampled_from([0.1, 0.15, 0.2, 0.3]), min_size=count, max_size=count))
    layer_heights = [round(sum(steps[: i + 1]), 3) for i in range(count)]
    relative_e = draw(st.booleans())
    e = 0.0
    lines = ["G28", "G90", "M83" if relative_e else "M82", "G92 E0"]
    first_extrusion: Dict[int, int] = {}

    def extrude(amount: float, x: float, y: float) -> str:
        nonlocal e
        e += amount
        return f"G1 X{x:g} Y{y:g} E{amount if relative_e else e:.5f} F1800"

    def retract(amount: float) -> str:
        nonlocal e
        e += amount
        return f"G1 E{amount if relative_e else e:.5f} F2100"

    for number, z in enumerate(layer_heights, start=1):
        lines.append(f"G1 Z{z:.3f} F720")
        for part in range(draw(st.integers(1, 3))):
            hop = draw(st.sampled_from(["none", "up", "later_layer", "relative"]))
            if hop != "none":
                lines.append(retract(-0.8))
                if hop == "relative":
                    lines += ["G91", f"G1 Z{draw(st.sampled_from([0.2, 0.4, 2.0]))} F720"]
                    # Marlin's G90 also makes E absolute: real G-code restores its E mode
                    lines += ["G90", "M83" if relative_e else "M82"]
                    lines += ["G1 X30 Y30 F9000", f"G1 Z{z:.3f} F720"]
                else:
                    high = layer_heights[-1] if hop == "later_layer" else z + 0.4
                    lines += [f"G1 Z{high:.3f} F720", "G1 X30 Y30 F9000", f"G1 Z{z:.3f}"]
                lines.append(retract(0.8))
            if part == 0:
                first_extrusion[number] = len(lines)
            lines += [extrude(1.2, 60, 20 + part), extrude(1.2, 20, 60 + part)]
    lines += [retract(-2), "G91", "G1 Z10 F600", "G90", "M84"]
    return lines, layer_heights, first_extrusion


@_FUZZ
@given(hopping_prints(), st.integers(1, 4))
def test_property_z_hops_never_count_as_layers(job, every_n):
    lines, layer_heights, first_extrusion = job
    tracker, fired = run(lines, targets(every_n=every_n))
    expected = list(range(every_n, len(layer_heights), every_n))
    assert layers_of(fired) == expected
    for index, trigger in fired:
        assert index == first_extrusion[trigger.layer + 1], "held line = next layer's first move"
        assert trigger.z == pytest.approx(layer_heights[trigger.layer - 1])
    assert tracker.layer == len(layer_heights)


# ---------------------------------------------------------------- firmware families


MODE_SWITCH = ["G90", "M83", "G92 E0", "G1 X0 Y0 Z0.2 E1", "G91", "G1 Z1", "G90"]


@pytest.mark.parametrize(
    ("family", "absolute_e"),
    [("marlin", True), ("marlin_legacy", False), ("klipper", False), ("reprapfirmware", False)],
)
def test_g90_after_m83_is_read_as_the_firmware_family_does(family, absolute_e):
    tracker = LayerTracker(targets(), family=family)
    for line in MODE_SWITCH:
        tracker.feed(line)
    assert tracker.state.absolute_e is absolute_e
    # the next E word: a position for absolute E, a length for relative E
    tracker.feed("G1 X5 Y0 E0.5")
    assert tracker.state.e == pytest.approx(0.5 if absolute_e else 1.5)


def test_g91_leaves_rrf_e_absolute_but_makes_klipper_e_relative():
    for family, absolute_e in (("reprapfirmware", True), ("klipper", False), ("marlin", False)):
        tracker = LayerTracker(targets(), family=family)
        for line in ("M82", "G91"):
            tracker.feed(line)
        assert tracker.state.absolute_e is absolute_e, family


def test_e_mode_never_set_by_the_file_is_unknown():
    tracker = LayerTracker(targets(every_n=1), family="klipper")
    for line in ("G28", "G90", "G1 Z0.2 F600", "G1 X10 Y10 E0.5", "G1 Z0.4", "G1 X20 Y10 E1"):
        tracker.feed(line)
    # a start macro may have sent M83: the file never said
    assert tracker.state.absolute_e is None
    assert tracker.state.modes == ModeHistory("G90", None)


def test_firmware_retraction_is_tracked():
    tracker = LayerTracker(targets())
    assert not tracker.state.firmware_retraction
    tracker.feed("G10")
    assert tracker.state.firmware_retraction and tracker.state.retracted
    tracker.feed("G11")
    assert tracker.state.firmware_retraction and not tracker.state.retracted
    tracker.feed("G10 P1 S210")  # RepRapFirmware tool temperature: no retraction
    assert not tracker.state.retracted


def test_trigger_carries_the_highest_printed_z_without_its_own_line():
    # a sequential print: a 2.0 mm tower first, then a second object from 0.2 up
    lines = ["G90", "M83"]
    for z in (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0):
        lines += [f"G1 Z{z:.1f}", "G1 X10 Y10 E1", "G1 X20 Y10 E1"]
    lines += ["G1 Z3 F600", "G1 X60 Y60"]
    for z in (0.2, 0.4, 0.6, 0.8):
        lines += [f"G1 Z{z:.1f}", "G1 X60 Y60 E1", "G1 X70 Y60 E1"]
    tracker, fired = run(lines, targets(every_n=1))
    # the second object's first layer is layer 11: the tower's top (10) completes there
    assert [t.layer for _, t in fired] == list(range(1, 14))
    assert [t.z for _, t in fired][9:] == pytest.approx([2.0, 0.2, 0.4, 0.6])
    assert tracker.layer == 14
    assert fired[0][1].printed_top == pytest.approx(0.2)  # not the next layer's 0.4
    assert all(t.printed_top == pytest.approx(2.0) for _, t in fired[9:])


def test_layer_start_state_is_the_state_before_each_layers_first_line():
    tracker = LayerTracker(LayerTargets(every_n=0))
    assert tracker.layer_start_state is None
    for line in ["G90", "M83", "G1 Z0.2", "G1 X5 Y5", "G1 X10 Y5 E1", "G1 Z0.4", "G1 X12 Y7"]:
        tracker.feed(line)
    start = tracker.layer_start_state
    assert start is not None and (start.x, start.y, start.z) == (5.0, 5.0, 0.2)
    tracker.feed("G1 X20 Y7 E1")  # layer 2 starts: the state before it
    start = tracker.layer_start_state
    assert tracker.layer == 2 and (start.x, start.y, start.z) == (12.0, 7.0, 0.4)
    marked = LayerTracker(LayerTargets(every_n=1))
    marked.feed("G1 X3 Y4 Z0.2")
    marked.feed_marker("0 0.2")
    marked.feed_marker("1 0.4")  # markers start layers too
    assert marked.layer == 2 and (marked.layer_start_state.x, marked.layer_start_state.y) == (3, 4)
