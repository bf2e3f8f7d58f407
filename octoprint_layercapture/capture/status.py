"""The live status the UI shows during a print, and the time a capture adds to a layer.

Pure module. :class:`LiveStatus` merges the worker's reports (``idle``, ``waiting``,
``capturing``, ``captured``, ``error``, ``unsupported``) with facts that outlive one report:
the layer being printed, the next target, the estimated time added per captured layer
(planned until a layer has been measured, then the mean of the measured ones) and the last
error of the print.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..settings import Bounds, CaptureSettings
from ..vocabulary import State
from .estimate import STOCK, MotionLimits, sequence_moves, sequence_seconds
from .grid import plan_grid
from .moves import travel_height

# What the plan cannot know, from the fake camera and the virtual printer on a slow machine:
# one snapshot, and stopping plus continuing the job. Replaced by measurements after the
# first captured layer.
SNAPSHOT_GUESS_S = 0.3
STOP_AND_CONTINUE_GUESS_S = 1.0

# Keys that describe the print rather than the current report: kept across reports.
_PRINT_KEYS = (
    "gcode_file",
    "current_layer",
    "next_layer",
    "next_z",
    "z",
    "estimate_s",
    "estimate_source",
    "measured_layers",
    "last_error",
)


@dataclass(frozen=True)
class PlannedLayer:
    """The time a capture adds to a layer according to the settings, by where it goes."""

    moves_s: float  # the capture's moves as a printer with ``limits`` runs them
    settle_s: float  # capture_delay + pre_capture_delay at every visited position
    guessed_s: float  # what the plan cannot know: the camera, stopping and continuing the job
    limits: str = ""  # the printer limits the moves are timed with, and where they came from

    @property
    def total_s(self) -> float:
        return round(self.moves_s + self.settle_s + self.guessed_s, 2)

    def parts(self) -> Dict[str, Any]:
        return {
            "moves_s": round(self.moves_s, 2),
            "settle_s": round(self.settle_s, 2),
            "guessed_s": round(self.guessed_s, 2),
            "limits": self.limits,
        }


def plan_layer_time(
    values: CaptureSettings, bounds: Optional[Bounds], limits: MotionLimits = STOCK
) -> PlannedLayer:
    """Time a capture adds to a layer according to the settings (before any is measured).

    The head starts and ends at the grid centre on the bed (the real start is only known
    at the stop); the moves are those the sequence sends, timed with
    :mod:`capture.estimate` under the printer's ``limits`` (accelerations and maximum axis
    speeds included, so a real printer's Z is usually slower than ``z_speed`` asks).
    """
    plan = plan_grid(
        values.grid_center_x,
        values.grid_center_y,
        values.grid_spacing,
        values.grid_size,
        0.0,
        values.z_offset,
        bounds,
    )
    points = len(plan.points)
    if points == 0:
        return PlannedLayer(0.0, 0.0, STOP_AND_CONTINUE_GUESS_S, limits.describe())
    start = (values.grid_center_x, values.grid_center_y, 0.0)
    path = sequence_moves(
        start,
        [(p.x, p.y) for p in plan.points],
        travel_height(plan.capture_z, 0.0, 0.0),
        movement_speed=values.movement_speed,
        z_speed=values.z_speed,
        retract_length=values.retract_length,
        retract_speed=values.retract_speed,
    )
    settle = points * (values.capture_delay + values.pre_capture_delay)
    return PlannedLayer(
        sequence_seconds(path, limits),
        settle,
        points * SNAPSHOT_GUESS_S + STOP_AND_CONTINUE_GUESS_S,
        limits.describe(),
    )


def planned_layer_seconds(
    values: CaptureSettings, bounds: Optional[Bounds], limits: MotionLimits = STOCK
) -> float:
    return plan_layer_time(values, bounds, limits).total_s


def next_every_n(layer: int, every_n: int, captured: Sequence[int]) -> Optional[int]:
    """The next layer the every-N rule captures, counting the layer being printed.

    Layer k is captured when layer k+1 starts, so while k is printed it is still ahead.
    """
    if every_n <= 0:
        return None
    candidate = max(1, math.ceil(max(layer, 1) / every_n)) * every_n
    while candidate in captured:
        candidate += every_n
    return candidate


class LiveStatus:
    """Thread-safe status snapshot: updated by the worker and OctoPrint's event thread,
    read by API requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: Dict[str, Any] = {"state": State.IDLE}
        self._print: Dict[str, Any] = {}
        self._measured: List[float] = []
        self._planned: Optional[float] = None

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> Dict[str, Any]:
        return {**self._print, **self._report}

    def begin_print(self, gcode_file: str, planned_s: Optional[float]) -> None:
        """A captured print starts: forget the previous print's facts."""
        with self._lock:
            self._measured = []
            self._planned = planned_s
            self._print = {"gcode_file": gcode_file, "last_error": None, "measured_layers": 0}
            self._update_estimate()

    def measured(self) -> Tuple[Optional[float], int]:
        """Mean seconds per captured layer of the current (or last) print, and how many."""
        with self._lock:
            if not self._measured:
                return None, 0
            return round(sum(self._measured) / len(self._measured), 2), len(self._measured)

    def update(self, report: Dict[str, Any]) -> Dict[str, Any]:
        """Merge one report; returns the new snapshot."""
        report = dict(report)
        with self._lock:
            for key in _PRINT_KEYS:
                if key in report:
                    self._print[key] = report.pop(key)
            state = report.get("state")
            if state is not None:
                # a report with a state replaces the previous one; phase/index/count of a
                # capture must not linger into "captured"
                self._report = {}
            self._report.update(report)
            if state == State.IDLE:
                self._print.pop("current_layer", None)
                self._print.pop("next_layer", None)
                self._print.pop("next_z", None)
            elif state == State.CAPTURED:
                self._record_capture(report)
            elif state in ("error", "unsupported"):
                message = report.get("message") or "capture failed"
                layer = report.get("layer")
                self._print["last_error"] = {"message": str(message), "layer": layer}
            return self._snapshot()

    def _record_capture(self, report: Dict[str, Any]) -> None:
        total = report.get("total_s")
        if isinstance(total, (int, float)) and not isinstance(total, bool) and total > 0:
            self._measured.append(float(total))
            self._print["measured_layers"] = len(self._measured)
            self._update_estimate()
        failures = report.get("failures") or []
        if failures:
            self._print["last_error"] = {
                "message": "; ".join(str(f) for f in failures),
                "layer": report.get("layer"),
            }

    def _update_estimate(self) -> None:
        if self._measured:
            self._print["estimate_s"] = round(sum(self._measured) / len(self._measured), 2)
            self._print["estimate_source"] = "measured"
        elif self._planned is not None:
            self._print["estimate_s"] = self._planned
            self._print["estimate_source"] = "plan"
        else:
            self._print.pop("estimate_s", None)
            self._print.pop("estimate_source", None)

    def set_progress(
        self, current_layer: int, next_layer: Optional[int], next_z: Optional[float]
    ) -> Optional[Dict[str, Any]]:
        """Record where the print is; the new snapshot, or None when nothing changed."""
        with self._lock:
            wanted = {"current_layer": current_layer, "next_layer": next_layer, "next_z": next_z}
            if all(self._print.get(k) == v for k, v in wanted.items()):
                return None
            self._print.update(wanted)
            return self._snapshot()
