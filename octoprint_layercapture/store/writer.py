"""Writes captured images off the printer's path.

The capture sequence hands each snapshot to :class:`StoreSink`, which names the files and
queues them here, and moves the head on at once. Once the sequence is over (see
:meth:`ImageWriter.held`), the writer's named thread writes the
image (the camera's bytes unchanged, unless the webcam is set to be flipped or rotated),
makes the thumbnail (JPEG draft mode) and writes it. Jobs run in the order they were
queued, so a layer's metadata task, queued after its images, runs when they are on disk and
can record what failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from PIL import UnidentifiedImageError

from ..cameras.base import jpeg_size
from ..capture.ports import SavedShot, ShotRequest, Snapshot
from ..capture.results import SequenceFailure, SequenceResult
from ..vocabulary import Outcome
from .files import CaptureStore, make_thumbnail, write_atomic
from .names import thumbnail_name

if TYPE_CHECKING:  # settings.py is pure too; for the annotations only
    from ..settings import CaptureSettings

THREAD_NAME = "layercapture-writer"
THUMBNAIL_QUALITY = 85

_logger = logging.getLogger("octoprint.plugins.layercapture.image_writer")


@dataclass
class WriteResult:
    """What happened to one image; ``errors`` holds one sentence per failed step."""

    path: Path
    thumbnail: Optional[Path]
    size_bytes: Optional[int] = None  # None: the image was not written
    errors: List[str] = field(default_factory=list)
    seconds: float = 0.0
    # for the metadata (analysis.records): the stored file's SHA-256 and pixel size, and
    # the size the camera delivered (they differ when the image was rotated)
    sha256: Optional[str] = None
    pixels: Optional[Tuple[int, int]] = None
    camera_pixels: Optional[Tuple[int, int]] = None


@dataclass(frozen=True)
class WrittenImage:
    """One image as the writer stored it (for the metadata, see analysis.records)."""

    sha256: Optional[str]
    width: Optional[int]
    height: Optional[int]
    camera_latency: Optional[float]
    camera_size: Optional[Tuple[int, int]]  # what the camera delivered (before flip/rotate)


Pixels = Optional[Tuple[int, int]]


def image_facts(data: bytes, stored: bytes) -> Tuple[str, Pixels, Pixels]:
    """SHA-256 of the stored bytes, their pixel size, and the camera's (header reads only)."""
    digest = hashlib.sha256(stored).hexdigest()
    size: Pixels
    camera_size: Pixels
    try:
        size = jpeg_size(stored)
        camera_size = size if stored is data else jpeg_size(data)
    except Exception:
        size = camera_size = None
    return digest, size, camera_size


class PendingImage:
    """An image queued for writing; :meth:`wait` returns its :class:`WriteResult`."""

    def __init__(self, path: Path, thumbnail: Optional[Path]) -> None:
        self._done = threading.Event()
        self._result = WriteResult(path, thumbnail)

    def wait(self, timeout: Optional[float] = None) -> Optional[WriteResult]:
        """The result, or None when the write has not finished within ``timeout``."""
        return self._result if self._done.wait(timeout) else None

    def _finish(self) -> None:
        self._done.set()


@dataclass(frozen=True)
class _ImageTask:
    pending: PendingImage
    data: bytes
    transform: Optional[Callable[[bytes], bytes]]
    file_mode: int


_Task = Union[_ImageTask, Callable[[], None]]


