"""What the gallery keeps of one layer's metadata file, and of a video's frames file: JSON-ready
records.

Pure module. Only images whose names follow the storage patterns and that exist as regular
files are kept, with paths relative to the capture folder (``<day>/<name>``): the gallery
never learns, and so never serves, a path taken from a metadata file as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..numbers import finite_number
from .names import (
    is_camera_name,
    is_mosaic_name,
    is_toolpath_name,
    parse_image_name,
    parse_metadata_name,
    parse_video_name,
    thumbnail_name,
    video_name,
)

SizeOf = Callable[[str], Optional[int]]  # file name in the day folder -> bytes, None: absent


def _number(value: Any) -> Optional[float]:
    return finite_number(value, text=False)


def _position(value: Any) -> Optional[Dict[str, Optional[float]]]:
    if not isinstance(value, Mapping):
        return None
    return {axis: _number(value.get(axis)) for axis in ("x", "y", "z", "e") if axis in value}


def _camera_name(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and is_camera_name(value) else None


def layer_cameras(meta: Mapping[str, Any], images: List[Dict[str, Any]]) -> List[str]:
    """The layer's camera names: those the metadata lists (settings order), then any other
    an image names; ``[""]`` for a layer of one unnamed camera (metadata before several
    cameras were possible)."""
    raw = meta.get("cameras")
    listed = raw if isinstance(raw, list) else []
    names = [
        n for n in (_camera_name(c.get("name")) for c in listed if isinstance(c, Mapping)) if n
    ]
    for image in images:
        if image["camera"] not in names:
            names.append(image["camera"])
    return list(dict.fromkeys(names)) or [""]


def layer_record(key: str, day: str, meta: Mapping[str, Any], size_of: SizeOf) -> Dict[str, Any]:
    """The gallery's record of metadata ``meta`` stored as ``key`` (``<day>/<file>``).

    ``size_of`` answers for files of the day folder; ``size_bytes`` counts the images and
    thumbnails (the caller adds the metadata file). Kept small: a listing of 10,000 images
    carries one of these per layer. Each image names its ``camera`` (``""`` in metadata
    that does not say: one camera), the layer its ``cameras`` in order.
    """
    raw_settings = meta.get("settings")
    settings: Mapping[str, Any] = raw_settings if isinstance(raw_settings, Mapping) else {}
    grid_size = settings.get("grid_size")
    if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 1:
        grid_size = 1
    images: List[Dict[str, Any]] = []
    total = 0
    seen = set()
    for raw in meta.get("images") or []:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("path"), str):
            continue
        parsed = parse_image_name(raw["path"])
        if parsed is None or parsed.is_thumbnail or raw["path"] in seen:
            continue  # only our own names: nothing else is ever served
        size = size_of(raw["path"])
        if size is None:
            continue  # deleted or never written
        seen.add(raw["path"])
        thumb = thumbnail_name(raw["path"])
        thumb_size = size_of(thumb)
        index = parsed.index
        row, col = raw.get("row"), raw.get("col")
        if not isinstance(row, int) or not isinstance(col, int):
            row, col = divmod(index, grid_size)
        camera = _camera_name(raw.get("camera_name")) or parsed.camera or ""
        # what the gallery grid needs; the rest is read from the metadata file on demand
        images.append(
            {
                "index": index,
                "row": row,
                "col": col,
                "path": f"{day}/{raw['path']}",
                "thumbnail": None if thumb_size is None else f"{day}/{thumb}",
                "position": _position(raw.get("position")),
                "size_bytes": size,
                "camera": camera,
            }
        )
        total += size + (thumb_size or 0)
    cameras = layer_cameras(meta, images)
    order = {name: number for number, name in enumerate(cameras)}
    images.sort(key=lambda i: (int(i["index"]), order.get(i["camera"], 0)))
    failures = [
        {
            "index": f.get("index"),
            "phase": f.get("phase"),
            "message": f.get("message"),
            "camera": _camera_name(f.get("camera")),
        }
        for f in meta.get("failures") or []
        if isinstance(f, Mapping)
    ]
    skipped = [
        {"index": s.get("index"), "reason": s.get("reason")}
        for s in meta.get("skipped") or []
        if isinstance(s, Mapping)
    ]
    # the toolpath files (schema version 2), under our own names only, when present
    raw_toolpath = meta.get("toolpath")
    toolpath: Mapping[str, Any] = raw_toolpath if isinstance(raw_toolpath, Mapping) else {}
    toolpath_files: Dict[str, Optional[str]] = {}
    for kind in ("path", "svg"):
        name = toolpath.get(kind)
        size = size_of(name) if isinstance(name, str) and is_toolpath_name(name) else None
        toolpath_files[kind] = None if size is None else f"{day}/{name}"
        total += size or 0
    mosaic_files, mosaic = _mosaic(meta.get("mosaic"), day, size_of)
    total += sum(size for _, size in mosaic_files.values())
    raw_timings = meta.get("timings")
    timings: Mapping[str, Any] = raw_timings if isinstance(raw_timings, Mapping) else {}
    start = meta.get("print_start_time")
    layer_number = meta.get("layer")
    if not isinstance(layer_number, int) or isinstance(layer_number, bool):
        layer_number = parse_metadata_name(key.rsplit("/", 1)[1]).layer  # type: ignore[union-attr]
    return {
        "metadata": key,
        "layer": layer_number,
        "z_height": _number(meta.get("z_height")),
        "capture_z": _number(meta.get("capture_z")),
        "timestamp": meta.get("timestamp") if isinstance(meta.get("timestamp"), str) else None,
        "gcode_file": meta.get("gcode_file") if isinstance(meta.get("gcode_file"), str) else "",
        "print_start_time": start if isinstance(start, str) else None,
        "grid_size": grid_size,
        "camera": meta.get("camera") if isinstance(meta.get("camera"), str) else "",
        "cameras": cameras,
        "images": images,
        "skipped": skipped,
        "failures": failures,
        "total_s": _number(timings.get("total")),
        "size_bytes": total,
        "toolpath": toolpath_files["path"],
        "toolpath_svg": toolpath_files["svg"],
        "mosaic": mosaic_files["path"][0],
        "mosaic_toolpath": mosaic_files["toolpath_overlay"][0],
        "mosaic_departure": mosaic_files["departure_overlay"][0],
        "mosaic_info": mosaic,
    }


def _mosaic(
    raw: Any, day: str, size_of: Callable[[str], Optional[int]]
) -> Tuple[Dict[str, Tuple[Optional[str], int]], Optional[Dict[str, Any]]]:
    """A toolhead layer's mosaic files (ours only, when present) and what the gallery
    shows of its record: state, extent, score, warning, regions, the error."""
    record: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    files: Dict[str, Tuple[Optional[str], int]] = {}
    for kind in ("path", "toolpath_overlay", "departure_overlay"):
        name = record.get(kind)
        size = size_of(name) if isinstance(name, str) and is_mosaic_name(name) else None
        files[kind] = (None, 0) if size is None else (f"{day}/{name}", size)
    if not record:
        return files, None
    raw_departure = record.get("departure")
    departure: Mapping[str, Any] = raw_departure if isinstance(raw_departure, Mapping) else {}
    raw_regions = departure.get("regions")
    regions: List[Any] = raw_regions if isinstance(raw_regions, list) else []
    status = record.get("status")
    raw_extent = record.get("extent")
    extent: Optional[Mapping[str, Any]] = raw_extent if isinstance(raw_extent, Mapping) else None
    return files, {
        "status": status if isinstance(status, str) else None,
        "extent": None if extent is None else {k: _number(extent.get(k)) for k in _EXTENT},
        "score": _number(departure.get("score")),
        "warning": departure.get("warning") is True,
        "regions": [_region(r) for r in regions[:20] if isinstance(r, Mapping)],
        "error": record.get("error") if isinstance(record.get("error"), str) else None,
    }


_EXTENT = ("min_x", "min_y", "max_x", "max_y")
_REGION_KINDS = ("unprinted", "unexpected")


def _region(raw: Mapping[str, Any]) -> Dict[str, Any]:
    """A departure region as numbers and a known kind only (the file is not trusted)."""
    raw_centre = raw.get("center")
    centre: Mapping[str, Any] = raw_centre if isinstance(raw_centre, Mapping) else {}
    kind = raw.get("kind")
    return {
        "kind": kind if kind in _REGION_KINDS else None,
        "center": {"x": _number(centre.get("x")), "y": _number(centre.get("y"))},
        "area_mm2": _number(raw.get("area_mm2")),
    }


def _whole(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def video_record(
    key: str, day: str, document: Mapping[str, Any], size_of: SizeOf
) -> Optional[Dict[str, Any]]:
    """The gallery's record of the video whose frames file ``key`` (``<day>/<name>``) holds
    ``document`` (see ``analysis.video.files``); None when the name is not ours or the
    video file is missing. The print and the position come from the file names, never from
    the document alone; the camera too, but for the first camera (whose names carry none):
    its name is the document's ``camera``."""
    parsed = parse_video_name(key.rsplit("/", 1)[-1])
    if parsed is None or not parsed.is_frames_file:
        return None
    video = video_name(parsed.print_id, parsed.index, parsed.camera)
    size = size_of(video)
    if size is None:
        return None
    fps = _whole(document.get("fps"))
    count = _whole(document.get("frame_count"))
    frames = document.get("frames")
    layers = [
        f["layer"]
        for f in (frames if isinstance(frames, list) else [])
        if isinstance(f, Mapping) and _whole(f.get("layer")) is not None
    ]
    grid_size = _whole(document.get("grid_size")) or 1
    row, col = (None, None) if parsed.index is None else divmod(parsed.index, max(1, grid_size))
    rendered = document.get("rendered_at")
    return {
        "print_id": parsed.print_id,
        "kind": parsed.kind,
        "index": parsed.index,
        "camera": parsed.camera or _camera_name(document.get("camera")) or "",
        "first_camera": parsed.camera is None,
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


@dataclass
class PrintEntry:
    """One print's indexed layers, with its ordering and summary cached until a change."""

    id: str
    gcode_file: str
    print_start_time: Optional[str]
    layers: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # metadata path -> layer
    encoded: Dict[str, str] = field(default_factory=dict)  # metadata path -> layer as JSON
    _ordered: Optional[List[Dict[str, Any]]] = None
    _summary: Optional[Dict[str, Any]] = None

    def changed(self) -> None:
        self._ordered = None
        self._summary = None

    def ordered(self) -> List[Dict[str, Any]]:
        if self._ordered is None:
            self._ordered = sorted(
                self.layers.values(),
                key=lambda d: (d["layer"], d["timestamp"] or "", d["metadata"]),
            )
        return self._ordered

    def summary(self) -> Dict[str, Any]:
        if self._summary is None:
            layers = self.ordered()
            stamps = [d["timestamp"] for d in layers if d["timestamp"]]
            cover = next(
                (i for d in layers for i in d["images"] if i["thumbnail"] or i["path"]), None
            )
            self._summary = {
                "id": self.id,
                "gcode_file": self.gcode_file,
                "print_start_time": self.print_start_time,
                "first_capture": min(stamps) if stamps else None,
                "last_capture": max(stamps) if stamps else None,
                "layer_count": len(layers),
                "image_count": sum(len(d["images"]) for d in layers),
                "cameras": list(dict.fromkeys(name for d in layers for name in d["cameras"])),
                "failure_count": sum(len(d["failures"]) for d in layers),
                "size_bytes": sum(d["size_bytes"] for d in layers),
                "cover": None if cover is None else (cover["thumbnail"] or cover["path"]),
            }
        return self._summary
