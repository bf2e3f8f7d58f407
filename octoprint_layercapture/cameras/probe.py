"""The Test camera button: which settings it may try, and what it answers.

The settings panel sends its unsaved camera fields; they override the saved settings for
one snapshot with the camera those settings choose. The answer shows the image (after
flip/rotate, as it would be stored) or exactly the error a capture would record.

Rules: a camera URL that is not the saved one is a camera being configured, which needs
OctoPrint's Settings permission besides *Manage captures* (:func:`unsaved_urls`), so the
test cannot make the OctoPrint host fetch addresses nobody configured. A test never holds
its request longer than :data:`CAMERA_TEST_LIMIT_S`, whatever the timeout and retries
say (:func:`camera_test_settings`).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import time
from typing import Any, Dict, List, Mapping

from ..capture.ports import CameraError, CameraPort, ShotRequest
from ..settings import (
    CAMERA_URL_KEYS,
    DEFAULTS,
    CaptureSettings,
    InvalidSettings,
    SettingsError,
    validate,
)
from .base import jpeg_size

CAMERA_TEST_KEYS = (
    "use_fake_camera",
    "webcam",
    "snapshot_url",
    "stream_url",
    "snapshot_timeout",
    "snapshot_retries",
    "image_quality",
)
# where the fake camera draws the head: the form's grid centre and height, not the defaults
POSITION_KEYS = ("grid_center_x", "grid_center_y", "z_offset")
# every key a camera test may carry (the settings panel is given this list)
TEST_KEYS = CAMERA_TEST_KEYS + POSITION_KEYS

CAMERA_TEST_LIMIT_S = 30.0

_logger = logging.getLogger("octoprint.plugins.layercapture.camera_probe")


def unsaved_urls(body: Any, saved: Mapping[str, Any]) -> List[str]:
    """The URL keys of the body that name an address other than the saved one (empty
    values, which fall back to the next camera source, do not)."""
    if not isinstance(body, dict):
        return []

    def text(value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    return [
        key
        for key in CAMERA_URL_KEYS
        if key in body
        and text(body[key]) not in ("", None)
        and text(body[key]) != text(saved.get(key, DEFAULTS[key]))
    ]


def camera_test_settings(body: Any, saved: Mapping[str, Any]) -> CaptureSettings:
    """The saved camera settings with the body's values on top, validated.

    Only the camera keys and the grid centre and height (where the fake camera draws the
    head) count: a grid that does not fit the bed must not stop a camera test.
    Raises :class:`InvalidSettings` (one error per wrong key)."""
    if not isinstance(body, dict):
        raise InvalidSettings([SettingsError("settings", "expected a JSON object")])
    keys = TEST_KEYS
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise InvalidSettings([SettingsError(k, "is not a camera setting") for k in unknown])
    candidate = {key: saved.get(key, DEFAULTS[key]) for key in keys}
    candidate.update(body)
    return within_test_limit(validate(candidate))


def within_test_limit(
    values: CaptureSettings, limit: float = CAMERA_TEST_LIMIT_S
) -> CaptureSettings:
    """``values`` with the timeout and retries cut so that all attempts end within
    ``limit`` seconds: the timeout at most ``limit``, then as many attempts as fit."""
    timeout = min(values.snapshot_timeout, limit)
    attempts = min(values.snapshot_retries + 1, max(1, math.floor(limit / timeout)))
    return dataclasses.replace(values, snapshot_timeout=timeout, snapshot_retries=attempts - 1)


def probe_camera(camera: CameraPort, values: CaptureSettings) -> Dict[str, Any]:
    """Take one snapshot and describe it for the ``POST /camera/test`` answer."""
    name = camera.name
    request = ShotRequest(
        layer=1,
        layer_z=0.2,
        index=0,
        count=1,
        x=values.grid_center_x,
        y=values.grid_center_y,
        z=0.2 + values.z_offset,
    )
    started = time.monotonic()
    try:
        snapshot = camera.take(request)
        data = snapshot.data
        data = camera.transform.apply(data, values.image_quality)
        width, height = jpeg_size(data)
    except CameraError as exc:
        _logger.info(f"Camera test: {exc}")
        return {
            "ok": False,
            "camera": name,
            "error": str(exc),
            "duration_s": round(time.monotonic() - started, 3),
        }
    except Exception as exc:  # Pillow could not read what passed as a JPEG
        _logger.exception("Camera test: the image could not be processed")
        return {
            "ok": False,
            "camera": name,
            "error": f"{name}: the image could not be processed ({exc})",
            "duration_s": round(time.monotonic() - started, 3),
        }
    finally:
        camera.close()
    return {
        "ok": True,
        "camera": snapshot.camera,
        "content_type": "image/jpeg",
        "size_bytes": len(data),
        "duration_s": round(snapshot.duration, 3),
        "width": width,
        "height": height,
        "image": "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"),
    }
