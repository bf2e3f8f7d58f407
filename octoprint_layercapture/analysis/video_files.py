"""A video's files: their names, the frames file beside each video, the gallery's record.

Pure module (stdlib only). In the day folder of the print's first captured layer::

    video_<print id>_grid.mp4     the grid video
    video_<print id>_grid.json    its frames: per frame the layer and each tile's image
    video_<print id>_pos_04.mp4   position 4's video
    video_<print id>_pos_04.json  its frames: per frame the layer and the image file

so a frame of a video can be traced to its capture. The print id is the gallery's.
While a video is rendered it is ``.video_...mp4.<random>.tmp`` (the storage module's
temporary names), renamed when the whole render succeeded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional

from ..storage import TEMP_PREFIX, TEMP_SUFFIX, is_day_folder_name, write_atomic

if TYPE_CHECKING:  # video.py imports the names from here
    from .video import GridLayout, Size, VideoPlan

KIND_GRID = "grid"
KIND_POSITION = "position"
PIXEL_FORMAT = "yuv420p"  # what browsers decode
VIDEO_EXT = ".mp4"
FRAMES_EXT = ".json"
_VIDEO_RE = re.compile(
    r"^video_(?P<print>[0-9a-f]{8,64})_(?:(?P<grid>grid)|pos_(?P<index>\d{2,}))"
    r"(?P<ext>\.mp4|\.json)$"
)

# ---- names ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoName:
    print_id: str
    index: Optional[int]  # None: the grid video
    is_frames_file: bool

    @property
    def kind(self) -> str:
        return KIND_GRID if self.index is None else KIND_POSITION


def video_file_name(print_id: str, index: Optional[int]) -> str:
    """``video_<print id>_grid.mp4`` (index None) or ``video_<print id>_pos_04.mp4``."""
    part = "grid" if index is None else f"pos_{index:02d}"
    return f"video_{print_id}_{part}{VIDEO_EXT}"


def frames_file_name(video_name: str) -> str:
    """The frames list beside a video: the same stem, ``.json``."""
    if not video_name.endswith(VIDEO_EXT):
        raise ValueError(f"not a video name: {video_name!r}")
    return video_name[: -len(VIDEO_EXT)] + FRAMES_EXT


def parse_video_name(name: str) -> Optional[VideoName]:
    """Read back :func:`video_file_name` / :func:`frames_file_name`; None for other names."""
    m = _VIDEO_RE.match(name)
    if m is None:
        return None
    index = None if m["grid"] else int(m["index"])
    return VideoName(m["print"], index, m["ext"] == FRAMES_EXT)


WORK_PREFIX = "render-"  # a render's frame folders, below the plugin's data folder


def temp_videos(root: Path) -> Iterator[Path]:
    """Temporary videos (``.video_*.tmp``) in the day folders of ``root``: what a render
    that OctoPrint's end interrupted left."""
    if not root.is_dir():
        return
    for day in os.scandir(root):
        if not is_day_folder_name(day.name) or not day.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(day.path):
            name = entry.name
            if name.startswith(f"{TEMP_PREFIX}video_") and name.endswith(TEMP_SUFFIX):
                yield Path(entry.path)


def remove_leftovers(work_root: Path, root: Optional[Path]) -> int:
    """Removes what renders that OctoPrint's end interrupted left: their frame folders
    below ``work_root`` and temporary videos in the capture folder ``root``; the count."""
    removed = 0
    if work_root.is_dir():
        for entry in os.scandir(work_root):
            if entry.name.startswith(WORK_PREFIX) and entry.is_dir(follow_symlinks=False):
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
    frames_path = final.with_name(frames_file_name(final.name))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    write_atomic(frames_path, text.encode("utf-8"))
    os.replace(temp, final)
    return frames_path


# ---- the frames file and the gallery's record ---------------------------------------------


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


SizeOf = Callable[[str], Optional[int]]


def _whole(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def video_record(
    key: str, day: str, document: Mapping[str, Any], size_of: SizeOf
) -> Optional[Dict[str, Any]]:
    """The gallery's record of the video whose frames file ``key`` (``<day>/<name>``)
    holds ``document``; None when the name is not ours or the video file is missing. The
    print and the position come from the file names, never from the document alone."""
    frames_name = key.rsplit("/", 1)[-1]
    parsed = parse_video_name(frames_name)
    if parsed is None or not parsed.is_frames_file:
        return None
    video = video_file_name(parsed.print_id, parsed.index)
    size = size_of(video)
    if size is None:
        return None
    fps = _whole(document.get("fps"))
    count = _whole(document.get("frame_count"))
    frames = document.get("frames")
    layers = (
        [f.get("layer") for f in frames if isinstance(f, Mapping) and _whole(f.get("layer"))]
        if isinstance(frames, list)
        else []
    )
    grid_size = _whole(document.get("grid_size")) or 1
    row, col = (None, None) if parsed.index is None else divmod(parsed.index, grid_size)
    rendered = document.get("rendered_at")
    return {
        "print_id": parsed.print_id,
        "kind": parsed.kind,
        "index": parsed.index,
        "row": row,
        "col": col,
        "path": f"{day}/{video}",
        "metadata": key,
        "size_bytes": size,
        "width": _whole(document.get("width")),
        "height": _whole(document.get("height")),
        "fps": fps,
        "frame_count": count,
        "layers": layers,
        "hold_frames": _whole(document.get("hold_frames")) or 0,
        "duration_s": round(count / fps, 3) if count and fps else None,
        "rendered_at": rendered if isinstance(rendered, str) else None,
    }
