"""Image pipeline figures for a 1920x1080 camera JPEG.

* thumbnail: JPEG draft mode (what storage.make_thumbnail does) against a full decode of
  the same image in the same run;
* the printer's path per image: what the capture sequence waits for once the camera's
  bytes are there (StoreSink.save: names + queue) against writing image and thumbnail
  right there (how it was before the background writer);
* the writer thread's work per image (atomic write with fsync, thumbnail, its write),
  and the flip/rotate re-encode that only webcams set to be flipped or rotated need.
"""

from __future__ import annotations

import io
import random
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import Row, measure, record
from PIL import Image, ImageDraw

from octoprint_layercapture.cameras.base import Transform
from octoprint_layercapture.capture.ports import ShotRequest, Snapshot
from octoprint_layercapture.settings import validate
from octoprint_layercapture.store.files import CaptureStore, make_thumbnail
from octoprint_layercapture.store.writer import ImageWriter, StoreSink

BENCH = "images"
SIZE = (1920, 1080)
THUMB = (320, 240)


def camera_jpeg(size: Tuple[int, int] = SIZE, quality: int = 85) -> bytes:
    """Gradients, shapes and sensor-like noise: compresses like a webcam frame."""
    rng = random.Random(7)
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(400):
        x, y, r = rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(5, 80)
        fill = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    image = Image.blend(image, Image.effect_noise(size, 30).convert("RGB"), 0.12)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def full_decode_thumbnail(jpeg: bytes, max_size: Tuple[int, int] = THUMB) -> bytes:
    """The same thumbnail without draft mode: every pixel decoded."""
    with Image.open(io.BytesIO(jpeg)) as source:
        image = source.convert("RGB")
        image.thumbnail(max_size)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
    return out.getvalue()


def main() -> None:
    data = camera_jpeg()
    print(f"  camera JPEG: {SIZE[0]}x{SIZE[1]}, {len(data) / 1024:.0f} KiB")
    assert Image.open(io.BytesIO(make_thumbnail(data))).size == (320, 180)

    draft = measure(lambda: make_thumbnail(data), runs=30)
    full = measure(lambda: full_decode_thumbnail(data), runs=30)
    record(
        Row(
            BENCH,
            "thumbnail of a 1920x1080 JPEG, draft mode (median)",
            draft.median * 1000,
            "ms",
            baseline="full decode",
            baseline_value=full.median * 1000,
            target="faster than a full decode",
        )
    )

    settings = validate({"create_thumbnails": True})
    request = ShotRequest(3, 0.6, 0, 9, 100.0, 100.0, 5.6)
    snapshot = Snapshot(data, "image/jpeg", 0.0, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        store = CaptureStore(Path(tmp))
        clock = iter(datetime(2024, 1, 15, 10, 0) + timedelta(seconds=i) for i in range(10**6))

        # before: the capture sequence wrote image and thumbnail itself
        def synchronous() -> None:
            store.save_image(3, 0, 0.6, next(clock), data, thumbnail=True)

        writer = ImageWriter()  # not started: submit runs the job here, to time it alone
        sink = StoreSink(store, settings, writer)

        def background_job() -> None:
            sink.save(request, snapshot, next(clock))

        sync = measure(synchronous, runs=30)
        job = measure(background_job, runs=30)

        # the printer's path now: the writer thread runs, save() only queues
        writer.start()
        sink = StoreSink(store, settings, writer)
        path_cost = measure(lambda: sink.save(request, snapshot, next(clock)), runs=30)
        writer.stop(timeout=120)

        transform = Transform(flip_h=True, rotate90=True)
        rotate = measure(lambda: transform.apply(data, 90), runs=10)

    record(
        Row(
            BENCH,
            "printer path per image after the bytes arrive (queue for the writer, median)",
            path_cost.median * 1000,
            "ms",
            baseline="write + thumbnail on the printer path",
            baseline_value=sync.median * 1000,
            target="< 1 ms",
        )
    )
    record(
        Row(
            BENCH,
            "writer thread per image: atomic write + draft thumbnail + write (median)",
            job.median * 1000,
            "ms",
            note="off the printer path; includes fsync of image and thumbnail",
        )
    )
    record(
        Row(
            BENCH,
            "flip + rotate re-encode per image, only for webcams set so (median)",
            rotate.median * 1000,
            "ms",
            note="on the writer thread",
        )
    )


if __name__ == "__main__":
    main()
