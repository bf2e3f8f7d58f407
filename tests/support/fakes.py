"""Test doubles for the capture sequence: a clock, a printer that interprets the G-code it
receives into head positions, a camera and an image sink, each with injectable faults."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from PIL import Image

from octoprint_layercapture import settings as lc_settings
from octoprint_layercapture.cameras.base import Transform
from octoprint_layercapture.capture.firmware import ModeHistory
from octoprint_layercapture.capture.ports import (
    CameraError,
    JobInterrupted,
    JobResumedByUser,
    Position,
    PrinterTimeout,
    SavedShot,
    ShotRequest,
    Snapshot,
    StopReport,
    UnrecognisedReply,
)
from octoprint_layercapture.capture.shots import CameraRig, RigCamera


class FakeClock:
    """Time moves only when a fake says so; ``sleep`` advances it without sleeping."""

    def __init__(self, start: datetime = datetime(2024, 1, 15, 10, 30, 0)) -> None:
        self.start = start
        self.t = 100.0
        self.sleeps: List[float] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t - 100.0)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class PrinterFaults:
    """Numbers are 1-based counts of calls to that port method."""

    wait_stopped_timeout: bool = False
    pause_position_off: float = 0.0  # the PrintPaused X is this far off (a stale report)
    no_pause_position: bool = False  # OctoPrint reports none (serial.logPositionOnPause off)
    confirm_timeouts: FrozenSet[int] = frozenset()  # these confirms raise PrinterTimeout
    unrecognised_replies: FrozenSet[int] = frozenset()  # these raise UnrecognisedReply at once
    wrong_reports: FrozenSet[int] = frozenset()  # these confirms report X 1 mm off
    interrupt_at_check: Optional[int] = None  # this check() raises JobInterrupted
    interrupt_at_confirm: Optional[int] = None
    interrupt_on_continue: bool = False
    user_pause_at_check: Optional[int] = None  # from this check() on, user_paused() is True
    user_resume_at_check: Optional[int] = None  # from this check() on, user_resumed() is True
    resumed_before_hold: bool = False  # wait_stopped raises JobResumedByUser
    continue_failures: int = 0  # the first K continue_job calls time out
    send_failures: FrozenSet[int] = frozenset()  # these send() calls raise RuntimeError
    # lines the printer never runs (a line lost on the serial link), matched by prefix;
    # each entry drops that many occurrences, e.g. {"G0 Z0.6": 1}
    lost_lines: Dict[str, int] = field(default_factory=dict)


@dataclass
class HeadState:
    x: float
    y: float
    z: float
    e: float
    absolute_xyz: bool = True
    absolute_e: bool = True
    feedrate: float = 1500.0
    retracted: bool = False  # firmware retraction (G10/G11)

    @property
    def xyz(self) -> Tuple[float, float, float]:
        return (self.x, self.y, self.z)


@dataclass(frozen=True)
class Move:
    command: str
    before: Tuple[float, float, float]
    after: Tuple[float, float, float]

    @property
    def changes_xy(self) -> bool:
        return self.before[:2] != self.after[:2]


CONFIRM = "<confirm>"
WAIT_STOPPED = "<wait_stopped>"
CONTINUE = "<continue>"


class RecorderPrinter:
    """A printer port that executes the G-code it is sent on a model of the head.

    ``log`` holds every sent line in order plus markers for the blocking calls; ``moves``
    every G0/G1 with the head position before and after; ``states`` the head after each
    line. ``report_stop_position`` mimics pause mode (the PrintPaused position); without it
    ``wait_stopped`` returns None as in hold mode.
    """

    def __init__(
        self,
        clock: FakeClock,
        head: HeadState,
        *,
        report_stop_position: bool = True,
        faults: Optional[PrinterFaults] = None,
        confirm_seconds: float = 0.1,
        pause_script: Sequence[str] = (),
    ) -> None:
        self.clock = clock
        self.head = head
        self.start = copy.copy(head)
        self.report_stop_position = report_stop_position
        self.faults = faults or PrinterFaults()
        self.confirm_seconds = confirm_seconds
        self.log: List[str] = []
        self.moves: List[Move] = []
        self.states: List[Tuple[str, HeadState]] = []
        self.calls = {"send": 0, "confirm": 0, "check": 0, "continue": 0, "wait": 0}
        self.interrupted = False
        self.calls_after_interrupt: List[str] = []
        self.continued = False
        self.state_at_continue: Optional[HeadState] = None
        self.lost: List[str] = []
        self._to_lose = dict(self.faults.lost_lines)
        # the user's afterPrintPaused script: run when the job stops (pause mode); the head
        # where it left it
        self.pause_script = list(pause_script)
        self.park: Optional[HeadState] = None

    # ---- the port

    def send(self, commands: Sequence[str]) -> None:
        self._after_interrupt("send")
        self.calls["send"] += 1
        if self.calls["send"] in self.faults.send_failures:
            raise RuntimeError("serial write failed")
        for line in commands:
            self.log.append(line)
            if self._lost(line):
                self.lost.append(line)
                continue
            self._execute(line)
            self.states.append((line, copy.copy(self.head)))

    def confirm(self, timeout: float) -> Position:
        self._after_interrupt("confirm")
        self.calls["confirm"] += 1
        number = self.calls["confirm"]
        self.log.append(CONFIRM)
        if number == self.faults.interrupt_at_confirm:
            self._interrupt()
        if number in self.faults.confirm_timeouts:
            self.clock.advance(timeout)
            raise PrinterTimeout(f"no position report within {timeout:g} s")
        if number in self.faults.unrecognised_replies:
            self.clock.advance(min(self.confirm_seconds + 1.0, timeout))
            raise UnrecognisedReply("the printer answered M114 with 'Position 5/6/7'")
        self.clock.advance(min(self.confirm_seconds, timeout))
        off = 1.0 if number in self.faults.wrong_reports else 0.0
        # Marlin reports E with two decimals
        return Position(self.head.x + off, self.head.y, self.head.z, round(self.head.e, 2))

    def wait_stopped(self, timeout: float) -> Optional[Position]:
        self._after_interrupt("wait_stopped")
        self.calls["wait"] += 1
        self.log.append(WAIT_STOPPED)
        if self.faults.wait_stopped_timeout:
            self.clock.advance(timeout)
            raise PrinterTimeout("no PrintPaused event")
        if self.faults.resumed_before_hold:
            raise JobResumedByUser("the job was resumed by hand before the capture started")
        if not self.report_stop_position:
            return StopReport()
        self.clock.advance(0.12)
        off = self.faults.pause_position_off
        stop: Optional[Position] = Position(
            self.head.x + off, self.head.y, self.head.z, round(self.head.e, 2)
        )
        if self.faults.no_pause_position:
            stop = None
        modes = []
        for line in self.pause_script:
            self.log.append(line)
            self._execute(line)
            self.states.append((line, copy.copy(self.head)))
            if line.split()[0] in ("G90", "G91", "M82", "M83"):
                modes.append(line.split()[0])
        if self.pause_script:
            self.park = copy.copy(self.head)
        return StopReport(stop, len(self.pause_script), tuple(modes))

    def continue_job(self, timeout: float) -> None:
        self._after_interrupt("continue_job")
        self.calls["continue"] += 1
        if self.state_at_continue is None:
            self.state_at_continue = copy.copy(self.head)
        if self.faults.interrupt_on_continue:
            self._interrupt()
        if self.calls["continue"] <= self.faults.continue_failures:
            self.clock.advance(timeout)
            self.log.append("<continue failed>")
            raise PrinterTimeout("no PrintResumed event")
        self.clock.advance(0.2)
        self.log.append(CONTINUE)
        self.continued = True

    def check(self) -> None:
        self.calls["check"] += 1
        if self.interrupted or self.calls["check"] == self.faults.interrupt_at_check:
            self._interrupt()

    def user_paused(self) -> bool:
        at = self.faults.user_pause_at_check
        return at is not None and self.calls["check"] >= at

    def user_resumed(self) -> bool:
        at = self.faults.user_resume_at_check
        return at is not None and self.calls["check"] >= at

    # ---- helpers for assertions

    @property
    def sent(self) -> List[str]:
        return [line for line in self.log if not line.startswith("<")]

    def state_before(self, line: str) -> HeadState:
        """The head as it was when ``line`` (e.g. the held-back job line) arrived."""
        previous = self.start
        for sent, state in self.states:
            if sent == line:
                return previous
            previous = state
        raise AssertionError(f"{line!r} was never sent")

    def _lost(self, line: str) -> bool:
        for prefix, count in self._to_lose.items():
            if count > 0 and line.startswith(prefix):
                self._to_lose[prefix] = count - 1
                return True
        return False

    def _interrupt(self) -> None:
        self.interrupted = True
        raise JobInterrupted("cancelled")

    def _after_interrupt(self, call: str) -> None:
        if self.interrupted:
            self.calls_after_interrupt.append(call)

    def _execute(self, line: str) -> None:
        words = line.split()
        code = words[0]
        if code in ("G90", "G91"):
            # Marlin 2: G90/G91 set the E mode too
            self.head.absolute_xyz = self.head.absolute_e = code == "G90"
        elif code in ("M82", "M83"):
            self.head.absolute_e = code == "M82"
        elif code in ("G10", "G11"):
            self.head.retracted = code == "G10"
        elif code in ("G0", "G1"):
            before = self.head.xyz
            for word in words[1:]:
                axis, value = word[0], float(word[1:])
                if axis in "XYZ":
                    current = getattr(self.head, axis.lower())
                    setattr(
                        self.head,
                        axis.lower(),
                        value if self.head.absolute_xyz else current + value,
                    )
                elif axis == "E":
                    self.head.e = value if self.head.absolute_e else self.head.e + value
                elif axis == "F":
                    self.head.feedrate = value
            self.moves.append(Move(line, before, self.head.xyz))


def tiny_jpeg(color: Tuple[int, int, int] = (200, 80, 40), size: Tuple[int, int] = (8, 6)) -> bytes:
    """A real (decodable) JPEG, so thumbnails of fake snapshots work."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90)
    return out.getvalue()


