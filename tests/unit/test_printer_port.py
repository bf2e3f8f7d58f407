"""The printer port over a double of OctoPrint's printer: stop, hold, resume, release.

The double keeps OctoPrint's state names and the one rule that matters here: a held job
sends no file line, whatever the state. The port's waits are driven by calling its event
methods from a timer thread, as OctoPrint's event thread would.
"""

from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Set

import pytest

from octoprint_layercapture.ports import JobInterrupted, JobResumedByUser, PrinterTimeout
from octoprint_layercapture.printer_port import PLUGIN_TAG, OctoPrintPrinterPort


class FakeOctoPrintPrinter:
    def __init__(self) -> None:
        self.state = "PRINTING"
        self.held = 0
        self.calls: List[str] = []
        self.hold_refused = False
        self.pause_ignored = False
        self.sent: List[str] = []
        self.tags: List[Set[str]] = []
        self.on_forced: Optional[Any] = None

    def pause_print(self, tags: Optional[Set[str]] = None) -> None:
        self.calls.append("pause")
        self.tags.append(set(tags or ()))
        if not self.pause_ignored:
            self.state = "PAUSING"

    def resume_print(self, tags: Optional[Set[str]] = None) -> None:
        self.calls.append("resume")
        self.state = "RESUMING"

    def set_job_on_hold(self, value: bool, blocking: bool = True) -> bool:
        if self.hold_refused:
            return False
        self.calls.append(f"hold {value}")
        self.held += 1 if value else -1
        return True

    def is_pausing(self) -> bool:
        return self.state == "PAUSING"

    def is_paused(self) -> bool:
        return self.state == "PAUSED"

    def commands(
        self, commands: List[str], tags: Optional[Set[str]] = None, force: bool = False
    ) -> None:
        self.sent += [f"{c} (forced)" if force else c for c in commands]
        if force and self.on_forced is not None:
            self.on_forced()


def later(delay: float, action: Any) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.name = "test-event"
    timer.start()
    return timer


def paused(printer: FakeOctoPrintPrinter, port: OctoPrintPrinterPort) -> None:
    printer.state = "PAUSED"
    port.on_paused({"position": {"x": 10, "y": 20, "z": 0.6, "e": 5}})


@pytest.fixture
def printer() -> FakeOctoPrintPrinter:
    return FakeOctoPrintPrinter()


def test_pause_mode_holds_only_once_paused(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "pause")
    assert port.stop_job() is None
    assert printer.calls == ["pause"] and PLUGIN_TAG in printer.tags[0]
    later(0.05, lambda: paused(printer, port))
    position = port.wait_stopped(5.0)
    assert position is not None and (position.x, position.y, position.z) == (10, 20, 0.6)
    assert printer.calls == ["pause", "hold True"] and printer.held == 1


def test_pause_mode_continue_resumes_before_releasing_the_hold(
    printer: FakeOctoPrintPrinter,
) -> None:
    port = OctoPrintPrinterPort(printer, "pause")
    port.stop_job()
    paused(printer, port)
    port.wait_stopped(1.0)
    later(0.05, port.on_resumed)
    port.continue_job(5.0)
    assert printer.calls == ["pause", "hold True", "resume", "hold False"]
    assert printer.held == 0 and not port.user_resumed()


def test_a_resume_by_hand_is_seen_and_only_the_hold_is_released(
    printer: FakeOctoPrintPrinter,
) -> None:
    port = OctoPrintPrinterPort(printer, "pause")
    port.stop_job()
    paused(printer, port)
    port.wait_stopped(1.0)
    printer.state = "RESUMING"  # the user pressed Resume: the hold keeps the file back
    port.on_resumed()
    assert port.user_resumed()
    port.continue_job(1.0)
    assert printer.calls == ["pause", "hold True", "hold False"] and printer.held == 0


def test_a_resume_before_the_hold_refuses_to_move(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "pause")
    port.stop_job()
    paused(printer, port)
    printer.state = "RESUMING"  # the user was quicker than the worker thread
    with pytest.raises(JobResumedByUser):
        port.wait_stopped(1.0)
    port.continue_job(1.0)
    assert "resume" not in printer.calls and printer.held == 0


