from __future__ import annotations

import logging
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import pytest
from fakes import (
    CONFIRM,
    CONTINUE,
    WAIT_STOPPED,
    FakeCamera,
    FakeClock,
    FakeMotion,
    FakePlan,
    HeadState,
    PrinterFaults,
    RecorderPrinter,
    RecordingSink,
    Rig,
    make_settings,
    snake_plan,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octoprint_layercapture.capture import moves
from octoprint_layercapture.capture.ports import Position
from octoprint_layercapture.capture.sequence import (
    HEAD_NOT_BACK,
    MAX_REPORTS_PER_MOVE,
    MOVE_RESENDS,
    POLL_INTERVAL,
    CaptureSequence,
    CaptureTask,
    SequenceResult,
)
from octoprint_layercapture.capture.shots import CameraRig
from octoprint_layercapture.vocabulary import PHASES, StopSource

LOGGER = logging.getLogger("octoprint.plugins.layercapture.test")
HELD_LINE = "G1 X140.2 Y100 E0.5 F1500"
STOP = (130.5, 100.0, 0.6)


def run_sequence(
    *,
    size: int = 3,
    stop: Tuple[float, float, float] = STOP,
    layer_z: float = 0.6,
    absolute_xyz: Optional[bool] = True,
    absolute_e: Optional[bool] = True,
    feedrate: Optional[float] = 1800.0,
    hold: bool = False,
    tracker_knows_position: bool = True,
    faults: Optional[PrinterFaults] = None,
    camera_fails: FrozenSet[int] = frozenset(),
    sink_fails: FrozenSet[int] = frozenset(),
    held_line: Optional[str] = HELD_LINE,
    plan: Optional[FakePlan] = None,
    confirm_seconds: float = 0.1,
    printed_top: Optional[float] = None,
    max_z: Optional[float] = None,
    pause_script: Tuple[str, ...] = (),
    motion: Optional[FakeMotion] = None,
    lines_checked: bool = False,
    e: float = 1234.5,
    others: Optional[Dict[str, Dict[str, Any]]] = None,
    **setting_overrides: Any,
) -> Tuple[Rig, CaptureTask, SequenceResult]:
    job_settings = make_settings(**setting_overrides)
    clock = FakeClock()
    head = HeadState(
        *stop,
        e=e,
        absolute_xyz=absolute_xyz is not False,
        # a file that never set E: the printer's E follows its XYZ mode (Marlin 2)
        absolute_e=absolute_e if absolute_e is not None else absolute_xyz is not False,
        feedrate=feedrate or 1500.0,
    )
    printer = RecorderPrinter(
        clock,
        head,
        report_stop_position=not hold,
        faults=faults,
        confirm_seconds=confirm_seconds,
        pause_script=pause_script,
    )
    rig = Rig(clock, printer, FakeCamera(clock, camera_fails), RecordingSink(clock, sink_fails))
    # cameras after the first: name -> FakeCamera's arguments (on the run's clock)
    rig.others = {name: FakeCamera(clock, **kw) for name, kw in (others or {}).items()}
    x, y, z = stop if tracker_knows_position else (None, None, None)
    motion = motion or FakeMotion(x, y, z, e, absolute_xyz, absolute_e, feedrate)
    if motion.firmware_retraction:
        head.retracted = motion.retracted
    job = CaptureTask(
        layer=3,
        layer_z=layer_z,
        plan=plan or snake_plan(size, layer_z + job_settings.z_offset),
        motion=motion,
        settings=job_settings,
        held_line=held_line,
        printed_top=printed_top,
        max_z=max_z,
        lines_checked=lines_checked,
    )
    sequence = CaptureSequence(
        rig.printer,
        rig.cameras(),
        rig.sink,
        clock,
        LOGGER,
        on_progress=lambda phase, i, n: rig.progress.append((phase, i, n)),
    )
    started = clock.monotonic()
    result = sequence.run(job)
    assert_safe(rig, job, result, elapsed=clock.monotonic() - started)
    return rig, job, result


def assert_safe(rig: Rig, task: CaptureTask, result: SequenceResult, elapsed: float) -> None:
    """The invariants every run must keep, whatever failed."""
    printer = rig.printer
    start = printer.start
    # From the true stop position, not from what the sequence believed it was.
    travel_z = moves.travel_height(task.plan.capture_z, start.z, task.layer_z)
    allowed_xy = {(p.x, p.y) for p in task.plan.points} | {(start.x, start.y)}
    for move in printer.moves:
        if move.command == task.held_line:
            continue
        if move.changes_xy:
            assert move.before[2] >= travel_z - 1e-9, f"XY move below travel Z: {move}"
            assert move.after[2] >= travel_z - 1e-9, f"XY move below travel Z: {move}"
            assert move.after[:2] in allowed_xy, f"XY target outside the plan: {move}"
    for line, state in printer.states:
        if line != task.held_line and (state.x, state.y) != (start.x, start.y):
            assert state.z >= start.z, f"below the stop Z away from the stop XY after {line}"
    head_lost = any(f.message == HEAD_NOT_BACK for f in result.failures)
    if result.outcome == "interrupted":
        assert not result.continued
        assert printer.calls_after_interrupt == []
        assert not printer.continued
    elif not head_lost:
        # Returned, modes restored: the printer is as the job left it (E included).
        resumed = None
        if task.held_line is not None and result.held_line_sent:
            resumed = printer.state_before(task.held_line)
        final = resumed or printer.state_at_continue or printer.head
        # back where the job stopped, or where the user's pause script parked the head
        back = printer.park or start
        assert final.xyz == pytest.approx(back.xyz, abs=1e-9)
        assert final.e == pytest.approx(back.e, abs=1e-9)
        assert final.absolute_xyz == back.absolute_xyz
        assert final.absolute_e == back.absolute_e
        if task.motion.feedrate is not None and printer.park is None:
            assert final.feedrate == start.feedrate
    assert result.continued == printer.continued
    assert result.continued == (result.outcome.startswith("completed"))
    assert set(result.timings) == {*PHASES, "total"}
    assert sum(result.timings[p] for p in PHASES) == pytest.approx(result.timings["total"])
    assert result.timings["total"] == pytest.approx(elapsed)
    assert all(value >= 0 for value in result.timings.values())


def moves_block(points: List[Tuple[float, float]]) -> List[str]:
    block: List[str] = []
    for x, y in points:
        block += [f"G0 X{moves.format_number(x)} Y{moves.format_number(y)} F6000", CONFIRM]
    return block


SNAKE_3X3 = [
    (105, 85), (125, 85), (145, 85),
    (145, 105), (125, 105), (105, 105),
    (105, 125), (125, 125), (145, 125),
]  # fmt: skip


# ---- number format


@pytest.mark.parametrize(
    ("value", "text"),
    [(125.0, "125"), (105.5, "105.5"), (0.1 + 0.2, "0.3"), (-0.0001, "0"), (-0.0, "0"),
     (5.6000000001, "5.6"), (12.34567, "12.346"), (-3.5, "-3.5"), (6000, "6000")],
)  # fmt: skip
def test_numbers_are_written_compactly(value, text):
    assert moves.format_number(value) == text


def test_non_finite_numbers_are_refused():
    with pytest.raises(ValueError):
        moves.format_number(float("nan"))


# ---- the exact G-code


def test_1x1_absolute_e_exact_gcode():
    rig, _, result = run_sequence(size=1, absolute_e=True)
    # a G90/M82 job whose E the pause report confirmed: the retract and the unretract are
    # absolute E moves (no mode changes to give back); the unretract rides on the lowering
    assert rig.printer.log == [
        WAIT_STOPPED,
        "G1 E1233.5 F2100", "G0 Z5.6 F600", CONFIRM,
        "G0 X125 Y105 F6000", CONFIRM,
        "G0 X130.5 Y100 F6000", CONFIRM,
        "G1 Z0.6 E1234.5 F600", CONFIRM,
        "G1 F1800",
        HELD_LINE, CONTINUE,
    ]  # fmt: skip
    assert result.outcome == "completed"
    assert result.stop_position_source == StopSource.PAUSE_EVENT
    assert result.travel_z == 5.6
    assert result.held_line_sent
    assert [s.saved.path for s in result.shots] == ["layer_0003_pos_00.jpg"]


def test_3x3_relative_e_exact_gcode():
    rig, _, result = run_sequence(size=3, absolute_e=False)
    assert rig.printer.log == [
        WAIT_STOPPED,
        "M83", "G1 E-1 F2100", "G0 Z5.6 F600", CONFIRM,
        *moves_block(SNAKE_3X3),
        "G0 X130.5 Y100 F6000", CONFIRM,
        "G1 Z0.6 E1 F600", CONFIRM,
        "G90", "M83", "G1 F1800",
        HELD_LINE, CONTINUE,
    ]  # fmt: skip
    assert result.outcome == "completed"
    assert [s.index for s in result.shots] == [0, 1, 2, 5, 4, 3, 6, 7, 8]
    assert all(s.measured.describe() == s.commanded.describe() for s in result.shots)
    assert [r.z for r in rig.camera.requests] == [5.6] * 9
    assert {r.count for r in rig.camera.requests} == {9}


def test_3x3_absolute_e_changes_no_mode():
    rig, _, _ = run_sequence(size=3, absolute_e=True)
    assert rig.printer.sent[-2:] == ["G1 F1800", HELD_LINE]
    assert not {"M82", "M83", "G90", "G91"} & set(rig.printer.sent)


def test_an_absolute_e_job_whose_e_the_printer_does_not_confirm_retracts_relatively():
    # the file's E (1000) is not what the printer reports (1234.5): a G92 the tracker
    # missed, say; an absolute retract to the file's E would push 234 mm of filament
    motion = FakeMotion(*STOP, 1000.0, True, True, 1800.0)
    rig, _, result = run_sequence(size=1, motion=motion)
    assert rig.printer.sent[:2] == ["M83", "G1 E-1 F2100"]
    assert "G1 Z0.6 E1 F600" in rig.printer.sent
    assert rig.printer.sent[-4:-1] == ["G90", "M82", "G1 F1800"]
    assert result.continued


def test_a_stop_known_only_from_the_file_retracts_relatively():
    # hold mode, the printer never answers the stop question: nothing confirmed the E
    rig, _, result = run_sequence(
        size=1, hold=True, faults=PrinterFaults(unrecognised_replies=frozenset({1}))
    )
    assert result.stop_position_source == StopSource.TRACKER
    assert rig.printer.sent[:2] == ["M83", "G1 E-1 F2100"]


def test_the_e_goes_back_exactly_as_the_file_wrote_it():
    # PrusaSlicer writes five decimals; Marlin reports two (the fake printer too)
    rig, _, _ = run_sequence(size=1, e=1234.50437)
    assert rig.printer.sent[0] == "G1 E1233.50437 F2100"
    assert "G1 Z0.6 E1234.50437 F600" in rig.printer.sent


def test_hold_mode_relative_xyz_confirms_the_stop_and_restores_g91():
    rig, _, result = run_sequence(size=1, hold=True, absolute_xyz=False, feedrate=None)
    assert rig.printer.log == [
        WAIT_STOPPED, CONFIRM,
        "G90", "M83", "G1 E-1 F2100", "G0 Z5.6 F600", CONFIRM,
        "G0 X125 Y105 F6000", CONFIRM,
        "G0 X130.5 Y100 F6000", CONFIRM,
        "G1 Z0.6 E1 F600", CONFIRM,
        "G91", "M82",
        HELD_LINE, CONTINUE,
    ]  # fmt: skip
    assert result.stop_position_source == StopSource.POSITION_REPORT


def test_no_retract_means_no_e_moves_and_no_e_mode_change():
    rig, _, result = run_sequence(retract_length=0)
    assert not [line for line in rig.printer.sent if "E" in line and line != HELD_LINE]
    # nothing changed the job's modes, so none is sent
    assert not [line for line in rig.printer.sent if line in ("G90", "G91", "M82", "M83")]
    assert rig.printer.sent[0] == "G0 Z5.6 F600"
    assert result.outcome == "completed"


@pytest.mark.parametrize(("absolute_e", "modes"), [(True, ["G91", "M82"]), (False, ["G91", "M83"])])
def test_a_g91_job_gets_its_mode_commands_back_in_their_order(absolute_e, modes):
    # our G90 also sets E on Marlin: the job's own G91 then M8x restore it on every firmware
    rig, _, _ = run_sequence(retract_length=0, absolute_xyz=False, absolute_e=absolute_e)
    sent = rig.printer.sent
    assert sent[0] == "G90"
    assert [line for line in sent if line in ("G90", "G91", "M82", "M83")] == ["G90", *modes]
    assert sent.index(modes[-1]) < sent.index(HELD_LINE)


def test_unknown_e_mode_skips_the_retract():
    rig, _, _ = run_sequence(absolute_e=None)
    assert not [line for line in rig.printer.sent if "E" in line and line != HELD_LINE]


def test_travel_height_keeps_clearance_above_a_high_stop():
    # A Z-hop above the capture height: travel 1 mm above it.
    rig, _, result = run_sequence(stop=(130.5, 100.0, 7.2), layer_z=0.6)
    assert result.travel_z == 8.2
    assert "G0 Z8.2 F600" in rig.printer.sent
    # No Z offset: still 1 mm over the print.
    _, _, result = run_sequence(z_offset=0, stop=(130.5, 100.0, 0.6))
    assert result.travel_z == 1.6


def test_speeds_and_retract_come_from_the_settings():
    rig, _, _ = run_sequence(
        size=1,
        absolute_e=False,
        movement_speed=9000,
        z_speed=300,
        retract_length=0.8,
        retract_speed=1800,
    )
    assert rig.printer.sent[:4] == [
        "M83",
        "G1 E-0.8 F1800",
        "G0 Z5.6 F300",
        "G0 X125 Y105 F9000",
    ]
    assert "G1 Z0.6 E0.8 F300" in rig.printer.sent


# ---- failures at a point


def test_camera_failure_is_recorded_and_the_rest_captured():
    _, _, result = run_sequence(camera_fails=frozenset({2}))
    saved = [s for s in result.shots if s.saved is not None]
    assert len(saved) == 8 and len(result.shots) == 9
    [failure] = result.failures
    assert failure.phase == "capture" and failure.index == 1
    assert "position 2 of 9: snapshot timed out after 5.0 s" in failure.message
    assert result.outcome == "completed_with_failures" and result.continued


def test_disk_failure_is_recorded_and_the_rest_captured():
    _, _, result = run_sequence(sink_fails=frozenset({1, 9}))
    assert sum(s.saved is not None for s in result.shots) == 7
    assert [f.index for f in result.failures] == [0, 8]
    assert all("No space left" in f.message for f in result.failures)
    assert result.shots[0].snapshot_camera == "fake"
    assert result.outcome == "completed_with_failures"


def test_a_wrong_report_is_asked_again():
    # confirm 1 is the lift's, confirm 2 the first grid point's
    rig, _, result = run_sequence(
        absolute_e=False, faults=PrinterFaults(wrong_reports=frozenset({2}))
    )
    assert result.outcome == "completed"
    assert rig.printer.log[5:8] == ["G0 X105 Y85 F6000", CONFIRM, CONFIRM]


def test_a_position_that_never_matches_skips_that_shot_only():
    wrong = frozenset(range(2, 2 + MAX_REPORTS_PER_MOVE * (1 + MOVE_RESENDS)))
    rig, _, result = run_sequence(faults=PrinterFaults(wrong_reports=wrong))
    assert rig.printer.sent.count("G0 X105 Y85 F6000") == 1 + MOVE_RESENDS
    [failure] = result.failures
    assert failure.phase == "moves" and failure.index == 0
    assert "instead of X105 Y85 Z5.6" in failure.message
    assert result.shots[0].saved is None and result.shots[0].measured.x == 106
    assert len(rig.camera.requests) == 8
    assert result.outcome == "completed_with_failures"


def test_wrong_reports_stop_at_the_movement_timeout():
    wrong = frozenset(range(2, 100))
    rig, _, result = run_sequence(
        size=1,
        absolute_e=False,
        movement_timeout=1.0,
        confirm_seconds=0.4,
        faults=PrinterFaults(wrong_reports=wrong),
    )
    move = "G0 X125 Y105 F6000"
    # each send of the move gets confirms for at most 1 s (0.4 + 0.4 + 0.2 s)
    assert rig.printer.log[6:14] == [CONFIRM] * 3 + [move] + [CONFIRM] * 3 + [move]
    assert rig.printer.log[17] == "G0 X130.5 Y100 F6000"
    assert not result.continued, "the return never matches either: the head stays up"
    assert not [line for line in rig.printer.sent if "Z0.6" in line]


def test_poll_mode_asks_again_until_the_report_shows_the_target():
    # a firmware whose M114 shows the live position: confirm 1 is the lift's, then the
    # grid move gets 14 reports on the way before it is there
    wrong = frozenset(range(2, 16))
    rig, _, result = run_sequence(
        size=1, wait_for_moves="poll", faults=PrinterFaults(wrong_reports=wrong)
    )
    assert result.outcome == "completed" and result.failures == []
    move = rig.printer.log.index("G0 X125 Y105 F6000")
    assert rig.printer.log[move - 1] == CONFIRM  # the lift's
    assert rig.printer.log[move + 1 : move + 16] == [CONFIRM] * 15
    assert rig.printer.log[move + 16] != CONFIRM
    assert 15 > MAX_REPORTS_PER_MOVE
    assert rig.clock.sleeps[:14] == [POLL_INTERVAL] * 14
    assert result.timings["moves"] == pytest.approx(16 * 0.1 + 14 * POLL_INTERVAL)


def test_poll_mode_gives_up_at_the_movement_timeout():
    wrong = frozenset(range(1, 1000))
    rig, _, result = run_sequence(
        size=1,
        wait_for_moves="poll",
        movement_timeout=2.0,
        faults=PrinterFaults(wrong_reports=wrong),
    )
    first = result.failures[0]
    assert first.phase == "moves" and "within 2 s; no snapshot" in first.message
    # each send of the move (the first and MOVE_RESENDS more) polls for 2 s
    sends = 1 + MOVE_RESENDS
    assert first.duration == pytest.approx(sends * 2.0, abs=sends * (POLL_INTERVAL + 0.1))
    assert rig.camera.requests == []


def test_m400_and_g4_modes_never_sleep_between_reports():
    for wait in ("M400", "G4 P0"):
        rig, _, result = run_sequence(
            wait_for_moves=wait, faults=PrinterFaults(wrong_reports=frozenset({1, 2}))
        )
        assert rig.clock.sleeps == [0.25] * 9, wait  # only the capture delay
        assert result.outcome == "completed"


def test_an_unrecognised_answer_ends_the_sequence_at_once_and_returns():
    rig, _, result = run_sequence(faults=PrinterFaults(unrecognised_replies=frozenset({1})))
    first = result.failures[0]
    assert first.phase == "moves" and first.index is None
    assert first.message == (
        "lift to Z 5.6: not confirmed (the printer answered M114 with 'Position 5/6/7'); no XY move"
    )
    assert first.duration < 2.0
    assert rig.camera.requests == []
    assert not any(m.changes_xy for m in rig.printer.moves if m.command != HELD_LINE)
    assert result.continued and result.outcome == "completed_with_failures"


def test_an_unrecognised_answer_at_a_grid_point_abandons_the_grid_and_returns():
    rig, _, result = run_sequence(faults=PrinterFaults(unrecognised_replies=frozenset({3})))
    first = result.failures[0]
    assert first.phase == "moves" and first.index == 1
    assert first.message == (
        "position 2 of 9: move not confirmed (the printer answered M114 with 'Position 5/6/7')"
    )
    assert len(rig.camera.requests) == 1
    assert "G0 X145 Y85 F6000" not in rig.printer.sent  # no further grid position
    assert result.continued and result.outcome == "completed_with_failures"


def test_an_unrecognised_answer_while_stopping_falls_back_to_the_tracker():
    _, _, result = run_sequence(
        hold=True, faults=PrinterFaults(unrecognised_replies=frozenset({1}))
    )
    assert result.stop_position_source == StopSource.TRACKER
    assert result.failures[0].phase == "stop"
    assert result.failures[0].message == (
        "no position report (the printer answered M114 with 'Position 5/6/7')"
    )


def test_a_pause_position_away_from_the_jobs_last_move_is_asked_again(caplog):
    # OctoPrint's pause on a printer without M400: the report came while moves still ran
    with caplog.at_level("INFO", logger=LOGGER.name):
        rig, _, result = run_sequence(faults=PrinterFaults(pause_position_off=2.0))
    assert rig.printer.log[:2] == [WAIT_STOPPED, CONFIRM]
    assert result.stop_position_source == StopSource.POSITION_REPORT
    assert result.stop_position == Position(*STOP, 1234.5)
    assert result.outcome == "completed"
    assert "pause position X132.5 Y100 Z0.6 is not where the job's last move ends" in caplog.text


def test_poll_mode_asks_for_the_stop_until_it_is_where_the_jobs_last_move_ends():
    faults = PrinterFaults(pause_position_off=2.0, wrong_reports=frozenset({1, 2, 3}))
    rig, _, result = run_sequence(wait_for_moves="poll", faults=faults)
    assert rig.printer.log[:5] == [WAIT_STOPPED, CONFIRM, CONFIRM, CONFIRM, CONFIRM]
    assert result.stop_position_source == StopSource.POSITION_REPORT
    assert result.stop_position == Position(*STOP, 1234.5)
    assert result.outcome == "completed"


def test_poll_mode_stop_that_never_matches_falls_back_to_the_tracker():
    faults = PrinterFaults(pause_position_off=2.0, wrong_reports=frozenset(range(1, 1000)))
    _, _, result = run_sequence(wait_for_moves="poll", movement_timeout=1.0, faults=faults)
    assert result.stop_position_source == StopSource.TRACKER
    assert result.failures[0].phase == "stop"
    assert result.failures[0].message.startswith("stop position not confirmed: head reported")


def test_without_m400_a_stale_pause_position_is_not_trusted():
    # the default M400 on a printer without it: every confirm fails at once, and the head
    # goes back to where the job's last move ends, not to the stale pause report
    faults = PrinterFaults(pause_position_off=2.0, unrecognised_replies=frozenset(range(1, 10)))
    rig, _, result = run_sequence(faults=faults)
    assert result.stop_position_source == StopSource.TRACKER
    # no XY move without a confirmed lift: the head only goes up and down again
    assert [f.phase for f in result.failures] == ["stop", "moves", "return"]
    assert not any(m.changes_xy for m in rig.printer.moves if m.command != HELD_LINE)
    assert rig.camera.requests == []
    assert result.continued  # assert_safe: the head is back at the true stop position


def test_confirm_timeout_abandons_the_grid_and_returns():
    rig, _, result = run_sequence(faults=PrinterFaults(confirm_timeouts=frozenset({4})))
    assert len(rig.camera.requests) == 2
    assert result.failures[0].phase == "moves" and result.failures[0].index == 2
    assert result.failures[0].duration == pytest.approx(30.0)
    assert "G0 X105 Y105 F6000" not in rig.printer.sent
    assert result.continued and result.outcome == "completed_with_failures"


def test_timeouts_while_returning_still_lower_restore_and_continue():
    # Confirms 11 and 12 are the two return confirms of a 3x3 run (1 is the lift's).
    rig, _, result = run_sequence(faults=PrinterFaults(confirm_timeouts=frozenset({11, 12})))
    assert [f.phase for f in result.failures] == ["return", "return"]
    assert rig.printer.sent[-2:] == ["G1 F1800", HELD_LINE]
    assert result.continued


# ---- lines lost on the serial link (the printer never runs them)


def test_a_lost_lift_is_sent_again_before_any_xy_move():
    rig, _, result = run_sequence(faults=PrinterFaults(lost_lines={"G0 Z5.6": 1}))
    assert rig.printer.lost == ["G0 Z5.6 F600"]
    sent = rig.printer.sent
    assert sent.count("G0 Z5.6 F600") == 2
    assert sent.index("G0 Z5.6 F600", sent.index("G0 Z5.6 F600") + 1) < sent.index(
        "G0 X105 Y85 F6000"
    )
    assert result.outcome == "completed" and len(rig.camera.requests) == 9


def test_a_lift_that_never_happens_means_no_xy_move_at_all():
    rig, _, result = run_sequence(faults=PrinterFaults(lost_lines={"G0 Z5.6": 99}))
    assert not [m for m in rig.printer.moves if m.changes_xy and m.command != HELD_LINE]
    assert rig.camera.requests == []
    assert "lift to Z 5.6" in result.failures[0].message
    assert result.continued, "the head never left: the job goes on"


def test_a_lost_grid_move_is_sent_again_and_photographed_in_place():
    rig, _, result = run_sequence(faults=PrinterFaults(lost_lines={"G0 X125 Y105": 1}))
    centre = [r for r in rig.camera.requests if r.index == 4]
    assert len(centre) == 1 and (centre[0].x, centre[0].y) == (125, 105)
    assert result.outcome == "completed"


def test_a_lost_xy_return_is_sent_again_before_lowering():
    rig, _, result = run_sequence(faults=PrinterFaults(lost_lines={"G0 X130.5 Y100": 1}))
    assert rig.printer.sent.count("G0 X130.5 Y100 F6000") == 2
    assert result.outcome == "completed" and result.continued


def test_an_xy_return_that_never_happens_never_lowers():
    rig, _, result = run_sequence(faults=PrinterFaults(lost_lines={"G0 X130.5 Y100": 99}))
    assert not [line for line in rig.printer.sent if "Z0.6" in line]
    assert rig.printer.head.z == pytest.approx(5.6), "left up, over the last grid point"
    assert not result.continued
    assert "back above the stop position" in result.failures[0].message


def test_a_lost_lowering_is_sent_again_with_its_unretract():
    # the line never ran (the head is still at travel height): all of it goes again
    rig, _, result = run_sequence(absolute_e=False, faults=PrinterFaults(lost_lines={"G1 Z0.6": 1}))
    assert rig.printer.sent.count("G1 Z0.6 E1 F600") == 2
    assert result.outcome == "completed" and result.continued


def test_a_lowering_reported_elsewhere_is_sent_again_without_unretracting_twice():
    # confirm 12 is the lowering's (3x3: lift, 9 points, XY return): the line ran, the
    # report was off in X; the second send must not unretract again
    wrong = frozenset(range(12, 12 + MAX_REPORTS_PER_MOVE))
    rig, _, result = run_sequence(absolute_e=False, faults=PrinterFaults(wrong_reports=wrong))
    assert rig.printer.sent.count("G1 Z0.6 E1 F600") == 1
    assert rig.printer.sent.count("G0 Z0.6 F600") == 1
    assert result.outcome == "completed" and result.continued


def test_a_failed_send_of_a_grid_move_still_returns_the_head():
    # Send 1 is the lift, send 3 the second grid move.
    rig, _, result = run_sequence(faults=PrinterFaults(send_failures=frozenset({3})))
    assert "serial write failed" in result.failures[0].message
    assert len(rig.camera.requests) == 1
    assert result.continued


def test_a_failed_return_send_never_lowers_and_does_not_continue():
    # 3x3: sends 1..10 go out, send 11 is the XY return.
    rig, _, result = run_sequence(faults=PrinterFaults(send_failures=frozenset({11})))
    assert not [line for line in rig.printer.sent if "Z0.6" in line]
    assert result.failures[-1].message == HEAD_NOT_BACK
    assert result.outcome == "not_continued" and rig.printer.calls["continue"] == 0


# ---- stop position


def test_wait_stopped_timeout_moves_nothing_and_continues():
    rig, _, result = run_sequence(faults=PrinterFaults(wait_stopped_timeout=True))
    assert rig.printer.log == [WAIT_STOPPED, HELD_LINE, CONTINUE]
    assert "did not stop within 60 s" in result.failures[0].message
    assert result.timings["stop"] == pytest.approx(60.0)
    assert result.outcome == "completed_with_failures"


def test_hold_mode_without_a_report_falls_back_to_the_tracker():
    _, _, result = run_sequence(hold=True, faults=PrinterFaults(confirm_timeouts=frozenset({1})))
    assert result.stop_position_source == StopSource.TRACKER
    assert result.stop_position == Position(*STOP, 1234.5)
    assert len(result.shots) == 9 and result.continued


def test_unknown_stop_position_moves_nothing_and_continues():
    rig, _, result = run_sequence(
        hold=True, tracker_knows_position=False, faults=PrinterFaults(confirm_timeouts={1})
    )
    assert rig.printer.log == [WAIT_STOPPED, CONFIRM, HELD_LINE, CONTINUE]
    assert result.stop_position_source == StopSource.UNKNOWN and result.stop_position is None
    assert result.failures[-1].message == "stop position unknown; the head was not moved"
    assert result.outcome == "completed_with_failures"


def test_a_plan_with_no_points_moves_nothing():
    plan = FakePlan((), ("a", "b"), 5.6, 9)
    rig, _, result = run_sequence(plan=plan)
    assert rig.printer.log == [WAIT_STOPPED, HELD_LINE, CONTINUE]
    assert "no grid position to visit (2 outside the bounds)" in result.failures[0].message


# ---- continuing the job


@pytest.mark.parametrize("failures", [1, 3])
def test_emergency_resume_retries(failures):
    rig, _, result = run_sequence(
        emergency_resume_attempts=3, faults=PrinterFaults(continue_failures=failures)
    )
    assert rig.printer.calls["continue"] == failures + 1
    assert [f.message for f in result.failures] == [
        f"continue attempt {n}/4: no PrintResumed event" for n in range(1, failures + 1)
    ]
    assert result.continued and result.outcome == "completed_with_failures"


def test_job_that_cannot_be_continued_is_reported():
    rig, _, result = run_sequence(
        emergency_resume_attempts=2, faults=PrinterFaults(continue_failures=10)
    )
    assert rig.printer.calls["continue"] == 3
    assert result.failures[-1].message == "job could not be continued after 3 attempts"
    assert result.outcome == "not_continued" and not result.continued
    assert result.timings["resume"] == pytest.approx(3 * 30.0)


def test_held_line_goes_out_after_the_restore_and_before_continuing():
    rig, _, _ = run_sequence()
    log = rig.printer.log
    assert log.index(HELD_LINE) == log.index("G1 F1800") + 1
    assert log.index(CONTINUE) == log.index(HELD_LINE) + 1


def test_without_a_held_line_nothing_extra_is_sent():
    rig, _, result = run_sequence(held_line=None)
    assert rig.printer.log[-2:] == ["G1 F1800", CONTINUE]
    assert not result.held_line_sent


# ---- interruptions and the user's pause


def count_checks() -> int:
    rig, _, _ = run_sequence()
    return rig.printer.calls["check"]


@pytest.mark.parametrize("at_check", range(1, count_checks() + 1))
def test_interruption_at_any_check_stops_at_once(at_check):
    rig, _, result = run_sequence(faults=PrinterFaults(interrupt_at_check=at_check))
    assert result.outcome == "interrupted" and not result.continued
    assert rig.printer.calls_after_interrupt == []
    assert "job cancelled" in result.failures[-1].message
    assert HELD_LINE not in rig.printer.log


def test_interruption_while_confirming_stops_at_once():
    rig, _, result = run_sequence(faults=PrinterFaults(interrupt_at_confirm=4))
    assert rig.printer.log[-1] == CONFIRM
    assert rig.printer.log.count(CONFIRM) == 4
    assert result.outcome == "interrupted"


def test_interruption_while_continuing():
    rig, _, result = run_sequence(faults=PrinterFaults(interrupt_on_continue=True))
    assert result.outcome == "interrupted" and rig.printer.calls["continue"] == 1


@pytest.mark.parametrize("at_check", [1, 2, 5, 12])
def test_user_pause_returns_the_head_but_leaves_the_job_paused(at_check):
    rig, _, result = run_sequence(faults=PrinterFaults(user_pause_at_check=at_check))
    assert result.outcome == "left_paused_by_user" and not result.continued
    assert rig.printer.calls["continue"] == 0
    assert HELD_LINE not in rig.printer.log and not result.held_line_sent
    assert rig.printer.head.xyz == pytest.approx(STOP)
    assert "paused the job by hand" in result.failures[-1].message


@pytest.mark.parametrize("at_check", [2, 5, 12])
def test_user_resume_skips_the_remaining_positions_and_returns_the_head(at_check):
    rig, _, result = run_sequence(faults=PrinterFaults(user_resume_at_check=at_check))
    assert result.continued and rig.printer.calls["continue"] == 1
    assert result.outcome == "completed_with_failures"
    assert len(rig.camera.requests) < 9
    assert rig.printer.state_before(HELD_LINE).xyz == pytest.approx(STOP)
    assert "resumed by hand" in result.failures[-1].message


def test_resume_before_the_hold_moves_nothing_and_continues():
    rig, _, result = run_sequence(faults=PrinterFaults(resumed_before_hold=True))
    assert not [line for line in rig.printer.sent if line != HELD_LINE]
    assert rig.camera.requests == []
    assert result.continued
    assert "resumed by hand before the capture started" in result.failures[0].message


# ---- timings, progress, settings


def test_timings_per_phase():
    rig, _, result = run_sequence(capture_delay=0.25, pre_capture_delay=0.5)
    t = result.timings
    assert rig.clock.sleeps == [0.25, 0.5] * 9
    assert t["settle"] == pytest.approx(9 * 0.75)
    assert t["capture"] == pytest.approx(9 * 0.06)
    assert t["moves"] == pytest.approx(10 * 0.1)  # the lift's confirm and 9 points
    assert t["return"] == pytest.approx(2 * 0.1)
    assert t["stop"] == pytest.approx(0.12)
    assert t["resume"] == pytest.approx(0.2)
    assert result.shots[0].duration == pytest.approx(0.1 + 0.75 + 0.06)
    assert result.started_at.isoformat() == "2024-01-15T10:30:00"


def test_progress_reports_each_position():
    rig, _, _ = run_sequence(size=1)
    assert rig.progress == [
        ("stopping", 0, 1), ("moving", 1, 1), ("capturing", 1, 1),
        ("returning", 1, 1), ("resuming", 1, 1),
    ]  # fmt: skip


def test_a_broken_progress_callback_does_not_stop_the_sequence():
    clock = FakeClock()
    printer = RecorderPrinter(clock, HeadState(*STOP, e=0.0))

    def broken(phase: str, i: int, n: int) -> None:
        raise RuntimeError("UI gone")

    job = CaptureTask(3, 0.6, snake_plan(1, 5.6), FakeMotion(*STOP, 0.0), make_settings())
    result = CaptureSequence(
        printer, CameraRig.single(FakeCamera(clock)), RecordingSink(clock), clock, LOGGER, broken
    ).run(job)
    assert result.outcome == "completed"


def test_return_to_origin_off_still_returns_and_says_so_once(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    clock = FakeClock()
    printer = RecorderPrinter(clock, HeadState(*STOP, e=0.0))
    cameras = CameraRig.single(FakeCamera(clock))
    sequence = CaptureSequence(printer, cameras, RecordingSink(clock), clock, LOGGER)
    job = CaptureTask(
        3, 0.6, snake_plan(1, 5.6), FakeMotion(*STOP, 0.0), make_settings(return_to_origin=False)
    )
    sequence.run(job)
    sequence.run(job)
    assert printer.head.xyz == pytest.approx(STOP)
    assert sum("return_to_origin is off" in r.message for r in caplog.records) == 1


def test_failures_are_logged_with_context(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER.name)
    run_sequence(camera_fails=frozenset({4}))
    # the 4th picture of the snake path is position 6: the middle row runs right to left
    assert "layer 3: position 6 of 9: snapshot timed out after 5.0 s" in caplog.text


# ---- random fault injection


fault_numbers = st.frozensets(st.integers(1, 30), max_size=4)


@st.composite
def scenarios(draw):
    hold = draw(st.booleans())
    wrong = draw(fault_numbers)
    if hold:
        wrong = frozenset(n for n in wrong if n > 1)  # the stop report itself is the truth
    faults = PrinterFaults(
        wait_stopped_timeout=draw(st.booleans()) and draw(st.booleans()),
        confirm_timeouts=draw(fault_numbers),
        wrong_reports=wrong,
        interrupt_at_check=draw(st.none() | st.integers(1, 40)),
        interrupt_at_confirm=draw(st.none() | st.integers(1, 30)),
        interrupt_on_continue=draw(st.booleans()) and draw(st.booleans()),
        user_pause_at_check=draw(st.none() | st.integers(1, 40)),
        continue_failures=draw(st.integers(0, 5)),
    )
    stop = (
        draw(st.integers(0, 25000)) / 100,
        draw(st.integers(0, 21000)) / 100,
        draw(st.integers(20, 3000)) / 100,
    )
    return {
        "size": draw(st.sampled_from([1, 3, 5])),
        "stop": stop,
        "layer_z": max(0.2, stop[2] - draw(st.sampled_from([0, 0.2, 0.4, 1.0]))),
        "hold": hold,
        "absolute_xyz": draw(st.sampled_from([True, False, None])),
        "absolute_e": draw(st.sampled_from([True, False, None])),
        "feedrate": draw(st.sampled_from([None, 1200.0, 7800.5])),
        "faults": faults,
        "camera_fails": draw(fault_numbers),
        "sink_fails": draw(fault_numbers),
        "held_line": draw(st.sampled_from([None, HELD_LINE])),
        "z_offset": draw(st.sampled_from([0, 0.3, 5, 12.5])),
        "retract_length": draw(st.sampled_from([0, 0.8, 1])),
        "emergency_resume_attempts": draw(st.integers(0, 3)),
        "movement_timeout": draw(st.sampled_from([0.05, 1, 30])),
        "lines_checked": draw(st.booleans()),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_faults_keep_the_safety_invariants(scenario):
    # run_sequence checks the invariants (assert_safe); these are the outcome rules.
    rig, _, result = run_sequence(**scenario)
    faults = scenario["faults"]
    if rig.printer.interrupted:
        assert result.outcome == "interrupted"
    elif result.outcome == "left_paused_by_user":
        assert faults.user_pause_at_check is not None and rig.printer.calls["continue"] == 0
    elif result.owed_return:
        # the head was never confirmed back: it stays up, the job stays stopped, and the
        # way back is sent before the job goes on
        assert faults.wrong_reports or faults.confirm_timeouts
        assert rig.printer.calls["continue"] == 0 and not result.continued
    else:
        attempts = 1 + scenario["emergency_resume_attempts"]
        assert rig.printer.calls["continue"] == min(attempts, faults.continue_failures + 1)
        assert result.continued == (faults.continue_failures < attempts)


# ---- real-printer safety (issue 13)


def test_travel_clears_the_highest_print_so_far():
    # a sequential print: an earlier object stands 6 mm tall beside this 0.6 mm layer
    plan = snake_plan(1, 5.6)
    rig, _, result = run_sequence(size=1, plan=plan, printed_top=6.0)
    assert result.travel_z == 7.0
    assert [m for m in rig.printer.moves if m.changes_xy and m.command != HELD_LINE]
    assert all(
        m.before[2] >= 7.0 for m in rig.printer.moves if m.changes_xy and m.command != HELD_LINE
    )


def test_a_travel_height_above_max_z_moves_nothing():
    rig, _, result = run_sequence(size=1, stop=(130.5, 100.0, 9.5), max_z=10.0)
    assert rig.printer.log == [WAIT_STOPPED, HELD_LINE, CONTINUE]
    assert "travel height Z 10.5 is above max Z 10; nothing moved" in result.failures[0].message
    assert result.continued


def test_the_head_goes_back_where_the_pause_script_parked_it():
    # the user's script lifts 10 mm relatively; their resume script lowers 10 mm
    script = ["G91", "G1 Z10 F600", "G90"]
    rig, _, result = run_sequence(size=1, absolute_e=False, pause_script=script)
    log = rig.printer.log
    assert log[:5] == [WAIT_STOPPED, *script, CONFIRM]  # the park is measured
    assert result.stop_position == Position(*STOP, 1234.5)
    assert result.return_position is not None and result.return_position.z == pytest.approx(10.6)
    assert "G1 Z10.6 E1 F600" in rig.printer.sent  # back up to the park, unretracting
    assert rig.printer.state_before(HELD_LINE).z == pytest.approx(10.6)


def test_with_a_pause_script_the_stop_comes_from_the_file_when_the_report_disagrees():
    # a stale pause report (no logPositionOnPause): the printer can't be asked, the head is
    # parked elsewhere; the file's last move decides
    script = ["G91", "G1 Z10 F600", "G90"]
    faults = PrinterFaults(pause_position_off=2.0)
    rig, _, result = run_sequence(size=1, pause_script=script, faults=faults)
    assert result.stop_position_source == StopSource.TRACKER
    assert result.stop_position == Position(*STOP, 1234.5)
    assert rig.printer.log.count(CONFIRM) >= 1


def test_with_a_pause_script_and_no_known_stop_nothing_moves():
    # OctoPrint reports no pause position and the file gives none: the printer can't be
    # asked either (it would tell where the script parked the head)
    script = ["G91", "G1 Z10 F600", "G90"]
    faults = PrinterFaults(no_pause_position=True)
    rig, _, result = run_sequence(
        size=1, pause_script=script, faults=faults, tracker_knows_position=False
    )
    assert "stop position unknown (the pause script moved the head" in result.failures[0].message
    assert not [line for line in rig.printer.sent if line not in (*script, HELD_LINE)]
    assert result.continued


def test_two_camera_failures_in_a_row_skip_the_rest_of_the_layer():
    rig, _, result = run_sequence(camera_fails=frozenset({3, 4}))
    assert len(rig.camera.requests) == 4
    assert result.failures[-1].message == (
        "2 camera failures in a row: the remaining 5 positions of this layer are skipped"
    )
    assert result.continued and result.outcome == "completed_with_failures"
    _, _, result = run_sequence(camera_fails=frozenset({3, 5, 7}))
    assert len(result.shots) == 9, "failures apart skip nothing"


def test_every_camera_is_taken_at_every_position():
    rig, _, result = run_sequence(others={"nozzle": {}, "top": {}})
    nozzle, top = rig.others["nozzle"], rig.others["top"]
    assert result.outcome == "completed" and result.failures == []
    assert len(result.shots) == 27
    for name, camera in (("main", rig.camera), ("nozzle", nozzle), ("top", top)):
        shots = [shot for shot in result.shots if shot.camera == name]
        assert [shot.index for shot in shots] == [p.index for p in snake_plan(3, 5.6).points]
        assert all(shot.saved is not None for shot in shots)
        assert [r.index for r in camera.requests] == [shot.index for shot in shots]
        assert {(r.camera, r.name_in_files) for r in camera.requests} == {(name, name != "main")}
    # one move and one confirmation per position, whatever the number of cameras
    assert sum(1 for line in rig.printer.sent if line.startswith("G0 X")) == 9 + 1
    names = [shot.saved.path for shot in result.shots[:3]]
    assert names == [
        "layer_0003_pos_00.jpg",
        "layer_0003_pos_00_cam_nozzle.jpg",
        "layer_0003_pos_00_cam_top.jpg",
    ]


def test_a_dead_second_camera_skips_no_position_of_the_first():
    rig, _, result = run_sequence(others={"nozzle": {"fail_at": frozenset(range(1, 10))}})
    dead = rig.others["nozzle"]
    main = [shot for shot in result.shots if shot.camera == "main"]
    assert len(main) == 9 and all(shot.saved is not None for shot in main)
    assert len(dead.requests) == 2, "not asked again once dropped for the layer"
    failures = [(f.index, f.camera, f.message) for f in result.failures]
    assert failures == [
        (0, "nozzle", "position 1 of 9 (nozzle): snapshot timed out after 5.0 s"),
        (1, "nozzle", "position 2 of 9 (nozzle): snapshot timed out after 5.0 s"),
        (
            None,
            "nozzle",
            "camera 'nozzle': 2 failures in a row: its remaining 7 positions of this layer "
            "are skipped; the other cameras go on",
        ),
    ]
    assert result.continued and result.outcome == "completed_with_failures"


def test_every_camera_failing_twice_in_a_row_skips_the_rest_of_the_layer():
    rig, _, result = run_sequence(
        camera_fails=frozenset({2, 3}), others={"nozzle": {"fail_at": frozenset({2, 3})}}
    )
    dead = rig.others["nozzle"]
    assert len(rig.camera.requests) == 3 and len(dead.requests) == 3
    assert [f.message for f in result.failures[-2:]] == [
        f"camera '{name}': 2 failures in a row: its remaining 6 positions of this layer are "
        "skipped; no camera is left, so the layer's remaining positions are skipped"
        for name in ("main", "nozzle")
    ]
    assert len({shot.index for shot in result.shots}) == 3, "the head went to 3 positions"
    assert result.continued


def test_a_camera_failure_is_recorded_with_its_camera_and_its_own_duration():
    slow = {"fail_at": frozenset({1}), "seconds": 2.0}
    _, _, result = run_sequence(size=1, others={"nozzle": slow})
    (failure,) = result.failures
    assert (failure.phase, failure.index, failure.camera) == ("capture", 0, "nozzle")
    assert failure.duration == pytest.approx(2.0, abs=0.2)
    (saved,) = [shot for shot in result.shots if shot.saved is not None]
    assert saved.camera == "main"


def test_firmware_retraction_uses_g10_and_g11():
    motion = FakeMotion(*STOP, 1234.5, True, False, 1800.0, firmware_retraction=True)
    rig, _, _ = run_sequence(size=1, motion=motion)
    sent = rig.printer.sent
    assert sent[:2] == ["G10", "G0 Z5.6 F600"]
    assert sent[sent.index("G0 Z0.6 F600") + 1] == "G11", "recovered once the head is down"
    assert not [line for line in sent if "E" in line and line != HELD_LINE]
    assert not [line for line in sent if line in ("M82", "M83", "G90")]
    retracted = FakeMotion(
        *STOP, 1234.5, True, False, 1800.0, firmware_retraction=True, retracted=True
    )
    rig, _, _ = run_sequence(size=1, motion=retracted)
    assert "G10" not in rig.printer.sent and "G11" not in rig.printer.sent


def test_a_head_that_stays_up_owes_the_way_back():
    _, _, result = run_sequence(
        absolute_e=False, faults=PrinterFaults(lost_lines={"G0 X130.5 Y100": 99})
    )
    assert not result.continued
    assert result.owed_return == (
        "M83",
        "G0 Z5.6 F600",
        "G0 X130.5 Y100 F6000",
        "G1 Z0.6 E1 F600",
        "G90",
        "M83",
        "G1 F1800",
    )


# ---- checked lines: fewer round trips (issue 15)


def test_checked_lines_batch_the_lift_with_the_first_move_and_the_way_back_with_the_lowering():
    rig, _, result = run_sequence(size=1, lines_checked=True)
    assert rig.printer.log == [
        WAIT_STOPPED,
        "G1 E1233.5 F2100", "G0 Z5.6 F600", "G0 X125 Y105 F6000", CONFIRM,
        "G0 X130.5 Y100 F6000", "G1 Z0.6 E1234.5 F600", CONFIRM,
        "G1 F1800",
        HELD_LINE, CONTINUE,
    ]  # fmt: skip
    assert result.outcome == "completed"
    assert result.shots[0].measured.describe() == "X125 Y105 Z5.6"


def test_checked_lines_confirm_every_grid_point_and_the_return():
    rig, _, result = run_sequence(size=3, lines_checked=True)
    # one confirmation per grid point and one back down: two fewer than one per move
    assert rig.printer.calls["confirm"] == 9 + 1
    assert result.outcome == "completed" and len(rig.camera.requests) == 9


def test_checked_lines_a_head_down_away_from_the_return_point_is_lifted_back_up():
    # confirm 2 is the return's (1x1): every report from then on shows X 1 mm off; the
    # printer is asked again (no move: the head is down) before the head is lifted
    wrong = frozenset(range(2, 2 + MAX_REPORTS_PER_MOVE * (1 + MOVE_RESENDS)))
    rig, _, result = run_sequence(
        size=1, lines_checked=True, faults=PrinterFaults(wrong_reports=wrong)
    )
    assert rig.printer.sent[-1] == "G0 Z5.6 F600", "lifted back to travel height"
    assert rig.printer.sent.count("G0 X130.5 Y100 F6000") == 1, "no move while down"
    assert rig.printer.head.z == pytest.approx(5.6)
    assert "lifted back to Z 5.6 and stays up" in result.failures[0].message
    assert not result.continued and result.owed_return
    # the unretract went out once: the way back owed does not push the filament again
    assert "E1" not in " ".join(result.owed_return)


def test_checked_lines_a_single_wrong_report_back_down_is_asked_again():
    rig, _, result = run_sequence(
        size=1, lines_checked=True, faults=PrinterFaults(wrong_reports=frozenset({2}))
    )
    assert result.outcome == "completed" and result.continued
    assert rig.printer.sent.count("G1 Z0.6 E1234.5 F600") == 1


@pytest.mark.parametrize("at_check", [2, 3])
def test_checked_lines_a_user_pause_before_the_first_confirmation_confirms_the_lift(at_check):
    rig, _, result = run_sequence(
        size=3, lines_checked=True, faults=PrinterFaults(user_pause_at_check=at_check)
    )
    assert result.outcome == "left_paused_by_user"
    assert rig.printer.head.xyz == pytest.approx(STOP)
