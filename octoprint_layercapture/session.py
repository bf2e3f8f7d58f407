"""One armed print: what the plugin keeps between a print's start and its end.

The plugin class makes a :class:`CaptureSession` when a print starts and swaps it out as
one reference when the print ends, so OctoPrint's threads (comm thread, send thread, event
thread, the worker) see either the whole session or none. It imports nothing from
OctoPrint: it talks to the printer through :class:`printer_port.OctoPrintPrinterPort`.

Arming happens in the scripts hook for ``beforePrintStarted``, which OctoPrint calls while
starting the job, before the first line of the file is sent: a late PrintStarted event (a
slow handler of another plugin delays every later subscriber) can no longer make the
tracker miss the file's first lines (its ``M83``, say).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple, Union

from .analysis.gcode_file import GcodeFile
from .analysis.records import (
    LayerContext,
    LayerSpans,
    PrintRecords,
    ProcessState,
    printer_profile_record,
)
from .capture.armed import ArmedPrint, PrintInfo
from .capture.estimate import MotionLimits
from .capture.estimate import motion_limits as estimate_limits
from .capture.firmware import ConnectedFirmware
from .capture.layers import LayerTargets, LayerTracker, LayerTrigger
from .capture.printer_port import OctoPrintPrinterPort
from .capture.results import SequenceResult
from .capture.status import next_every_n, planned_layer_seconds
from .capture.worker import CaptureRequest
from .settings import InvalidSettings
from .settings_reader import SettingsReader
from .store.index import print_id
from .vocabulary import Outcome, State

ScriptLines = Tuple[Optional[List[str]], Optional[List[str]]]


class Worker(Protocol):
    @property
    def busy(self) -> bool: ...

    def submit(self, request: CaptureRequest) -> None: ...


class Writes(Protocol):
    def after_writes(self, job: Callable[[], None]) -> None: ...


class Videos(Protocol):
    def submit_after_print(self, print_id: str) -> None: ...


class CaptureSession:
    """The tracker, the printer port and what the plugin owes the job for one print.

    ``number`` is the count of prints started since OctoPrint started, so events that
    arrive late (PrintDone of the previous print) can be told apart.
    """

    def __init__(
        self,
        armed: ArmedPrint,
        tracker: LayerTracker,
        port: OctoPrintPrinterPort,
        number: int,
        logger: logging.Logger,
        records: Optional[PrintRecords] = None,
        process: Optional[ProcessState] = None,
    ) -> None:
        self.armed = armed
        self.tracker = tracker
        self.port = port
        self.number = number
        self._logger = logger
        # for the metadata's records (analysis.records): the print's file and profile, the
        # factors/fan/tool the plugin follows, and where each layer starts in the file
        self.records = records
        self.process = process
        self.spans = LayerSpans()
        self._lock = threading.Lock()
        # the held first line of a layer, owed to the job (pause mode: sent with the resume)
        self._owed_line: Optional[str] = None
        # G-code that brings the head back when a sequence could not (sent on resume)
        self._owed_return: Tuple[str, ...] = ()

    # ---- comm thread

    def feed(self, line: str, tags: Any) -> Optional[LayerTrigger]:
        """A line of the file, as the queuing hook sees it: the tracker reads it, and where
        a layer starts in the file is kept for the metadata (once per layer)."""
        tracker = self.tracker
        trigger = tracker.feed(line)
        if tracker.layer != self.spans.layer:
            self.spans.started(tracker.layer, tags, tracker.layer_start_state)
        return trigger

    def feed_marker(self, parameters: str, tags: Any) -> Optional[LayerTrigger]:
        """An ``@LAYERCAPTURE`` marker of the file (see :meth:`feed`)."""
        tracker = self.tracker
        trigger = tracker.feed_marker(parameters)
        if tracker.layer != self.spans.layer:
            self.spans.started(tracker.layer, tags, tracker.layer_start_state)
        return trigger

    def stop_for(self, trigger: LayerTrigger, held_line: Optional[str], worker: Worker) -> bool:
        """Stop the job for ``trigger`` and queue its capture; False when it was skipped
        (the line then goes out as usual). Runs on OctoPrint's comm thread: never blocks."""
        if worker.busy:
            self._logger.warning(
                f"layer {trigger.layer}: the previous capture is still running, skipped"
            )
            return False
        problem = self.port.stop_job()
        if problem is not None:
            self._logger.warning(f"layer {trigger.layer}: {problem}, skipped")
            return False
        values = self.armed.settings
        if values.stop_mode == "pause":
            # OctoPrint runs beforePrintResumed on every resume, ours or the user's: the
            # held line rides on it, after the user's resume script
            with self._lock:
                self._owed_line = held_line
            held_line = None
        worker.submit(
            CaptureRequest(
                trigger=trigger,
                motion=trigger.state_before or self.tracker.state,
                held_line=held_line,
                armed=self.armed,
                printer=self.port,
                owner=self,
                context=self._context(trigger.layer),
            )
        )
        return True

    def _context(self, layer: int) -> Optional[LayerContext]:
        """What the metadata needs from this moment: the layer's span, the factors."""
        if self.records is None:
            return None
        process = self.process.snapshot() if self.process is not None else ProcessState().snapshot()
        return LayerContext(self.records, self.spans.completed(layer), process)

    # ---- worker thread

    def sequence_finished(self, request: CaptureRequest, result: SequenceResult) -> None:
        """Record what the job is owed, then hand the job back (release its hold). In this
        order: a resume clicked the moment the hold is released must find the owed line."""
        interrupted = result.outcome == Outcome.INTERRUPTED
        for note in result.notes:
            self._logger.info(f"layer {request.trigger.layer}: {note}")
        if not interrupted:
            with self._lock:
                if request.held_line and not result.held_line_sent:
                    self._owed_line = request.held_line
                self._owed_return = result.owed_return
        self.port.release(result.continued, interrupted)
        if result.owed_return:
            self._logger.warning(
                f"layer {request.trigger.layer}: the head could not be brought back; the job "
                "is left paused, and the head is brought back before it goes on"
            )
        elif not result.continued and not interrupted:
            self._logger.warning(
                f"layer {request.trigger.layer}: the job was left paused ({result.outcome}); "
                "it continues when you resume it"
            )

    # ---- scripts hook (comm thread)

    def pause_script(self) -> Optional[List[str]]:
        """Lines to append to ``afterPrintPaused`` (our pause's at-command)."""
        return self.port.pause_script_suffix()

    def resume_script(self) -> Optional[ScriptLines]:
        """Lines around the user's ``beforePrintResumed`` script: what the job is owed.

        A head left away goes back first. In pause mode that is before the user's script
        (which expects the head where its pause script parked it); in hold mode the
        plugin's pause came with the head away, so the user's pair of scripts starts and
        ends there, and the head goes back after it. The held line always comes last."""
        with self._lock:
            line, self._owed_line = self._owed_line, None
            back, self._owed_return = list(self._owed_return), ()
        if line is None and not back:
            return None
        if back:
            self._logger.info("Bringing the head back before the job goes on: " + " / ".join(back))
        tail = [line] if line is not None else []
        if self.armed.settings.stop_mode == "pause":
            return (back or None), (tail or None)
        return None, (back + tail) or None

    def script_lines(self, name: str, tags: Any) -> Any:
        """The scripts hook's answer for OctoPrint's script ``name`` (None: nothing)."""
        if name == "afterPrintPaused":
            suffix = self.pause_script()
            return None if suffix is None else (None, suffix, None, tags)
        if name == "beforePrintResumed":
            lines = self.resume_script()
            return None if lines is None else (lines[0], lines[1], None, tags)
        return None

    @property
    def owes(self) -> bool:
        with self._lock:
            return self._owed_line is not None or bool(self._owed_return)


