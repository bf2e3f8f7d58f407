"""What the plugin hands the capture sequence, and what it gets back (for the metadata and
the UI). Pure module."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .ports import MotionLike, PlanLike, Position, SavedShot, ShotRequest

if TYPE_CHECKING:  # annotations only
    from ..settings import CaptureSettings


@dataclass(frozen=True)
class CaptureTask:
    """One capture: the job is already stopped (or stopping) at ``layer``; ``held_line`` is
    the held-back first line of the next layer, sent just before the job continues."""

    layer: int
    layer_z: float
    plan: PlanLike
    motion: MotionLike
    settings: CaptureSettings
    held_line: Optional[str] = None
    printed_top: Optional[float] = None  # highest Z printed so far in the job
    max_z: Optional[float] = None  # highest Z the head may go to (profile, firmware)
    lines_checked: bool = False  # see ArmedPrint.lines_checked


@dataclass
class ShotResult:
    """One camera's picture of one grid point the head was sent to (one per camera and
    point); ``saved`` is None when no image was stored."""

    index: int
    request: ShotRequest
    commanded: Position
    measured: Optional[Position]
    saved: Optional[SavedShot]
    snapshot_camera: str
    duration: float
    captured_at: datetime

    @property
    def camera(self) -> str:
        """The name of the camera (in the settings) that took this picture."""
        return self.request.camera


@dataclass
class SequenceFailure:
    """Something that went wrong; ``phase`` is one of :data:`PHASES`, ``index`` the grid
    position concerned (None when none is), ``duration`` the time the failing step took,
    ``camera`` the name of the camera concerned (None when the failure is no camera's)."""

    phase: str
    message: str
    index: Optional[int]
    duration: float
    camera: Optional[str] = None


@dataclass
class SequenceResult:
    """What the sequence did, for the metadata and the UI.

    ``outcome`` is one of the ``OUTCOME_*`` values; ``continued`` whether the job runs
    again. ``held_line_sent`` False with a held line means the plugin still owes it to the
    job (left paused by the user, interrupted, or not continued).
    """

    layer: int
    shots: List[ShotResult]
    failures: List[SequenceFailure]
    timings: Dict[str, float]
    stop_position: Optional[Position]
    stop_position_source: str
    continued: bool
    outcome: str
    started_at: datetime
    travel_z: Optional[float] = None
    held_line_sent: bool = False
    # where the head went back to: the stop position, or where the user's pause script
    # parked it (pause mode)
    return_position: Optional[Position] = None
    # when the head could not be brought back: the G-code that brings it back, to send
    # before the job goes on (a later resume by the user)
    owed_return: Tuple[str, ...] = ()
    notes: List[str] = field(default_factory=list)
