"""What the fake camera draws for *Test camera*, to check where it put the head.

The probe's frame and a reference drawn here differ only in the overlay's timestamp: below
the overlay band the JPEGs decode to the same pixels when the head is at the same place.
"""

from __future__ import annotations

import io
from datetime import datetime

from PIL import Image, ImageChops

from octoprint_layercapture.cameras.fake import render_fake_frame

# the probe draws layer 1 at Z 0.2 as position 1 of 1 (camera_probe.probe_camera)
PROBE_LAYER_Z = 0.2
OVERLAY_FRACTION = 0.25  # the text band is about a sixth of the height: skip a quarter


def probe_reference(x: float, y: float, z_offset: float, quality: int = 90) -> bytes:
    """The frame *Test camera* draws with the head at (x, y), without bounds or grid."""
    return render_fake_frame(
        layer=1,
        layer_z=PROBE_LAYER_Z,
        position=(x, y, PROBE_LAYER_Z + z_offset),
        index=0,
        count=1,
        bounds=None,
        grid_points=[],
        when=datetime(2000, 1, 1),
        quality=quality,
    )


def pixels_differing_below_overlay(first: bytes, second: bytes, levels: int = 40) -> int:
    """How many pixels of two frames differ by more than ``levels`` (of 255) in brightness,
    below the overlay band: 0 for the same drawing, hundreds for a head drawn elsewhere."""
    images = [Image.open(io.BytesIO(data)).convert("L") for data in (first, second)]
    width, height = images[0].size
    assert images[1].size == (width, height)
    box = (0, int(height * OVERLAY_FRACTION), width, height)
    diff = ImageChops.difference(images[0].crop(box), images[1].crop(box))
    return sum(diff.point(lambda value: 255 if value > levels else 0).histogram()[255:])
