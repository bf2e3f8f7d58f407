"""The capture sequence's view of OctoPrint's printer.

Implements :class:`ports.PrinterPort` on top of OctoPrint's printer object (duck typed,
so this module imports nothing from OctoPrint). The plugin class forwards events and the
``gcode.sending`` hook here; the sequence's worker thread blocks on the condition below.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Set

from .ports import JobInterrupted, Position, PrinterTimeout

PLUGIN_TAG = "plugin:layercapture"
_CONFIRM_TAG_PREFIX = "layercapture:confirm:"


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
    """Blocking printer operations for one print job, fed by OctoPrint's events."""

    def __init__(
        self,
        printer: Any,
        stop_mode: str,
        logger: Optional[logging.Logger] = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._printer = printer
        self._stop_mode = stop_mode
        self._logger = logger or logging.getLogger("octoprint.plugins.layercapture.printer")
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._confirm_ids = itertools.count(1)
        self._confirm_pending: Optional[str] = None
        self._confirm_sent = False
        self._confirm_answer: Optional[Position] = None
        self._interrupted: Optional[str] = None
        self._paused_event = False
        self._paused_position: Optional[Position] = None
        self._resumed_event = False
        self._resume_requested = False
        self._user_paused = False

    @property
    def stop_mode(self) -> str:
        return self._stop_mode

    ##~~ called on OctoPrint's threads (keep cheap, never block)

    def pending_confirm_tag(self) -> Optional[str]:
        return self._confirm_pending

    def on_sending(self, tags: Optional[Set[str]]) -> None:
        """``gcode.sending`` hook: our M114 is about to go out; only now can its answer come."""
        pending = self._confirm_pending
        if pending is not None and tags and pending in tags:
            with self._cond:
                self._confirm_sent = True

    def on_position_update(self, payload: Mapping[str, Any]) -> None:
        position = _position_from(payload)
        with self._cond:
            if self._confirm_sent and self._confirm_answer is None:
                self._confirm_answer = position
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
            self._resumed_event = True
            self._cond.notify_all()

    def on_state_changed(self) -> None:
        """Wakes :meth:`wait_stopped`, which waits for the end of PAUSING."""
        with self._cond:
            self._cond.notify_all()

    def interrupt(self, reason: str) -> None:
        """Cancel, failure, disconnect or shutdown: the sequence stops moving at once."""
        with self._cond:
            if self._interrupted is None:
                self._interrupted = reason
            self._cond.notify_all()

    def begin_stop(self) -> None:
        """Called right before the plugin stops the job for a new capture."""
        with self._cond:
            self._paused_event = False
            self._paused_position = None
            self._resumed_event = False
            self._resume_requested = False
            self._user_paused = False

    ##~~ PrinterPort (called on the capture worker thread)

    def send(self, commands: Sequence[str]) -> None:
        self.check()
        self._printer.commands(list(commands), tags=plugin_tags())

    def confirm(self, timeout: float) -> Position:
        tag = f"{_CONFIRM_TAG_PREFIX}{next(self._confirm_ids)}"
        with self._cond:
            self._confirm_sent = False
            self._confirm_answer = None
            self._confirm_pending = tag
        try:
            self.check()
            self._printer.commands(["M400", "M114"], tags=plugin_tags(tag))
            self._wait(lambda: self._confirm_answer is not None, timeout, "M400/M114 answer")
            with self._cond:
                answer = self._confirm_answer
            assert answer is not None
            return answer
        finally:
            with self._cond:
                self._confirm_pending = None
                self._confirm_sent = False

    def wait_stopped(self, timeout: float) -> Optional[Position]:
        if self._stop_mode == "hold":
            self.check()
            return None
        # OctoPrint fires PrintPaused while still PAUSING; commands sent then wait in its
        # command queue, and the ones sent once it is PAUSED overtake them (a lift could
        # go out after the first XY move). So wait for the state to leave PAUSING too.
        self._wait(
            lambda: self._paused_event and not self._printer.is_pausing(),
            timeout,
            "PrintPaused and the end of PAUSING",
        )
        return self._paused_position

    def continue_job(self, timeout: float) -> None:
        self.check()
        if self._stop_mode == "hold":
            if not self._printer.set_job_on_hold(False):
                raise PrinterTimeout("OctoPrint did not release the job hold")
            return
        with self._cond:
            self._resumed_event = False
            self._resume_requested = True
        self._printer.resume_print(tags=plugin_tags())
        self._wait(lambda: self._resumed_event, timeout, "PrintResumed")

    def check(self) -> None:
        reason = self._interrupted
        if reason is not None:
            raise JobInterrupted(reason)

    def user_paused(self) -> bool:
        return self._user_paused

    ##~~ after the sequence (worker thread)

    def release(self, continued: bool, interrupted: bool) -> None:
        """Never leaves the job held: a held job can't be resumed or cancelled from the UI.

        When the sequence did not continue the job (the user paused, or the head could not
        be returned) and nobody cancelled it, the job is left *paused* instead, which the
        user can see and resume.
        """
        if self._stop_mode != "hold" or continued:
            return
        try:
            if not interrupted and not self._printer.is_paused():
                self._printer.pause_print(tags=plugin_tags())
            self._printer.set_job_on_hold(False)
        except Exception:
            self._logger.exception("Could not release the job hold")

    ##~~ helpers

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
