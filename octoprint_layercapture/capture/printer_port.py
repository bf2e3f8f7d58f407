"""The capture sequence's view of OctoPrint's printer.

Implements :class:`ports.PrinterPort` on top of OctoPrint's printer object (duck typed,
so this module imports nothing from OctoPrint). The plugin class forwards events and the
``gcode.sending``, ``gcode.received``, scripts and at-command hooks here; the sequence's
worker thread blocks on the condition below.

Pause mode, in OctoPrint's order: ``pause_print`` -> OctoPrint's M400 + M114 -> PrintPaused
-> the user's ``afterPrintPaused`` script, to which the plugin appends
:data:`PARKED_COMMAND` -> OctoPrint's end-of-pause marker (state PAUSED). When our
at-command reaches the send loop, every script line has been sent: the port puts the job on
hold right there, so the end-of-pause marker waits and OctoPrint stays PAUSING while the
head is away. OctoPrint numbers and checksums lines only while a job is in a printing state
(PAUSING is one, PAUSED is not), so every line of the sequence goes out with a line number
and checksum, as in hold mode. Pause and resume clicks are ignored by OctoPrint meanwhile;
a cancel works. To continue, the hold is released (PAUSED), then the job is resumed.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from typing import Any, Callable, List, Mapping, Optional, Sequence, Set

from ..numbers import finite_number
from . import moves
from .ports import JobInterrupted, Position, PrinterTimeout, StopReport, UnrecognisedReply
from .replies import REPLY_GRACE, ReplyWatch

PLUGIN_TAG = "plugin:layercapture"
_CONFIRM_TAG_PREFIX = "layercapture:confirm:"
_PAUSE_STATES = ("PAUSING", "PAUSED")
# Appended to the afterPrintPaused script of our own pauses (at-commands never reach the
# printer); the ``atcommand.sending`` hook sees it once the script has been sent.
PARKED_AT_COMMAND = "LAYERCAPTURE_PARKED"
PARKED_COMMAND = "@" + PARKED_AT_COMMAND
_MODE_WORDS = {"G90": "G90", "G91": "G91", "M82": "M82", "M83": "M83"}
_FEED = re.compile(r"\bF\s*([0-9]*\.?[0-9]+)", re.IGNORECASE)
# OctoPrint's pause asks M400 then M114 (tagged so); see _wait_parked
_PAUSE_REPORT_TAG = "trigger:record_position"
# seconds: after the printer's "ok" for the pause's M400, the M114 is late when it has not
# gone out by then; when the M400 itself is never seen, the pause is woken this often
PAUSE_M114_GRACE = 0.01
PAUSE_KICK_EVERY = 2.0
# seconds: how often a wait for OctoPrint's own state looks at it (OctoPrint changes it on
# its send thread; the state event reaches plugins later, on the event thread)
STATE_POLL = 0.002


def plugin_tags(*extra: str) -> Set[str]:
    """A fresh tag set per call: OctoPrint adds to the set it is given."""
    return {"source:plugin", PLUGIN_TAG, *extra}


def _position_from(payload: Optional[Mapping[str, Any]]) -> Optional[Position]:
    if not payload:
        return None

    def axis(key: str) -> Optional[float]:
        return finite_number(payload.get(key))

    position = Position(axis("x"), axis("y"), axis("z"), axis("e"))
    if position.x is None and position.y is None and position.z is None:
        return None
    return position


class OctoPrintPrinterPort:
    """Blocking printer operations for one print job, fed by OctoPrint's events and hooks.

    The job is held (``set_job_on_hold``) while the head is away, in both stop modes: a
    held job sends no line of the file. In pause mode the hold comes from our at-command
    at the end of the pause script (see the module docstring).
    """

    def __init__(
        self,
        printer: Any,
        stop_mode: str,
        logger: Optional[logging.Logger] = None,
        monotonic: Callable[[], float] = time.monotonic,
        wait_for_moves: str = "M400",
        reply_grace: float = REPLY_GRACE,
        pause_reports_position: bool = True,
    ) -> None:
        self._printer = printer
        # OctoPrint measures the head on pausing only with serial.logPositionOnPause;
        # otherwise what it reports is left over from an earlier pause
        self._pause_reports_position = pause_reports_position
        self._stop_mode = stop_mode
        self._confirm_commands = moves.confirm_commands(wait_for_moves)
        self._reply_grace = reply_grace
        self._logger = logger or logging.getLogger("octoprint.plugins.layercapture.printer")
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._confirm_ids = itertools.count(1)
        self._confirm_pending: Optional[str] = None
        self._watch: Optional[ReplyWatch] = None
        self._interrupted: Optional[str] = None
        self._paused_event = False
        self._paused_position: Optional[Position] = None
        # our resumes whose PrintResumed has not come yet (it may come after the next stop)
        self._resumes_requested = 0
        self._user_paused = False
        self._user_resumed = False
        self._holding = False
        # pause mode: our pause, from the stop request to the parked at-command
        self._awaiting_park = False
        self._parked = False
        self._abandoned = False  # gave up waiting: resume as soon as OctoPrint has paused
        self._resume_on_paused = False
        self._script_lines = 0
        self._script_modes: List[str] = []
        self._script_retracted: Optional[bool] = None
        self._script_feedrate: Optional[float] = None
        # OctoPrint's pause report, as the send and receive hooks see it
        self._pause_m400_sent = False
        self._pause_m400_acked_at: Optional[float] = None
        self._pause_m114_sent = False

    @property
    def stop_mode(self) -> str:
        return self._stop_mode

    ##~~ called on OctoPrint's threads (keep cheap, never block)

    @property
    def watching_sends(self) -> bool:
        """Whether sent lines matter: a confirmation waits, or our pause is under way
        (read without the lock: the sending hook runs for every line)."""
        return self._confirm_pending is not None or self._awaiting_park

    def pending_confirm_tag(self) -> Optional[str]:
        return self._confirm_pending

    @property
    def listening(self) -> bool:
        """Whether received lines may answer a confirmation or OctoPrint's pause M400 (read
        without the lock: the received hook runs for every line, so it must leave at once
        when nothing waits)."""
        watch = self._watch
        if watch is not None and watch.listening:
            return True
        return self._pause_m400_sent and self._pause_m400_acked_at is None

    def on_sending(self, gcode: Optional[str], tags: Optional[Set[str]]) -> None:
        """``gcode.sending`` hook: one of our confirm commands is about to go out (lines
        received from now on answer it), or a line of OctoPrint's pause report for our
        pause."""
        if not tags or not gcode:
            return
        if self._awaiting_park and _PAUSE_REPORT_TAG in tags and PLUGIN_TAG in tags:
            with self._cond:
                if gcode == "M400":
                    self._pause_m400_sent = True
                    self._pause_m400_acked_at = None
                elif gcode == "M114":
                    self._pause_m114_sent = True
                self._cond.notify_all()
            return
        pending = self._confirm_pending
        if pending is None or pending not in tags:
            return
        with self._cond:
            watch = self._watch
            if watch is not None and self._confirm_pending == pending:
                watch.sent(gcode)

    def on_received(self, line: str) -> None:
        """``gcode.received`` hook, while :attr:`listening`: a line from the printer."""
        with self._cond:
            watch = self._watch
            if watch is not None:
                watch.feed(line, self._monotonic())
            elif self._pause_m400_sent and self._pause_m400_acked_at is None:
                if line.lstrip().lower().startswith("ok"):
                    self._pause_m400_acked_at = self._monotonic()
            self._cond.notify_all()

    def on_paused(self, payload: Optional[Mapping[str, Any]]) -> None:
        with self._cond:
            if self._stop_mode == "hold":
                # a pause while we hold the job can only come from the user
                self._user_paused = True
            if not self._paused_event and self._pause_reports_position:
                self._paused_position = _position_from((payload or {}).get("position"))
            self._paused_event = True
            self._cond.notify_all()

    def on_resumed(self, payload: Optional[Mapping[str, Any]] = None) -> None:
        """PrintResumed: ours (requested, no user named), or someone else's."""
        with self._cond:
            if self._resumes_requested > 0 and not (payload or {}).get("user"):
                self._resumes_requested -= 1
            else:
                self._user_resumed = True
            self._cond.notify_all()

    def on_state_changed(self, state_id: Optional[str]) -> None:
        """Wakes :meth:`wait_stopped` (it waits for the end of PAUSING) and sees a user's
        pause in hold mode: that pause only reaches PAUSING while we hold the job, because
        OctoPrint's pause queues its M400 + M114 behind the hold; PrintPaused comes later."""
        resume = False
        with self._cond:
            if self._stop_mode == "hold" and self._holding and state_id in _PAUSE_STATES:
                self._user_paused = True
            if state_id == "PAUSED" and self._resume_on_paused:
                self._resume_on_paused = False
                resume = True
            self._cond.notify_all()
        if resume:
            self._logger.warning(
                "The plugin's pause completed after the capture had given up on it: "
                "resuming the job now, without a capture"
            )
            self._printer.resume_print(tags=plugin_tags())

    def interrupt(self, reason: str) -> None:
        """Cancel, failure, disconnect or shutdown: the sequence stops moving at once."""
        with self._cond:
            if self._interrupted is None:
                self._interrupted = reason
            self._cond.notify_all()

    def stop_job(self) -> Optional[str]:
        """Comm thread, from the queuing hook: stop the job before the next file line.

        Returns why the job could not be stopped, or None. Never blocks: OctoPrint's comm
        thread is calling.
        """
        with self._cond:
            self._paused_event = False
            self._paused_position = None
            self._pause_m400_sent = self._pause_m114_sent = False
            self._pause_m400_acked_at = None
            self._user_paused = False
            self._user_resumed = False
            self._parked = False
            self._abandoned = False
            self._resume_on_paused = False
            self._script_lines = 0
            self._script_modes = []
            self._script_retracted = None
            self._script_feedrate = None
            self._awaiting_park = self._stop_mode == "pause"
        if self._stop_mode == "hold":
            if not self._printer.set_job_on_hold(True, blocking=False):
                return "could not put the job on hold"
            self._holding = True
            return None
        self._printer.pause_print(tags=plugin_tags())
        if not (self._printer.is_pausing() or self._printer.is_paused()):
            with self._cond:
                self._awaiting_park = False
            return "OctoPrint did not pause"
        return None

    def pause_script_suffix(self) -> Optional[List[str]]:
        """Scripts hook, ``afterPrintPaused``: our at-command after the user's script,
        only for our own pauses."""
        return [PARKED_COMMAND] if self._awaiting_park else None

    def on_pause_script_line(self, cmd: str, gcode: Optional[str]) -> None:
        """Queuing hook: a line of the user's afterPrintPaused script (where it may move
        the head, and which modes it leaves)."""
        if not self._awaiting_park:
            return
        with self._cond:
            self._script_lines += 1
            code = (gcode or "").upper()
            if code in _MODE_WORDS:
                self._script_modes.append(_MODE_WORDS[code])
            elif code in ("G10", "G11") and not re.search(r"\b[PL]", cmd[3:], re.IGNORECASE):
                self._script_retracted = code == "G10"
            elif code in ("G0", "G1", "G2", "G3"):
                feed = _FEED.search(cmd)
                if feed is not None:
                    self._script_feedrate = float(feed.group(1))

    def on_parked(self, pause_position: Optional[Mapping[str, Any]] = None) -> None:
        """At-command sending hook (OctoPrint's send thread): the pause script has been
        sent. Hold the job here, before OctoPrint's end-of-pause marker, unless the capture
        gave up waiting: then let the pause complete and resume it. ``pause_position`` is
        OctoPrint's pause report as the scripts see it (the PrintPaused event carries the
        same, but later: events are delivered on their own thread)."""
        with self._cond:
            if not self._awaiting_park:
                return
            self._awaiting_park = False
            position = _position_from(pause_position) if self._pause_reports_position else None
            if position is not None:
                self._paused_position = position
                self._paused_event = True
            if self._abandoned or self._interrupted is not None:
                self._resume_on_paused = self._abandoned and self._interrupted is None
                self._cond.notify_all()
                return
            if not self._printer.set_job_on_hold(True, blocking=False):
                self._logger.warning("Could not hold the paused job for the capture")
                self._resume_on_paused = True
                self._abandoned = True
            else:
                self._holding = True
                self._parked = True
            self._cond.notify_all()

    ##~~ PrinterPort (called on the capture worker thread)

    def send(self, commands: Sequence[str]) -> None:
        self.check()
        self._printer.commands(list(commands), tags=plugin_tags())

    def confirm(self, timeout: float) -> Position:
        tag = f"{_CONFIRM_TAG_PREFIX}{next(self._confirm_ids)}"
        commands = self._confirm_commands
        watch = ReplyWatch()
        with self._cond:
            self._watch = watch
            self._confirm_pending = tag
        try:
            self.check()
            self._printer.commands(list(commands), tags=plugin_tags(tag))
            return self._wait_reply(watch, timeout, " + ".join(commands))
        finally:
            with self._cond:
                self._confirm_pending = None
                self._watch = None

    def wait_stopped(self, timeout: float) -> StopReport:
        if self._stop_mode == "hold":
            self.check()
            return StopReport()
        try:
            self._wait_parked(timeout)
        except PrinterTimeout:
            with self._cond:
                if not self._parked:
                    # the pause may still complete (a slow pause script): then it is
                    # resumed at once (see on_parked and on_state_changed)
                    self._abandoned = True
                    raise
        with self._cond:
            return StopReport(
                position=self._paused_position,
                script_lines=self._script_lines,
                script_modes=tuple(self._script_modes),
                script_retracted=self._script_retracted,
                script_feedrate=self._script_feedrate,
            )

    def continue_job(self, timeout: float) -> None:
        """Hold mode: release the hold. Pause mode: release the hold (OctoPrint finishes
        its pause: PAUSED), then resume (unless the user already did). OctoPrint's state is
        read directly, not waited for as events: OctoPrint changes it on its own threads
        and tells plugins later. A pause we gave up waiting for is resumed as soon as it
        completes."""
        self.check()
        if self._stop_mode == "pause":
            with self._cond:
                if self._abandoned and not self._parked:
                    if self._awaiting_park or not self._printer.is_paused():
                        self._resume_on_paused = True
                        return
            self._release_hold()
            self._wait_state(
                lambda: not self._printer.is_pausing(), timeout, "the end of OctoPrint's pause"
            )
            if self._printer.is_paused():
                with self._cond:
                    self._resumes_requested += 1
                self._printer.resume_print(tags=plugin_tags())
                self._wait_state(lambda: not self._printer.is_paused(), timeout, "the job resuming")
            return
        self._release_hold()

    def check(self) -> None:
        reason = self._interrupted
        if reason is not None:
            raise JobInterrupted(reason)

    def user_paused(self) -> bool:
        return self._user_paused

    def user_resumed(self) -> bool:
        return self._user_resumed

    ##~~ after the sequence (worker thread)

    def release(self, continued: bool, interrupted: bool) -> None:
        """Never leaves the job held: a held job can't be resumed or cancelled from the UI.

        When the sequence did not continue the job (the user paused, or the head could not
        be returned) and nobody cancelled it, the job is left *paused* instead, which the
        user can see and resume.
        """
        with self._cond:
            self._awaiting_park = False
        if continued or not self._holding:
            return
        try:
            # pause mode: releasing the hold completes OctoPrint's pause (PAUSED)
            if not interrupted and self._stop_mode == "hold" and not self._printer.is_paused():
                self._printer.pause_print(tags=plugin_tags())
            self._release_hold()
        except Exception as exc:
            if not interrupted:
                self._logger.exception("Could not release the job hold")
                return
            # a cancelled or disconnected job has no hold left to release
            self._holding = False
            self._logger.info(f"Job hold not released after the interruption: {exc}")

    ##~~ helpers

    def _wait_parked(self, timeout: float) -> None:
        """Wait until our at-command after the pause script put the job on hold, waking
        OctoPrint's send loop when its pause report stalls.

        OctoPrint's pause queues its M114 from the M400's "sent" callback without waking
        its send loop: when the printer's "ok" for the M400 wins that race, the M114 waits
        for the printer's next line (the next temperature poll, seconds later). A forced
        M105, harmless, wakes the loop. It is sent only when the M400 has been answered and
        the M114 has not followed within :data:`PAUSE_M114_GRACE`, or, when the M400 is
        never seen (another plugin rewrote it), every :data:`PAUSE_KICK_EVERY` seconds.
        """
        deadline = self._monotonic() + timeout
        last_kick = self._monotonic()
        kicked_for: Optional[float] = None
        with self._cond:
            while True:
                if self._interrupted is not None:
                    raise JobInterrupted(self._interrupted)
                # PrintPaused may come after our at-command (events have their own thread)
                if self._parked and self._paused_event:
                    return
                now = self._monotonic()
                if now >= deadline:
                    what = "the end of the pause script" if self._paused_event else "PrintPaused"
                    raise PrinterTimeout(f"no {what} within {timeout:g} s")
                wake = min(deadline, last_kick + PAUSE_KICK_EVERY)
                acked = self._pause_m400_acked_at
                stalled = acked is not None and not self._pause_m114_sent
                if stalled and kicked_for != acked:
                    assert acked is not None
                    if now >= acked + PAUSE_M114_GRACE:
                        kicked_for = acked
                        last_kick = now
                        self._kick_pause()
                        continue
                    wake = min(wake, acked + PAUSE_M114_GRACE)
                elif not self._pause_m400_sent and now >= last_kick + PAUSE_KICK_EVERY:
                    last_kick = now
                    self._kick_pause()
                    continue
                self._cond.wait(max(wake - now, 0.0))

    def _kick_pause(self) -> None:
        """Called with the lock held; the printer object takes its own locks only."""
        if not self._paused_event and self._printer.is_pausing():
            self._printer.commands(list(moves.WAKE_COMMANDS), tags=plugin_tags(), force=True)

    def _release_hold(self) -> None:
        if not self._holding:
            return
        if not self._printer.set_job_on_hold(False):
            raise PrinterTimeout("OctoPrint did not release the job hold")
        self._holding = False

    def _wait_reply(self, watch: ReplyWatch, timeout: float, what: str) -> Position:
        """Until the position report, an answer that can't become one, or the timeout."""
        deadline = self._monotonic() + timeout
        with self._cond:
            while True:
                if self._interrupted is not None:
                    raise JobInterrupted(self._interrupted)
                if watch.position is not None:
                    return watch.position
                if watch.problem is not None:
                    raise UnrecognisedReply(watch.problem)
                now = self._monotonic()
                if watch.expired(now, self._reply_grace):
                    raise UnrecognisedReply(watch.unrecognised())
                if now >= deadline:
                    raise PrinterTimeout(f"no answer to {what} within {timeout:g} s")
                wake = deadline
                if watch.acknowledged_at is not None:
                    wake = min(wake, watch.acknowledged_at + self._reply_grace)
                self._cond.wait(wake - now)

    def _wait_state(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """:meth:`_wait` for a condition on OctoPrint's state, looked at every
        :data:`STATE_POLL` seconds (no event tells this port of it in time)."""
        deadline = self._monotonic() + timeout
        with self._cond:
            while True:
                if self._interrupted is not None:
                    raise JobInterrupted(self._interrupted)
                if ready():
                    return
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    raise PrinterTimeout(f"no {what} within {timeout:g} s")
                self._cond.wait(min(remaining, STATE_POLL))

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = self._monotonic() + timeout
        with self._cond:
            while True:
                if self._interrupted is not None:
                    raise JobInterrupted(self._interrupted)
                if ready():
                    return
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    raise PrinterTimeout(f"no {what} within {timeout:g} s")
                self._cond.wait(remaining)
