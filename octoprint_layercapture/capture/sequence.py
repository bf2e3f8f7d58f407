"""The capture sequence: from a stopped job, over the grid and back, then continue the job.

It runs on the plugin's worker thread, never on OctoPrint's, and talks only through the
ports in :mod:`ports`. The G-code of every step comes from :mod:`gcode`. Rules it keeps:

* Lift first, lower last: no XY move below the travel height, which is never below the
  stop Z, this layer or the highest Z printed so far in the job, plus clearance (a
  sequential print's finished objects stand taller than the one being printed). A travel
  height above the printer's max Z moves nothing. Only grid points of the plan and the
  return point are ever commanded.
* The head goes back to where the job left it: the stop position, or in pause mode where
  the user's ``afterPrintPaused`` script parked it (measured once the script has run), so
  the user's ``beforePrintResumed`` script works exactly as without the plugin. When that
  script ran, the stop position comes from OctoPrint's pause report checked against the
  file, or from the file alone; never from asking the printer (that would read the park).
* Modes: the sequence switches to G90 only when the job is in G91 and to relative E only to
  retract with E moves, which it does only when the file established its E mode; it gives
  the job its modes back as the job's own mode commands in their order (see
  :mod:`firmware`). A file that retracts with G10/G11 is retracted with G10/G11.
* The head is confirmed by the printer (M400 + M114, or as ``wait_for_moves`` says) where
  a guarantee needs it: at every grid point before the settle delay and the snapshot, and
  back at the return point before the job continues; no sleeping for motion. Where lines
  are checked (numbered, checksummed, and a firmware error stops OctoPrint:
  ``lines_checked``) the lift goes out with the first grid move and the move back with the
  lowering, each pair confirmed once; otherwise the lift and the move back are confirmed
  on their own before any XY move or the lowering. The clock sleeps only for
  ``capture_delay`` and ``pre_capture_delay``, and between M114 polls in poll mode (the
  report, not the pause, tells that the head arrived).
* Whatever fails (camera, disk, timeouts, wrong position reports), the head goes back to
  where the job stopped, the modes are restored and the job continues; a failed continue is
  retried ``emergency_resume_attempts`` times. The head always returns, even with
  ``return_to_origin`` off, because the job's next move assumes it is where it stopped.
* A cancel, disconnect or shutdown (:class:`JobInterrupted`) stops at once: nothing more is
  sent and the job is not continued. A manual user pause is respected: the head is returned
  but the job stays paused, and the held-back line is left for the plugin to send on resume.
  A manual resume skips the remaining positions: the head returns at once.
* Every camera is taken at every position, all at once once the head settled (see
  :mod:`shots`). :data:`shots.CAMERA_FAILURES_TO_SKIP` failures in a row of one camera drop that
  camera for the rest of the layer, and the layer's remaining positions are skipped once no
  camera is left: a dead camera must not keep a hot nozzle over the part for every timeout,
  nor keep the other cameras from their pictures.
* When the head cannot be brought back, the job is not continued; ``owed_return`` is the
  G-code that brings it back, which the plugin sends before the job goes on (a resume).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

from ..settings import WAIT_POLL
from ..vocabulary import PHASES, Outcome, Phase, Step, StopSource
from . import firmware, moves

# The ports and the task and result types live in ports.py and results.py; importing
# them here lets callers take the whole sequence API from this module.
from .ports import (
    Clock,
    ImageSink,
    JobInterrupted,
    JobResumedByUser,
    PointLike,
    Position,
    PrinterPort,
    PrinterTimeout,
    ShotRequest,
    StopReport,
)
from .results import CaptureTask, SequenceFailure, SequenceResult, ShotResult
from .shots import CameraRig, CameraTurns, Shot

# A printer whose reports keep disagreeing after M400 will not change its mind; cap the
# position reports per move so a misreporting firmware isn't flooded until the timeout.
MAX_REPORTS_PER_MOVE = 10

# Poll mode (no wait command) asks until the report shows the target or the movement timeout
# runs out; this paces the questions so the serial line is not flooded meanwhile.
POLL_INTERVAL = 0.05

# A move whose report shows the head elsewhere was lost on the way (a dropped serial line):
# it is sent again this many times. Our moves are absolute, so sending one twice is harmless.
MOVE_RESENDS = 2

HEAD_NOT_BACK = (
    "the head could not be brought back; the job is left paused, and the head is brought "
    "back before the job goes on when you resume it"
)

ProgressCallback = Callable[[str, int, int], None]
T = TypeVar("T")


def confirm_position(
    printer: PrinterPort, clock: Clock, expected: Position, timeout: float, polling: bool
) -> Tuple[Optional[Position], Optional[str]]:
    """Ask for the position (the port's wait for the moves + M114) until it matches
    ``expected`` or ``timeout`` runs out; ``polling``: M114 alone, asked again every
    :data:`POLL_INTERVAL`. Returns the last report and, if it never matched, why; a report
    that never comes raises :class:`PrinterTimeout`. The sequence and *Calibrate* confirm
    every move with it."""
    deadline = clock.monotonic() + timeout
    reported: Optional[Position] = None
    reports = 0
    while polling or reports < MAX_REPORTS_PER_MOVE:
        if polling and reports:
            clock.sleep(max(min(POLL_INTERVAL, deadline - clock.monotonic()), 0))
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            break
        reports += 1
        reported = printer.confirm(remaining)
        if moves.reached(reported, expected):
            return reported, None
    seen = reported.describe() if reported is not None else "nothing"
    return reported, f"head reported {seen} instead of {expected.describe()} within {timeout:g} s"


class CaptureSequence:
    def __init__(
        self,
        printer: PrinterPort,
        cameras: CameraRig,
        sink: ImageSink,
        clock: Clock,
        logger: logging.Logger,
        on_progress: Optional[ProgressCallback] = None,
    ) -> None:
        self.printer = printer
        self.cameras = cameras
        self.sink = sink
        self.clock = clock
        self.logger = logger
        self.on_progress = on_progress
        self._told_return_forced = False

    def run(self, task: CaptureTask) -> SequenceResult:
        """Run the whole sequence for one layer; never raises."""
        if not task.settings.return_to_origin and not self._told_return_forced:
            self._told_return_forced = True
            self.logger.info(
                "return_to_origin is off, but the head always returns to where the job "
                "stopped: the job's next move assumes it is there"
            )
        return _Run(self, task).execute()


class _Abort(Exception):
    """Stop visiting grid points and return the head (the failure is already recorded)."""


class _UserPaused(Exception):
    """The user paused the job by hand: return the head, then leave the job paused."""


@dataclass(frozen=True)
class _ReturnPoint:
    """Where the head goes back to, and the job's state there: the stop position, or where
    the user's pause script left the head (with the modes and retraction it left)."""

    position: Position
    modes: firmware.ModeHistory
    firmware_retraction: bool
    retracted: bool
    feedrate: Optional[float]
    parked: bool  # the pause script moved the head away from the stop position
    reported: bool  # the position (E included) is the printer's report, not the file's


class _Run:
    """The state of one run; a fresh one per task keeps :class:`CaptureSequence` reusable."""

    def __init__(self, sequence: CaptureSequence, task: CaptureTask) -> None:
        self.printer, self.cameras, self.sink = sequence.printer, sequence.cameras, sequence.sink
        self.clock, self.logger = sequence.clock, sequence.logger
        self.on_progress = sequence.on_progress
        self.task = task
        self.settings = task.settings
        self.points: List[PointLike] = list(task.plan.points)
        self.timer = _PhaseTimer(sequence.clock)
        self.result = SequenceResult(
            layer=task.layer,
            shots=[],
            failures=[],
            timings={},
            stop_position=None,
            stop_position_source=StopSource.UNKNOWN,
            continued=False,
            outcome=Outcome.COMPLETED,
            started_at=sequence.clock.now(),
        )
        self.moved = False  # our first commands went out: the return path is owed
        self.head_back = True  # the head is where the job stopped, in the job's modes
        self.retract = moves.RETRACT_NONE
        self.retract_e: Optional[float] = None  # the job's E, confirmed by the printer
        self.lifted = False  # the lift to travel height is confirmed: XY moves may go out
        self.lift_unconfirmed = False  # the lift went out with the first move, unconfirmed yet
        self.xy_moved = False  # an XY move of ours went out
        self.interrupted = False
        self.user_paused = False
        self.turns = CameraTurns(sequence.cameras)  # the cameras still taken in this layer
        self.back: Optional[_ReturnPoint] = None
        self.travel_z: Optional[float] = None
        self.retract_owed = True  # our retract (if any) is not recovered yet

    # ---- top level

    def execute(self) -> SequenceResult:
        try:
            self._capture_and_return()
            self._continue_job()
        except JobInterrupted as exc:
            self.interrupted = True
            self._fail(self.timer.phase, f"{exc}: nothing more sent, the job was not continued")
        except Exception as exc:  # a bug of ours must still not leave the job stopped
            self.logger.exception("layer %d: capture sequence failed", self.task.layer)
            self._fail(self.timer.phase, f"unexpected error: {exc!r}")
            self._last_resort_continue()
        if not self.head_back and not self.interrupted and self.back is not None:
            self.result.owed_return = tuple(self._owed_return())
        self.result.timings = self.timer.finish()
        self.result.outcome = self._outcome()
        return self.result

    def _capture_and_return(self) -> None:
        back = self._find_return_point()
        if back is None:
            return
        if not self.points:
            skipped = len(self.task.plan.skipped)
            self._fail(Phase.MOVES, f"no grid position to visit ({skipped} outside the bounds)")
            return
        stop = self.result.stop_position
        assert stop is not None and stop.z is not None
        travel_z = moves.travel_height(
            self.task.plan.capture_z, stop.z, self.task.layer_z, self.task.printed_top
        )
        max_z = self.task.max_z
        if max_z is not None and travel_z > max_z + moves.POSITION_TOLERANCE:
            self._fail(
                Phase.MOVES,
                f"travel height Z {travel_z:g} is above max Z {max_z:g}; nothing moved",
            )
            return
        self.result.travel_z = self.travel_z = travel_z
        self.back = back
        if back.reported:
            self.retract_e = moves.confirmed_e(self.task.motion.e, back.position.e)
        self.retract = moves.retract_kind(
            self.settings.retract_length,
            back.modes,
            back.firmware_retraction,
            back.retracted,
            self.retract_e,
        )
        try:
            self._leave(travel_z)
            for number, point in enumerate(self.points, start=1):
                self._visit(number, point, travel_z)
        except JobInterrupted:
            raise
        except _UserPaused:
            self.user_paused = True
        except _Abort:
            pass
        except Exception as exc:
            self.logger.exception("layer %d: error during the grid moves", self.task.layer)
            self._fail(self.timer.phase, f"unexpected error: {exc!r}")
        self._return_head(back, travel_z)

    # ---- stop position and return point

    def _find_return_point(self) -> Optional[_ReturnPoint]:
        """Waits for the stop; sets the stop position; returns where the head goes back to
        (None: no capture, the head was not moved)."""
        self.timer.enter(Phase.STOP)
        self._progress(Step.STOPPING, 0)
        timeout = self.settings.pause_timeout
        try:
            report = self.printer.wait_stopped(timeout)
        except JobInterrupted:
            raise
        except PrinterTimeout as exc:
            self._fail(Phase.STOP, f"the job did not stop within {timeout:g} s ({exc}); no capture")
            return None
        except JobResumedByUser as exc:
            self._fail(Phase.STOP, f"{exc}; no capture, the head was not moved")
            return None
        except Exception as exc:
            self._fail(Phase.STOP, f"waiting for the job to stop failed: {exc!r}; no capture")
            return None
        stop = self._find_stop_position(report)
        if stop is None:
            return None
        motion = self.task.motion
        modes = motion.modes
        for command in report.script_modes:
            modes = modes.after(command)
        retracted = motion.retracted if report.script_retracted is None else report.script_retracted
        feedrate = motion.feedrate if report.script_feedrate is None else report.script_feedrate
        park: Optional[Position] = stop
        if report.script_lines:
            park = self._measure_park()
        if park is None:
            return None
            self.result.notes.append(
                f"the pause script left the head at {park.describe()}; it goes back there"
            )
        self.result.return_position = park
        reported = park is not stop or self.result.stop_position_source != StopSource.TRACKER
        return _ReturnPoint(
            park, modes, motion.firmware_retraction, retracted, feedrate, park is not stop, reported
        )

    def _find_stop_position(self, report: StopReport) -> Optional[Position]:
        motion = self.task.motion
        tracked = Position(motion.x, motion.y, motion.z, motion.e)
        reported = report.position
        # the head may be parked elsewhere once a pause script ran: the printer can no
        # longer tell where the job stopped, only OctoPrint's pause report and the file can
        may_ask = report.script_lines == 0
        if reported is not None and reported.has_xyz:
            if not tracked.has_xyz or moves.reached(reported, moves.position_as_sent(tracked)):
                return self._use_stop(reported, StopSource.PAUSE_EVENT)
            # OctoPrint's pause asks M400 + M114: a printer without M400 answers while the
            # job's last moves still run, and without serial.logPositionOnPause the report
            # is a stale one. Where the file's last move ends decides.
            self.logger.info(
                "layer %d: OctoPrint's pause position %s is not where the job's last move "
                "ends (%s)%s",
                self.task.layer,
                reported.describe(),
                tracked.describe(),
                "; asking the printer again" if may_ask else "; using the file's position",
            )
        if may_ask:
            self.printer.check()
            asked = self._ask_stop_position(tracked)
            if asked is not None and asked.has_xyz:
                return self._use_stop(asked, StopSource.POSITION_REPORT)
        if tracked.has_xyz:
            return self._use_stop(tracked, StopSource.TRACKER)
        why = "" if may_ask else " (the pause script moved the head, so it can't be asked)"
        self._fail(Phase.STOP, f"stop position unknown{why}; the head was not moved")
        return None

    def _measure_park(self) -> Optional[Position]:
        started = self.clock.monotonic()
        done, park = self._step(
            Phase.STOP,
            lambda: self.printer.confirm(self.settings.movement_timeout),
            lambda exc: f"where the pause script left the head: {exc}; no capture",
        )
        if not done or park is None:
            return None
        if not park.has_xyz:
            self._fail(
                Phase.STOP,
                f"where the pause script left the head is unknown ({park.describe()}); no capture",
                None,
                started,
            )
            return None
        return park

    def _ask_stop_position(self, tracked: Position) -> Optional[Position]:
        started = self.clock.monotonic()

        def ask() -> Tuple[Optional[Position], Optional[str]]:
            if self.settings.wait_for_moves != WAIT_POLL or not tracked.has_xyz:
                return self.printer.confirm(self.settings.pause_timeout), None
            # M114 alone may answer while the job's last moves still run: ask until the
            # head is where they end
            return self._confirm_at(moves.position_as_sent(tracked))

        done, answer = self._step(
            Phase.STOP, ask, lambda exc: f"no position report ({exc})", started=started
        )
        if not done or answer is None:
            return None
        reported, mismatch = answer
        if mismatch:
            self._fail(Phase.STOP, f"stop position not confirmed: {mismatch}", None, started)
            return None
        return reported

    def _use_stop(self, position: Position, source: str) -> Position:
        self.result.stop_position = position
        self.result.stop_position_source = source
        return position

    # ---- out and over the grid

    def _leave(self, travel_z: float) -> None:
        """Setup, retract and lift. With checked lines the first grid move goes out with
        them and the lift is confirmed with it (see :meth:`_confirm_batch`); otherwise no XY
        move goes out before the printer confirms the lift."""
        self.timer.enter(Phase.MOVES)
        self.printer.check()
        s = self.settings
        assert self.back is not None
        commands = moves.setup_commands(self.back.modes, self.retract)
        commands += moves.retract_commands(
            self.retract, s.retract_length, s.retract_speed, self.retract_e
        )
        lift = moves.lift_commands(travel_z, s.z_speed)
        if self.task.lines_checked:
            first = self.points[0]
            self.printer.send(
                commands + lift + moves.move_commands(first.x, first.y, s.movement_speed)
            )
            self.moved = self.xy_moved = True
            self.head_back = False
            self.lift_unconfirmed = True
            return
        self.printer.send(commands + lift)
        self.moved = True
        self.head_back = False
        # Only Z is checked, because a pause script may have parked the head elsewhere in XY.
        started = self.clock.monotonic()
        try:
            _, mismatch = self._confirm_move(lift, Position(None, None, travel_z))
        except PrinterTimeout as exc:
            mismatch = f"not confirmed ({exc})"
        if mismatch:
            self._fail(
                Phase.MOVES, f"lift to Z {travel_z:g}: {mismatch}; no XY move", None, started
            )
            raise _Abort()
        self.lifted = True

    def _visit(self, number: int, point: PointLike, travel_z: float) -> None:
        s = self.settings
        where = f"position {point.index + 1} of {self.task.plan.count}"  # as named in the UI
        self._checkpoint()
        self.timer.enter(Phase.MOVES)
        self._progress(Step.MOVING, number)
        started = self.clock.monotonic()
        x, y = moves.as_sent(point.x), moves.as_sent(point.y)
        commanded = Position(x, y, travel_z)
        request = ShotRequest(
            self.task.layer, self.task.layer_z, point.index, self.task.plan.count, x, y, travel_z
        )
        now = self.clock.now()
        shots = [
            ShotResult(point.index, camera.request(request), commanded, None, None, "", 0.0, now)
            for camera in self.turns.active
        ]
        self.result.shots.extend(shots)
        move = moves.move_commands(point.x, point.y, s.movement_speed)
        batched = self.lift_unconfirmed
        if not batched:
            self.printer.send(move)
            self.xy_moved = True
        try:
            if batched:
                measured, mismatch = self._confirm_lifted_move(move, commanded)
            else:
                measured, mismatch = self._confirm_move(move, commanded)
        except PrinterTimeout as exc:
            self._fail(Phase.MOVES, f"{where}: move not confirmed ({exc})", point.index, started)
            raise _Abort() from exc
        for shot in shots:
            shot.measured = measured
        if mismatch:
            self._fail(Phase.MOVES, f"{where}: {mismatch}; no snapshot", point.index, started)
            self._finish_shots(shots, started)
            return
        self.timer.enter(Phase.SETTLE)
        for delay in (s.capture_delay, s.pre_capture_delay):
            if delay > 0:
                self.clock.sleep(delay)
        self._checkpoint()
        self.timer.enter(Phase.CAPTURE)
        self._progress(Step.CAPTURING, number)
        # the cameras see where the printer reported the head (the fake toolhead camera draws it)
        failed = self._capture(where, replace(request, measured=measured), shots)
        self._finish_shots(shots, started)
        dropped, skip_layer = self.turns.after(failed, len(self.points) - number)
        for camera, message in dropped:
            self._fail(Phase.CAPTURE, message, camera=camera)
        if skip_layer:
            raise _Abort()

    def _capture(self, where: str, request: ShotRequest, shots: List[ShotResult]) -> List[str]:
        """Every camera still taken, at once; the names of those that gave no picture (a
        failed save is not the camera's)."""
        failed = []
        taken = self.cameras.take(request, self.turns.active)
        for shot, got in zip(shots, taken):
            self._store(self.turns.where(where, got.camera), shot, got)
            if got.snapshot is None:
                failed.append(got.camera.name)
        return failed

    def _store(self, where: str, shot: ShotResult, got: Shot) -> None:
        camera = got.camera.name
        if got.snapshot is None:
            message = f"{where}: {got.error}"
            self._fail(Phase.CAPTURE, message, shot.index, camera=camera, duration=got.duration)
            return
        shot.snapshot_camera = got.snapshot.camera
        # when this camera's picture came (the others may have taken longer)
        since = 0.0 if got.finished is None else max(0.0, self.clock.monotonic() - got.finished)
        shot.captured_at = self.clock.now() - timedelta(seconds=since)
        started = self.clock.monotonic() - got.duration  # the camera's time counts too
        try:
            shot.saved = self.sink.save(shot.request, got.snapshot, shot.captured_at)
        except OSError as exc:
            message = f"{where}: image not saved ({exc})"
            self._fail(Phase.CAPTURE, message, shot.index, started, camera)
        except Exception as exc:
            self.logger.exception("layer %d %s: saving failed", self.task.layer, where)
            message = f"{where}: image not saved ({exc!r})"
            self._fail(Phase.CAPTURE, message, shot.index, started, camera)

    def _finish_shots(self, shots: List[ShotResult], started: float) -> None:
        for shot in shots:
            self._finish_shot(shot, started)

    def _finish_shot(self, shot: ShotResult, started: float) -> None:
        shot.duration = self.clock.monotonic() - started

    def _checkpoint(self) -> None:
        self.printer.check()
        if self.printer.user_paused():
            raise _UserPaused()
        if self.printer.user_resumed():
            # the file waits behind the hold: give the head back to the job now
            self._fail(self.timer.phase, "the job was resumed by hand; remaining positions skipped")
            raise _Abort()

    def _confirm_at(self, expected: Position) -> Tuple[Optional[Position], Optional[str]]:
        polling = self.settings.wait_for_moves == WAIT_POLL
        timeout = self.settings.movement_timeout
        return confirm_position(self.printer, self.clock, expected, timeout, polling)

    def _confirm_move(
        self,
        commands: List[str],
        expected: Position,
        again: Optional[Callable[[Optional[Position]], Optional[List[str]]]] = None,
    ) -> Tuple[Optional[Position], Optional[str]]:
        """:meth:`_confirm_at`, sending ``commands`` again while the printer reports the
        head somewhere else (up to :data:`MOVE_RESENDS` times); ``again`` picks what to send
        again from the report, when that differs: nothing (only ask again) or None (stop)."""
        reported, mismatch = self._confirm_at(expected)
        for attempt in range(1, MOVE_RESENDS + 1):
            if mismatch is None:
                break
            if again is not None:
                resend = again(reported)
                if resend is None:
                    break
                commands = resend
            what = f"sending {' / '.join(commands)} again" if commands else "asking again"
            self.logger.warning(
                "layer %d: %s; %s (%d/%d)", self.task.layer, mismatch, what, attempt, MOVE_RESENDS
            )
            if commands:
                self.printer.send(commands)
            reported, mismatch = self._confirm_at(expected)
        return reported, mismatch

    def _confirm_lifted_move(
        self, move: List[str], expected: Position
    ) -> Tuple[Optional[Position], Optional[str]]:
        """The first grid move, sent with the lift: one confirmation for both. A report
        below travel height means the lift did not happen, so the lift goes out again before
        the move; when the head never reports at travel height, it is neither moved nor
        lowered any more (see :meth:`_return_head`)."""
        assert expected.z is not None
        lift = moves.lift_commands(expected.z, self.settings.z_speed)

        def again(reported: Optional[Position]) -> List[str]:
            up = reported is not None and moves.reached(reported, Position(None, None, expected.z))
            return move if up else lift + move

        try:
            reported, mismatch = self._confirm_move(move, expected, again)
        except PrinterTimeout:
            # nobody answers: the printer runs the lines in order, the lift before the move
            self.lifted = True
            raise
        finally:
            self.lift_unconfirmed = False
        self.lifted = reported is not None and moves.reached(
            reported, Position(None, None, expected.z)
        )
        if not self.lifted:
            assert mismatch is not None
            self._fail(Phase.MOVES, f"lift to Z {expected.z:g} not confirmed: {mismatch}")
            raise _Abort()
        return reported, mismatch

    def _confirm_late_lift(self, travel_z: float) -> None:
        """The batch went out but the sequence stopped before its confirmation (a user's
        pause or resume): confirm the lift before the head is moved back."""
        self.lift_unconfirmed = False
        lift = moves.lift_commands(travel_z, self.settings.z_speed)
        try:
            _, mismatch = self._confirm_move(lift, Position(None, None, travel_z))
        except PrinterTimeout:
            self.lifted = True  # in order, as above
            return
        self.lifted = mismatch is None
        if mismatch:
            self._fail(Phase.RETURN, f"lift to Z {travel_z:g} not confirmed: {mismatch}")

    # ---- back to the return point

    def _return_head(self, back: _ReturnPoint, travel_z: float) -> None:
        """Back above the return point, lower (unretracting), confirm, restore the modes.

        The head is lowered only above the return XY. With checked lines the move back and
        the lowering go out together (the printer runs them in order; a line can neither be
        lost nor refused without OctoPrint stopping) and are confirmed once, down at the
        return point; otherwise the head is lowered only once it is confirmed above the
        return XY. A step the printer reports as not done is sent again. When the head is
        not where it should be, it stays up (or is lifted back up) and the job is not
        continued (the plugin leaves it paused): printing on from the wrong place would ruin
        the part.
        """
        if not self.moved:
            return
        self.timer.enter(Phase.RETURN)
        self._progress(Step.RETURNING, len(self.points))
        if self.lift_unconfirmed:
            self._confirm_late_lift(travel_z)
        if self.xy_moved and not self.lifted:
            self._fail(
                Phase.RETURN,
                "the head is not confirmed at travel height, so it is neither moved nor "
                "lowered; the head stays up",
            )
            return
        s = self.settings
        point = back.position
        assert point.x is not None and point.y is not None and point.z is not None
        x, y, z = moves.as_sent(point.x), moves.as_sent(point.y), moves.as_sent(point.z)
        back_xy = moves.move_commands(point.x, point.y, s.movement_speed) if self.lifted else []
        lower = moves.lower_commands(
            point.z, s.z_speed, self.retract, s.retract_length, self.retract_e
        )
        batched = self.task.lines_checked and bool(back_xy)
        if back_xy and not batched:
            if not self._return_step(back_xy):
                return
            if not self._settle_return(back_xy, Position(x, y, travel_z), f"back above {self._to}"):
                return
        sent = back_xy + lower if batched else lower
        if not self._return_step(sent):
            return
        self.retract_owed = False

        def lower_again(reported: Optional[Position]) -> Optional[List[str]]:
            # still at travel height: the lowering never ran, unretract included; down at
            # the return XY: it did, and only Z is sent again (the E of an unretract is
            # relative and must not run twice); down anywhere else: no move could be safe
            # there, so the printer is only asked again
            if reported is not None and moves.reached(reported, Position(None, None, travel_z)):
                return sent
            if batched and not (
                reported is not None and moves.reached(reported, Position(x, y, None))
            ):
                return []
            return moves.lower_again_commands(z, s.z_speed)

        # The virtual printer applies G90/G91 before queued moves finish: the modes are
        # restored only once the head is confirmed back down.
        down = Position(x, y, z) if self.lifted else Position(None, None, z)
        if batched:
            if not self._settle_batched_return(sent, down, travel_z, lower_again):
                return
        elif not self._settle_return(lower, down, f"back at {self._to}", lower_again):
            return
        restore = moves.restore_mode_commands(back.modes, self.retract, back.feedrate)
        if self._return_step(restore):
            self.head_back = True

    def _settle_batched_return(
        self,
        commands: List[str],
        down: Position,
        travel_z: float,
        again: Callable[[Optional[Position]], Optional[List[str]]],
    ) -> bool:
        """Confirms the batched way back; a head reported down but not at the return point is
        lifted back to travel height and stays up."""
        started = self.clock.monotonic()
        done, answer = self._step(
            Phase.RETURN,
            lambda: self._confirm_move(commands, down, again),
            lambda exc: f"back at {self._to}: not confirmed ({exc})",
            started=started,
        )
        if not done or answer is None:
            return True  # nobody answers: the printer runs the commands in order
        reported, mismatch = answer
        if not mismatch:
            return True
        up = reported is not None and moves.reached(reported, Position(None, None, travel_z))
        if not up:
            self._return_step(moves.lift_commands(travel_z, self.settings.z_speed))
        self._fail(
            Phase.RETURN,
            f"back at {self._to}: {mismatch}; "
            + (
                "the head stays up"
                if up
                else f"the head is lifted back to Z {travel_z:g} and stays up"
            ),
            None,
            started,
        )
        return False

    @property
    def _to(self) -> str:
        parked = self.back is not None and self.back.parked
        return "where the pause script parked the head" if parked else "the stop position"

    def _owed_return(self) -> List[str]:
        """G-code that brings the head back from wherever the sequence left it: our modes,
        up to travel height, over the return point, down, the job's modes. Sent by the plugin
        before the job goes on, so no line of the file runs with the head away."""
        back, s = self.back, self.settings
        assert back is not None
        point = back.position
        assert point.x is not None and point.y is not None and point.z is not None
        kind = self.retract if self.retract_owed else moves.RETRACT_NONE
        commands = moves.setup_commands(back.modes, self.retract)
        if self.travel_z is not None:
            commands += moves.lift_commands(self.travel_z, s.z_speed)
        commands += moves.move_commands(point.x, point.y, s.movement_speed)
        commands += moves.lower_commands(point.z, s.z_speed, kind, s.retract_length, self.retract_e)
        commands += moves.restore_mode_commands(back.modes, self.retract, back.feedrate)
        return commands

    def _return_step(self, commands: List[str]) -> bool:
        if not commands:
            return True
        self.printer.check()
        done, _ = self._step(
            Phase.RETURN,
            lambda: self.printer.send(commands),
            lambda exc: f"sending {' / '.join(commands)} failed: {exc!r}",
        )
        return done

    def _settle_return(
        self,
        commands: List[str],
        expected: Position,
        what: str,
        again: Optional[Callable[[Optional[Position]], Optional[List[str]]]] = None,
    ) -> bool:
        """False when the printer reports the head elsewhere even after re-sending."""
        started = self.clock.monotonic()
        done, answer = self._step(
            Phase.RETURN,
            lambda: self._confirm_move(commands, expected, again),
            lambda exc: f"{what}: not confirmed ({exc})",
            started=started,
        )
        if not done or answer is None:
            return True  # nobody answers: the printer runs the commands in order
        _, mismatch = answer
        if mismatch:
            self._fail(Phase.RETURN, f"{what}: {mismatch}; the head stays up", None, started)
            return False
        return True

    # ---- continue the job

    def _continue_job(self) -> None:
        self.timer.enter(Phase.RESUME)
        self.printer.check()
        if self.user_paused or self.printer.user_paused():
            self.user_paused = True
            self._fail(Phase.RESUME, "the user paused the job by hand; it is left paused")
            return
        if not self.head_back:
            self._fail(Phase.RESUME, HEAD_NOT_BACK)
            return
        self._progress(Step.RESUMING, len(self.points))
        held_line = self.task.held_line
        if held_line:
            self.result.held_line_sent, _ = self._step(
                Phase.RESUME,
                lambda: self.printer.send([held_line]),
                lambda exc: f"held-back line not sent: {exc!r}",
            )
        attempts = 1 + self.settings.emergency_resume_attempts
        for attempt in range(1, attempts + 1):
            trying = f"continue attempt {attempt}/{attempts}"
            done, _ = self._step(
                Phase.RESUME,
                lambda: self.printer.continue_job(self.settings.resume_timeout),
                lambda exc: f"{trying}: {exc}",  # noqa: B023 (called within the iteration)
            )
            if done:
                self.result.continued = True
                return
        self._fail(Phase.RESUME, f"job could not be continued after {attempts} attempts")

    def _last_resort_continue(self) -> None:
        if not self.head_back:
            self._fail(Phase.RESUME, HEAD_NOT_BACK)
            return
        try:
            self.printer.continue_job(self.settings.resume_timeout)
            self.result.continued = True
        except Exception as exc:
            self._fail(Phase.RESUME, f"job could not be continued: {exc!r}")

    # ---- bookkeeping

    def _step(
        self,
        phase: Phase,
        action: Callable[[], T],
        why: Callable[[Exception], str],
        started: Optional[float] = None,
    ) -> Tuple[bool, Optional[T]]:
        """Runs one step that may fail without ending the sequence: a failure is recorded
        (``why(exc)``, its duration from ``started`` or the step's start) and the step
        reports not done. An interruption (cancel, disconnect, shutdown) ends the sequence."""
        if started is None:
            started = self.clock.monotonic()
        try:
            return True, action()
        except JobInterrupted:
            raise
        except Exception as exc:
            self._fail(phase, why(exc), None, started)
            return False, None

    def _outcome(self) -> str:
        if self.interrupted:
            return Outcome.INTERRUPTED
        if self.user_paused:
            return Outcome.LEFT_PAUSED_BY_USER
        if not self.result.continued:
            return Outcome.NOT_CONTINUED
        return Outcome.COMPLETED_WITH_FAILURES if self.result.failures else Outcome.COMPLETED

    def _fail(
        self,
        phase: str,
        message: str,
        index: Optional[int] = None,
        started: Optional[float] = None,
        camera: Optional[str] = None,
        duration: Optional[float] = None,
    ) -> None:
        if duration is None:
            duration = 0.0 if started is None else self.clock.monotonic() - started
        self.result.failures.append(SequenceFailure(phase, message, index, duration, camera))
        self.logger.warning("layer %d: %s", self.task.layer, message)

    def _progress(self, phase: str, number: int) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(phase, number, len(self.points))
        except Exception:
            self.logger.exception("layer %d: progress report failed", self.task.layer)


class _PhaseTimer:
    """Charges the time since the last switch to the current phase, so the phases are
    consecutive and add up to the total."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._started = self._mark = clock.monotonic()
        self.phase = PHASES[0]
        self._totals: Dict[str, float] = dict.fromkeys((str(p) for p in PHASES), 0.0)

    def enter(self, phase: Phase) -> None:
        now = self._clock.monotonic()
        self._totals[str(self.phase)] += now - self._mark
        self._mark = now
        self.phase = phase

    def finish(self) -> Dict[str, float]:
        self.enter(self.phase)
        return {**self._totals, "total": self._mark - self._started}