def test_a_stalled_pause_is_woken_with_a_forced_m105(printer: FakeOctoPrintPrinter) -> None:
    # OctoPrint's pause M114 waits in its job queue until something wakes the send loop
    port = OctoPrintPrinterPort(printer, "pause")
    port.stop_job()
    printer.on_forced = lambda: later(0.01, lambda: paused(printer, port))
    started = time.monotonic()
    assert port.wait_stopped(5.0) is not None
    assert printer.sent == ["M105 (forced)"]
    assert time.monotonic() - started < 1.0


def test_a_prompt_pause_gets_no_extra_line(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "pause")
    port.stop_job()
    later(0.02, lambda: paused(printer, port))
    port.wait_stopped(5.0)
    assert printer.sent == []


def test_pause_timeout_names_what_was_missing(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "pause")
    port.stop_job()
    with pytest.raises(PrinterTimeout, match="PrintPaused"):
        port.wait_stopped(0.05)
    assert printer.held == 0


def test_pause_that_does_not_take_is_reported(printer: FakeOctoPrintPrinter) -> None:
    printer.pause_ignored = True
    port = OctoPrintPrinterPort(printer, "pause")
    assert port.stop_job() == "OctoPrint did not pause"


def test_hold_mode_holds_at_once_and_releases_on_continue(
    printer: FakeOctoPrintPrinter,
) -> None:
    port = OctoPrintPrinterPort(printer, "hold")
    assert port.stop_job() is None
    assert port.wait_stopped(1.0) is None
    port.continue_job(1.0)
    assert printer.calls == ["hold True", "hold False"]


def test_a_user_pause_during_a_hold_is_seen_at_pausing(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "hold")
    port.on_state_changed("PAUSING")  # not holding yet: not ours to judge
    assert not port.user_paused()
    port.stop_job()
    port.on_state_changed("PRINTING")
    assert not port.user_paused()
    port.on_state_changed("PAUSING")  # PrintPaused only comes once the hold is released
    assert port.user_paused()
    port.release(continued=False, interrupted=False)
    assert printer.held == 0


def test_pause_mode_ignores_its_own_pausing_state(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "pause")
    port.stop_job()
    paused(printer, port)
    port.wait_stopped(1.0)
    port.on_state_changed("PAUSED")
    assert not port.user_paused()


def test_hold_refused_is_reported(printer: FakeOctoPrintPrinter) -> None:
    printer.hold_refused = True
    port = OctoPrintPrinterPort(printer, "hold")
    assert port.stop_job() == "could not put the job on hold"


@pytest.mark.parametrize("mode", ["pause", "hold"])
def test_release_leaves_an_unfinished_job_paused_and_never_held(
    printer: FakeOctoPrintPrinter, mode: str
) -> None:
    port = OctoPrintPrinterPort(printer, mode)
    port.stop_job()
    if mode == "pause":
        paused(printer, port)
        port.wait_stopped(1.0)
        printer.state = "RESUMING"  # resumed by hand, but the head could not be returned
    port.release(continued=False, interrupted=False)
    assert printer.held == 0 and printer.calls[-2:] == ["pause", "hold False"]


def test_release_after_a_cancel_only_drops_the_hold(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "hold")
    port.stop_job()
    port.interrupt("cancelled")
    with pytest.raises(JobInterrupted):
        port.continue_job(1.0)
    port.release(continued=False, interrupted=True)
    assert printer.calls == ["hold True", "hold False"]


def test_release_after_continuing_does_nothing(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "hold")
    port.stop_job()
    port.continue_job(1.0)
    port.release(continued=True, interrupted=False)
    assert printer.calls == ["hold True", "hold False"]


def test_confirm_takes_only_the_answer_to_its_own_m114(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "hold")

    def answer() -> None:
        port.on_position_update({"x": 1, "y": 1, "z": 1})  # someone else's M114: ignored
        tag = port.pending_confirm_tag()
        port.on_sending({tag} if tag else set())
        port.on_position_update({"x": 5, "y": 6, "z": 7, "e": 1})

    later(0.05, answer)
    position = port.confirm(5.0)
    assert (position.x, position.y, position.z) == (5, 6, 7)
    assert printer.sent == ["M400", "M114"] and port.pending_confirm_tag() is None
