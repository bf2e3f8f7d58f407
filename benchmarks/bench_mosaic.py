"""The toolhead mosaic: stitching time per layer, and that it never runs with the head away.

* per layer, 3x3 and 5x5 grids of fake toolhead shots (640x480 at 16 px/mm and 1280x720 at
  32 px/mm, up to 1 mm placement noise) of tests/fixtures/prusa_mosaic.gcode: placing,
  registering the overlaps and the toolpath, blending (what the mosaic thread does), against
  a plain Pillow paste of the same shots at their nominal places in the same run; beside it
  the placement error against a direct drawing of the bed (median and maximum, px);
* the mosaic thread against a capture that takes the head away in the middle of a layer:
  stitching steps that started while the head was away (must be 0), and the longest step
  (the most stitching a capture starting mid-step can overlap).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from common import Row, measure, record
from mosaic_support import placement_errors, polylines, raster, scene, shots
from PIL import Image

from octoprint_layercapture.analysis.mosaic.layer import MosaicOptions
from octoprint_layercapture.analysis.mosaic.stitch import StitchOptions, Tile, stitch
from octoprint_layercapture.analysis.mosaic.worker import MosaicWorker
from octoprint_layercapture.cameras.mounting import CameraMounting
from octoprint_layercapture.cameras.toolhead import FakeToolheadOptions
from octoprint_layercapture.store.names import image_name, metadata_name, toolpath_name

BENCH = "mosaic"
NOISE = FakeToolheadOptions(placement_noise=1.0)
CAMERAS = {
    "640x480": CameraMounting("toolhead", 3.0, -2.0, 16.0, 2.0, False, 640, 480),
    "1280x720": CameraMounting("toolhead", 3.0, -2.0, 32.0, 2.0, False, 1280, 720),
}
GRIDS = {3: 15.0, 5: 9.0}


def paste(tiles: List[Tile], mounting: CameraMounting) -> Image.Image:
    """The baseline: every shot pasted where its nominal centre falls, nothing else."""
    s = mounting.scale
    xs = [t.head[0] for t in tiles]
    ys = [t.head[1] for t in tiles]
    w, h = mounting.image_width, mounting.image_height
    width = round((max(xs) - min(xs)) * s) + w
    height = round((max(ys) - min(ys)) * s) + h
    canvas = Image.new("RGB", (width, height))
    for tile in tiles:
        canvas.paste(
            tile.image, (round((tile.head[0] - min(xs)) * s), round((max(ys) - tile.head[1]) * s))
        )
    return canvas


def stitching_rows() -> None:
    of = scene(3, NOISE)
    lines = polylines(of)
    result: List[Any] = []
    for camera, mounting in CAMERAS.items():
        for size, spacing in GRIDS.items():
            tiles = shots(of, size, spacing, mounting, NOISE)
            runs = 3 if camera == "640x480" else 1

            def run(tiles: List[Tile] = tiles, mounting: CameraMounting = mounting) -> None:
                result[:] = [stitch(tiles, mounting, StitchOptions(), raster(lines))]

            timing = measure(run, runs=runs, warmup=0)
            baseline = measure(lambda t=tiles, m=mounting: paste(t, m), runs=5, warmup=1)
            errors = placement_errors(result[0], of)
            record(
                Row(
                    BENCH,
                    f"{size}x{size} layer, {camera} shots: stitch + register + blend (median)",
                    timing.median,
                    "s",
                    baseline="Pillow paste of the shots",
                    baseline_value=baseline.median,
                    ratio_of_baseline=True,
                    note="on the mosaic thread, after the head is back",
                )
            )
            record(
                Row(
                    BENCH,
                    f"{size}x{size} layer, {camera} shots: placement error vs a direct drawing, "
                    f"median (max {max(errors):.2f} px)",
                    statistics.median(errors),
                    "px",
                    target="<= 1 px median, <= 3 px max",
                )
            )


def write_layer(folder: Path, size: int) -> Path:
    of = scene(3)
    mounting = CAMERAS["640x480"]
    stamp = datetime.now().replace(microsecond=0)
    images = []
    for tile in shots(of, size, GRIDS[size], mounting):
        name = image_name(3, tile.index, 0.9, stamp)
        tile.image.save(folder / name, "JPEG", quality=90)
        x, y = tile.head
        images.append({"path": name, "index": tile.index, "position": {"x": x, "y": y}})
    toolpath = toolpath_name(3, stamp)
    (folder / toolpath).write_text(json.dumps({"polylines": polylines(of)}))
    meta = {
        "layer": 3,
        "images": images,
        "settings": {"camera_mounting": mounting.to_dict()},
        "toolpath": {"path": toolpath},
    }
    path = folder / metadata_name(3, stamp)
    path.write_text(json.dumps(meta))
    return path


def away_rows() -> None:
    """A capture takes the head away 0.3 s into the stitching, for 1 s."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_layer(Path(tmp), 5)
        away = threading.Event()
        steps: List[float] = []
        during: List[float] = []
        finished = threading.Event()

        def idle(timeout: float) -> bool:
            if away.is_set():
                time.sleep(min(timeout, 0.02))
                return False
            return True

        def pushed(data: dict) -> None:
            steps.append(time.monotonic())
            if away.is_set() and data.get("state") == "stitching":
                during.append(time.monotonic())

        worker = MosaicWorker(MosaicOptions, idle, lambda p: finished.set(), pushed)
        worker.start()
        worker.submit(path)
        time.sleep(0.3)
        away.set()
        time.sleep(1.0)
        started_away = len(during)  # the step under way when the head left pushes once
        away.clear()
        finished.wait(120)
        worker.stop()
    gaps = [b - a for a, b in zip(steps, steps[1:]) if b - a < 0.9]
    record(
        Row(
            BENCH,
            "stitching steps begun while a capture had the head away (5x5, 640x480)",
            max(0, started_away - 1),
            "steps",
            target="0",
            note="a step under way when the capture starts may finish (see the next row)",
        )
    )
    record(
        Row(
            BENCH,
            "longest stitching step (5x5, 640x480)",
            max(gaps) * 1000 if gaps else 0.0,
            "ms",
            note="the most a capture starting mid-step can overlap; the sequence adds 0",
        )
    )


def main() -> None:
    stitching_rows()
    away_rows()


if __name__ == "__main__":
    main()
