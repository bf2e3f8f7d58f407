"""Camera sources behind one small interface: ``take(request) -> Snapshot``.

Nothing here imports OctoPrint: the plugin passes OctoPrint's webcam snapshot function in
as a plain callable.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Callable, Iterable, Optional, Sequence, Tuple

from .fake_camera import render_fake_frame
from .ports import CameraError, ShotRequest, Snapshot
from .settings import Bounds

JPEG_MAGIC = b"\xff\xd8\xff"

_logger = logging.getLogger("octoprint.plugins.layercapture.cameras")


def looks_like_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def describe_body(data: bytes) -> str:
    """A short, printable description of a body that is not a JPEG (for error messages)."""
    if not data:
        return "an empty body"
    head = data[:60].decode("latin-1")
    printable = "".join(ch if 32 <= ord(ch) < 127 else "." for ch in head)
    return f"{len(data)} bytes starting with {printable!r}"


class FakeCamera:
    """Draws the capture instead of photographing it (testing without hardware)."""

    name = "fake camera"

    def __init__(
        self,
        quality: int,
        bounds: Optional[Bounds],
        grid_points: Sequence[Tuple[float, float]],
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._quality = quality
        self._bounds = bounds
        self._grid_points = list(grid_points)
        self._now = now

    def take(self, request: ShotRequest) -> Snapshot:
        started = time.monotonic()
        data = render_fake_frame(
            layer=request.layer,
            layer_z=request.layer_z,
            position=(request.x, request.y, request.z),
            index=request.index,
            count=request.count,
            bounds=self._bounds,
            grid_points=self._grid_points,
            when=self._now(),
            quality=self._quality,
        )
        return Snapshot(data, "image/jpeg", time.monotonic() - started, self.name)


class OctoPrintWebcam:
    """A webcam known to OctoPrint, through its provider plugin's snapshot call.

    ``fetch`` returns the snapshot as an iterable of byte chunks (what
    ``take_webcam_snapshot`` yields).
    """

    def __init__(self, name: str, fetch: Callable[[], Iterable[bytes]], retries: int = 1) -> None:
        self.name = name
        self._fetch = fetch
        self._retries = max(0, retries)

    def take(self, request: ShotRequest) -> Snapshot:
        started = time.monotonic()
        problem = ""
        for attempt in range(self._retries + 1):
            try:
                data = b"".join(chunk for chunk in self._fetch() if chunk)
            except Exception as exc:
                problem = f"webcam {self.name!r} snapshot failed: {exc}"
            else:
                if looks_like_jpeg(data):
                    return Snapshot(data, "image/jpeg", time.monotonic() - started, self.name)
                problem = f"webcam {self.name!r} returned {describe_body(data)}, not a JPEG"
            _logger.debug(f"attempt {attempt + 1}: {problem}")
        raise CameraError(problem)


class NoCamera:
    """Stands in when no camera is configured: every capture fails with a clear reason."""

    name = "no camera"

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def take(self, request: ShotRequest) -> Snapshot:
        raise CameraError(self._reason)
