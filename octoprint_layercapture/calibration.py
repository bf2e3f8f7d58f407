"""*Calibrate*'s wiring: the plugin's printer, camera and measurement for
:mod:`capture.calibrate`, and the checks that refuse it (a print, no printer, no numpy).

Kept out of the plugin class (which only wires); imports nothing from OctoPrint: the
printer is OctoPrint's printer object, duck typed, as in :mod:`capture.printer_port`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from .analysis.mosaic import NEEDS_NUMPY, numpy_available
from .cameras.sources import WebcamInfo, camera_port
from .capture.calibrate import (
    CalibrationRefused,
    CalibrationRequest,
    CalibrationRun,
    Calibrator,
    Progress,
    parse_request,
)
from .capture.printer_port import OctoPrintPrinterPort
from .capture.worker import InterruptibleClock
from .session import CaptureSession, job_active
from .settings_reader import SettingsReader
from .web.push import Pushes

__all__ = ["CalibrationRefused", "Calibrator", "PluginCalibration"]


class Webcams(Protocol):
    def find(self, name: str) -> Optional[WebcamInfo]: ...


class Busy(Protocol):
    @property
    def busy(self) -> bool:
        """A capture sequence is queued or has the head away."""


def _measure(
    reference: bytes, shots: Sequence[Tuple[Tuple[float, float], bytes]]
) -> Dict[str, Any]:
    from .analysis.mosaic.calibration import calibrate_images  # numpy: checked before

    return calibrate_images(reference, shots).to_dict()


class PluginCalibration:
    """The calibrator on OctoPrint's printer, with its refusals."""

    def __init__(
        self,
        printer: Any,
        reader: SettingsReader,
        webcams: Webcams,
        worker: Busy,
        pushes: Pushes,
        logger: logging.Logger,
    ) -> None:
        self._printer = printer
        self._reader = reader
        self._find_webcam = webcams.find
        self._worker = worker
        self._logger = logger
        self.calibrator = Calibrator(self._make_run, pushes.calibration, logger)

    def ports(self, session: Optional[CaptureSession]) -> List[OctoPrintPrinterPort]:
        """The printer ports OctoPrint's hooks feed: the armed print's, else Calibrate's."""
        if session is not None:
            return [session.port]
        port = self.calibrator.port()
        return [] if port is None else [port]

    def refusal(self) -> Optional[str]:
        """Why the head may not be moved now, or None."""
        if not numpy_available():
            return f"Calibrate {NEEDS_NUMPY}"
        if not self._printer.is_operational():
            return "the printer is not connected: connect it first"
        if job_active(self._printer) or self._worker.busy:
            return "a print is running or paused: calibrate when the printer is idle"
        return None

    def start(self, body: Any) -> Dict[str, Any]:
        """Checks the request and the printer, then starts; raises CalibrationRefused."""
        values = self._reader.current()
        bounds = values.bounds(self._reader.profile_bounds())
        request = parse_request(body, bounds)
        why = self.refusal()
        if why is not None:
            raise CalibrationRefused(409, why)
        return self.calibrator.start(request)

    def _make_run(self, request: CalibrationRequest, progress: Progress) -> CalibrationRun:
        values = self._reader.current()
        bounds = values.bounds(self._reader.profile_bounds())
        assert bounds is not None  # parse_request refused without
        port = OctoPrintPrinterPort(
            self._printer, "hold", logger=self._logger, wait_for_moves=values.wait_for_moves
        )
        # the first camera (the one camera_mounting describes) as mounted on the toolhead,
        # whatever the saved mode (it is measured)
        mounting = dataclasses.replace(values.camera_mounting, mode="toolhead")
        measured = dataclasses.replace(values, camera_mounting=mounting)
        camera = camera_port(measured.cameras[0], measured, self._find_webcam)
        clock = InterruptibleClock(threading.Event())  # sleeps: the settle delay only
        return CalibrationRun(request, values, bounds, port, camera, clock, _measure, progress)
