"""ffmpeg for a print's videos: OctoPrint's ffmpeg setting checked, the command lines, what
ffmpeg reports back.

Pure module (stdlib only). The format: H.264 (libx264) in MP4, yuv420p, index first
(``+faststart``), what browsers play, also while it downloads; bitrate and threads are
OctoPrint's timelapse settings (``webcam.bitrate``, ``webcam.ffmpegThreads``).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from .files import PIXEL_FORMAT
from .plan import GridLayout, Size, VideoError

# What OctoPrint's command line uses when webcam.bitrate / ffmpegThreads are unset.
DEFAULT_BITRATE = "10000k"
DEFAULT_THREADS = 1
CODEC = "libx264"

_BITRATE_RE = re.compile(r"^\d+(\.\d+)?[kKmM]?$")


@dataclass(frozen=True)
class FfmpegSettings:
    """OctoPrint's ffmpeg (``webcam.ffmpeg``) and its timelapse encoding settings."""

    path: str
    bitrate: str
    threads: int


WHERE_TO_SET = "OctoPrint's Settings > Webcam & Timelapse > Timelapse Recordings > Path to FFMPEG"


def ffmpeg_problem(path: Optional[str]) -> Optional[str]:
    """Why OctoPrint's ffmpeg setting cannot render (None: it can, as far as the file
    system tells)."""
    if path is None or not str(path).strip():
        return f"OctoPrint has no ffmpeg set: set it in {WHERE_TO_SET}"
    text = str(path).strip()
    found = text if os.path.isabs(text) else shutil.which(text)
    if found is None or not os.path.exists(found):
        return f"ffmpeg not found at {text!r}: install it or correct {WHERE_TO_SET}"
    if not os.path.isfile(found) or not os.access(found, os.X_OK):
        return f"{text!r} is not an executable program: correct {WHERE_TO_SET}"
    return None


def ffmpeg_settings(path: Optional[str], bitrate: Any, threads: Any) -> FfmpegSettings:
    """OctoPrint's values checked; :class:`VideoError` names what is wrong."""
    problem = ffmpeg_problem(path)
    if problem is not None:
        raise VideoError(problem)
    assert path is not None
    text = str(path).strip()
    resolved = text if os.path.isabs(text) else (shutil.which(text) or text)
    rate = DEFAULT_BITRATE if bitrate in (None, "") else str(bitrate).strip()
    if not _BITRATE_RE.match(rate):
        raise VideoError(
            f"OctoPrint's timelapse bitrate {rate!r} is not a bitrate ffmpeg reads "
            "(like 10000k): correct it in Settings > Webcam & Timelapse"
        )
    try:
        count = DEFAULT_THREADS if threads in (None, "") else int(threads)
    except (TypeError, ValueError):
        count = DEFAULT_THREADS
    return FfmpegSettings(resolved, rate, max(0, count))


def _fit(width: int, height: int) -> str:
    """Scale into width x height keeping the aspect ratio, centred on black."""
    return (
        f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
        f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1"
    )


def _tail(hold_frames: int) -> str:
    hold = f"tpad=stop_mode=clone:stop={hold_frames}," if hold_frames else ""
    return f"{hold}format={PIXEL_FORMAT}"


def _encode(ffmpeg: FfmpegSettings, fps: int, output: str) -> List[str]:
    return [
        "-map",
        "[out]",
        "-an",
        "-c:v",
        CODEC,
        "-threads",
        str(ffmpeg.threads),
        "-b:v",
        ffmpeg.bitrate,
        "-r",
        str(fps),
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        "-y",
        output,
    ]


def _head(ffmpeg: FfmpegSettings, progress: str) -> List[str]:
    # errors only on stderr (they are the message a failed render shows); the frame
    # counter goes to the progress file
    quiet = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
    return [ffmpeg.path, *quiet, "-progress", progress]


def position_command(
    ffmpeg: FfmpegSettings,
    pattern: str,
    size: Size,
    fps: int,
    hold_frames: int,
    output: str,
    progress: str,
) -> List[str]:
    """ffmpeg's arguments for one position video: the numbered frames ``pattern``
    (``.../f_%05d.jpg``, all of one size) at ``size`` (even)."""
    width, height = size
    graph = f"[0:v]{_fit(width, height)},{_tail(hold_frames)}[out]"
    inputs = ["-framerate", str(fps), "-i", pattern, "-filter_complex", graph]
    return [*_head(ffmpeg, progress), *inputs, *_encode(ffmpeg, fps, output)]


def grid_command(
    ffmpeg: FfmpegSettings,
    patterns: Sequence[str],
    layout: GridLayout,
    fps: int,
    hold_frames: int,
    output: str,
    progress: str,
) -> List[str]:
    """ffmpeg's arguments for the grid video: ``patterns[i]`` are position i's frames,
    tiled with ``xstack`` as :meth:`GridLayout.origin` says."""
    count = layout.grid_size * layout.grid_size
    if len(patterns) != count:
        raise ValueError(f"{count} inputs needed for a {layout.grid_size}x{layout.grid_size} grid")
    inputs: List[str] = []
    for pattern in patterns:
        if layout.lowres:
            inputs += ["-lowres", str(layout.lowres)]
        inputs += ["-framerate", str(fps), "-i", pattern]
    fit = _fit(layout.tile_width, layout.tile_height)
    tiles = ";".join(f"[{i}:v]{fit}[t{i}]" for i in range(count))
    if count == 1:
        graph = f"{tiles};[t0]{_tail(hold_frames)}[out]"
    else:
        where = "|".join(f"{x}_{y}" for x, y in (layout.origin(i) for i in range(count)))
        stacked = "".join(f"[t{i}]" for i in range(count))
        graph = (
            f"{tiles};{stacked}xstack=inputs={count}:layout={where}:fill=black,"
            f"{_tail(hold_frames)}[out]"
        )
    return [
        *_head(ffmpeg, progress),
        *inputs,
        "-filter_complex",
        graph,
        *_encode(ffmpeg, fps, output),
    ]


_PROGRESS_FRAME = re.compile(r"^frame=\s*(\d+)\s*$", re.MULTILINE)


def progress_frames(text: str) -> Optional[int]:
    """The last ``frame=N`` of ffmpeg's ``-progress`` output (None before the first)."""
    found = _PROGRESS_FRAME.findall(text)
    return int(found[-1]) if found else None


def error_summary(stderr: str, limit: int = 600) -> str:
    """ffmpeg's error output in a few lines (its last ones say what went wrong)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " | ".join(lines[-4:])
    return text if len(text) <= limit else "..." + text[-limit:]
