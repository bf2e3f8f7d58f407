"""Soak: a long print on the virtual printer, every layer captured (3x3, fake camera).

Run with ``make soak`` (it sets LAYERCAPTURE_SOAK=1; ``make test`` skips it: it takes
minutes). It checks that the print completes, that every expected file is present and
readable, and that OctoPrint's memory (RSS) stays flat after the warm-up, and prints the
figures the README quotes.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from harness import Message, OctoPrintServer
from PIL import Image
from small_prints import write_square_print

from octoprint_layercapture.camera_settings import camera_entry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60 * 40),
    pytest.mark.skipif(
        os.environ.get("LAYERCAPTURE_SOAK") != "1", reason="long: run with `make soak`"
    ),
]

LAYERS = int(os.environ.get("LAYERCAPTURE_SOAK_LAYERS", "320"))
WARM_UP = 60  # layers before RSS is expected to be flat
MAX_GROWTH_MB = 15.0  # allowed RSS growth from the warm-up to the end


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def slope_per_100(samples: List[Tuple[int, float]]) -> float:
    """Least-squares RSS growth (MB) per 100 layers."""
    xs = [float(layer) for layer, _mb in samples]
    ys = [mb for _layer, mb in samples]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 100.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def test_soak_every_layer_of_a_long_print(
    make_server: Any, tmp_path: Path, record_property: Any, capsys: Any
) -> None:
    server: OctoPrintServer = make_server(
        plugin_settings={
            "cameras": [camera_entry(type="fake")],
            "grid_center_x": 100.0,
            "grid_center_y": 100.0,
            "grid_size": 3,
            "capture_every_n_layers": 1,
            "capture_delay": 0.0,
            "stop_mode": "pause",
        },
        virtual_printer={"simulated_errors": []},
    )
    assert server.process is not None
    pid = server.process.pid
    gcode = write_square_print(tmp_path, "soak.gcode", layers=LAYERS)
    samples: List[Tuple[int, float]] = []
    seen: set = set()

    def sample(message: Message) -> bool:
        status = (message.payload or {}).get("status") or {}
        if message.kind == "plugin" and status.get("state") == "captured":
            layer = int(status["layer"])
            if layer not in seen:
                seen.add(layer)
                samples.append((layer, rss_mb(pid)))
        return message.kind == "event" and message.name in ("PrintDone", "PrintFailed")

    started = time.monotonic()
    mark = server.mark()
    server.start_print(gcode)
    end = server.events.wait_for(sample, 60 * 30, since=mark, description="the end of the soak")
    seconds = time.monotonic() - started
    assert end.name == "PrintDone"
    # the last captured layer's status may come just after PrintDone
    server.events.wait_for(
        lambda m: sample(m) or len(seen) >= LAYERS - 1, 30, since=mark, description="captures"
    )

    root = server.uploads_dir / "layercapture"
    metadata = sorted(root.rglob("*_metadata_*.json"))
    layers: Dict[int, Dict[str, Any]] = {}
    for path in metadata:
        meta = json.loads(path.read_text(encoding="utf-8"))
        layers[int(meta["layer"])] = meta
        for image in meta["images"]:
            for name in (image["path"], image["thumbnail"]):
                with Image.open(path.parent / name) as picture:
                    picture.verify()
    expected = list(range(1, LAYERS))  # the last layer is never captured
    assert sorted(layers) == expected
    assert all(len(m["images"]) == 9 and not m["failures"] for m in layers.values())
    assert not list(root.rglob("*.tmp"))

    after_warm_up = [mb for layer, mb in samples if layer >= WARM_UP]
    growth = after_warm_up[-1] - after_warm_up[0]
    totals = [m["timings"]["total"] for m in layers.values()]
    figures = {
        "layers_captured": len(layers),
        "images": sum(len(m["images"]) for m in layers.values()),
        "print_seconds": round(seconds, 1),
        "sequence_s_median": round(statistics.median(totals), 3),
        "sequence_s_max": round(max(totals), 3),
        "rss_mb_first": round(samples[0][1], 1),
        "rss_mb_at_warm_up": round(after_warm_up[0], 1),
        "rss_mb_end": round(after_warm_up[-1], 1),
        "rss_mb_max": round(max(mb for _l, mb in samples), 1),
        "rss_growth_after_warm_up_mb": round(growth, 1),
        # the trend: RSS every 60 layers, and the growth per 100 layers over the last half
        "rss_mb_every_60_layers": [round(mb, 1) for layer, mb in samples if layer % 60 == 0],
        "rss_mb_per_100_layers_last_half": round(slope_per_100(samples[len(samples) // 2 :]), 2),
    }
    for key, value in figures.items():
        record_property(key, value)
    with capsys.disabled():
        print("\nsoak: " + json.dumps(figures))
    assert growth < MAX_GROWTH_MB, figures


def test_soak_baseline_the_same_print_without_captures(
    make_server: Any, tmp_path: Path, capsys: Any
) -> None:
    """OctoPrint's own RSS over the same print with the plugin switched off: the baseline
    for the figures above (the harness's listener and OctoPrint's logs are the same)."""
    server: OctoPrintServer = make_server(
        plugin_settings={"enabled": False}, virtual_printer={"simulated_errors": []}
    )
    assert server.process is not None
    pid = server.process.pid
    gcode = write_square_print(tmp_path, "soak.gcode", layers=LAYERS)
    samples: List[Tuple[int, float]] = []
    height = 0.2  # small_prints' layer height

    def sample(message: Message) -> bool:
        if message.kind == "event" and message.name == "ZChange":
            layer = round(float((message.payload or {}).get("new") or 0) / height)
            if 1 <= layer <= LAYERS and (not samples or layer > samples[-1][0]):
                samples.append((layer, rss_mb(pid)))
        return message.kind == "event" and message.name in ("PrintDone", "PrintFailed")

    mark = server.mark()
    server.start_print(gcode)
    end = server.events.wait_for(sample, 60 * 30, since=mark, description="the end")
    assert end.name == "PrintDone"
    after_warm_up = [mb for layer, mb in samples if layer >= WARM_UP]
    figures = {
        "baseline_rss_mb_at_warm_up": round(after_warm_up[0], 1),
        "baseline_rss_mb_end": round(after_warm_up[-1], 1),
        "baseline_rss_mb_every_60_layers": [
            round(mb, 1) for layer, mb in samples if layer % 60 == 0
        ],
        "baseline_rss_mb_per_100_layers_last_half": round(
            slope_per_100(samples[len(samples) // 2 :]), 2
        ),
    }
    with capsys.disabled():
        print("\nsoak baseline: " + json.dumps(figures))
