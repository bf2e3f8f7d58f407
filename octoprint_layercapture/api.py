"""Request parsing and answers of the plugin's HTTP API that need no OctoPrint.

The routes (``routes.py``) check permissions and call these; everything that decides what a
request means or what an answer holds lives here and is unit-tested alone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import math
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from zipstream import ZipStream

from . import settings as lc_settings
from .analysis.video import TARGETS, RenderTarget
from .analysis.video_files import KIND_POSITION
from .camera_base import redact_url
from .gallery import is_print_id
from .grid import plan_grid

DEFAULT_PAGE = 20
MAX_PAGE = 2000

# Zip downloads (see ZipDownloads).
ZIPS_PER_USER = 2
ZIPS_IN_TOTAL = 8
# One thread reads every running zip, a block at a time in turn: the disk is shared anyway,
# and fewer threads competing for Python's GIL keep OctoPrint's answers quick (four zips
# of 300 MB at once: /api/version p95 28-41 ms with one thread, 40-122 ms with one each).
ZIP_WORKER_THREADS = 1
ZIP_BLOCK_BYTES = 1024 * 1024  # handed from the worker to the web server per step
ZIP_THREAD_NAME = "layercapture-zip"


class ApiError(Exception):
    """A request the API refuses: ``status`` is the HTTP code, ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _whole(args: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw), 10)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_page(
    args: Mapping[str, Any], default_limit: int = DEFAULT_PAGE, max_limit: int = MAX_PAGE
) -> Tuple[int, int]:
    """``offset`` and ``limit`` query parameters (``limit`` 1..max_limit)."""
    offset = _whole(args, "offset", 0, 0, 10**9)
    limit = _whole(args, "limit", default_limit, 1, max_limit)
    return offset, limit


def check_print_id(value: str) -> str:
    """A print id from a URL; anything else is an unknown print (404)."""
    if not is_print_id(value):
        raise ApiError(404, "no such print")
    return value


