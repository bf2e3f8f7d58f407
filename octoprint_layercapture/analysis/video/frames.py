"""A video's frames laid out for ffmpeg: one folder of numbered files per input.

Pure module (stdlib + :mod:`.tiles`). Each position's frame k is ``f_0000k.jpg`` in its own
folder: a symlink to the camera's file when it has the video's reference size (the first
readable image, lowest layer first), a letterboxed copy when it has another, a labelled
blank when there is no image. ffmpeg then reads every input with its image-sequence
reader at a fixed frame rate, and no frame changes size mid-stream.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ...store.names import KIND_GRID, temp_video_name
from . import tiles
from .ffmpeg import FfmpegSettings, grid_command, position_command
from .plan import (
    FrameSource,
    GridLayout,
    PositionFrames,
    Size,
    VideoError,
    VideoPlan,
    even_size,
    hold_frame_count,
    plan_grid_layout,
)


@dataclass(frozen=True)
class PreparedVideo:
    """One video ready for ffmpeg: its plan as it will be (unreadable images made blanks),
    where it goes, and the command that renders it to ``temp``."""

    plan: VideoPlan
    name: str
    folder: Path  # the day folder it is saved in
    temp: Path
    size: Size
    layout: Optional[GridLayout]
    hold_frames: int
    command: List[str]
    progress: Path
    log: Path

    @property
    def frame_count(self) -> int:
        return self.plan.layer_count + self.hold_frames


def prepare_video(
    plan: VideoPlan,
    number: int,
    print_id: str,
    root: Path,
    folder: Path,
    work: Path,
    ffmpeg: FfmpegSettings,
    fps: int,
    hold_seconds: float,
    checkpoint: Callable[[], None],
    logger: logging.Logger,
) -> PreparedVideo:
    """Frame folders below ``work`` for video ``number`` of a render, and its command.
    ``checkpoint`` is called before each frame (it may block, while a capture runs, or
    raise, when the render is cancelled)."""
    reference = reference_size(plan, root, logger)
    layout = plan_grid_layout(plan.grid_size, reference) if plan.kind == KIND_GRID else None
    size = (layout.width, layout.height) if layout is not None else even_size(reference)
    blanks: Dict[Tuple[int, str], Path] = {}
    inputs = []
    patterns = []
    for source in plan.inputs:
        frames_dir = work / f"v{number:02d}" / f"p{source.index:02d}"
        frames_dir.mkdir(parents=True)
        laid = []
        for k, frame in enumerate(source.frames):
            checkpoint()
            target = frames_dir / f"f_{k:05d}.jpg"
            laid.append(_lay_frame(frame, target, reference, source, plan, root, blanks, work))
        inputs.append(replace(source, frames=tuple(laid)))
        # ffmpeg reads % in the folder's name as a pattern too: doubled, it is a % again
        patterns.append(str(frames_dir).replace("%", "%%") + os.sep + "f_%05d.jpg")
    plan = replace(plan, inputs=tuple(inputs))
    name = plan.file_name(print_id)
    temp = folder / temp_video_name(name, secrets.token_hex(4))
    hold = hold_frame_count(fps, hold_seconds)
    progress = work / f"v{number:02d}.progress"
    if layout is not None:
        command = grid_command(ffmpeg, patterns, layout, fps, hold, str(temp), str(progress))
    else:
        command = position_command(ffmpeg, patterns[0], size, fps, hold, str(temp), str(progress))
    log = work / f"v{number:02d}.log"
    return PreparedVideo(plan, name, folder, temp, size, layout, hold, command, progress, log)


def reference_size(plan: VideoPlan, root: Path, logger: logging.Logger) -> Size:
    """The size of the video's first readable camera image (lowest layer first)."""
    for k in range(plan.layer_count):
        for source in plan.inputs:
            image = source.frames[k].image
            if image is None:
                continue
            try:
                return tiles.image_size(root / image)
            except OSError as exc:
                logger.warning(f"{plan.label()}: {exc}")
    raise VideoError(f"no readable image for the {plan.label()}")


def _lay_frame(
    frame: FrameSource,
    target: Path,
    reference: Size,
    source: PositionFrames,
    plan: VideoPlan,
    root: Path,
    blanks: Dict[Tuple[int, str], Path],
    work: Path,
) -> FrameSource:
    """Puts ``frame`` at ``target``; returns it as the video shows it (an unreadable
    image becomes a labelled blank)."""
    if frame.image is not None:
        path = root / frame.image
        try:
            if tiles.image_size(path) == reference:
                _link_or_copy(path, target)
            else:  # another camera size: ffmpeg's filters must not change mid-video
                target.write_bytes(tiles.letterboxed(path, reference))
            return frame
        except OSError as exc:
            frame = replace(frame, image=None, missing=f"unreadable image ({exc})")
    reason = frame.missing or "no image"
    if plan.kind == KIND_GRID:
        # a tile names no layer (every tile of a frame shows the same one), so the same
        # blank serves each layer a position misses for the same reason
        key = (source.index, reason)
        blank = blanks.get(key)
        if blank is None:
            blank = work / f"blank-{len(blanks):04d}.jpg"
            blank.write_bytes(tiles.blank_frame(reference, f"#{source.index + 1}", [reason]))
            blanks[key] = blank
        _link_or_copy(blank, target)
    else:
        lines = [f"layer {frame.layer}", reason]
        target.write_bytes(tiles.blank_frame(reference, f"#{source.index + 1}", lines))
    return frame


def _link_or_copy(target: Path, link: Path) -> None:
    try:
        os.symlink(target, link)
    except OSError:  # no symlinks here (some file systems, Windows without the right)
        shutil.copyfile(target, link)
