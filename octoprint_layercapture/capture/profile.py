"""Bed bounds from an OctoPrint printer profile (a plain dict)."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ..settings import Bounds


def bounds_from_profile(profile: Optional[Mapping[str, Any]]) -> Optional[Bounds]:
    """The box the head may visit according to the profile, or None when unknown.

    A custom bounding box wins over the build volume; with origin ``center`` the volume
    is centred on 0/0. A circular bed (``formFactor: circular``, deltas) also limits the
    head to the circle of the volume's width around the bed's centre.
    """
    if not profile:
        return None
    volume = profile.get("volume") or {}
    try:
        width = float(volume["width"])
        depth = float(volume["depth"])
        height = float(volume.get("height") or 0) or None
    except (KeyError, TypeError, ValueError):
        return None
    if volume.get("origin") == "center":
        min_x, min_y, max_x, max_y = -width / 2, -depth / 2, width / 2, depth / 2
    else:
        min_x, min_y, max_x, max_y = 0.0, 0.0, width, depth
    max_z = height
    box = volume.get("custom_box")
    if isinstance(box, Mapping):
        try:
            min_x, max_x = float(box["x_min"]), float(box["x_max"])
            min_y, max_y = float(box["y_min"]), float(box["y_max"])
            max_z = float(box["z_max"])
        except (KeyError, TypeError, ValueError):
            pass
    if volume.get("formFactor") == "circular" or profile.get("formFactor") == "circular":
        centre = (0.0, 0.0) if volume.get("origin") == "center" else (width / 2, depth / 2)
        return Bounds(min_x, min_y, max_x, max_y, max_z, min(width, depth) / 2, centre)
    return Bounds(min_x, min_y, max_x, max_y, max_z)
