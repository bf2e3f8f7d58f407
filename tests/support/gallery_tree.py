"""Builds capture folders like the plugin writes them, for gallery tests and benchmarks.

Names and metadata come from the plugin's own storage module, so a tree built here is
what a real capture leaves on disk (minus the time it takes): day folders, images,
thumbnails and one metadata file per layer. Files are written plainly (no fsync): a
10,000-image tree takes a few seconds.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import List, Optional

from PIL import Image

from octoprint_layercapture.store.names import day_folder, image_name, metadata_name, thumbnail_name
from octoprint_layercapture.store.records import ImageRecord, LayerMetadata, SkippedRecord


def small_jpeg(colour: tuple = (40, 120, 200), size: tuple = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=80)
    return out.getvalue()


@dataclass(frozen=True)
class BuiltPrint:
    gcode_file: str
    start: datetime
    layers: List[int]
    metadata: List[Path]
    images: List[Path]
    thumbnails: List[Path]


def build_print(
    root: Path,
    gcode_file: str,
    start: datetime,
    layers: int,
    grid_size: int = 3,
    every_n: int = 3,
    layer_height: float = 0.2,
    layer_seconds: float = 30.0,
    image: Optional[bytes] = None,
    thumbnails: bool = True,
    skip_index: Optional[int] = None,
) -> BuiltPrint:
    """Writes ``layers`` captured layers (layer numbers every_n, 2*every_n, ...)."""
    data = image or small_jpeg()
    thumb = small_jpeg((200, 120, 40), (32, 24))
    built = BuiltPrint(gcode_file, start, [], [], [], [])
    spacing = 20.0
    for k in range(1, layers + 1):
        layer = k * every_n
        z = round(layer * layer_height, 2)
        when = start + timedelta(seconds=layer * layer_seconds)
        folder = day_folder(root, when)
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        skipped = []
        for index in range(grid_size * grid_size):
            row, col = divmod(index, grid_size)
            half = (grid_size - 1) // 2
            x, y = 100.0 + (col - half) * spacing, 100.0 + (row - half) * spacing
            if index == skip_index:
                skipped.append(
                    SkippedRecord(index, {"x": x, "y": y, "z": z + 5}, "X is beyond bed max X")
                )
                continue
            name = image_name(layer, index, z, when)
            (folder / name).write_bytes(data)
            built.images.append(folder / name)
            thumb_name = None
            if thumbnails:
                thumb_name = thumbnail_name(name)
                (folder / thumb_name).write_bytes(thumb)
                built.thumbnails.append(folder / thumb_name)
            records.append(
                ImageRecord(
                    path=name,
                    position={"x": x, "y": y, "z": z + 5.0},
                    index=index,
                    thumbnail=thumb_name,
                    row=row,
                    col=col,
                    measured={"x": x, "y": y, "z": z + 5.0, "e": 10.0},
                    captured_at=when.isoformat(timespec="seconds"),
                    duration_s=0.05,
                    camera="fake",
                    size_bytes=len(data),
                )
            )
        meta = LayerMetadata(
            layer=layer,
            z_height=z,
            timestamp=when.isoformat(timespec="seconds"),
            gcode_file=gcode_file,
            print_start_time=start.isoformat(timespec="seconds"),
            images=records,
            settings={
                "grid_spacing": spacing,
                "grid_center": {"x": 100.0, "y": 100.0},
                "grid_size": grid_size,
                "z_offset": 5.0,
                "stop_mode": "pause",
            },
            capture_z=z + 5.0,
            camera="fake",
            skipped=skipped,
            timings={"stop": 0.1, "moves": 0.5, "capture": 0.3, "total": 1.2},
            trigger={"source": "motion", "reasons": [f"every {every_n} layers"]},
            plugin_version="bench",
        )
        path = folder / metadata_name(layer, when)
        path.write_bytes(meta.to_json())
        built.metadata.append(path)
        built.layers.append(layer)
    return built


def build_tree(
    root: Path, images: int, prints: int = 10, grid_size: int = 3, thumbnails: bool = True
) -> List[BuiltPrint]:
    """About ``images`` images spread evenly over ``prints`` prints on different days."""
    per_layer = grid_size * grid_size
    layers = max(1, math.ceil(images / per_layer / prints))
    start = datetime(2024, 1, 1, 9, 0, 0)
    return [
        build_print(
            root,
            f"part_{p:03d}.gcode",
            start + timedelta(days=p, minutes=p),
            layers,
            grid_size=grid_size,
            thumbnails=thumbnails,
        )
        for p in range(prints)
    ]
