"""Videos as the tests and the video benchmark check them: Debian's ffmpeg and ffprobe
(debian-packages.txt) and what ffprobe says about a file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Dict

from system_packages import find_program, require_program

FFMPEG = find_program("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = find_program("ffprobe") or "/usr/bin/ffprobe"


def require_ffmpeg() -> None:
    """In a test: both programs there, else a skip (a failure in CI)."""
    require_program("ffmpeg")
    require_program("ffprobe")


def probe(path: Path) -> Dict[str, Any]:
    """The first video stream of ``path``: ``codec_name``, ``pix_fmt``, ``width``,
    ``height`` and ``nb_read_frames`` (the frames ffprobe decoded, counted one by one)."""
    out = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,pix_fmt,width,height,nb_read_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    stream = dict(json.loads(out)["streams"][0])
    stream["nb_read_frames"] = int(stream["nb_read_frames"])
    return stream
