"""The per-print session: what the job is owed, and in which order it is handed back."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any, List, Optional

import pytest
from fakes import make_settings

from octoprint_layercapture.analysis.records import ProcessState
from octoprint_layercapture.capture.armed import ArmedPrint, PrintInfo
from octoprint_layercapture.capture.layers import LayerTargets, LayerTracker, LayerTrigger
from octoprint_layercapture.capture.results import SequenceResult
from octoprint_layercapture.capture.worker import CaptureRequest
from octoprint_layercapture.session import (
    CaptureSession,
    PrintCounter,
    gallery_print_id,
    job_active,
    print_records,
    render_after_print,
)
from octoprint_layercapture.store.index import print_id

LOGGER = logging.getLogger("octoprint.plugins.layercapture.test")
HELD = "G1 X10 Y10 E0.5"


class ResumingPort:
    """A printer port whose release lets the user's Resume through at once: OctoPrint runs
    beforePrintResumed (the scripts hook) while release() is still returning."""

    def __init__(self) -> None:
        self.session: Optional[CaptureSession] = None
        self.resume_lines: List[Any] = []
        self.released: List[tuple] = []

    def release(self, continued: bool, interrupted: bool) -> None:
        self.released.append((continued, interrupted))
        assert self.session is not None
        self.resume_lines.append(self.session.resume_script())

    def stop_job(self) -> Optional[str]:
        return None

    def pause_script_suffix(self) -> Optional[List[str]]:
        return None


class Worker:
    busy = False

    def __init__(self) -> None:
        self.requests: List[CaptureRequest] = []

    def submit(self, request: CaptureRequest) -> None:
        self.requests.append(request)


def make_session(stop_mode: str) -> tuple[CaptureSession, ResumingPort]:
    settings = make_settings(stop_mode=stop_mode)
    armed = ArmedPrint(
        settings, None, PrintInfo("a.gcode", datetime(2026, 1, 1)), Path("/tmp/x"), None
    )
    port = ResumingPort()
    session = CaptureSession(armed, LayerTracker(LayerTargets()), port, 1, LOGGER)  # type: ignore[arg-type]
    port.session = session
    return session, port


def result(continued: bool, outcome: str, owed: tuple = ()) -> SequenceResult:
    return SequenceResult(
        layer=3,
        shots=[],
        failures=[],
        timings={},
        stop_position=None,
        stop_position_source="unknown",
        continued=continued,
        outcome=outcome,
        started_at=datetime(2026, 1, 1),
        owed_return=owed,
    )


def trigger() -> LayerTrigger:
    return LayerTrigger(layer=3, z=0.6, next_z=0.8, source="motion", reasons=("every 3",))


def test_a_resume_the_moment_the_hold_is_released_gets_the_held_line() -> None:
    # hold mode, left paused by the user: the held line is owed; a Resume clicked while
    # release() hands the job back must find it (it was recorded before the release)
    session, port = make_session("hold")
    worker = Worker()
    assert session.stop_for(trigger(), HELD, worker)
    [request] = worker.requests
    assert request.held_line == HELD and request.printer is port and request.owner is session
    session.sequence_finished(request, result(False, "left_paused_by_user"))
    assert port.resume_lines == [(None, [HELD])]
    assert session.resume_script() is None, "sent once"


def test_pause_mode_owes_the_held_line_from_the_stop_on() -> None:
    session, port = make_session("pause")
    worker = Worker()
    assert session.stop_for(trigger(), HELD, worker)
    assert worker.requests[0].held_line is None
    assert session.owes
    session.sequence_finished(worker.requests[0], result(True, "completed"))
    assert port.resume_lines == [(None, [HELD])]


def test_a_head_left_away_is_brought_back_first() -> None:
    back = ("G90", "G0 Z5.6 F600", "G0 X10 Y10 F6000", "G0 Z0.6 F600")
    session, port = make_session("pause")
    worker = Worker()
    session.stop_for(trigger(), HELD, worker)
    session.sequence_finished(worker.requests[0], result(False, "not_continued", back))
    # pause mode: before the user's resume script (which expects the park position)
    assert port.resume_lines == [(list(back), [HELD])]
    session, port = make_session("hold")
    worker = Worker()
    session.stop_for(trigger(), HELD, worker)
    session.sequence_finished(worker.requests[0], result(False, "not_continued", back))
    # hold mode: after it (the user's scripts start and end where the plugin paused)
    assert port.resume_lines == [(None, [*back, HELD])]


def test_an_interrupted_sequence_owes_nothing() -> None:
    session, port = make_session("hold")
    worker = Worker()
    session.stop_for(trigger(), HELD, worker)
    session.sequence_finished(worker.requests[0], result(False, "interrupted", ("G0 Z5",)))
    assert port.resume_lines == [None] and port.released == [(False, True)]


def test_events_belong_to_the_print_that_started_last_in_either_order() -> None:
    # OctoPrint fires PrintStarted, then runs beforePrintStarted (where the plugin arms):
    # the event thread may count the event before or after the hook ran
    counter = PrintCounter()
    first, _ = make_session("hold")
    first.number = counter.start()  # hook of print 1
    assert not counter.is_current(first), "print 1's own PrintStarted has not arrived"
    counter.event()
    assert counter.is_current(first)
    counter.event()  # print 2's PrintStarted, processed before its hook
    second, _ = make_session("hold")
    second.number = counter.start()
    assert counter.is_current(second)


def test_late_events_of_the_previous_print_are_not_the_new_ones() -> None:
    counter = PrintCounter()
    counter.start()
    counter.event()  # print 1 runs
    session, _ = make_session("pause")
    session.number = counter.start()  # print 2 armed, print 1's PrintDone still queued
    assert not counter.is_current(session)
    counter.event()
    assert counter.is_current(session)


# ---- what the metadata records about the print (analysis.records) -------------------------


class Reader:
    def profile(self) -> Any:
        return {"id": "_default", "name": "Default", "volume": {"width": 200, "depth": 200}}


class Files:
    def __init__(self) -> None:
        self.asked: List[tuple] = []

    def path_on_disk(self, storage: str, path: str) -> str:
        self.asked.append((storage, path))
        return f"/uploads/{path}"


class Printer:
    def get_current_temperatures(self) -> Any:
        return {"tool0": {"actual": 200.0, "target": 200.0}}


def test_a_session_notes_where_each_layer_starts_and_hands_the_span_with_its_capture() -> None:
    session, _ = make_session("hold")
    session.tracker = LayerTracker(LayerTargets(every_n=2))
    session.records = print_records(
        {"origin": "local", "path": "f/a.gcode"},
        session.armed,
        Reader(),  # type: ignore[arg-type]
        Printer(),
        Files(),
        LOGGER,
    )
    process = ProcessState()
    process.feed("M220", "M220 S120")
    session.process = process
    lines = ["G90", "M83", "G1 Z0.2", "G1 X5 Y5 E1", "G1 Z0.4", "G1 X9 Y5 E1", "G1 Z0.6"]
    lines += ["G1 X9 Y9 E1"]  # layer 3 starts: layer 2 is complete
    worker = Worker()
    end = 0
    for line in lines:
        end += len(line) + 1
        found = session.feed(line, {"source:file", f"filepos:{end}"})
        if found is not None:
            assert session.stop_for(found, line, worker)
    [request] = worker.requests
    context = request.context
    assert request.trigger.layer == 2 and context is not None
    assert context.print_records is session.records
    span = context.span
    assert span is not None and span.layer == 2
    # from the line that started layer 2 (its first extruding move) to layer 3's
    assert (span.start_line_end, span.next_line_end) == (48, 68)
    assert span.start_state is not None and span.start_state.z == 0.4
    assert context.process["feed_rate_percent"] == 120.0


def test_markers_start_layers_for_the_spans_too() -> None:
    session, _ = make_session("hold")
    session.tracker = LayerTracker(LayerTargets(every_n=1))
    session.feed("G1 X3 Y4 Z0.2", {"source:file", "filepos:14"})
    session.feed_marker("0 0.2", {"source:file", "filepos:30"})
    assert session.spans.layer == 1
    assert session.feed_marker("1 0.4", {"source:file", "filepos:46"}) is not None
    span = session.spans.completed(1)
    assert span is not None and (span.start_line_end, span.next_line_end) == (30, 46)


def test_print_records_find_a_local_file_on_disk_only() -> None:
    session, _ = make_session("hold")
    files = Files()
    local = {"origin": "local", "path": "f/a.gcode", "name": "a.gcode"}
    records = print_records(local, session.armed, Reader(), Printer(), files, LOGGER)  # type: ignore[arg-type]
    assert files.asked == [("local", "f/a.gcode")]
    assert records.gcode_path == Path("/uploads/f/a.gcode") and records.gcode is not None
    assert records.gcode_storage_path == "f/a.gcode"
    assert records.printer_profile is not None and records.printer_profile["name"] == "Default"
    assert records.read_temperatures is not None
    assert records.read_temperatures()["tool0"]["actual"] == 200.0
    for job, manager in (({"origin": "sdcard", "path": "A.GCO"}, files), (local, None)):
        other = print_records(job, session.armed, Reader(), Printer(), manager, LOGGER)  # type: ignore[arg-type]
        assert other.gcode_path is None and other.gcode is None
    assert len(files.asked) == 1, "a print from the SD card is not looked for on disk"


# ---- videos after the print (analysis.video) ------------------------------------------------


class Flags:
    def __init__(self, **flags: bool) -> None:
        self.flags = flags

    def flag(self, key: str) -> bool:
        return self.flags.get(key, False)


class Writes:
    def __init__(self) -> None:
        self.jobs: List[Any] = []

    def after_writes(self, job: Any) -> None:
        self.jobs.append(job)


class Videos:
    def __init__(self) -> None:
        self.asked: List[str] = []

    def submit_after_print(self, print_id: str) -> None:
        self.asked.append(print_id)


def captured_session() -> CaptureSession:
    session, _ = make_session("hold")
    session.tracker = LayerTracker(LayerTargets(every_n=1))
    for line in ["G90", "M83", "G1 Z0.2", "G1 X5 Y5 E1", "G1 Z0.4", "G1 X9 Y5 E1"]:
        session.feed(line, {"source:file"})
    assert session.tracker.captured_layers() == (1,)
    return session


def test_a_print_that_captured_layers_queues_its_videos_after_the_writers_last_files() -> None:
    session, writes, videos = captured_session(), Writes(), Videos()
    on = Flags(video_render_after_print=True)
    assert render_after_print(session, on, writes, videos)  # type: ignore[arg-type]
    assert videos.asked == []  # not before the image writer has written the last layer
    [job] = writes.jobs
    job()
    assert videos.asked == [gallery_print_id(session)]
    assert gallery_print_id(session) == print_id("a.gcode", "2026-01-01T00:00:00", "")


def test_no_videos_after_a_print_when_the_setting_is_off_or_nothing_was_captured() -> None:
    writes, videos = Writes(), Videos()
    off = Flags(video_render_after_print=False)
    assert not render_after_print(captured_session(), off, writes, videos)  # type: ignore[arg-type]
    nothing, _ = make_session("hold")
    on = Flags(video_render_after_print=True)
    assert not render_after_print(nothing, on, writes, videos)  # type: ignore[arg-type]
    assert writes.jobs == [] and videos.asked == []


class JobPrinter:
    def __init__(self, state: str) -> None:
        self.state = state

    def is_printing(self) -> bool:
        return self.state == "printing"

    def is_pausing(self) -> bool:
        return self.state == "pausing"

    def is_paused(self) -> bool:
        return self.state == "paused"


@pytest.mark.parametrize(
    ("state", "active"),
    [("printing", True), ("pausing", True), ("paused", True), ("operational", False)],
)
def test_a_job_is_active_while_printing_pausing_or_paused(state: str, active: bool) -> None:
    assert job_active(JobPrinter(state)) is active
