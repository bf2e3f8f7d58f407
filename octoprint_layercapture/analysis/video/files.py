"""A video's files on disk: the frames file beside each video, saving a render, the leftovers
of an interrupted one.

Pure module (stdlib + :mod:`store`). The names are :mod:`store.names` (``video_<print
id>_grid.mp4``, ``video_<print id>_pos_04.mp4``, with ``_cam_<name>`` for every camera but
the first, each with a ``.json`` frames file of the same stem), in the day folder of the
print's first captured layer. The frames file says,
per frame, the layer and the image file(s) it shows, so a frame can be traced to its
capture; the gallery's record of it is :func:`store.entries.video_record`. While a video
is rendered it is a temporary name (:func:`store.names.temp_video_name`), renamed when the
whole render succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional

from ...store.files import write_atomic
from ...store.names import (
    KIND_POSITION,
    RENDER_WORK_PREFIX,
    is_day_folder_name,
    is_temp_video_name,
    video_frames_name,
)

if TYPE_CHECKING:  # plan.py imports PIXEL_FORMAT from here
    from .plan import GridLayout, Size, VideoPlan

PIXEL_FORMAT = "yuv420p"  # what browsers decode


def temp_videos(root: Path) -> Iterator[Path]:
    """Temporary videos (``.video_*.tmp``) in the day folders of ``root``: what a render
    that OctoPrint's end interrupted left."""
    if not root.is_dir():
        return
    for day in os.scandir(root):
        if not is_day_folder_name(day.name) or not day.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(day.path):
            if is_temp_video_name(entry.name):
                yield Path(entry.path)


def remove_leftovers(work_root: Path, root: Optional[Path]) -> int:
    """Removes what renders that OctoPrint's end interrupted left: their frame folders
    below ``work_root`` and temporary videos in the capture folder ``root``; the count."""
    removed = 0
    if work_root.is_dir():
        for entry in os.scandir(work_root):
            if entry.name.startswith(RENDER_WORK_PREFIX) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    for path in temp_videos(root) if root is not None else ():
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def save_video(temp: Path, final: Path, document: Mapping[str, Any]) -> Path:
    """Writes ``document`` as the frames file beside ``final`` (atomically), then renames
    the rendered ``temp`` to ``final``; returns the frames file. OSError when either fails
    (an old video keeps its old frames file unless the rename failed after it)."""
    frames_path = final.with_name(video_frames_name(final.name))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    write_atomic(frames_path, text.encode("utf-8"))
    os.replace(temp, final)
    return frames_path


# ---- the frames file -----------------------------------------------------------------------


def frames_document(
    plan: VideoPlan,
    video_name: str,
    print_info: Mapping[str, Any],
    size: Size,
    fps: int,
    hold_frames: int,
    hold_seconds: float,
    layout: Optional[GridLayout] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """What the JSON beside a video says: its format and, per frame, the layer and the
    image file(s) it shows (for the grid, one entry per tile)."""
    first = plan.inputs[0]
    frames: List[Dict[str, Any]] = []
    for k, source in enumerate(first.frames):
        frame: Dict[str, Any] = {
            "frame": k,
            "layer": source.layer,
            "z_height": source.z_height,
            "metadata": source.metadata,
        }
        if plan.kind == KIND_POSITION:
            frame["image"] = source.image
            if source.image is None:
                frame["missing"] = source.missing
        else:
            frame["tiles"] = [
                {"index": p.index, "image": p.frames[k].image}
                | ({} if p.frames[k].image else {"missing": p.frames[k].missing})
                for p in plan.inputs
            ]
        frames.append(frame)
    document: Dict[str, Any] = {
        "video": video_name,
        "kind": plan.kind,
        "index": plan.index,
        "camera": plan.camera,
        "row": None if plan.index is None else first.row,
        "col": None if plan.index is None else first.col,
        "grid_size": plan.grid_size,
        "print_id": print_info.get("id"),
        "gcode_file": print_info.get("gcode_file"),
        "print_start_time": print_info.get("print_start_time"),
        "width": size[0],
        "height": size[1],
        "codec": "h264",
        "pixel_format": PIXEL_FORMAT,
        "fps": fps,
        "layer_frames": len(frames),
        "hold_seconds": hold_seconds,
        "hold_frames": hold_frames,
        "frame_count": len(frames) + hold_frames,
        "frames": frames,
    }
    if layout is not None:
        document["grid"] = layout.to_dict()
    if extra:
        document.update(extra)
    return document
