"""The printer port over a double of OctoPrint's printer: stop, hold, resume, release.

The double keeps OctoPrint's state names and the one rule that matters here: a held job
sends no file line, whatever the state. The port's waits are driven by calling its event
methods from a timer thread, as OctoPrint's event thread would.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set

import pytest

from octoprint_layercapture.ports import (
    JobInterrupted,
    JobResumedByUser,
    Position,
    PrinterTimeout,
    UnrecognisedReply,
)
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
        self.on_commands: Optional[Callable[[List[str], Set[str]], None]] = None
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
        self.tags.append(set(tags or ()))
        if force and self.on_forced is not None:
            self.on_forced()
        if self.on_commands is not None:
            self.on_commands(list(commands), set(tags or ()))


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


class ScriptedFirmware:
    """Answers the port's confirm commands as OctoPrint's comm threads would report them:
    the ``gcode.sending`` hook per command, then the ``gcode.received`` hook per line."""

    def __init__(self, printer: FakeOctoPrintPrinter, port: OctoPrintPrinterPort) -> None:
        self.port = port
        self.replies: Dict[str, List[str]] = {"M400": ["ok"], "G4": ["ok"], "M114": []}
        printer.on_commands = self.answer
        self.received_before: List[str] = []

    def answer(self, commands: List[str], tags: Set[str]) -> None:
        def run() -> None:
            for line in self.received_before:  # e.g. the answer to someone else's M114
                self.port.on_received(line)
            for command in commands:
                gcode = command.split()[0]
                self.port.on_sending(gcode, set(tags))
                for line in self.replies.get(gcode, ["ok"]):
                    self.port.on_received(line + "\n")

        later(0.02, run)


@pytest.mark.parametrize(
    ("wait_for_moves", "sent"),
    [("M400", ["M400", "M114"]), ("G4 P0", ["G4 P0", "M114"]), ("poll", ["M114"])],
)
def test_confirm_sends_the_chosen_wait_and_reads_the_report(
    printer: FakeOctoPrintPrinter, wait_for_moves: str, sent: List[str]
) -> None:
    port = OctoPrintPrinterPort(printer, "hold", wait_for_moves=wait_for_moves)
    firmware = ScriptedFirmware(printer, port)
    firmware.received_before = ["ok X:1 Y:1 Z:1 E:0"]  # not ours: nothing of ours went out
    firmware.replies["M114"] = ["X:5.00 Y:6.00 Z:7.00 E:1.00 Count X:1 Y:2 Z:3", "ok"]
    assert not port.listening
    position = port.confirm(5.0)
    assert position == Position(5, 6, 7, 1)
    assert printer.sent == sent and port.pending_confirm_tag() is None
    assert not port.listening
    assert all(PLUGIN_TAG in tags for tags in printer.tags)


def test_confirm_reads_a_report_after_its_ok(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "hold", reply_grace=5.0)
    firmware = ScriptedFirmware(printer, port)
    firmware.replies["M400"] = ["echo:busy: processing", "echo:busy: processing", "ok"]
    firmware.replies["M114"] = ["ok", "X:5.0 Y:6.0 Z:7.0 E:1.0"]
    assert port.confirm(5.0) == Position(5, 6, 7, 1)


def test_an_unreadable_answer_ends_the_confirm_after_the_grace(
    printer: FakeOctoPrintPrinter,
) -> None:
    port = OctoPrintPrinterPort(printer, "hold", reply_grace=0.2)
    ScriptedFirmware(printer, port).replies["M114"] = ["Position 5/6/7", "ok"]
    started = time.monotonic()
    with pytest.raises(UnrecognisedReply, match="answered M114 with 'Position 5/6/7'"):
        port.confirm(30.0)
    assert time.monotonic() - started < 5.0
    assert port.pending_confirm_tag() is None and not port.listening


def test_an_unknown_wait_command_ends_the_confirm_at_once(
    printer: FakeOctoPrintPrinter,
) -> None:
    port = OctoPrintPrinterPort(printer, "hold", reply_grace=30.0)
    firmware = ScriptedFirmware(printer, port)
    firmware.replies["M400"] = ['echo:Unknown command: "M400"', "ok"]
    firmware.replies["M114"] = ["ok X:5 Y:6 Z:7 E:1"]
    started = time.monotonic()
    with pytest.raises(UnrecognisedReply, match="does not know M400"):
        port.confirm(30.0)
    assert time.monotonic() - started < 5.0


def test_no_answer_times_out(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "hold")
    with pytest.raises(PrinterTimeout, match=r"no answer to M400 \+ M114 within 0.2 s"):
        port.confirm(0.2)


def test_an_interrupt_ends_the_confirm(printer: FakeOctoPrintPrinter) -> None:
    port = OctoPrintPrinterPort(printer, "hold")
    later(0.05, lambda: port.interrupt("cancelled"))
    with pytest.raises(JobInterrupted):
        port.confirm(5.0)
    assert not port.listening
