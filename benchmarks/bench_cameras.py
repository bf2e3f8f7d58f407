"""Several cameras at each position (issue 18), on a real OctoPrint with its virtual printer.

The same 3x3 print (hold mode, no settle delays) with 1, 2 and 3 cameras behind local
snapshot URLs that each answer after ``LATENCY_S`` (tests/support/harness/camera_servers.py,
``/slow``), all in the same run. The cameras of a position are taken at the same time, so
the time per grid point with 3 cameras should stay close to one camera's (target: within
1.3x), where one after the other would be about 3x. Time per point: the layer's sequence
time (metadata ``timings.total``) over its 9 points, median of the captured layers; and the
capture phase alone (``timings.capture``) per point.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_sequence import capture_print  # noqa: E402
from common import Row, record  # noqa: E402
from harness import OctoPrintServer  # noqa: E402
from harness.camera_servers import SnapshotServer  # noqa: E402

from octoprint_layercapture.camera_settings import camera_entry  # noqa: E402

BENCH = "several cameras"
LATENCY_S = 0.2  # each camera's answer time
POINTS = 9


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lc-bench-cameras-"))
    server = OctoPrintServer(
        work / "octoprint", virtual_printer={"simulated_errors": []}, name="bench-cameras"
    )
    server.start()
    server.connect()
    per_point: Dict[int, float] = {}
    try:
        with SnapshotServer() as snapshots:
            for count in (1, 2, 3):
                cameras = [
                    camera_entry(
                        name="main" if n == 0 else f"cam{n + 1}",
                        type="snapshot",
                        url=snapshots.url(f"slow?delay={LATENCY_S}&camera={n + 1}"),
                    )
                    for n in range(count)
                ]
                rows = capture_print(
                    server, work, {"grid_size": 3, "stop_mode": "hold", "cameras": cameras}
                )
                per_point[count] = statistics.median(r["total"] for r in rows) / POINTS
                capture = statistics.median(r["phases"]["capture"] for r in rows) / POINTS
                record(
                    Row(
                        BENCH,
                        f"3x3 hold, {count} snapshot camera{'s' if count > 1 else ''} of "
                        f"{LATENCY_S:g} s: time per point (median of {len(rows)} layers)",
                        per_point[count],
                        "s",
                        "the cameras' latency",
                        LATENCY_S,
                        note=f"capture phase per point {capture:.3f} s",
                        ratio_of_baseline=True,
                    )
                )
        for count in (2, 3):
            record(
                Row(
                    BENCH,
                    f"3x3 hold: time per point, {count} cameras vs 1",
                    per_point[count],
                    "s",
                    "1 camera",
                    per_point[1],
                    target="<= 1.3x" if count == 3 else "",
                    ratio_of_baseline=True,
                )
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
