"""One captured layer's mosaic, made from its files alone, and its metadata record.

A layer whose metadata says the first camera rode on the toolhead
(``settings.camera_mounting``) is stitched from that camera's images, each placed by the
head's measured position (the commanded one where none was measured), registered to its
neighbours and to the layer's toolpath file; the mosaic (JPEG), the toolpath overlay and
the departure map (PNGs, on the mosaic's lattice) are written beside the metadata under
:func:`store.names.mosaic_name`, and the metadata's ``mosaic`` record is rewritten
atomically (docs/metadata.md). Without numpy the record says what the analysis extra
would add. Importable without numpy.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

from PIL import Image

from ...cameras.mounting import CameraMounting, parse_mounting
from ...numbers import finite_number
from ...store.files import write_atomic
from ...store.names import mosaic_name, parse_image_name, parse_metadata_name
from ...store.records import read_metadata
from . import NEEDS_NUMPY, numpy_available

if TYPE_CHECKING:  # settings.py is pure too; for the annotations only
    from ...settings import CaptureSettings

_logger = logging.getLogger("octoprint.plugins.layercapture.analysis.mosaic")

PENDING, DONE, FAILED, UNAVAILABLE = "pending", "done", "failed", "unavailable"


@dataclass(frozen=True)
class MosaicOptions:
    max_correction: float = 1.5  # mm
    warning_score: float = 0.02  # 0: never warn
    quality: int = 90
    file_mode: int = 0o644


def options_from(values: CaptureSettings) -> MosaicOptions:
    return MosaicOptions(
        values.mosaic_max_correction, values.departure_warning_score, values.image_quality
    )


def toolhead_mounting(meta: Mapping[str, Any]) -> Optional[CameraMounting]:
    """The layer's camera mounting when it rode on the toolhead, else None."""
    settings = meta.get("settings")
    raw = settings.get("camera_mounting") if isinstance(settings, Mapping) else None
    if not isinstance(raw, Mapping):
        return None
    mounting, errors = parse_mounting(raw)
    return mounting if mounting.on_toolhead and not errors else None


def _head(image: Mapping[str, Any]) -> Optional[tuple]:  # type: ignore[type-arg]
    for key in ("measured", "position"):
        place = image.get(key)
        if isinstance(place, Mapping):
            x = finite_number(place.get("x"), text=False)
            y = finite_number(place.get("y"), text=False)
            if x is not None and y is not None:
                return (x, y)
    return None


