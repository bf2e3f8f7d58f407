"""The capture sequence's view of OctoPrint's printer.

Implements :class:`ports.PrinterPort` on top of OctoPrint's printer object (duck typed,
so this module imports nothing from OctoPrint). The plugin class forwards events and the
``gcode.sending`` and ``gcode.received`` hooks here; the sequence's worker thread blocks on
the condition below.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Set

from . import gcode
from .ports import (
    JobInterrupted,
    JobResumedByUser,
    Position,
    PrinterTimeout,
    UnrecognisedReply,
)
from .replies import REPLY_GRACE, ReplyWatch

PLUGIN_TAG = "plugin:layercapture"
_CONFIRM_TAG_PREFIX = "layercapture:confirm:"
_PAUSE_STATES = ("PAUSING", "PAUSED")
# seconds: the pause is late when it has not completed by then (see _wait_paused)
PAUSE_KICK_AFTER = 0.05
PAUSE_KICK_EVERY = 2.0


def plugin_tags(*extra: str) -> Set[str]:
    """A fresh tag set per call: OctoPrint adds to the set it is given."""
    return {"source:plugin", PLUGIN_TAG, *extra}


def _position_from(payload: Optional[Mapping[str, Any]]) -> Optional[Position]:
    if not payload:
        return None

    def axis(key: str) -> Optional[float]:
        value = payload.get(key)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    position = Position(axis("x"), axis("y"), axis("z"), axis("e"))
    if position.x is None and position.y is None and position.z is None:
        return None
    return position


class OctoPrintPrinterPort:
    """Blocking printer operations for one print job, fed by OctoPrint's events.

    The job is held (``set_job_on_hold``) while the head is away, in both stop modes: a
    held job sends no line of the file, even when the user resumes a paused job by hand.
    In pause mode the hold can only come once OctoPrint is PAUSED, because its pause
    sends M400 + M114 through the job queue that a hold blocks.
    """

    def __init__(
        self,
        printer: Any,
        stop_mode: str,
        logger: Optional[logging.Logger] = None,
        monotonic: Callable[[], float] = time.monotonic,
        wait_for_moves: str = "M400",
        reply_grace: float = REPLY_GRACE,
    ) -> None:
        self._printer = printer
        self._stop_mode = stop_mode
        self._confirm_commands = gcode.confirm_commands(wait_for_moves)
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
        self._resumed_event = False
        self._resume_requested = False
        self._user_paused = False
        self._user_resumed = False
        self._holding = False

    @property
    def stop_mode(self) -> str:
        return self._stop_mode

    ##~~ called on OctoPrint's threads (keep cheap, never block)

    def pending_confirm_tag(self) -> Optional[str]:
        return self._confirm_pending

    @property
    def listening(self) -> bool:
        """Whether received lines may answer a confirmation (read without the lock: the
        received hook runs for every line, so it must leave at once when nothing waits)."""
        watch = self._watch
        return watch is not None and watch.listening

    def on_sending(self, gcode: Optional[str], tags: Optional[Set[str]]) -> None:
        """``gcode.sending`` hook: one of our confirm commands is about to go out; lines
        received from now on answer it."""
        pending = self._confirm_pending
        if pending is None or not tags or pending not in tags or not gcode:
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
                self._cond.notify_all()

    def on_paused(self, payload: Optional[Mapping[str, Any]]) -> None:
        with self._cond:
            if self._stop_mode == "hold":
                # a pause while we hold the job can only come from the user
                self._user_paused = True
            self._paused_event = True
            self._paused_position = _position_from((payload or {}).get("position"))
            self._cond.notify_all()

    def on_resumed(self) -> None:
        with self._cond:
            if not self._resume_requested:
                self._user_resumed = True
            self._resumed_event = True
            self._cond.notify_all()

    def on_state_changed(self, state_id: Optional[str]) -> None:
        """Wakes :meth:`wait_stopped` (it waits for the end of PAUSING) and sees a user's
        pause in hold mode: that pause only reaches PAUSING while we hold the job, because
        OctoPrint's pause queues its M400 + M114 behind the hold; PrintPaused comes later."""
        with self._cond:
            if self._stop_mode == "hold" and self._holding and state_id in _PAUSE_STATES:
                self._user_paused = True
            self._cond.notify_all()

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
            self._resumed_event = False
            self._resume_requested = False
            self._user_paused = False
            self._user_resumed = False
        if self._stop_mode == "hold":
            if not self._printer.set_job_on_hold(True, blocking=False):
                return "could not put the job on hold"
            self._holding = True
            return None
        self._printer.pause_print(tags=plugin_tags())
        if not (self._printer.is_pausing() or self._printer.is_paused()):
            return "OctoPrint did not pause"
        return None

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

    def wait_stopped(self, timeout: float) -> Optional[Position]:
        if self._stop_mode == "hold":
            self.check()
            return None
        # OctoPrint fires PrintPaused while still PAUSING; commands sent then wait in its
        # command queue, and the ones sent once it is PAUSED overtake them (a lift could
        # go out after the first XY move). So wait for the state to leave PAUSING too.
        self._wait_paused(timeout)
        if not self._printer.set_job_on_hold(True):
            raise PrinterTimeout("OctoPrint did not put the paused job on hold")
        self._holding = True
        if not self._printer.is_paused():
            # resumed by hand between PAUSED and our hold: the file went on
            raise JobResumedByUser("the job was resumed by hand before the capture started")
        return self._paused_position

    def continue_job(self, timeout: float) -> None:
        """Resume a paused job (unless the user already did), then release the hold: the
        resume's own queued lines wait behind the hold, so they go out in order."""
        self.check()
        if self._stop_mode == "pause" and self._printer.is_paused():
            with self._cond:
                self._resumed_event = False
                self._resume_requested = True
            self._printer.resume_print(tags=plugin_tags())
            self._wait(lambda: self._resumed_event, timeout, "PrintResumed")
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
        if continued or not self._holding:
            return
        try:
            if not interrupted and not self._printer.is_paused():
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

    def _wait_paused(self, timeout: float) -> None:
        """Wait for PrintPaused and the end of PAUSING, waking OctoPrint's send loop.

        OctoPrint's pause queues its M114 from the M400's "sent" callback without waking
        its send loop: when the printer's "ok" for the M400 wins that race, the M114 waits
        for the printer's next line (the next temperature poll, seconds later). A forced
        M105, harmless, wakes the loop; it is sent only while the pause is late.
        """
        deadline = self._monotonic() + timeout
        wait = min(PAUSE_KICK_AFTER, timeout)
        while True:
            try:
                self._wait(
                    lambda: self._paused_event and not self._printer.is_pausing(),
                    wait,
                    "PrintPaused and the end of PAUSING",
                )
                return
            except PrinterTimeout:
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    raise PrinterTimeout(
                        f"no PrintPaused and the end of PAUSING within {timeout:g} s"
                    ) from None
            if self._printer.is_pausing():
                self._printer.commands(list(gcode.WAKE_COMMANDS), tags=plugin_tags(), force=True)
            wait = min(PAUSE_KICK_EVERY, remaining)

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
