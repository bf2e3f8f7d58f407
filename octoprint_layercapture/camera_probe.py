"""The Test camera button: which settings it may try, and what it answers.

The settings panel sends its unsaved camera fields; they override the saved settings for
one snapshot with the camera those settings choose. The answer shows the image (after
flip/rotate, as it would be stored) or exactly the error a capture would record.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any, Dict, Mapping

from .camera_base import jpeg_size
from .ports import CameraError, CameraPort, ShotRequest
from .settings import DEFAULTS, CaptureSettings, InvalidSettings, SettingsError, validate

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

_logger = logging.getLogger("octoprint.plugins.layercapture.camera_probe")


def camera_test_settings(body: Any, saved: Mapping[str, Any]) -> CaptureSettings:
    """The saved camera settings with the body's values on top, validated.

    Only the camera keys and the grid centre and height (where the fake camera draws the
    head) count: a grid that does not fit the bed must not stop a camera test.
    Raises :class:`InvalidSettings` (one error per wrong key)."""
    if not isinstance(body, dict):
        raise InvalidSettings([SettingsError("settings", "expected a JSON object")])
    keys = CAMERA_TEST_KEYS + POSITION_KEYS
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise InvalidSettings([SettingsError(k, "is not a camera setting") for k in unknown])
    candidate = {key: saved.get(key, DEFAULTS[key]) for key in keys}
    candidate.update(body)
    return validate(candidate)


def probe_camera(camera: CameraPort, values: CaptureSettings) -> Dict[str, Any]:
    """Take one snapshot and describe it for the ``POST /camera/test`` answer."""
    name = str(getattr(camera, "name", "camera"))
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
        transform = getattr(camera, "transform", None)
        if transform is not None and not transform.identity:
            data = transform.apply(data, values.image_quality)
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
        close = getattr(camera, "close", None)
        if close is not None:
            close()
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