def parse_render_request(body: Any) -> RenderTarget:
    """The body of ``POST prints/<id>/videos``: ``{"target": "all"}``, ``{"target": "grid"}``
    or ``{"target": "position", "index": 4}`` (whether the print has that position is the
    renderer's to say)."""
    if not isinstance(body, Mapping):
        raise ApiError(400, 'expected a JSON object like {"target": "all"}')
    unknown = sorted(set(body) - {"target", "index"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(map(str, unknown))}")
    target = body.get("target", "all")
    if target not in TARGETS:
        names = ", ".join(repr(t) for t in TARGETS)
        raise ApiError(400, f"target must be one of {names}, got {target!r}")
    index = body.get("index")
    if target != KIND_POSITION:
        if index is not None:
            raise ApiError(400, f"index is only for target 'position', not {target!r}")
        return RenderTarget(target)
    if isinstance(index, bool) or not isinstance(index, int):
        raise ApiError(400, f"index must be a whole number (the grid position), got {index!r}")
    return RenderTarget(target, index)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def zip_name(gcode_file: str, print_start_time: Optional[str], print_id: str) -> str:
    """``layercapture-<file stem>-<YYYYmmdd_HHMMSS>.zip`` with only safe characters."""
    stem = gcode_file.rsplit("/", 1)[-1]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    stem = _UNSAFE.sub("_", stem).strip("._-")[:60] or "print"
    when = re.sub(r"[^0-9]", "", print_start_time or "")[:14]
    stamp = f"{when[:8]}_{when[8:]}" if len(when) == 14 else print_id
    return f"layercapture-{stem}-{stamp}.zip"


def _finite(value: Any) -> Optional[float]:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def grid_preview(
    data: Mapping[str, Any], profile_bounds: Optional[lc_settings.Bounds]
) -> Optional[Dict[str, Any]]:
    """The grid the settings in ``data`` would visit, for the settings panel's drawing.

    Works on unsaved (even invalid) values: points outside the bounds are included with
    ``inside: false`` and the reason, which is what the drawing marks. None when the grid
    fields themselves are not usable numbers.
    """
    cx, cy = _finite(data.get("grid_center_x")), _finite(data.get("grid_center_y"))
    spacing = _finite(data.get("grid_spacing"))
    size = _finite(data.get("grid_size"))
    if cx is None or cy is None or spacing is None or size is None:
        return None
    if size not in lc_settings.GRID_SIZES or (spacing <= 0 and size > 1) or spacing > 1000:
        return None
    edges = [_finite(data.get(k)) for k in ("bed_min_x", "bed_min_y", "bed_max_x", "bed_max_y")]
    bounds = lc_settings.effective_bounds(profile_bounds, *edges)
    if bounds is not None and (bounds.min_x >= bounds.max_x or bounds.min_y >= bounds.max_y):
        bounds = None
    # no max Z here (the layer is not known); a round bed stays round
    flat = (
        None
        if bounds is None
        else lc_settings.Bounds(*_xy(bounds), None, bounds.radius, bounds.center)
    )
    plan = plan_grid(cx, cy, max(spacing, 0.0), int(size), 0.0, 0.0, flat)
    points: List[Dict[str, Any]] = [
        {"index": p.index, "row": p.row, "col": p.col, "x": p.x, "y": p.y, "inside": True}
        for p in plan.points
    ]
    for s in plan.skipped:
        row, col = divmod(s.index, int(size))
        points.append(
            {
                "index": s.index,
                "row": row,
                "col": col,
                "x": s.x,
                "y": s.y,
                "inside": False,
                "reason": s.reason,
            }
        )
    points.sort(key=lambda p: p["index"])
    return {
        "points": points,
        "order": [p.index for p in plan.points],
        "bounds": _box(bounds),
        "profile_bounds": _box(profile_bounds),
        "bed_center": None
        if bounds is None
        else {"x": (bounds.min_x + bounds.max_x) / 2, "y": (bounds.min_y + bounds.max_y) / 2},
    }


def _xy(bounds: lc_settings.Bounds) -> Tuple[float, float, float, float]:
    return (bounds.min_x, bounds.min_y, bounds.max_x, bounds.max_y)


def _box(bounds: Optional[lc_settings.Bounds]) -> Optional[Dict[str, Optional[float]]]:
    if bounds is None:
        return None
    box: Dict[str, Optional[float]] = dict(zip(("min_x", "min_y", "max_x", "max_y"), _xy(bounds)))
    box["max_z"] = bounds.max_z
    box["radius"] = bounds.radius
    return box


# Settings whose values may carry credentials (http://user:password@camera/...).
CREDENTIAL_KEYS = ("snapshot_url", "stream_url")
_USERINFO = re.compile(r"[^\s/@'\"]+@")


def masked_value(value: Any) -> str:
    """A settings value as it may be shown to others: URLs as the log shows them
    (credentials replaced by ``***``), anything that is no text by its type only."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    return repr(_USERINFO.sub("***@", redact_url(value)))


def settings_errors(
    errors: Sequence[lc_settings.SettingsError], data: Mapping[str, Any]
) -> List[Dict[str, str]]:
    """The errors as ``{"key", "message"}``, where a message that repeats a value of
    :data:`CREDENTIAL_KEYS` from ``data`` (what was submitted) shows it masked: these go
    to the log, to ``GET status`` and in a push."""
    answer = []
    for error in errors:
        message = error.message
        value = data.get(error.key)
        if error.key in CREDENTIAL_KEYS and value is not None:
            shown = [value, value.strip()] if isinstance(value, str) else [value]
            for candidate in shown:
                if candidate != "":
                    message = message.replace(repr(candidate), masked_value(candidate))
        answer.append({"key": error.key, "message": message})
    return answer


# ---- zip downloads -------------------------------------------------------------------------


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
