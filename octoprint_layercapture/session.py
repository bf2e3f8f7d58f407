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
from pathlib import Path
from typing import List, Optional, Protocol, Tuple

from .analysis.records import LayerContext, LayerSpans, PrintRecords, ProcessState
from .layers import LayerTracker, LayerTrigger
from .ports import OUTCOME_INTERRUPTED, SequenceResult
from .printer_port import OctoPrintPrinterPort
from .settings import Bounds, CaptureSettings
from .worker import CaptureRequest, PrintInfo

ScriptLines = Tuple[Optional[List[str]], Optional[List[str]]]


@dataclass(frozen=True)
class ArmedPrint:
    """What a print is captured with, fixed when it starts."""

    settings: CaptureSettings
    bounds: Optional[Bounds]
    print_info: PrintInfo
    store_root: Path
    firmware_family: Optional[str]


class Worker(Protocol):
    @property
    def busy(self) -> bool: ...

    def submit(self, request: CaptureRequest) -> None: ...


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
                settings=values,
                bounds=self.armed.bounds,
                print_info=self.armed.print_info,
                store_root=self.armed.store_root,
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
        interrupted = result.outcome == OUTCOME_INTERRUPTED
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

    @property
    def owes(self) -> bool:
        with self._lock:
            return self._owed_line is not None or bool(self._owed_return)