class PrintCounter:
    """Tells apart the events of the print being captured from late ones of an earlier
    print. The scripts hook counts the prints OctoPrint starts (``beforePrintStarted``,
    before their first line); PrintStarted events are counted as they arrive, in order, on
    the event thread. OctoPrint fires PrintStarted just before it runs that script, so
    either may be counted first: a session's events are those after its own PrintStarted,
    which is the case once as many PrintStarted events as its number have arrived."""

    def __init__(self) -> None:
        self.started = 0
        self.events = 0

    def start(self) -> int:
        self.started += 1
        return self.started

    def event(self) -> None:
        self.events += 1

    def is_current(self, session: CaptureSession) -> bool:
        return session.number <= self.events


def next_targets(session: CaptureSession) -> Tuple[int, Optional[int], Optional[float]]:
    """The layer being printed, the next every-N target and the next Z target."""
    tracker = session.tracker
    pending = tracker.pending_z_heights()
    every_n = next_every_n(
        tracker.layer, session.armed.settings.capture_every_n_layers, tracker.captured_layers()
    )
    return tracker.layer, every_n, pending[0] if pending else None


# Job origins the printer prints itself (OctoPrint never sees those lines): "sdcard" up to
# OctoPrint 1.11, "printer" from 2.0 on.
PRINTER_STORAGES = ("sdcard", "printer")


@dataclass(frozen=True)
class NotCaptured:
    """Why a print that starts is not captured; ``status`` is what the UI is told."""

    reason: str
    status: Optional[Dict[str, Any]] = None


