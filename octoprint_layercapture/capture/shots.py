"""Every camera at one grid position, at the same time.

The sequence confirms the head, waits the settle delays and then hands the position to
:meth:`CameraRig.take`: the first camera is taken on the sequence's own thread, every
other camera on a worker thread of its own (one per camera, so at most
:data:`camera_settings.MAX_CAMERAS` threads), all at once. A position costs about the
slowest camera, not the sum. Each camera's take starts only now, after the settle: an MJPEG
camera opens its stream here, so its rule (a frame that begins after the head settled)
holds for every camera.

What a camera does never holds the head longer than its own limit: each camera's ``take``
ends within its retries and timeouts (see :mod:`cameras.base`), and the rig stops waiting
for a worker after ``wait_limit`` seconds whatever it does. A camera still busy with an
earlier position is not asked again: its picture of this position fails at once.

:class:`CameraTurns` is the rule for cameras that keep failing, per camera:
:data:`CAMERA_FAILURES_TO_SKIP` failures in a row drop that camera for the rest of the
layer (each of its failures costs the head up to its timeout), the others go on; the
layer's remaining positions are skipped only when no camera is left. With one camera this
is the single-camera rule: two failures in a row skip the rest of the layer.

Pure module (stdlib threads only).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .ports import CameraError, CameraPort, ShotRequest, Snapshot

# Camera failures in a row after which that camera is not taken for the rest of the layer.
CAMERA_FAILURES_TO_SKIP = 2
# What the rig waits for a worker beyond the camera's own limit (retries x timeout).
WAIT_GRACE_S = 2.0
THREAD_PREFIX = "layercapture-shot"

_logger = logging.getLogger("octoprint.plugins.layercapture.shots")


@dataclass(frozen=True)
class RigCamera:
    """One camera of a capture: its name in the settings, its port, and whether its file
    names carry the name (every camera but the first)."""

    name: str
    port: CameraPort
    name_in_files: bool = False
    mounting: str = "fixed"

    def request(self, request: ShotRequest) -> ShotRequest:
        return dataclasses.replace(request, camera=self.name, name_in_files=self.name_in_files)


@dataclass(frozen=True)
class Shot:
    """What one camera gave at one position: a snapshot, or why not (``error``, a finished
    sentence without the position). ``duration`` is that camera's own time, ``finished``
    when it ended (the rig's clock; None: the camera was not waited for)."""

    camera: RigCamera
    request: ShotRequest
    snapshot: Optional[Snapshot]
    error: Optional[str]
    duration: float
    finished: Optional[float] = None


class CameraRig:
    """The cameras of one capture and their worker threads; :meth:`close` ends both."""

    def __init__(
        self,
        cameras: Sequence[RigCamera],
        wait_limit: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        logger: Optional[logging.Logger] = None,
    ) -> None:
        if not cameras:
            raise ValueError("a capture needs at least one camera")
        self.cameras: Tuple[RigCamera, ...] = tuple(cameras)
        self.wait_limit = wait_limit
        self._clock = clock
        self._logger = logger or _logger
        self._lock = threading.Lock()
        self._workers: Dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._busy: Dict[str, Tuple[concurrent.futures.Future[Shot], int]] = {}
        self._closed = False

    @classmethod
    def single(cls, port: CameraPort, name: str = "main", **kwargs: object) -> CameraRig:
        """A rig of one camera (the single-camera case: no worker thread)."""
        return cls([RigCamera(name, port)], **kwargs)  # type: ignore[arg-type]

    @property
    def several(self) -> bool:
        return len(self.cameras) > 1

    def take(self, request: ShotRequest, cameras: Sequence[RigCamera]) -> List[Shot]:
        """One shot per camera of ``cameras`` (in that order), taken at the same time."""
        if not cameras:
            return []
        first, others = cameras[0], cameras[1:]
        # from the moment they are all asked: the wait is the slowest camera's, not a sum
        deadline = time.monotonic() + self.wait_limit
        waiting = [(camera, self._submit(camera, request)) for camera in others]
        shots = {first.name: self._shoot(first, request)}
        for camera, pending in waiting:
            if isinstance(pending, Shot):
                shots[camera.name] = pending
                continue
            try:
                shots[camera.name] = pending.result(max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                shots[camera.name] = Shot(
                    camera,
                    camera.request(request),
                    None,
                    f"{camera.port.name}: no answer within {self.wait_limit:g} s",
                    self.wait_limit,
                )
        return [shots[camera.name] for camera in cameras]

    def _submit(
        self, camera: RigCamera, request: ShotRequest
    ) -> Union[concurrent.futures.Future[Shot], Shot]:
        with self._lock:
            busy = self._busy.get(camera.name)
            if busy is not None and not busy[0].done():
                message = (
                    f"{camera.port.name}: still busy with position {busy[1] + 1}, not asked again"
                )
                return Shot(camera, camera.request(request), None, message, 0.0)
            worker = self._workers.get(camera.name)
            if worker is None:
                if self._closed:
                    raise RuntimeError("the cameras are closed")
                worker = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"{THREAD_PREFIX}-{camera.name}"
                )
                self._workers[camera.name] = worker
            future = worker.submit(self._shoot, camera, request)
            self._busy[camera.name] = (future, request.index)
            return future

    def _shoot(self, camera: RigCamera, request: ShotRequest) -> Shot:
        """One camera's take; never raises (on a worker thread, an exception would only
        be seen by whoever waits for it)."""
        mine = camera.request(request)
        started = self._clock()
        try:
            snapshot = camera.port.take(mine)
        except CameraError as exc:
            ended = self._clock()
            return Shot(camera, mine, None, str(exc), ended - started, ended)
        except Exception as exc:
            self._logger.exception(
                f"layer {request.layer} position {request.index + 1}: camera {camera.name!r} "
                "failed unexpectedly"
            )
            ended = self._clock()
            return Shot(camera, mine, None, f"camera error {exc!r}", ended - started, ended)
        ended = self._clock()
        return Shot(camera, mine, snapshot, None, ended - started, ended)

    def close(self) -> None:
        """Frees every camera and ends the worker threads (a stuck one ends with its I/O)."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, {}
            self._busy.clear()
        for worker in workers.values():
            worker.shutdown(wait=False, cancel_futures=True)
        for camera in self.cameras:
            try:
                camera.port.close()
            except Exception:
                self._logger.exception(f"camera {camera.name!r}: closing failed")


class CameraTurns:
    """Which cameras are still taken in one layer (see the module's rule)."""

    def __init__(self, rig: CameraRig) -> None:
        self._rig = rig
        self.active: List[RigCamera] = list(rig.cameras)
        self._in_a_row: Dict[str, int] = {camera.name: 0 for camera in rig.cameras}

    def where(self, where: str, camera: RigCamera) -> str:
        """``position 5 of 9`` as failures name it; with several cameras, which one too."""
        return f"{where} ({camera.name})" if self._rig.several else where

    def after(self, failed: Sequence[str], left: int) -> Tuple[List[Tuple[str, str]], bool]:
        """Counts a position's failures (camera names); the cameras it drops with the
        message for each, and whether the layer's remaining positions are skipped."""
        for camera in self.active:
            count = self._in_a_row[camera.name]
            self._in_a_row[camera.name] = count + 1 if camera.name in failed else 0
        if not left:
            return [], False
        dropped = [c for c in self.active if self._in_a_row[c.name] >= CAMERA_FAILURES_TO_SKIP]
        if not dropped:
            return [], False
        self.active = [c for c in self.active if c not in dropped]
        if not self._rig.several:
            return [
                (
                    dropped[0].name,
                    f"{CAMERA_FAILURES_TO_SKIP} camera failures in a row: the remaining "
                    f"{left} positions of this layer are skipped",
                )
            ], True
        tail = (
            "the other cameras go on"
            if self.active
            else "no camera is left, so the layer's remaining positions are skipped"
        )
        messages = [
            (
                camera.name,
                f"camera {camera.name!r}: {CAMERA_FAILURES_TO_SKIP} failures in a row: its "
                f"remaining {left} positions of this layer are skipped; {tail}",
            )
            for camera in dropped
        ]
        return messages, not self.active
