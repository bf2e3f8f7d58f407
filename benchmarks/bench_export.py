"""Memory of a dataset export (``GET export/<id>.zip``): flat, whatever the print's size.

Builds a print like the plugin writes it (3 x 3 grid, 48 KB camera images) of 1,000 and of
10,000 images, indexes it as the gallery does, and reads its dataset zip to the end a block
at a time, as the download route does (downloads.dataset_body + ZipBody.read). Measured with
tracemalloc (every Python allocation of the export, the index excluded) and the process's
peak RSS, against the same zip built in memory (zipfile into a BytesIO), in the same run.

The images are never held: what grows with the print is about 1 KB per file, the zip's
table of contents (its central directory, which every zip writer keeps until the end) and
the list of files to send. The budget holds a 10,000-image export to that.
"""

from __future__ import annotations

import gc
import io
import resource
import sys
import tempfile
import time
import tracemalloc
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Tuple

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from common import Row, machine_summary, record  # noqa: E402
from gallery_tree import build_print  # noqa: E402

from octoprint_layercapture.store.index import CaptureIndex  # noqa: E402
from octoprint_layercapture.web import downloads  # noqa: E402

BENCH = "dataset export"
BUDGET_MB = 32.0  # traced peak of a 10,000-image export


def camera_jpeg() -> bytes:
    """About 48 KB, like a small webcam frame (noise does not compress)."""
    import random

    rng = random.Random(1)
    image = Image.new("RGB", (320, 240))
    image.putdata([(rng.randrange(256), rng.randrange(256), 90) for _ in range(320 * 240)])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def export(index: CaptureIndex, pid: str) -> Tuple[float, int, float]:
    """(traced peak MB, zip bytes, seconds) of reading the whole dataset zip."""
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    body = downloads.dataset_body(index, pid, "dataset", "bench", datetime(2024, 2, 1))
    assert body is not None
    total = 0
    while True:
        block = body.read()
        if not block:
            break
        total += len(block)
    seconds = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == body.size
    return peak / 2**20, total, seconds


def in_memory(index: CaptureIndex, pid: str) -> float:
    """Traced peak MB of the naive way: the same files zipped into a BytesIO."""
    gc.collect()
    tracemalloc.start()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for relative, path in index.print_files(pid) or []:
            archive.write(path, f"dataset/{relative}")
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    print(f"machine: {machine_summary()}", flush=True)
    image = camera_jpeg()
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="lc-bench-export-") as tmp:
        for images in (1_000, 10_000):
            root = Path(tmp) / f"captures-{images}"
            layers = -(-images // 9)
            build_print(
                root,
                "bench.gcode",
                datetime(2024, 1, 1, 9, 0),
                layers,
                image=image,
                thumbnails=False,
            )
            index = CaptureIndex(root)
            (summary,) = index.prints().items
            peak, size, seconds = export(index, summary["id"])
            peaks[images] = peak
            print(
                f"  {summary['image_count']} images: zip {size / 2**20:.0f} MB in {seconds:.1f} s, "
                f"traced peak {peak:.1f} MB, process peak RSS so far {rss_mb():.0f} MB",
                flush=True,
            )
            if images == 10_000:
                naive = in_memory(index, summary["id"])
                record(
                    Row(
                        BENCH,
                        f"traced peak memory, {summary['image_count']:,} images "
                        f"({size / 2**20:.0f} MB zip)",
                        peak,
                        "MB",
                        "the same zip built in memory",
                        naive,
                        target=f"< {BUDGET_MB:g} MB",
                        ratio_of_baseline=True,
                    )
                )
                record(
                    Row(
                        BENCH,
                        "export throughput (10,000 images, one thread)",
                        size / 2**20 / seconds,
                        "MB/s",
                    )
                )
    record(
        Row(
            BENCH,
            "traced peak per extra image, 1,000 -> 10,000 images",
            (peaks[10_000] - peaks[1_000]) * 1024 / 9_000,
            "KB",
            note="the zip's table of contents; image bytes are never held",
        )
    )
    if peaks[10_000] > BUDGET_MB:
        raise SystemExit(f"export peak {peaks[10_000]:.1f} MB is over the {BUDGET_MB:g} MB budget")


if __name__ == "__main__":
    main()
