"""The small interfaces the capture sequence talks through, and the values they exchange.

The sequence runs on its own worker thread and never touches OctoPrint directly: the plugin
implements these ports with ``self._printer`` and its camera and storage code, the unit tests
implement them with recorders. Nothing here imports OctoPrint, ``grid`` or ``layers``; the
``*Like`` protocols describe just the attributes the sequence reads from a grid plan and from
the layer tracker's motion state, so any object with those attributes fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Sequence, Tuple

if TYPE_CHECKING:  # pure modules too; imported for the annotations only
    from .firmware import ModeHistory


@dataclass(frozen=True)
class Position:
    """A head position in printer coordinates (mm); ``None`` where an axis is unknown."""

    x: Optional[float]
    y: Optional[float]
    z: Optional[float]
    e: Optional[float] = None

    @property
    def has_xyz(self) -> bool:
        return self.x is not None and self.y is not None and self.z is not None

    def describe(self) -> str:
        def axis(value: Optional[float]) -> str:
            return "?" if value is None else f"{value:g}"

        return f"X{axis(self.x)} Y{axis(self.y)} Z{axis(self.z)}"


# Why a job was interrupted; the plugin adapter raises JobInterrupted with one of these.
CANCELLED = "cancelled"
DISCONNECTED = "disconnected"
SHUTDOWN = "shutdown"


class JobInterrupted(Exception):
    """The job ended under the sequence (cancel, disconnect, shutdown): send nothing more."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or f"job {reason}")
        self.reason = reason


class PrinterTimeout(Exception):
    """A confirmation from the printer or OctoPrint did not come in time."""


class UnrecognisedReply(PrinterTimeout):
    """The printer answered, but not with a position report the plugin can read (or it
    called one of our commands unknown). Waiting longer would not help, so this ends the
    wait at once; it is a :class:`PrinterTimeout` so that every wait handles it alike."""


@dataclass(frozen=True)
class StopReport:
    """How the job stopped.

    ``position`` is where OctoPrint's pause measured the head (the PrintPaused event; None
    in hold mode, or when OctoPrint does not log the position on pause: then it may also be
    a stale one, so it is only trusted where the file's own moves agree). ``script_lines``
    counts the lines of the user's ``afterPrintPaused`` script sent before the capture
    (the head may be parked elsewhere then), ``script_modes`` its motion-mode commands in
    order, ``script_retracted`` its last G10 (True) or G11 (False), ``script_feedrate`` its
    last F word.
    """

    position: Optional[Position] = None
    script_lines: int = 0
    script_modes: Tuple[str, ...] = ()
    script_retracted: Optional[bool] = None
    script_feedrate: Optional[float] = None


class JobResumedByUser(Exception):
    """The user resumed the job by hand before the sequence could hold it: the job has
    moved on from the stop position, so the head must not be moved."""


class PrinterPort(Protocol):
    def send(self, commands: Sequence[str]) -> None:
        """Queue G-code for the printer (the adapter tags it as the plugin's own)."""

    def confirm(self, timeout: float) -> Position:
        """Wait for the moves (M400, G4 P0 or nothing, as set) and block until the M114
        report answering this request.

        Raises :class:`PrinterTimeout` (:class:`UnrecognisedReply` when the answer is no
        position report) or :class:`JobInterrupted`.
        """

    def wait_stopped(self, timeout: float) -> StopReport:
        """Block until the job is stopped (in pause mode: and the user's pause script has
        been sent); what OctoPrint reported on pausing and what the script did.

        Raises :class:`PrinterTimeout` or :class:`JobInterrupted`.
        """

    def continue_job(self, timeout: float) -> None:
        """Resume the job and wait until it runs again.

        Raises :class:`PrinterTimeout` or :class:`JobInterrupted`.
        """

    def check(self) -> None:
        """Raise :class:`JobInterrupted` if the job was cancelled, the printer disconnected
        or OctoPrint is shutting down."""

    def user_paused(self) -> bool:
        """Whether the user paused the job by hand while the sequence ran."""

    def user_resumed(self) -> bool:
        """Whether the user resumed the job by hand while the sequence ran (pause mode):
        the file waits for the head, so the sequence should return it soon."""


@dataclass(frozen=True)
class ShotRequest:
    """One snapshot to take: which layer, which grid position, where the head is, and which
    camera takes it (its name in the settings; ``name_in_files``: the file names carry it,
    as for every camera but the first)."""

    layer: int
    layer_z: float
    index: int
    count: int
    x: float
    y: float
    z: float
    camera: str = ""
    name_in_files: bool = False
    # where the printer reported the head before the snapshot (None: not confirmed)
    measured: Optional[Position] = None


@dataclass(frozen=True)
class Snapshot:
    data: bytes
    content_type: str
    duration: float
    camera: str


class CameraError(Exception):
    """A snapshot failed; the message says why (timeout, HTTP error, no camera...)."""


class ImageTransform(Protocol):
    """What a camera's images need before they are stored (a webcam's flip/rotate)."""

    @property
    def identity(self) -> bool: ...

    def apply(self, jpeg: bytes, quality: int) -> bytes: ...

    def for_storage(self, quality: int) -> Optional[Callable[[bytes], bytes]]: ...


class CameraPort(Protocol):
    @property
    def name(self) -> str:
        """How messages and the metadata name the camera."""

    @property
    def transform(self) -> ImageTransform: ...

    def take(self, request: ShotRequest) -> Snapshot:
        """Take one snapshot; raises :class:`CameraError` on failure."""

    def close(self) -> None:
        """Free what the camera holds (connections, threads); it is not used again."""


@dataclass(frozen=True)
class SavedShot:
    path: str
    thumbnail: Optional[str]
    size_bytes: int


class ImageSink(Protocol):
    def save(self, request: ShotRequest, snapshot: Snapshot, when: datetime) -> SavedShot:
        """Write the image (and its thumbnail); may raise OSError."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None:
        """Only for the configured settle delays, never to wait for motion."""


class PointLike(Protocol):
    """A grid point as the sequence reads it (``grid.GridPoint`` fits)."""

    @property
    def index(self) -> int: ...

    @property
    def x(self) -> float: ...

    @property
    def y(self) -> float: ...

    @property
    def z(self) -> float: ...


class PlanLike(Protocol):
    """A grid plan: points in visiting order, skipped points, capture height."""

    @property
    def points(self) -> Sequence[PointLike]: ...

    @property
    def skipped(self) -> Sequence[Any]: ...

    @property
    def capture_z(self) -> float: ...

    @property
    def count(self) -> int: ...


class MotionLike(Protocol):
    """The job's motion state when it stopped (``layers.MotionState`` fits).

    ``None`` means unknown: the tracker has not seen the value in the file yet.
    """

    @property
    def x(self) -> Optional[float]: ...

    @property
    def y(self) -> Optional[float]: ...

    @property
    def z(self) -> Optional[float]: ...

    @property
    def e(self) -> Optional[float]: ...

    @property
    def absolute_xyz(self) -> Optional[bool]: ...

    @property
    def absolute_e(self) -> Optional[bool]: ...

    @property
    def feedrate(self) -> Optional[float]: ...

    @property
    def modes(self) -> ModeHistory:
        """The mode commands the file gave (see :mod:`firmware`)."""

    @property
    def firmware_retraction(self) -> bool: ...

    @property
    def retracted(self) -> bool: ...