def _toolpath(folder: Path, meta: Mapping[str, Any]) -> Optional[List[Dict[str, Any]]]:
    """The layer's polylines from its toolpath file (None: no usable file)."""
    record = meta.get("toolpath")
    name = record.get("path") if isinstance(record, Mapping) else None
    if not isinstance(name, str) or "/" in name or not name.endswith(".json"):
        return None
    try:
        with open(folder / name, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    lines = document.get("polylines") if isinstance(document, Mapping) else None
    return [p for p in lines if isinstance(p, dict)] if isinstance(lines, list) else None


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


def make_mosaic(
    metadata_path: Path,
    options: MosaicOptions,
    checkpoint: Callable[[], None] = lambda: None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Optional[Dict[str, Any]]:
    """The ``mosaic`` record of the layer whose metadata is at ``metadata_path``, its files
    written; None when the layer was not taken by a toolhead camera. Raises OSError and
    ValueError when the layer's files cannot be read."""
    meta = read_metadata(metadata_path)
    mounting = toolhead_mounting(meta)
    if mounting is None:
        return None
    started = time.monotonic()
    record: Dict[str, Any] = {
        "status": FAILED,
        "error": None,
        "started_at": datetime.now().isoformat(timespec="milliseconds"),
    }
    if not numpy_available():
        record.update(status=UNAVAILABLE, error=NEEDS_NUMPY)
        return record
    from .departure import departure_map, heat_overlay  # numpy from here on
    from .registration import grey
    from .stitch import StitchOptions, Tile, stitch

    folder = metadata_path.parent
    tiles = []
    for raw in meta.get("images") or []:
        name = raw.get("path") if isinstance(raw, Mapping) else None
        parsed = None if not isinstance(name, str) else parse_image_name(name)
        head = _head(raw) if isinstance(raw, Mapping) else None
        # only the first camera's shots (the one camera_mounting describes): the other
        # cameras' names carry _cam_<name>
        if parsed is None or parsed.is_thumbnail or parsed.camera or head is None:
            continue
        with Image.open(folder / str(name)) as picture:
            tiles.append(Tile(parsed.index, picture.convert("RGB"), head))
    if not tiles:
        record["error"] = "the layer has no images to stitch"
        return record
    polylines = _toolpath(folder, meta)

    def raster(lattice: Any) -> Any:
        import numpy as np

        from .overlay import draw_extrusion

        drawn = draw_extrusion(polylines or [], lattice.rect, lattice.scale, lattice.size)
        return np.asarray(drawn, dtype=np.float64)

    try:
        mosaic = stitch(
            tiles,
            mounting,
            StitchOptions(max_correction=options.max_correction),
            raster if polylines else None,
            checkpoint,
            progress,
        )
    except ValueError as exc:
        record["error"] = str(exc)
        return record
    departure = None
    if polylines:
        departure = departure_map(grey(mosaic.image), mosaic.coverage, mosaic.lattice, polylines)
    when = _when(metadata_path)
    layer = int(meta.get("layer") or 0)
    names = {part: mosaic_name(layer, when, part) for part in ("image", "toolpath", "departure")}
    out = io.BytesIO()
    mosaic.image.save(out, "JPEG", quality=options.quality)
    write_atomic(folder / names["image"], out.getvalue(), options.file_mode)
    if polylines:
        from .overlay import toolpath_overlay

        lattice = mosaic.lattice
        overlay = toolpath_overlay(polylines, lattice.rect, lattice.scale, lattice.size)
        write_atomic(folder / names["toolpath"], _png(overlay), options.file_mode)
    if departure is not None and departure.error is None:
        heat = heat_overlay(departure, mosaic.lattice)
        write_atomic(folder / names["departure"], _png(heat), options.file_mode)
    record.update(_done(mosaic, departure, names, options, polylines is not None))
    record["seconds"] = round(time.monotonic() - started, 3)
    record["finished_at"] = datetime.now().isoformat(timespec="milliseconds")
    return record


def _when(metadata_path: Path) -> datetime:
    parsed = parse_metadata_name(metadata_path.name)
    when = None if parsed is None else parsed.when
    if when is None:
        raise ValueError(f"{metadata_path.name} is not a layer's metadata file")
    return when


def _done(
    mosaic: Any,
    departure: Any,
    names: Mapping[str, str],
    options: MosaicOptions,
    has_toolpath: bool,
) -> Dict[str, Any]:
    lattice = mosaic.lattice
    min_x, min_y, max_x, max_y = lattice.rect
    judged = departure is not None and departure.error is None
    summary: Dict[str, Any] = (
        departure.to_dict()
        if departure is not None
        else {"score": None, "regions": [], "error": "the layer's toolpath is not known"}
    )
    summary["warning_score"] = options.warning_score
    summary["warning"] = bool(
        judged
        and options.warning_score > 0
        and departure.regions
        and departure.score >= options.warning_score
    )
    return {
        "status": DONE,
        "path": names["image"],
        "toolpath_overlay": names["toolpath"] if has_toolpath else None,
        "departure_overlay": names["departure"] if judged else None,
        "extent": {
            "min_x": round(min_x, 4),
            "min_y": round(min_y, 4),
            "max_x": round(max_x, 4),
            "max_y": round(max_y, 4),
        },
        "px_per_mm": round(lattice.scale, 4),
        "width": lattice.size[0],
        "height": lattice.size[1],
        "tiles": [p.to_dict() for p in mosaic.placements],
        "registration": mosaic.registration(),
        "departure": summary,
    }


def save_record(metadata_path: Path, record: Mapping[str, Any], file_mode: int = 0o644) -> bool:
    """The layer's metadata with ``record`` as its ``mosaic``, written atomically; False when
    the metadata is gone (the layer was deleted meanwhile)."""
    try:
        meta = read_metadata(metadata_path)
    except FileNotFoundError:
        return False
    meta["mosaic"] = dict(record)
    text = json.dumps(meta, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_atomic(metadata_path, text.encode("utf-8"), file_mode)
    return True


def remove_files(metadata_path: Path, record: Mapping[str, Any]) -> None:
    """Deletes the files a record names (a layer deleted while it was stitched)."""
    for key in ("path", "toolpath_overlay", "departure_overlay"):
        name = record.get(key)
        if isinstance(name, str) and "/" not in name:
            try:
                (metadata_path.parent / name).unlink()
            except FileNotFoundError:
                continue


def failed(error: str) -> Dict[str, Any]:
    return {"status": FAILED, "error": error}