TINY_JPEG = tiny_jpeg()


class FakeCamera:
    """A camera port on the fake clock; the snapshots ``fail_at`` (1-based) fail."""

    name = "fake"
    transform = Transform()

    def __init__(
        self, clock: FakeClock, fail_at: FrozenSet[int] = frozenset(), seconds: float = 0.05
    ) -> None:
        self.clock = clock
        self.fail_at = fail_at
        self.seconds = seconds
        self.requests: List[ShotRequest] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def take(self, request: ShotRequest) -> Snapshot:
        self.requests.append(request)
        self.clock.advance(self.seconds)
        if len(self.requests) in self.fail_at:
            raise CameraError("snapshot timed out after 5.0 s")
        return Snapshot(TINY_JPEG, "image/jpeg", self.seconds, "fake")


class RecordingSink:
    def __init__(self, clock: FakeClock, fail_at: FrozenSet[int] = frozenset()) -> None:
        self.clock = clock
        self.fail_at = fail_at
        self.calls = 0
        self.saved: List[Tuple[ShotRequest, datetime]] = []

    def save(self, request: ShotRequest, snapshot: Snapshot, when: datetime) -> SavedShot:
        self.calls += 1
        self.clock.advance(0.01)
        if self.calls in self.fail_at:
            raise OSError(28, "No space left on device")
        self.saved.append((request, when))
        name = f"layer_{request.layer:04d}_pos_{request.index:02d}"
        if request.name_in_files:
            name += f"_cam_{request.camera}"
        return SavedShot(f"{name}.jpg", f"{name}_thumb.jpg", len(snapshot.data))


