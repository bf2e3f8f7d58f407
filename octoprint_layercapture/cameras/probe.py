"""The Test camera button: which settings it may try, and what it answers.

The settings panel sends one camera of its list (unsaved or not) and the settings every
camera shares; they override the saved settings for one snapshot with that camera. The
answer shows the image (after flip/rotate, as it would be stored) or exactly the error a
capture would record.

Rules: a camera URL that no saved camera has is a camera being configured, which needs
OctoPrint's Settings permission besides *Manage captures* (:func:`unsaved_url`), so the
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
from typing import Any, Dict, Mapping, Set, Tuple

from ..camera_settings import FIRST_CAMERA_NAME, SINGLE_CAMERA_KEYS, URL_TYPES, CameraSettings
from ..capture.ports import CameraError, CameraPort, ShotRequest
from ..settings import DEFAULTS, CaptureSettings, InvalidSettings, SettingsError, validate
from .base import jpeg_size

# The body: the camera to try (one entry of ``cameras``, as in the form) and the settings
# every camera shares, from the form too.
CAMERA_KEY = "camera"
SHARED_KEYS = ("snapshot_timeout", "snapshot_retries", "image_quality")
# where the fake camera draws the head: the form's grid centre and height, not the defaults
POSITION_KEYS = ("grid_center_x", "grid_center_y", "z_offset")
# every key a camera test may carry (the settings panel is given this list)
TEST_KEYS = (CAMERA_KEY, *SHARED_KEYS, *POSITION_KEYS)

CAMERA_TEST_LIMIT_S = 30.0

_logger = logging.getLogger("octoprint.plugins.layercapture.camera_probe")


def saved_urls(saved: Mapping[str, Any]) -> Set[str]:
    """The camera URLs of the saved settings."""
    cameras = saved.get("cameras")
    return {
        entry["url"].strip()
        for entry in (cameras if isinstance(cameras, list) else [])
        if isinstance(entry, Mapping) and isinstance(entry.get("url"), str)
    }


def unsaved_url(body: Any, saved: Mapping[str, Any]) -> bool:
    """Whether the body's camera fetches an address that no saved camera has (an empty
    URL, or a camera that fetches none, does not)."""
    if not isinstance(body, dict) or not isinstance(body.get(CAMERA_KEY), dict):
        return False
    camera = body[CAMERA_KEY]
    url = camera.get("url")
    if camera.get("type") not in URL_TYPES or not isinstance(url, str) or not url.strip():
        return False
    return url.strip() not in saved_urls(saved)


def camera_test_settings(
    body: Any, saved: Mapping[str, Any]
) -> Tuple[CaptureSettings, CameraSettings]:
    """The settings and the camera of a test: the saved settings with the body's values
    on top, validated; the camera is the body's ``camera`` (the saved first camera when
    there is none).

    Only the camera, the settings every camera shares and the grid centre and height
    (where the fake camera draws the head) count: a grid that does not fit the bed must
    not stop a camera test. Raises :class:`InvalidSettings` (one error per wrong key; a
    field of the camera as ``camera.<field>``)."""
    if not isinstance(body, dict):
        raise InvalidSettings([SettingsError("settings", "expected a JSON object")])
    keys = TEST_KEYS
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise InvalidSettings(
            [
                SettingsError(
                    key,
                    "was replaced by 'camera', one entry of the list 'cameras' (settings version 4)"
                    if key in SINGLE_CAMERA_KEYS
                    else "is not a camera setting",
                )
                for key in unknown
            ]
        )
    candidate = {key: saved.get(key, DEFAULTS[key]) for key in SHARED_KEYS + POSITION_KEYS}
    candidate.update({key: body[key] for key in SHARED_KEYS + POSITION_KEYS if key in body})
    if CAMERA_KEY in body:
        camera = body[CAMERA_KEY]
        if isinstance(camera, dict) and "name" not in camera:
            camera = {**camera, "name": FIRST_CAMERA_NAME}  # the name takes no picture
        candidate["cameras"] = [camera]
    else:
        cameras = saved.get("cameras", DEFAULTS["cameras"])
        candidate["cameras"] = cameras[:1] if isinstance(cameras, list) else cameras
    try:
        values = validate(candidate)
    except InvalidSettings as exc:
        prefix = "cameras.0"
        raise InvalidSettings(
            [
                SettingsError(CAMERA_KEY + e.key[len(prefix) :], e.message)
                if e.key.startswith(prefix)
                else e
                for e in exc.errors
            ]
        ) from None
    return within_test_limit(values), values.cameras[0]


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
    settings_name = values.cameras[0].name
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
            "name": settings_name,
            "camera": name,
            "error": str(exc),
            "duration_s": round(time.monotonic() - started, 3),
        }
    except Exception as exc:  # Pillow could not read what passed as a JPEG
        _logger.exception("Camera test: the image could not be processed")
        return {
            "ok": False,
            "name": settings_name,
            "camera": name,
            "error": f"{name}: the image could not be processed ({exc})",
            "duration_s": round(time.monotonic() - started, 3),
        }
    finally:
        camera.close()
    return {
        "ok": True,
        "name": settings_name,
        "camera": snapshot.camera,
        "content_type": "image/jpeg",
        "size_bytes": len(data),
        "duration_s": round(snapshot.duration, 3),
        "width": width,
        "height": height,
        "image": "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"),
    }