def arm(
    job_file: Mapping[str, Any],
    number: int,
    reader: SettingsReader,
    firmware: ConnectedFirmware,
    printer: Any,
    logger: logging.Logger,
    files: Any = None,
    process: Optional[ProcessState] = None,
) -> Union[CaptureSession, NotCaptured]:
    """A session for the print that starts now (``job_file``: OctoPrint's job file info):
    the settings as stored, the bounds (profile, settings, the firmware's soft limits),
    the firmware family, a fresh tracker and printer port, and what the metadata records
    about the print (``files``: OctoPrint's file manager; ``process``: the factors, fan
    and tool sent since the printer connected)."""
    if job_file.get("origin") in PRINTER_STORAGES:
        message = "SD card prints are not captured"
        return NotCaptured(message, {"state": State.UNSUPPORTED, "message": message})
    try:
        values = reader.current()
    except InvalidSettings as exc:
        logger.warning(f"Settings are invalid, this print is not captured: {exc}")
        return NotCaptured(str(exc), {"state": State.ERROR, "message": f"invalid settings: {exc}"})
    if not values.enabled:
        return NotCaptured("captures are switched off")
    if values.capture_every_n_layers == 0 and not values.capture_z_heights:
        logger.info("No layers selected (every N = 0 and no Z heights)")
        return NotCaptured("no layers selected")
    bounds = values.bounds(reader.profile_bounds())
    limits = firmware.limits
    if bounds is not None and limits is not None:
        bounds = bounds.within(limits.min_x, limits.min_y, limits.max_x, limits.max_y, limits.max_z)
    family = firmware.family(values.firmware)
    info = PrintInfo(str(job_file.get("name") or job_file.get("path") or ""), datetime.now())
    armed = ArmedPrint(
        values,
        bounds,
        info,
        reader.capture_root(values.capture_folder),
        family,
        lines_checked=reader.lines_checked(),
        motion_limits=motion_limits(reader, firmware),
    )
    targets = LayerTargets(
        every_n=values.capture_every_n_layers,
        z_heights=values.capture_z_heights,
        min_layer_height=values.min_layer_height,
    )
    port = OctoPrintPrinterPort(
        printer,
        values.stop_mode,
        logger,
        wait_for_moves=values.wait_for_moves,
        pause_reports_position=reader.pause_reports_position(),
    )
    records = print_records(job_file, armed, reader, printer, files, logger)
    tracker = LayerTracker(targets, family=family)
    return CaptureSession(armed, tracker, port, number, logger, records, process)


def print_records(
    job_file: Mapping[str, Any],
    armed: ArmedPrint,
    reader: SettingsReader,
    printer: Any,
    files: Any,
    logger: logging.Logger,
) -> PrintRecords:
    """What the metadata records about the print: its file on disk (hashed and read on
    the image writer's thread, never here), the printer profile, the heaters."""
    disk_path: Optional[Path] = None
    storage_path = job_file.get("path")
    local = job_file.get("origin") == "local" and isinstance(storage_path, str)
    if files is not None and local:
        try:
            disk_path = Path(files.path_on_disk("local", storage_path))
        except Exception:
            logger.exception(f"Could not locate {storage_path} on disk")
    return PrintRecords(
        gcode_path=disk_path,
        gcode_storage_path=storage_path if isinstance(storage_path, str) else None,
        firmware_family=armed.firmware_family,
        printer_profile=printer_profile_record(reader.profile(), armed.bounds),
        read_temperatures=getattr(printer, "get_current_temperatures", None),
        gcode=None if disk_path is None else GcodeFile(disk_path),
    )


def motion_limits(reader: SettingsReader, firmware: ConnectedFirmware) -> MotionLimits:
    """The printer's limits the time estimates assume (see capture.estimate)."""
    return estimate_limits(firmware.motion, reader.profile_feedrates())


def planned_seconds(session: CaptureSession) -> Optional[float]:
    """What a captured layer should add, planned from the settings (None: can't tell)."""
    try:
        armed = session.armed
        return planned_layer_seconds(armed.settings, armed.bounds, armed.motion_limits)
    except (ValueError, ZeroDivisionError):
        return None


def job_file(printer: Any, logger: logging.Logger) -> Dict[str, Any]:
    """The file of the job OctoPrint is starting (name, path, origin)."""
    try:
        return dict((printer.get_current_job() or {}).get("file") or {})
    except Exception:
        logger.exception("Could not read the job being started")
        return {}


def sequence_finished(
    current: Optional[CaptureSession], request: CaptureRequest, result: SequenceResult
) -> None:
    """Hands the job back to the print that asked, even when it has ended meanwhile (its
    hold must go), else to the current one."""
    session = request.owner if isinstance(request.owner, CaptureSession) else current
    if session is not None:
        session.sequence_finished(request, result)


def port_of(session: Optional[CaptureSession]) -> OctoPrintPrinterPort:
    if session is None:
        raise RuntimeError("no print job is armed")
    return session.port


def gallery_print_id(session: CaptureSession) -> str:
    """The gallery's id of the print a session captures (store.index.print_id)."""
    info = session.armed.print_info
    return print_id(info.gcode_file, info.started_at.isoformat(timespec="seconds"), "")


def job_active(printer: Any) -> bool:
    """Whether OctoPrint's printer runs a job (printing, pausing or paused)."""
    return bool(printer.is_printing() or printer.is_pausing() or printer.is_paused())


def render_after_print(
    session: CaptureSession, reader: SettingsReader, writes: Writes, videos: Videos
) -> bool:
    """A print ended (done, failed or cancelled): its videos are queued when it captured
    layers and ``video_render_after_print`` is on, once the image writer has written (and
    the gallery indexed) its last files; whether they were."""
    if not reader.flag("video_render_after_print") or not session.tracker.captured_layers():
        return False
    pid = gallery_print_id(session)
    writes.after_writes(lambda: videos.submit_after_print(pid))
    return True