@dataclass(frozen=True)
class FakePoint:
    index: int
    row: int
    col: int
    x: float
    y: float
    z: float


@dataclass(frozen=True)
class FakePlan:
    points: Tuple[FakePoint, ...]
    skipped: Tuple[Any, ...]
    capture_z: float
    count: int


@dataclass(frozen=True)
class FakeMotion:
    """The tracker's state at the stop. ``modes`` defaults to what the file must have said
    for ``absolute_xyz``/``absolute_e`` (None: it never said)."""

    x: Optional[float] = None
    y: Optional[float] = None
    z: Optional[float] = None
    e: Optional[float] = None
    absolute_xyz: Optional[bool] = True
    absolute_e: Optional[bool] = True
    feedrate: Optional[float] = None
    modes: ModeHistory = field(default_factory=ModeHistory)
    firmware_retraction: bool = False
    retracted: bool = False

    def __post_init__(self) -> None:
        if self.modes == ModeHistory():
            xyz = {True: "G90", False: "G91", None: None}[self.absolute_xyz]
            e = {True: "M82", False: "M83", None: None}[self.absolute_e]
            object.__setattr__(self, "modes", ModeHistory(xyz, e, e is not None))


def snake_plan(
    size: int, capture_z: float, center: Tuple[float, float] = (125.0, 105.0), spacing: float = 20
) -> FakePlan:
    """Indexes row-major from front-left; visited in a snake, as the grid module plans."""
    half = (size - 1) // 2
    points = []
    for row in range(size):
        cols = range(size) if row % 2 == 0 else reversed(range(size))
        for col in cols:
            x = center[0] + (col - half) * spacing
            y = center[1] + (row - half) * spacing
            points.append(FakePoint(row * size + col, row, col, x, y, capture_z))
    return FakePlan(tuple(points), (), capture_z, size * size)


def make_settings(**overrides: Any) -> lc_settings.CaptureSettings:
    return lc_settings.validate(overrides)


@dataclass
class Rig:
    """Everything a sequence test needs, wired together: ``camera`` is the first camera
    ("main"), ``others`` the cameras after it, by name."""

    clock: FakeClock
    printer: RecorderPrinter
    camera: FakeCamera
    sink: RecordingSink
    progress: List[Tuple[str, int, int]] = field(default_factory=list)
    others: Dict[str, FakeCamera] = field(default_factory=dict)

    def cameras(self) -> CameraRig:
        first = RigCamera("main", self.camera)
        rest = [RigCamera(name, camera, True) for name, camera in self.others.items()]
        return CameraRig([first, *rest], clock=self.clock.monotonic)
