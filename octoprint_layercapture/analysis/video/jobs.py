"""A render request as the renderer tracks it, and what the renderer needs from outside.

Pure module. A job goes through the states of :class:`vocabulary.RenderState`; the gate
(:class:`RenderGate`) says when rendering must wait.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol

from ...store.index import CaptureIndex
from ...vocabulary import RenderState
from .plan import RenderTarget


class RenderRefused(Exception):
    """A render request the renderer does not queue: ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class GalleryPort(Protocol):
    """What the renderer needs of the gallery index."""

    @property
    def root(self) -> Optional[Path]: ...

    def print_summary(self, print_id: str) -> Optional[Dict[str, Any]]: ...

    def print_layers(self, print_id: str) -> Optional[List[Dict[str, Any]]]: ...

    def add_video(self, frames_file: Path) -> None: ...


@dataclass(frozen=True)
class RenderConfig:
    """What a render is made with: OctoPrint's ffmpeg settings and the plugin's."""

    ffmpeg: Optional[str]
    bitrate: Any
    threads: Any
    fps: int
    hold_seconds: float


CAPTURING = "a capture sequence is running"
PRINTING = "a print is running (videos render once it has ended)"


@dataclass(frozen=True)
class RenderGate:
    """When a render must wait: never while a capture sequence is queued or moves the head,
    and not while a print runs unless ``while_printing()`` allows it (the host may be a
    Raspberry Pi). Polled on the renderer's thread."""

    capturing: Callable[[], bool]
    printing: Callable[[], bool]
    while_printing: Callable[[], bool]

    def reason(self) -> Optional[str]:
        """Why rendering waits now; None when it may go on."""
        if self.capturing():
            return CAPTURING
        if self.printing() and not self.while_printing():
            return PRINTING
        return None


class RenderCancelled(Exception):
    pass


class RestartVideo(Exception):
    """The gate closed where ffmpeg cannot be paused: the video is rendered again."""


@dataclass
class RenderJob:
    """A render request and how far it got; the renderer's lock guards the fields."""

    id: int
    print_id: str
    gcode_file: str
    target: RenderTarget
    auto: bool
    state: RenderState = RenderState.QUEUED
    reason: Optional[str] = None
    error: Optional[str] = None
    current: Optional[str] = None
    frames_done: int = 0
    frames_total: int = 0
    videos_done: int = 0
    videos_total: int = 0
    videos: List[str] = field(default_factory=list)
    cpu_seconds: float = 0.0  # ffmpeg's, summed over the job's videos
    queued_at: float = field(default_factory=time.time)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> Dict[str, Any]:
        percent = int(100 * self.frames_done / self.frames_total) if self.frames_total else None
        seconds = None
        if self.started_at is not None and self.finished_at is not None:
            seconds = round(self.finished_at - self.started_at, 3)
        return {
            "id": self.id,
            "print_id": self.print_id,
            "gcode_file": self.gcode_file,
            "target": self.target.kind,
            "index": self.target.index,
            "camera": self.target.camera,
            "auto": self.auto,
            "state": self.state,
            "reason": self.reason,
            "error": self.error,
            "current": self.current,
            "frames_done": self.frames_done,
            "frames_total": self.frames_total,
            "percent": percent,
            "videos_done": self.videos_done,
            "videos_total": self.videos_total,
            "videos": list(self.videos),
            "queued_at": _iso(self.queued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "render_seconds": seconds,
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


def _iso(stamp: Optional[float]) -> Optional[str]:
    return None if stamp is None else datetime.fromtimestamp(stamp).isoformat(timespec="seconds")


class IndexGallery:
    """:class:`GalleryPort` over the gallery's index; ``index()`` gives it for the current
    capture folder (the plugin's follows the setting)."""

    def __init__(self, index: Callable[[], CaptureIndex]) -> None:
        self._index = index

    @property
    def root(self) -> Optional[Path]:
        return self._index().root

    def print_summary(self, print_id: str) -> Optional[Dict[str, Any]]:
        return self._index().print_summary(print_id)

    def print_layers(self, print_id: str) -> Optional[List[Dict[str, Any]]]:
        page = self._index().layers(print_id)
        return None if page is None else page.items

    def add_video(self, frames_file: Path) -> None:
        self._index().add_metadata_file(frames_file)