class ImageWriter:
    def __init__(self, logger: Optional[logging.Logger] = None) -> None:
        self._logger = logger or _logger
        self._queue: queue.Queue[Optional[_Task]] = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        # closed while a sequence moves the head (see :meth:`held`)
        self._gate = threading.Event()
        self._gate.set()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Queued work waits while the head moves: decoding, thumbnails and fsync compete
        with OctoPrint's comm threads for the interpreter and would slow every confirmed
        move. The files follow once the head is back; the metadata waits for them."""
        self._gate.clear()
        try:
            yield
        finally:
            self._gate.set()

    @property
    def head_away(self) -> bool:
        """A sequence holds the writer (see :meth:`held`)."""
        return not self._gate.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self.running:
                return
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finishes the queued jobs, then ends the thread."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._queue.put(None)
            self._gate.set()  # a shutdown during a sequence still writes what was queued
        thread.join(timeout)
        if thread.is_alive():
            self._logger.warning(f"{THREAD_NAME} did not finish its writes within {timeout:g} s")

    def submit_image(
        self,
        path: Path,
        data: bytes,
        thumbnail: Optional[Path],
        transform: Optional[Callable[[bytes], bytes]] = None,
        file_mode: int = 0o644,
    ) -> PendingImage:
        """Queue ``data`` for ``path`` (and a thumbnail at ``thumbnail``)."""
        pending = PendingImage(path, thumbnail)
        self._put(_ImageTask(pending, data, transform, file_mode))
        return pending

    def submit(self, task: Callable[[], None]) -> None:
        """Queue any task; it runs after everything queued before it."""
        self._put(task)

    def _put(self, task: _Task) -> None:
        if self.running:
            self._queue.put(task)
        else:  # not started (tests) or already stopped (shutdown): do it here and now
            self._execute(task)

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            self._gate.wait()
            self._execute(task)

    def _execute(self, task: _Task) -> None:
        if isinstance(task, _ImageTask):
            write_image(task)
            return
        try:
            task()
        except Exception:
            self._logger.exception("An image writer task failed")


def write_image(task: _ImageTask) -> None:
    """Transform (if asked), write the image, make and write the thumbnail; never raises."""
    started = time.perf_counter()
    result = task.pending._result
    try:
        data = task.data
        if task.transform is not None:
            try:
                data = task.transform(data)
            except Exception as exc:
                # the camera's own bytes are better than no image
                result.errors.append(
                    f"{result.path.name}: flip/rotate failed ({exc}), stored as received"
                )
                data = task.data
        try:
            write_atomic(result.path, data, task.file_mode)
        except OSError as exc:
            result.errors.append(f"{result.path.name} not saved ({exc})")
            result.thumbnail = None
            return
        result.size_bytes = len(data)
        result.sha256, result.pixels, result.camera_pixels = image_facts(task.data, data)
        if result.thumbnail is not None:
            try:
                thumb = make_thumbnail(data, quality=THUMBNAIL_QUALITY)
                write_atomic(result.thumbnail, thumb, task.file_mode)
            except UnidentifiedImageError:
                result.errors.append(f"{result.thumbnail.name} not made (the image is unreadable)")
                result.thumbnail = None
            except Exception as exc:
                result.errors.append(f"{result.thumbnail.name} not saved ({exc})")
                result.thumbnail = None
    except Exception as exc:
        _logger.exception(f"Writing {result.path.name} failed")
        result.errors.append(f"{result.path.name}: unexpected error {exc!r}")
    finally:
        result.seconds = time.perf_counter() - started
        task.pending._finish()


Transforms = Mapping[str, Optional[Callable[[bytes], bytes]]]  # camera name -> its transform
ShotKey = Tuple[int, str]  # (grid index, camera name): one picture of a layer


class StoreSink:
    """The sequence's image sink: names the files and queues them on the image writer.

    ``save`` returns at once with the names the files will have; :meth:`settle` (after
    the writes ran) corrects the shots whose files could not be written. ``transforms``
    says, per camera name, what its images need before they are stored (a webcam's
    flip/rotate; none: stored as received).
    """

    def __init__(
        self,
        store: CaptureStore,
        settings: CaptureSettings,
        writer: ImageWriter,
        transforms: Optional[Transforms] = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._writer = writer
        self._transforms: Transforms = transforms or {}
        # by (grid index, camera name)
        self.pending: Dict[ShotKey, PendingImage] = {}
        self.camera_latency: Dict[ShotKey, float] = {}  # seconds the camera took

    def save(self, request: ShotRequest, snapshot: Snapshot, when: datetime) -> SavedShot:
        if not snapshot.data:
            raise ValueError("no image data")
        camera = request.camera if request.name_in_files else None
        path = self._store.image_path(
            request.layer, request.index, request.layer_z, when, camera=camera
        )
        thumb = (
            path.with_name(thumbnail_name(path.name)) if self._settings.create_thumbnails else None
        )
        key = (request.index, request.camera)
        self.camera_latency[key] = snapshot.duration
        self.pending[key] = self._writer.submit_image(
            path,
            snapshot.data,
            thumb,
            self._transforms.get(request.camera),
            self._store.file_mode,
        )
        return SavedShot(path.name, thumb.name if thumb else None, len(snapshot.data))

    def written(self) -> Dict[ShotKey, WrittenImage]:
        """What the writer stored, by (grid index, camera name) (call after :meth:`settle`)."""
        stored: Dict[ShotKey, WrittenImage] = {}
        for key, pending in self.pending.items():
            done = pending.wait(0)
            if done is None or done.size_bytes is None:
                continue
            stored[key] = WrittenImage(
                done.sha256,
                None if done.pixels is None else done.pixels[0],
                None if done.pixels is None else done.pixels[1],
                self.camera_latency.get(key),
                done.camera_pixels,
            )
        return stored

    def settle(self, result: SequenceResult, timeout: float) -> None:
        """Waits for this layer's writes; records the failed ones in ``result``."""
        for shot in result.shots:
            pending = self.pending.get((shot.index, shot.camera))
            if shot.saved is None or pending is None:
                continue
            written = pending.wait(timeout)
            if written is None:
                message = f"{shot.saved.path} still being written after {timeout:g} s"
                result.failures.append(
                    SequenceFailure("write", message, shot.index, timeout, shot.camera)
                )
                shot.saved = None
                continue
            for message in written.errors:
                result.failures.append(
                    SequenceFailure("write", message, shot.index, written.seconds, shot.camera)
                )
            if written.size_bytes is None:
                shot.saved = None
            else:
                shot.saved = replace(
                    shot.saved,
                    thumbnail=written.thumbnail.name if written.thumbnail else None,
                    size_bytes=written.size_bytes,
                )
        if result.failures and result.outcome == Outcome.COMPLETED:
            result.outcome = Outcome.COMPLETED_WITH_FAILURES
