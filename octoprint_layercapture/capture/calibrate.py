"""*Calibrate*: moves the head outside a print to measure a toolhead camera's mounting.

The request (:func:`parse_request`) names a spot above the bed (X/Y, and the Z to take the
shots at) and the step of the small displacements; every point the head will visit is
checked against the bed's bounds and its maximum Z before anything is sent. The run
(:class:`CalibrationRun`) then, through the same printer port and G-code functions as the
capture sequence (:mod:`.moves`, every move confirmed by :func:`.sequence.confirm_position`:
M400 + M114, no fixed sleeps):

    G90                       absolute XYZ
    G0 Z<up> F<z speed>       lift: above the start Z and the shot Z
    G0 X<x> Y<y> F<speed>     to the spot
    G0 Z<z> F<z speed>        down to the shot Z: the reference shot
    G0 X<x+dx> Y<y+dy> ...    each displacement (calibration.displacements): a shot each
    G0 Z<up> / G0 X<x0> Y<y0> / G0 Z<z0>   lift, back above the start, down to its Z

and hands the pictures to the measurement (:func:`analysis.mosaic.calibration.calibrate`,
injected: it needs numpy). :class:`Calibrator` runs one at a time on a named thread and
reports its progress. Pure module: the printer and camera are ports.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..settings import WAIT_POLL, Bounds, CaptureSettings
from .firmware import XYZ_ABSOLUTE
from .moves import TRAVEL_CLEARANCE, as_sent, lift_commands, move_commands
from .ports import (
    CameraError,
    CameraPort,
    Clock,
    JobInterrupted,
    Position,
    PrinterPort,
    PrinterTimeout,
    ShotRequest,
)
from .sequence import confirm_position

DEFAULT_STEP_MM = 2.0  # the displacements' length (the measurement's default too)
MAX_STEP_MM = 20.0
MIN_STEP_MM = 0.2
MIN_Z_MM = 0.5  # the shots are taken at least this high above the bed


def displacements(step: float) -> List[Tuple[float, float]]:
    """The head's moves from the reference spot, mm: both axes, both ways, one diagonal
    (the one place for them: analysis.mosaic.calibration measures these)."""
    return [(step, 0.0), (0.0, step), (-step, 0.0), (0.0, -step), (step, step)]


class CalibrationRefused(Exception):
    """Why a calibration cannot start: ``status`` 400 (the request) or 409 (the printer)."""

    def __init__(self, status: int, message: str, errors: Optional[List[Dict[str, str]]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


@dataclass(frozen=True)
class CalibrationRequest:
    x: float
    y: float
    z: float
    step: float = DEFAULT_STEP_MM

    def points(self) -> List[Tuple[float, float]]:
        """Every XY the shots are taken at, the reference first."""
        return [(self.x, self.y)] + [
            (self.x + dx, self.y + dy) for dx, dy in displacements(self.step)
        ]


def parse_request(body: Any, bounds: Optional[Bounds]) -> CalibrationRequest:
    """The request from its JSON body, every point checked against ``bounds``; raises
    :class:`CalibrationRefused` (400) with one error per field."""
    if not isinstance(body, Mapping):
        raise CalibrationRefused(400, "expected a JSON object with x, y and z")
    errors: List[Dict[str, str]] = []
    values: Dict[str, float] = {}
    for key in ("x", "y", "z", "step"):
        raw = body.get(key, DEFAULT_STEP_MM if key == "step" else None)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            errors.append({"key": key, "message": f"must be a number (mm), got {raw!r}"})
            continue
        values[key] = float(raw)
    unknown = sorted(set(body) - {"x", "y", "z", "step"})
    errors += [{"key": k, "message": "is not a calibration parameter"} for k in unknown]
    if bounds is None and not errors:
        raise CalibrationRefused(
            409, "the printer profile gives no bed size: the head's moves cannot be checked"
        )
    step = values.get("step")
    if step is not None and not MIN_STEP_MM <= step <= MAX_STEP_MM:
        errors.append(
            {
                "key": "step",
                "message": f"must be {MIN_STEP_MM:g} to {MAX_STEP_MM:g} mm, got {step:g}",
            }
        )
    z = values.get("z")
    if z is not None and bounds is not None:
        top = bounds.max_z
        if z < MIN_Z_MM or (top is not None and z > top):
            most = f" and at most the printer's maximum Z {top:g}" if top is not None else ""
            errors.append(
                {"key": "z", "message": f"must be at least {MIN_Z_MM:g} mm{most}, got {z:g}"}
            )
    if errors:
        raise CalibrationRefused(
            400, "; ".join(f"{e['key']} {e['message']}" for e in errors), errors
        )
    request = CalibrationRequest(values["x"], values["y"], values["z"], values["step"])
    assert bounds is not None
    outside = [p for p in request.points() if not bounds.contains_xy(*p)]
    if outside:
        where = ", ".join(f"X{x:g} Y{y:g}" for x, y in outside)
        message = (
            f"the shots would take the head outside the bed ({where}; the bed is X "
            f"{bounds.min_x:g} to {bounds.max_x:g}, Y {bounds.min_y:g} to {bounds.max_y:g}"
            f"{'' if bounds.radius is None else f', radius {bounds.radius:g}'}): choose a spot "
            f"at least {request.step:g} mm inside it"
        )
        raise CalibrationRefused(400, message, [{"key": "x", "message": message}])
    return request


Measure = Callable[[bytes, Sequence[Tuple[Tuple[float, float], bytes]]], Dict[str, Any]]
Progress = Callable[[Dict[str, Any]], None]


class _Failed(Exception):
    pass


class CalibrationRun:
    """One calibration: the moves, the shots, the way back, the measurement."""

    def __init__(
        self,
        request: CalibrationRequest,
        settings: CaptureSettings,
        bounds: Bounds,
        printer: PrinterPort,
        camera: CameraPort,
        clock: Clock,
        measure: Measure,
        progress: Progress,
    ) -> None:
        self.request = request
        self.settings = settings
        self.bounds = bounds
        self.printer = printer
        self.camera = camera
        self.clock = clock
        self.measure = measure
        self.progress = progress

    def run(self) -> Dict[str, Any]:
        """The result: ``{"ok", "reason", "scale", ...}`` plus where the head ended."""
        start = self._confirm(Position(None, None, None), "the head's position")
        if not start.has_xyz:
            raise _Failed(f"the printer reports no position ({start.describe()}): home it first")
        assert start.x is not None and start.y is not None and start.z is not None
        up = self._travel_height(start.z)
        self.printer.send([XYZ_ABSOLUTE])
        shots: List[bytes] = []
        result: Dict[str, Any]
        try:
            self._lift(up)
            points = self.request.points()
            for number, (x, y) in enumerate(points):
                self._step("moving", number, len(points))
                self._move(x, y)
                if number == 0:
                    self._lower(self.request.z)
                shots.append(self._shot(number, x, y))
        finally:
            self._back(start, up)
        self.progress({"state": "measuring"})
        moves = displacements(self.request.step)
        result = self.measure(shots[0], list(zip(moves, shots[1:])))
        result["start"] = {"x": start.x, "y": start.y, "z": start.z}
        return result

    def _travel_height(self, start_z: float) -> float:
        """Above the shot Z and clear of the start Z, but never above the bed's top."""
        up = max(self.request.z, start_z + TRAVEL_CLEARANCE)
        if self.bounds.max_z is not None:
            up = max(min(up, self.bounds.max_z), self.request.z, start_z)
        return as_sent(up)

    def _step(self, what: str, number: int, count: int) -> None:
        self.progress({"state": what, "shot": number + 1, "shots": count})

    def _confirm(self, expected: Position, what: str) -> Position:
        polling = self.settings.wait_for_moves == WAIT_POLL
        timeout = self.settings.movement_timeout
        reported, mismatch = confirm_position(self.printer, self.clock, expected, timeout, polling)
        if mismatch is not None or reported is None:
            raise _Failed(f"{what} not confirmed: {mismatch}")
        return reported

    def _lift(self, z: float) -> None:
        self.printer.send(lift_commands(z, self.settings.z_speed))
        self._confirm(Position(None, None, z), f"the lift to Z {z:g}")

    _lower = _lift  # a Z move, confirmed: up or down

    def _move(self, x: float, y: float) -> None:
        x, y = as_sent(x), as_sent(y)
        self.printer.send(move_commands(x, y, self.settings.movement_speed))
        self._confirm(Position(x, y, None), f"the move to X {x:g} Y {y:g}")

    def _shot(self, number: int, x: float, y: float) -> bytes:
        measured = self._confirm(Position(x, y, self.request.z), "the head's position")
        for delay in (self.settings.capture_delay, self.settings.pre_capture_delay):
            if delay > 0:  # the configured settle delays, as in the sequence
                self.clock.sleep(delay)
        request = ShotRequest(0, self.request.z, number, 6, x, y, self.request.z, measured=measured)
        try:
            return self.camera.take(request).data
        except CameraError as exc:
            raise _Failed(f"shot {number + 1}: {exc}") from exc

    def _back(self, start: Position, up: float) -> None:
        """Lift, back above the start, down to its Z (not after an interruption: a print
        that started, a disconnect)."""
        assert start.x is not None and start.y is not None and start.z is not None
        try:
            self.printer.check()
        except JobInterrupted:
            return
        self._step("returning", 0, 1)
        self._lift(up)
        self._move(start.x, start.y)
        self._lower(as_sent(start.z))


