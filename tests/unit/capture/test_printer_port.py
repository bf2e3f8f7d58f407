"""The printer port over a double of OctoPrint's printer: stop, hold, resume, release.

The double keeps OctoPrint's state names and the one rule that matters here: a held job
sends no file line, whatever the state. The port's waits are driven by calling its event
methods from a timer thread, as OctoPrint's event thread would.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

import pytest

from octoprint_layercapture.capture import printer_port
from octoprint_layercapture.capture.ports import (
    JobInterrupted,
    Position,
    PrinterTimeout,
    StopReport,
    UnrecognisedReply,
)
from octoprint_layercapture.capture.printer_port import (
    PARKED_COMMAND,
    PLUGIN_TAG,
    OctoPrintPrinterPort,
)


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
        self.port: Optional[OctoPrintPrinterPort] = None
        # OctoPrint's end-of-pause marker, queued after the pause script (PAUSING -> PAUSED)
        self.pause_marker_queued = False

    def pause_print(self, tags: Optional[Set[str]] = None) -> None:
        self.calls.append("pause")
        self.tags.append(set(tags or ()))
        if not self.pause_ignored and self.state == "PRINTING":
            self.state = "PAUSING"

    def resume_print(self, tags: Optional[Set[str]] = None) -> None:
        self.calls.append("resume")
        if self.state == "PAUSED":
            self.state = "RESUMING"

    def set_job_on_hold(self, value: bool, blocking: bool = True) -> bool:
        if self.hold_refused:
            return False
        self.calls.append(f"hold {value}")
        self.held += 1 if value else -1
        if not self.held:
            self.run_job_queue()
        return True

    def run_job_queue(self) -> None:
        """The send loop takes the job queue again: the end-of-pause marker runs."""
        if self.pause_marker_queued and not self.held:
            self.pause_marker_queued = False
            if self.state == "PAUSING":
                self.state = "PAUSED"
                if self.port is not None:
                    self.port.on_state_changed("PAUSED")

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


def pause_completes(
    printer: FakeOctoPrintPrinter, port: OctoPrintPrinterPort, script: Sequence[str] = ()
) -> None:
    """OctoPrint's pause after its M400 + M114: PrintPaused, the afterPrintPaused script
    with our at-command (when the port asked for it), then the end-of-pause marker."""
    port.on_paused({"position": {"x": 10, "y": 20, "z": 0.6, "e": 5}})
    for line in script:
        port.on_pause_script_line(line, line.split()[0])
    if port.pause_script_suffix() == [PARKED_COMMAND]:
        port.on_parked()
    printer.pause_marker_queued = True
    printer.run_job_queue()


@pytest.fixture
def printer() -> FakeOctoPrintPrinter:
    return FakeOctoPrintPrinter()


def pause_port(printer: FakeOctoPrintPrinter, **kwargs: Any) -> OctoPrintPrinterPort:
    port = OctoPrintPrinterPort(printer, "pause", **kwargs)
    printer.port = port
    return port


def test_pause_mode_holds_at_the_end_of_the_pause_script(printer: FakeOctoPrintPrinter) -> None:
    port = pause_port(printer)
    assert port.pause_script_suffix() is None, "a pause of the user's gets no at-command"
    assert port.stop_job() is None
    assert printer.calls == ["pause"] and PLUGIN_TAG in printer.tags[0]
    assert port.pause_script_suffix() == [PARKED_COMMAND]
    later(0.05, lambda: pause_completes(printer, port))
    report = port.wait_stopped(5.0)
    assert report.position == Position(10, 20, 0.6, 5) and report.script_lines == 0
    # held before OctoPrint's end-of-pause marker: still PAUSING, so lines get checksums
    assert printer.calls == ["pause", "hold True"] and printer.held == 1
    assert printer.state == "PAUSING"
    assert port.pause_script_suffix() is None


def test_the_pause_script_is_reported(printer: FakeOctoPrintPrinter) -> None:
    port = pause_port(printer)
    port.stop_job()
    script = ["G91", "M83", "G1 Z5 E-5 F4500", "M82", "G90", "G1 X0 Y0 F6000", "G10"]
    pause_completes(printer, port, script)
    report = port.wait_stopped(1.0)
    assert report.script_lines == 7
    assert report.script_modes == ("G91", "M83", "M82", "G90")
    assert report.script_feedrate == 6000.0 and report.script_retracted is True


def test_pause_mode_continue_ends_the_pause_then_resumes(printer: FakeOctoPrintPrinter) -> None:
    port = pause_port(printer)
    port.stop_job()
    pause_completes(printer, port)
    port.wait_stopped(1.0)
    later(0.05, port.on_resumed)
    port.continue_job(5.0)
    assert printer.calls == ["pause", "hold True", "hold False", "resume"]
    assert printer.held == 0 and not port.user_resumed()


def test_a_resume_by_hand_after_the_hold_is_seen(printer: FakeOctoPrintPrinter) -> None:
    port = pause_port(printer)
    port.stop_job()
    pause_completes(printer, port)
    port.wait_stopped(1.0)
    printer.state = "RESUMING"  # the user pressed Resume the moment the pause completed
    port.on_resumed()
    assert port.user_resumed()
    port.continue_job(1.0)
    assert printer.calls == ["pause", "hold True", "hold False"] and printer.held == 0


def test_a_pause_that_completes_late_is_resumed_when_it_does(
    printer: FakeOctoPrintPrinter,
) -> None:
    # a pause script that dwells: the capture gives up, and nothing may stay paused
    port = pause_port(printer)
    port.stop_job()
    with pytest.raises(PrinterTimeout, match="PrintPaused"):
        port.wait_stopped(0.05)
    port.continue_job(1.0)  # returns at once: nothing to resume yet
    assert printer.calls == ["pause"]
    pause_completes(printer, port)  # much later
    assert printer.calls == ["pause", "resume"] and printer.held == 0


PAUSE_REPORT_TAGS = {"source:plugin", PLUGIN_TAG, "trigger:record_position"}


def pause_m400_answered(port: OctoPrintPrinterPort) -> None:
    """OctoPrint sends its pause M400 and the printer answers it."""
    port.on_sending("M400", set(PAUSE_REPORT_TAGS))
    assert port.listening, "the port listens for the M400's ok"
    port.on_received("ok")
    assert not port.listening


def test_a_stalled_pause_is_woken_with_a_forced_m105(printer: FakeOctoPrintPrinter) -> None:
    # OctoPrint's pause M114 waits in its job queue until something wakes the send loop:
    # the M400 is answered and no M114 follows
    port = pause_port(printer)
    port.stop_job()
    printer.on_forced = lambda: later(0.01, lambda: pause_completes(printer, port))
    later(0.01, lambda: pause_m400_answered(port))
    started = time.monotonic()
    assert port.wait_stopped(5.0).position is not None
    assert printer.sent == ["M105 (forced)"]
    assert time.monotonic() - started < 0.5


def test_a_pause_whose_m114_follows_its_m400_gets_no_extra_line(
    printer: FakeOctoPrintPrinter,
) -> None:
    # a long wait for the M400 (the printer finishing the layer) is no stall
    port = pause_port(printer)
    port.stop_job()
    port.on_sending("M400", set(PAUSE_REPORT_TAGS))

    def answered() -> None:
        port.on_received("ok")
        port.on_sending("M114", set(PAUSE_REPORT_TAGS))
        later(0.05, lambda: pause_completes(printer, port))

    later(0.3, answered)
    port.wait_stopped(5.0)
    assert printer.sent == []


def test_a_pause_without_a_visible_m400_is_woken_now_and_then(
    printer: FakeOctoPrintPrinter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(printer_port, "PAUSE_KICK_EVERY", 0.05)
    port = pause_port(printer)
    port.stop_job()
    printer.on_forced = lambda: later(0.01, lambda: pause_completes(printer, port))
    assert port.wait_stopped(5.0).position is not None
    assert printer.sent == ["M105 (forced)"]


def test_a_prompt_pause_gets_no_extra_line(printer: FakeOctoPrintPrinter) -> None:
    port = pause_port(printer)
    port.stop_job()
    later(0.02, lambda: pause_completes(printer, port))
    port.wait_stopped(5.0)
    assert printer.sent == []


def test_pause_timeout_names_what_was_missing(printer: FakeOctoPrintPrinter) -> None:
    port = pause_port(printer)
    port.stop_job()
    with pytest.raises(PrinterTimeout, match="PrintPaused"):
        port.wait_stopped(0.05)
    port.on_paused({})
    with pytest.raises(PrinterTimeout, match="the end of the pause script"):
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
    assert port.wait_stopped(1.0) == StopReport()
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
    port = pause_port(printer)
    port.stop_job()
    pause_completes(printer, port)
    port.wait_stopped(1.0)
    port.on_state_changed("PAUSING")
    assert not port.user_paused()


def test_hold_refused_is_reported(printer: FakeOctoPrintPrinter) -> None:
    printer.hold_refused = True
    port = OctoPrintPrinterPort(printer, "hold")
    assert port.stop_job() == "could not put the job on hold"


def test_release_leaves_an_unfinished_job_paused_and_never_held(
    printer: FakeOctoPrintPrinter,
) -> None:
    port = OctoPrintPrinterPort(printer, "hold")
    port.stop_job()
    port.release(continued=False, interrupted=False)
    assert printer.held == 0 and printer.calls == ["hold True", "pause", "hold False"]


def test_release_in_pause_mode_completes_the_pause(printer: FakeOctoPrintPrinter) -> None:
    port = pause_port(printer)
    port.stop_job()
    pause_completes(printer, port)
    port.wait_stopped(1.0)
    port.release(continued=False, interrupted=False)
    assert printer.calls == ["pause", "hold True", "hold False"]
    assert printer.held == 0 and printer.state == "PAUSED"


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


def test_without_log_position_on_pause_the_report_is_not_trusted(
    printer: FakeOctoPrintPrinter,
) -> None:
    # OctoPrint then reports what is left over from an earlier pause
    port = pause_port(printer, pause_reports_position=False)
    port.stop_job()
    pause_completes(printer, port)
    assert port.wait_stopped(1.0).position is None


def test_pause_mode_continue_does_not_wait_for_the_resume_event(
    printer: FakeOctoPrintPrinter,
) -> None:
    port = pause_port(printer)
    port.stop_job()
    pause_completes(printer, port)
    port.wait_stopped(1.0)
    started = time.monotonic()
    port.continue_job(5.0)  # no PrintResumed yet: OctoPrint's state says RESUMING
    assert time.monotonic() - started < 0.1
    assert printer.state == "RESUMING"
    # our PrintResumed, delivered after the next layer's stop, is not the user's
    printer.state = "PRINTING"
    port.stop_job()
    port.on_resumed({"user": None})
    assert not port.user_resumed()
    port.on_resumed({"user": "admin"})
    assert port.user_resumed()
