"""Gallery listing with 10,000 captured images, through a real OctoPrint server.

Builds a capture folder like the plugin writes it (10 prints of 112 layers, 3 x 3 grid:
10,080 images, their thumbnails and 1,120 metadata files), starts OctoPrint on it and
times the gallery API:

* ``GET /prints``: the tab's first page of prints;
* every image record: one ``GET /prints/<id>/layers?limit=2000`` per print (10 requests,
  10,080 image records);

against the same answers when the capture folder is walked for each request (``POST
/gallery/rescan`` before each, i.e. what a route without the index does). The start-up
index build is timed in-process.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "support"))

from common import Row, machine_summary, measure, record  # noqa: E402
from gallery_tree import build_tree  # noqa: E402
from harness import OctoPrintServer  # noqa: E402

from octoprint_layercapture.store.index import CaptureIndex  # noqa: E402

IMAGES = 10_000
PRINTS = 10
TARGET_MS = 200.0
BASE = "/plugin/layercapture"


def main() -> int:
    print(f"machine: {machine_summary()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lc-bench-gallery-") as tmp:
        server = OctoPrintServer(Path(tmp) / "octoprint", name="bench-gallery")
        server.prepare()
        root = server.uploads_dir / "layercapture"
        started = time.perf_counter()
        built = build_tree(root, images=IMAGES, prints=PRINTS)
        images = sum(len(p.images) for p in built)
        files = sum(len(p.images) + len(p.thumbnails) + len(p.metadata) for p in built)
        print(
            f"  tree: {images} images, {files} files in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        index = CaptureIndex(root)
        build = measure(index.rebuild, runs=5, warmup=1)
        record(
            Row(
                "gallery",
                f"index build at start-up ({images} images, {files} files)",
                build.median * 1000,
                "ms",
                note="once per start or rescan",
            )
        )

        server.start()
        try:
            http = server._http  # the admin's keep-alive session, like a browser's

            def get(path: str) -> dict:
                response = http.get(
                    server.url + path, headers={"X-Api-Key": server.admin_key}, timeout=60
                )
                response.raise_for_status()
                return response.json()

            listing = get(f"{BASE}/prints?limit=100")
            assert listing["total"] == PRINTS, listing["total"]
            ids = [p["id"] for p in listing["prints"]]

            def first_page() -> None:
                get(f"{BASE}/prints?limit=20")

            def every_image() -> None:
                count = 0
                for pid in ids:
                    page = get(f"{BASE}/prints/{pid}/layers?limit=2000")
                    count += sum(len(layer["images"]) for layer in page["layers"])
                assert count == images, count

            def rescan() -> None:
                response = http.post(
                    server.url + f"{BASE}/gallery/rescan",
                    headers={"X-Api-Key": server.admin_key},
                    json={},
                    timeout=120,
                )
                response.raise_for_status()

            def walked(fn: Callable[[], None]) -> Callable[[], None]:
                def run() -> None:
                    rescan()
                    fn()

                return run

            for name, fn, runs in (
                (f"GET /prints, first page ({images} images on disk)", first_page, 30),
                (f"every image record: {len(ids)} x GET layers ({images} images)", every_image, 10),
            ):
                indexed = measure(fn, runs=runs)
                baseline = measure(walked(fn), runs=5, warmup=1)
                record(
                    Row(
                        "gallery",
                        name,
                        indexed.median * 1000,
                        "ms",
                        baseline="walking the folder per request",
                        baseline_value=baseline.median * 1000,
                        target=f"< {TARGET_MS:g} ms",
                        note=f"p95 {indexed.p95 * 1000:.1f} ms",
                    )
                )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
