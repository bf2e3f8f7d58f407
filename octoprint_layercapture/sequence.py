"""The capture sequence: from a stopped job, over the grid and back, then continue the job.

It runs on the plugin's worker thread, never on OctoPrint's, and talks only through the
ports in :mod:`ports`. The G-code of every step comes from :mod:`gcode`. Rules it keeps:

* Lift first, lower last: no XY move below the travel height, which is never below the
  stop Z plus clearance. Only grid points of the plan and the stop XY are ever commanded.
* Every move is confirmed by the printer (M400 + M114, or as ``wait_for_moves`` says)
  before the settle delay; no sleeping for motion. The clock sleeps only for
  ``capture_delay`` and ``pre_capture_delay``, and between M114 polls in poll mode (the
  report, not the pause, tells that the head arrived).
* Whatever fails (camera, disk, timeouts, wrong position reports), the head goes back to
  where the job stopped, the modes are restored and the job continues; a failed continue is
  retried ``emergency_resume_attempts`` times. The head always returns, even with
  ``return_to_origin`` off, because the job's next move assumes it is where it stopped.
* A cancel, disconnect or shutdown (:class:`JobInterrupted`) stops at once: nothing more is
  sent and the job is not continued. A manual user pause is respected: the head is returned
  but the job stays paused, and the held-back line is left for the plugin to send on resume.
  A manual resume (pause mode) skips the remaining positions: the head returns at once.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Tuple

from . import gcode, ports

# The job and result types live in ports.py beside the other exchanged values; importing
# them here lets callers take the whole sequence API from this module.
from .ports import (
    CameraError,
    CameraPort,
    CaptureJob,
    Clock,
    ImageSink,
    JobInterrupted,
    JobResumedByUser,
    PointLike,
    Position,
    PrinterPort,
    PrinterTimeout,
    SequenceFailure,
    SequenceResult,
    ShotRequest,
    ShotResult,
)
from .settings import WAIT_POLL

# A printer whose reports keep disagreeing after M400 will not change its mind; cap the
# position reports per move so a misreporting firmware isn't flooded until the timeout.
MAX_REPORTS_PER_MOVE = 10

# Poll mode (no wait command) asks until the report shows the target or the movement timeout
# runs out; this paces the questions so the serial line is not flooded meanwhile.
POLL_INTERVAL = 0.05

# A move whose report shows the head elsewhere was lost on the way (a dropped serial line):
# it is sent again this many times. Our moves are absolute, so sending one twice is harmless.
MOVE_RESENDS = 2

ProgressCallback = Callable[[str, int, int], None]


class CaptureSequence:
    def __init__(
        self,
        printer: PrinterPort,
        camera: CameraPort,
        sink: ImageSink,
        clock: Clock,
        logger: logging.Logger,
        on_progress: Optional[ProgressCallback] = None,
    ) -> None:
        self.printer = printer
        self.camera = camera
        self.sink = sink
        self.clock = clock
        self.logger = logger
        self.on_progress = on_progress
        self._told_return_forced = False

    def run(self, job: CaptureJob) -> SequenceResult:
        """Run the whole sequence for one layer; never raises."""
        if not job.settings.return_to_origin and not self._told_return_forced:
            self._told_return_forced = True
            self.logger.info(
                "return_to_origin is off, but the head always returns to where the job "
                "stopped: the job's next move assumes it is there"
            )
        return _Run(self, job).execute()


class _Abort(Exception):
    """Stop visiting grid points and return the head (the failure is already recorded)."""


class _UserPaused(Exception):
    """The user paused the job by hand: return the head, then leave the job paused."""


class _Run:
    """The state of one run; a fresh one per job keeps :class:`CaptureSequence` reusable."""

    def __init__(self, sequence: CaptureSequence, job: CaptureJob) -> None:
        self.printer, self.camera, self.sink = sequence.printer, sequence.camera, sequence.sink
        self.clock, self.logger = sequence.clock, sequence.logger
        self.on_progress = sequence.on_progress
        self.job = job
        self.settings = job.settings
        self.points: List[PointLike] = list(job.plan.points)
        self.timer = _PhaseTimer(sequence.clock)
        self.result = SequenceResult(
            layer=job.layer,
            shots=[],
            failures=[],
            timings={},
            stop_position=None,
            stop_position_source=ports.STOP_UNKNOWN,
            continued=False,
            outcome=ports.OUTCOME_COMPLETED,
            started_at=sequence.clock.now(),
        )
        self.moved = False  # our first commands went out: the return path is owed
        self.head_back = True  # the head is where the job stopped, in the job's modes
        self.retracted = False
        self.lifted = False  # the lift to travel height is confirmed: XY moves may go out
        self.interrupted = False
        self.user_paused = False

    # ---- top level

    def execute(self) -> SequenceResult:
        try:
            self._capture_and_return()
            self._continue_job()
        except JobInterrupted as exc:
            self.interrupted = True
            self._fail(self.timer.phase, f"{exc}: nothing more sent, the job was not continued")
        except Exception as exc:  # a bug of ours must still not leave the job stopped
            self.logger.exception("layer %d: capture sequence failed", self.job.layer)
            self._fail(self.timer.phase, f"unexpected error: {exc!r}")
            self._last_resort_continue()
        self.result.timings = self.timer.finish()
        self.result.outcome = self._outcome()
        return self.result

    def _capture_and_return(self) -> None:
        stop = self._find_stop_position()
        if stop is None:
            return
        if not self.points:
            skipped = len(self.job.plan.skipped)
            self._fail("moves", f"no grid position to visit ({skipped} outside the bounds)")
            return
        assert stop.x is not None and stop.y is not None and stop.z is not None
        travel_z = gcode.travel_height(self.job.plan.capture_z, stop.z, self.job.layer_z)
        self.result.travel_z = travel_z
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
            self.logger.exception("layer %d: error during the grid moves", self.job.layer)
            self._fail(self.timer.phase, f"unexpected error: {exc!r}")
        self._return_head(stop, travel_z)

    # ---- stop position

    def _find_stop_position(self) -> Optional[Position]:
        self.timer.enter("stop")
        self._progress("stopping", 0)
        timeout = self.settings.pause_timeout
        try:
            reported = self.printer.wait_stopped(timeout)
        except JobInterrupted:
            raise
        except PrinterTimeout as exc:
            self._fail("stop", f"the job did not stop within {timeout:g} s ({exc}); no capture")
            return None
        except JobResumedByUser as exc:
            self._fail("stop", f"{exc}; no capture, the head was not moved")
            return None
        except Exception as exc:
            self._fail("stop", f"waiting for the job to stop failed: {exc!r}; no capture")
            return None
        motion = self.job.motion
        tracked = Position(motion.x, motion.y, motion.z, motion.e)
        if reported is not None and reported.has_xyz:
            if not tracked.has_xyz or gcode.reached(reported, gcode.position_as_sent(tracked)):
                return self._use_stop(reported, ports.STOP_FROM_PAUSE_EVENT)
            # OctoPrint's pause asks M400 + M114: a printer without M400 answers while the
            # job's last moves still run. Where the file's last move ends decides.
            self.logger.info(
                "layer %d: OctoPrint's pause position %s is not where the job's last move "
                "ends (%s); asking the printer again",
                self.job.layer,
                reported.describe(),
                tracked.describe(),
            )
        self.printer.check()
        reported = self._ask_stop_position(tracked)
        if reported is not None and reported.has_xyz:
            return self._use_stop(reported, ports.STOP_FROM_POSITION_REPORT)
        if tracked.has_xyz:
            return self._use_stop(tracked, ports.STOP_FROM_TRACKER)
        self._fail("stop", "stop position unknown; the head was not moved")
        return None

    def _ask_stop_position(self, tracked: Position) -> Optional[Position]:
        started = self.clock.monotonic()
        try:
            if self.settings.wait_for_moves != WAIT_POLL or not tracked.has_xyz:
                return self.printer.confirm(self.settings.pause_timeout)
            # M114 alone may answer while the job's last moves still run: ask until the
            # head is where they end
            reported, mismatch = self._confirm_at(gcode.position_as_sent(tracked))
        except JobInterrupted:
            raise
        except Exception as exc:
            self._fail("stop", f"no position report ({exc})", None, started)
            return None
        if mismatch:
            self._fail("stop", f"stop position not confirmed: {mismatch}", None, started)
            return None
        return reported

    def _use_stop(self, position: Position, source: str) -> Position:
        self.result.stop_position = position
        self.result.stop_position_source = source
        return position

    # ---- out and over the grid

    def _leave(self, travel_z: float) -> None:
        self.timer.enter("moves")
        self.printer.check()
        s = self.settings
        retract = gcode.retract_planned(s.retract_length, self.job.motion)
        commands = gcode.setup_commands(retract)
        if retract:
            commands += gcode.retract_commands(s.retract_length, s.retract_speed)
        lift = gcode.lift_commands(travel_z, s.z_speed)
        self.printer.send(commands + lift)
        self.moved = True
        self.head_back = False
        self.retracted = retract
        # No XY move before the printer confirms the lift: only Z is checked, because a
        # pause script may have parked the head elsewhere in XY.
        started = self.clock.monotonic()
        try:
            _, mismatch = self._confirm_move(lift, Position(None, None, travel_z))
        except PrinterTimeout as exc:
            mismatch = f"not confirmed ({exc})"
        if mismatch:
            self._fail("moves", f"lift to Z {travel_z:g}: {mismatch}; no XY move", None, started)
            raise _Abort()
        self.lifted = True

    def _visit(self, number: int, point: PointLike, travel_z: float) -> None:
        s = self.settings
        where = f"position {point.index + 1} of {self.job.plan.count}"  # as named in the UI
        self._checkpoint()
        self.timer.enter("moves")
        self._progress("moving", number)
        started = self.clock.monotonic()
        x, y = gcode.as_sent(point.x), gcode.as_sent(point.y)
        commanded = Position(x, y, travel_z)
        request = ShotRequest(
            self.job.layer, self.job.layer_z, point.index, self.job.plan.count, x, y, travel_z
        )
        shot = ShotResult(point.index, request, commanded, None, None, "", 0.0, self.clock.now())
        self.result.shots.append(shot)
        move = gcode.move_commands(point.x, point.y, s.movement_speed)
        self.printer.send(move)
        try:
            shot.measured, mismatch = self._confirm_move(move, commanded)
        except PrinterTimeout as exc:
            self._fail("moves", f"{where}: move not confirmed ({exc})", point.index, started)
            raise _Abort() from exc
        if mismatch:
            self._fail("moves", f"{where}: {mismatch}; no snapshot", point.index, started)
            self._finish_shot(shot, started)
            return
        self.timer.enter("settle")
        for delay in (s.capture_delay, s.pre_capture_delay):
            if delay > 0:
                self.clock.sleep(delay)
        self._checkpoint()
        self.timer.enter("capture")
        self._progress("capturing", number)
        self._capture(where, shot)
        self._finish_shot(shot, started)

    def _capture(self, where: str, shot: ShotResult) -> None:
        started = self.clock.monotonic()
        try:
            snapshot = self.camera.take(shot.request)
        except CameraError as exc:
            self._fail("capture", f"{where}: {exc}", shot.index, started)
            return
        except Exception as exc:
            self.logger.exception("layer %d %s: camera error", self.job.layer, where)
            self._fail("capture", f"{where}: camera error {exc!r}", shot.index, started)
            return
        shot.snapshot_camera = snapshot.camera
        shot.captured_at = self.clock.now()
        try:
            shot.saved = self.sink.save(shot.request, snapshot, shot.captured_at)
        except OSError as exc:
            self._fail("capture", f"{where}: image not saved ({exc})", shot.index, started)
        except Exception as exc:
            self.logger.exception("layer %d %s: saving failed", self.job.layer, where)
            self._fail("capture", f"{where}: image not saved ({exc!r})", shot.index, started)

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
        """Ask for the position until it matches ``expected`` or ``movement_timeout`` runs
        out. Returns the last report and, if it never matched, why; a report that never
        comes raises :class:`PrinterTimeout`."""
        timeout = self.settings.movement_timeout
        deadline = self.clock.monotonic() + timeout
        polling = self.settings.wait_for_moves == WAIT_POLL
        reported: Optional[Position] = None
        reports = 0
        while polling or reports < MAX_REPORTS_PER_MOVE:
            if polling and reports:
                self.clock.sleep(max(min(POLL_INTERVAL, deadline - self.clock.monotonic()), 0))
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            reports += 1
            reported = self.printer.confirm(remaining)
            if gcode.reached(reported, expected):
                return reported, None
        seen = reported.describe() if reported is not None else "nothing"
        return reported, (
            f"head reported {seen} instead of {expected.describe()} within {timeout:g} s"
        )

    def _confirm_move(
        self, commands: List[str], expected: Position
    ) -> Tuple[Optional[Position], Optional[str]]:
        """:meth:`_confirm_at`, sending ``commands`` again while the printer reports the
        head somewhere else (up to :data:`MOVE_RESENDS` times)."""
        reported, mismatch = self._confirm_at(expected)
        for attempt in range(1, MOVE_RESENDS + 1):
            if mismatch is None:
                break
            self.logger.warning(
                "layer %d: %s; sending %s again (%d/%d)",
                self.job.layer,
                mismatch,
                " / ".join(commands),
                attempt,
                MOVE_RESENDS,
            )
            self.printer.send(commands)
            reported, mismatch = self._confirm_at(expected)
        return reported, mismatch

    # ---- back to the stop position

    def _return_head(self, stop: Position, travel_z: float) -> None:
        """Back above the stop XY, lower, unretract, confirm, restore the modes.

        Each step is confirmed, and a step the printer reports as not done is sent again.
        The head is lowered only once it is confirmed above the stop XY (or nobody answers:
        the printer runs commands in order): lowering anywhere else could hit the print.
        When a step cannot be done, the head stays up and the job is not continued (the
        plugin leaves it paused): printing on from the wrong place would ruin the part.
        """
        if not self.moved:
            return
        self.timer.enter("return")
        self._progress("returning", len(self.points))
        s = self.settings
        assert stop.x is not None and stop.y is not None and stop.z is not None
        if self.lifted:
            back_xy = gcode.move_commands(stop.x, stop.y, s.movement_speed)
            above_stop = Position(gcode.as_sent(stop.x), gcode.as_sent(stop.y), travel_z)
            if not self._return_step(back_xy):
                return
            if not self._settle_return(back_xy, above_stop, "back above the stop position"):
                return
        lower = gcode.lower_commands(stop.z, s.z_speed)
        unretract = gcode.unretract_commands(
            s.retract_length if self.retracted else 0.0, s.retract_speed
        )
        if not self._return_step(lower + unretract):
            return
        # The virtual printer applies G90/G91 before queued moves finish: the modes are
        # restored only once the head is confirmed back down.
        at_stop = Position(None, None, gcode.as_sent(stop.z))
        if self.lifted:
            at_stop = Position(gcode.as_sent(stop.x), gcode.as_sent(stop.y), at_stop.z)
        if not self._settle_return(lower, at_stop, "back at the stop position"):
            return
        if self._return_step(gcode.restore_mode_commands(self.job.motion)):
            self.head_back = True

    def _return_step(self, commands: List[str]) -> bool:
        if not commands:
            return True
        self.printer.check()
        started = self.clock.monotonic()
        try:
            self.printer.send(commands)
        except JobInterrupted:
            raise
        except Exception as exc:
            self._fail("return", f"sending {' / '.join(commands)} failed: {exc!r}", None, started)
            return False
        return True

    def _settle_return(self, commands: List[str], expected: Position, what: str) -> bool:
        """False when the printer reports the head elsewhere even after re-sending."""
        started = self.clock.monotonic()
        try:
            _, mismatch = self._confirm_move(commands, expected)
        except JobInterrupted:
            raise
        except Exception as exc:
            self._fail("return", f"{what}: not confirmed ({exc})", None, started)
            return True
        if mismatch:
            self._fail("return", f"{what}: {mismatch}; the head stays up", None, started)
            return False
        return True

    # ---- continue the job

    def _continue_job(self) -> None:
        self.timer.enter("resume")
        self.printer.check()
        if self.user_paused or self.printer.user_paused():
            self.user_paused = True
            self._fail("resume", "the user paused the job by hand; it is left paused")
            return
        if not self.head_back:
            self._fail("resume", "the head could not be returned; the job is left stopped")
            return
        self._progress("resuming", len(self.points))
        held_line = self.job.held_line
        if held_line:
            started = self.clock.monotonic()
            try:
                self.printer.send([held_line])
                self.result.held_line_sent = True
            except JobInterrupted:
                raise
            except Exception as exc:
                self._fail("resume", f"held-back line not sent: {exc!r}", None, started)
        attempts = 1 + self.settings.emergency_resume_attempts
        for attempt in range(1, attempts + 1):
            started = self.clock.monotonic()
            try:
                self.printer.continue_job(self.settings.resume_timeout)
            except JobInterrupted:
                raise
            except Exception as exc:
                self._fail("resume", f"continue attempt {attempt}/{attempts}: {exc}", None, started)
                continue
            self.result.continued = True
            return
        self._fail("resume", f"job could not be continued after {attempts} attempts")

    def _last_resort_continue(self) -> None:
        if not self.head_back:
            self._fail("resume", "the head could not be returned; the job is left stopped")
            return
        try:
            self.printer.continue_job(self.settings.resume_timeout)
            self.result.continued = True
        except Exception as exc:
            self._fail("resume", f"job could not be continued: {exc!r}")

    # ---- bookkeeping

    def _outcome(self) -> str:
        if self.interrupted:
            return ports.OUTCOME_INTERRUPTED
        if self.user_paused:
            return ports.OUTCOME_LEFT_PAUSED_BY_USER
        if not self.result.continued:
            return ports.OUTCOME_NOT_CONTINUED
        return (
            ports.OUTCOME_COMPLETED_WITH_FAILURES
            if self.result.failures
            else ports.OUTCOME_COMPLETED
        )

    def _fail(
        self, phase: str, message: str, index: Optional[int] = None, started: Optional[float] = None
    ) -> None:
        duration = 0.0 if started is None else self.clock.monotonic() - started
        self.result.failures.append(SequenceFailure(phase, message, index, duration))
        self.logger.warning("layer %d: %s", self.job.layer, message)

    def _progress(self, phase: str, number: int) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(phase, number, len(self.points))
        except Exception:
            self.logger.exception("layer %d: progress report failed", self.job.layer)


class _PhaseTimer:
    """Charges the time since the last switch to the current phase, so the phases are
    consecutive and add up to the total."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._started = self._mark = clock.monotonic()
        self.phase = ports.PHASES[0]
        self._totals = dict.fromkeys(ports.PHASES, 0.0)

    def enter(self, phase: str) -> None:
        now = self._clock.monotonic()
        self._totals[self.phase] += now - self._mark
        self._mark = now
        self.phase = phase

    def finish(self) -> Dict[str, float]:
        self.enter(self.phase)
        return {**self._totals, "total": self._mark - self._started}
