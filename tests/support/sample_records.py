"""A complete layer metadata record for the store's tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from octoprint_layercapture.store.names import image_name, thumbnail_name
from octoprint_layercapture.store.records import (
    FailureRecord,
    ImageRecord,
    LayerMetadata,
    SkippedRecord,
)

WHEN = datetime(2024, 1, 15, 10, 30, 0)


def sample_metadata(**changes: Any) -> LayerMetadata:
    name = image_name(15, 0, 3.0, WHEN)
    values = {
        "layer": 15,
        "z_height": 3.0,
        "timestamp": WHEN.isoformat(timespec="seconds"),
        "gcode_file": "print.gcode",
        "print_start_time": "2024-01-15T10:00:00",
        "images": [
            ImageRecord(
                path=name,
                thumbnail=thumbnail_name(name),
                index=0,
                row=0,
                col=0,
                position={"x": 105.0, "y": 85.0, "z": 8.0},
                measured={"x": 105.0, "y": 85.0, "z": 8.0, "e": 12.5},
                captured_at="2024-01-15T10:30:01",
                duration_s=0.12,
                camera="fake camera",
                size_bytes=12345,
                content_type="image/jpeg",
            )
        ],
        "settings": {
            "grid_spacing": 20.0,
            "grid_center": {"x": 125.0, "y": 105.0},
            "grid_size": 3,
            "z_offset": 5.0,
            "stop_mode": "pause",
        },
        "capture_z": 8.0,
        "camera": "fake camera",
        "skipped": [
            SkippedRecord(2, {"x": 245.0, "y": 85.0, "z": 8.0}, "X 245.0 is beyond bed max X")
        ],
        "failures": [FailureRecord(5, "capture", "timeout after 5 s", 5.0)],
        "timings": {"stop": 1.2, "moves": 3.4, "capture": 0.5, "total": 6.0},
        "trigger": {"source": "zchange", "reasons": ["every 3 layers"]},
        "plugin_version": "0.1.0",
    }
    values.update(changes)
    return LayerMetadata(**values)