class Calibrator:
    """One calibration at a time on its own thread (``layercapture-calibrate``); the last
    state for ``GET``, each change pushed."""

    def __init__(
        self,
        make_run: Callable[[CalibrationRequest, Progress], CalibrationRun],
        publish: Progress,
        logger: logging.Logger,
    ) -> None:
        self._make_run = make_run
        self._publish = publish
        self._logger = logger
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._state: Dict[str, Any] = {"state": "idle"}
        self._port: Optional[Any] = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def state(self) -> Dict[str, Any]:
        with self._lock:
            return dict(self._state)

    def start(self, request: CalibrationRequest) -> Dict[str, Any]:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise CalibrationRefused(409, "a calibration is already running")
            self._state = {"state": "starting", "request": request.__dict__}
            run = self._make_run(request, self._update)
            self._port = run.printer
            thread = threading.Thread(
                target=self._run, args=(run,), name="layercapture-calibrate", daemon=True
            )
            self._thread = thread
        self._publish(self.state())
        thread.start()
        return self.state()

    def port(self) -> Optional[Any]:
        """The running calibration's printer port (OctoPrint's hooks feed it), else None."""
        return self._port if self.running else None

    def interrupt(self, reason: str) -> None:
        """Stops the run at its next step, the head where it is (a print started, the
        printer disconnected); never blocks (OctoPrint's threads call it)."""
        port = self.port()
        if port is not None:
            port.interrupt(reason)

    def stop(self, reason: str = "shutdown") -> None:
        self.interrupt(reason)
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(10.0)

    def _update(self, change: Dict[str, Any]) -> None:
        with self._lock:
            self._state = {**{"request": self._state.get("request")}, **change}
        self._publish(self.state())

    def _run(self, run: CalibrationRun) -> None:
        try:
            result = run.run()
            self._update({"state": "done", "result": result})
            self._logger.info(f"Calibrate: {result}")
        except (_Failed, PrinterTimeout, JobInterrupted) as exc:
            self._logger.warning(f"Calibrate failed: {exc}")
            self._update({"state": "failed", "error": str(exc)})
        except Exception as exc:
            self._logger.exception("Calibrate failed")
            self._update({"state": "failed", "error": f"unexpected error: {exc}"})
        finally:
            try:
                run.camera.close()
            except Exception:
                self._logger.exception("Could not close the calibration camera")
