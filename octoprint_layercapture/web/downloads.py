"""Zip downloads of a print's captures, produced off the web server's thread.

Pure module (zipstream-ng, which OctoPrint ships): :class:`ZipDownloads` counts and limits
the running downloads, :class:`ZipBody` reads one zip a block at a time on the worker
thread while the web server's one thread only sends the blocks (see ``web/files.py``);
:func:`dataset_body` is a print as a dataset (:mod:`analysis.dataset`) in the same way.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from zipstream import ZipStream

from ..analysis.dataset import DatasetPlan, dataset_zip, export_layers
from ..store.index import CaptureIndex
from ..store.records import read_metadata
from .api import ApiError

# Zip downloads (see ZipDownloads).
ZIPS_PER_USER = 2
ZIPS_IN_TOTAL = 8
# One thread reads every running zip, a block at a time in turn: the disk is shared anyway,
# and fewer threads competing for Python's GIL keep OctoPrint's answers quick (four zips
# of 300 MB at once: /api/version p95 28-41 ms with one thread, 40-122 ms with one each).
ZIP_WORKER_THREADS = 1
ZIP_BLOCK_BYTES = 1024 * 1024  # handed from the worker to the web server per step
ZIP_THREAD_NAME = "layercapture-zip"


@dataclass(frozen=True)
class DownloadSlot:
    """One running zip download (see :meth:`ZipDownloads.acquire`)."""

    number: int
    user: str
    print_id: str


class ZipDownloads:
    """The running zip downloads, their limits and the worker threads that read them.

    OctoPrint's web server runs on one thread: reading a print's files and computing
    their checksums there would hold every other request back for the whole download.
    The zip is produced on a named worker thread instead, one block at a time, and the
    web server only sends the blocks. At most ``per_user`` downloads run per user and
    ``total`` in all; a print being downloaded is not deleted.
    """

    def __init__(self, per_user: int = ZIPS_PER_USER, total: int = ZIPS_IN_TOTAL) -> None:
        self.per_user = per_user
        self.total = total
        self._lock = threading.Lock()  # guards the fields below
        self._running: Dict[int, DownloadSlot] = {}
        self._deleting: Counter[str] = Counter()  # print ids being deleted
        self._numbers = itertools.count(1)
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._closed = False

    def acquire(self, user: str, print_id: str) -> DownloadSlot:
        """A slot for a new download; :class:`ApiError` 429 beyond the limits (503 after
        :meth:`close`). Give it back with :meth:`release`."""
        with self._lock:
            if self._closed:
                raise ApiError(503, "OctoPrint is shutting down")
            if self._deleting[print_id]:
                raise ApiError(409, "this print is being deleted")
            mine = sum(1 for slot in self._running.values() if slot.user == user)
            if mine >= self.per_user:
                raise ApiError(
                    429,
                    f"you are already downloading {mine} zips (at most {self.per_user} at a "
                    "time); start this one when one of them has finished",
                )
            if len(self._running) >= self.total:
                raise ApiError(
                    429,
                    f"{len(self._running)} zips are being downloaded (at most {self.total} "
                    "at a time); try again when one of them has finished",
                )
            slot = DownloadSlot(next(self._numbers), user, print_id)
            self._running[slot.number] = slot
            return slot

    def release(self, slot: DownloadSlot) -> None:
        with self._lock:
            self._running.pop(slot.number, None)

    def downloading(self, print_id: str) -> bool:
        """True while a zip of ``print_id`` is being downloaded."""
        with self._lock:
            return any(slot.print_id == print_id for slot in self._running.values())

    @contextlib.contextmanager
    def deleting(self, print_id: str) -> Iterator[bool]:
        """Keeps new downloads of ``print_id`` from starting while the block runs; yields
        False (delete nothing) when one is running already."""
        with self._lock:
            running = any(slot.print_id == print_id for slot in self._running.values())
            self._deleting[print_id] += 1
        try:
            yield not running
        finally:
            with self._lock:
                self._deleting[print_id] -= 1
                if not self._deleting[print_id]:
                    del self._deleting[print_id]

    def counts(self) -> Dict[str, int]:
        """Running downloads per user."""
        with self._lock:
            return dict(Counter(slot.user for slot in self._running.values()))

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The worker thread (started on first use); RuntimeError after :meth:`close`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("zip downloads are closed: OctoPrint is shutting down")
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=ZIP_WORKER_THREADS, thread_name_prefix=ZIP_THREAD_NAME
                )
            return self._executor

    def close(self) -> None:
        """Refuses new downloads and lets the worker thread end (OctoPrint shuts down)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class ZipBody:
    """A print's zip, produced in blocks; every method reads the disk (a worker thread's
    job, never the web server's).

    Stored, not compressed (JPEGs do not shrink), so the size is known before the first
    byte: the answer has a Content-Length and the browser shows the progress.
    """

    def __init__(self, stream: Any, missing: int) -> None:
        self._stream = stream
        self.size = len(stream)
        self.missing = missing  # files listed by the index but gone from the disk
        modified = stream.last_modified  # None without files
        self.last_modified = modified if isinstance(modified, datetime) else None
        self._chunks: Optional[Iterator[bytes]] = None

    @classmethod
    def of(
        cls,
        entries: Sequence[Tuple[str, str]],
        locate: Callable[[Sequence[str]], Mapping[str, Path]],
    ) -> Optional[ZipBody]:
        """The zip of ``entries`` (``(name in the zip, path relative to the capture
        folder)``); ``locate`` gives the paths on disk of those relative paths that may be
        served (the others are left out). None when no file is left."""
        found = locate([relative for _, relative in entries])
        stream = ZipStream(sized=True)
        missing = 0
        for arcname, relative in entries:
            path = found.get(relative)
            if path is None:
                missing += 1
                continue
            try:
                stream.add_path(os.fspath(path), arcname=arcname, recurse=False)
            except FileNotFoundError:
                missing += 1
        if stream.is_empty():
            return None
        return cls(stream, missing)

    def read(self, size: int = ZIP_BLOCK_BYTES) -> bytes:
        """The next ``size`` bytes or so; b"" at the end. Raises OSError when a file has
        gone or RuntimeError when one changed size since the zip was planned."""
        if self._chunks is None:
            self._chunks = iter(self._stream)
        parts: List[bytes] = []
        length = 0
        for chunk in self._chunks:
            parts.append(chunk)
            length += len(chunk)
            if length >= size:
                break
        return b"".join(parts)

    def close(self) -> None:
        """Closes the file being read (the download ended early)."""
        chunks, self._chunks = self._chunks, None
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def dataset_body(
    index: CaptureIndex, pid: str, folder: str, plugin_version: str, now: datetime
) -> Optional[ZipBody]:
    """A print's captures as a Hugging Face ImageFolder dataset (:mod:`analysis.dataset`)
    below ``folder/``; None when no image of it is left. Reads every metadata file twice:
    a worker thread's job. RuntimeError when one can no longer be read."""
    page = index.layers(pid)
    if page is None:
        return None
    layers = export_layers(page.items)
    wanted: List[str] = []
    for layer in layers:
        wanted += [*layer.images, layer.metadata]
        wanted += [extra for extra in (layer.toolpath, layer.toolpath_svg) if extra]
    found = index.files_on_disk(wanted)
    plan = DatasetPlan(pid, layers, found, lambda relative: read_metadata(found[relative]))
    plan.measure()
    if plan.image_count == 0:
        return None
    return ZipBody(dataset_zip(plan, folder, plugin_version, now), len(wanted) - len(found))
