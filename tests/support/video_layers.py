"""Layer records as the gallery index keeps them, for the video tests (analysis.video)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from octoprint_layercapture.analysis.video.plan import RenderTarget

ALL = RenderTarget("all")
NINE = list(range(9))


def layer(
    number: int,
    indexes: List[int],
    grid_size: int = 3,
    skipped: Optional[Dict[int, str]] = None,
    failed: Optional[Dict[int, str]] = None,
    cameras: Optional[Dict[str, List[int]]] = None,
) -> Dict[str, Any]:
    """A layer record as the gallery keeps it: one unnamed camera at ``indexes``, or with
    ``cameras`` each named camera at its own indexes (the first keeps the plain names)."""
    if cameras is not None:
        first = next(iter(cameras))
        images = [
            {
                "index": i,
                "camera": name,
                "path": f"2024-01-01/layer_{number:04d}_pos_{i:02d}"
                + ("" if name == first else f"_cam_{name}")
                + ".jpg",
            }
            for i in indexes
            for name, own in cameras.items()
            if i in own
        ]
    else:
        images = [
            {"index": i, "path": f"2024-01-01/layer_{number:04d}_pos_{i:02d}.jpg"} for i in indexes
        ]
    return {
        "layer": number,
        "z_height": round(number * 0.2, 2),
        "metadata": f"2024-01-01/layer_{number:04d}_metadata_20240101_090000.json",
        "timestamp": f"2024-01-01T09:{number:02d}:00",
        "grid_size": grid_size,
        "cameras": list(cameras) if cameras is not None else [""],
        "images": images,
        "skipped": [{"index": i, "reason": r} for i, r in (skipped or {}).items()],
        "failures": [
            {"index": i, "phase": "capture", "message": m, "camera": None}
            for i, m in (failed or {}).items()
        ],
    }
