"""The ``cameras`` setting: which cameras are taken at every grid position.

Pure module (nothing from OctoPrint; which names fit file names is :mod:`store.names`'s
rule). :mod:`settings` puts :data:`DEFAULT_CAMERAS` into its defaults and checks the list
with :func:`check_cameras`. Rules:

* A list of 1 to :data:`MAX_CAMERAS` entries, each ``{"name", "type", "webcam", "url",
  "mounting"}``: ``type`` ``webcam`` (the OctoPrint webcam named in ``webcam``, ``""`` for
  OctoPrint's snapshot webcam), ``snapshot`` (a snapshot URL in ``url``), ``stream`` (one
  frame of the MJPEG stream in ``url``) or ``fake`` (drawn test images).
* ``name`` is short and unique (lowercase letters, digits and ``-``): it goes into file
  names and the UI. The first camera's files keep the single-camera names; the others
  carry ``_cam_<name>`` (see :mod:`store.names`).
* ``mounting`` says where the camera is fixed; only ``fixed`` exists in the entry so far.
  The first camera may ride on the toolhead: the settings' ``camera_mounting`` is its
  mounting (:meth:`settings.CaptureSettings.mounting_of`); a mounting per entry is not
  there yet.
* Settings version 2 had one camera in four keys, the first match winning:
  ``use_fake_camera``, ``stream_url``, ``snapshot_url``, ``webcam``.
  :func:`cameras_from_single` turns them into the one-camera list that behaves the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .store.names import CAMERA_NAME_LENGTH, is_camera_name

MAX_CAMERAS = 4
WEBCAM, SNAPSHOT, STREAM, FAKE = "webcam", "snapshot", "stream", "fake"
CAMERA_TYPES = (WEBCAM, SNAPSHOT, STREAM, FAKE)
URL_TYPES = (SNAPSHOT, STREAM)
FIXED = "fixed"
MOUNTINGS = (FIXED,)
CAMERA_KEYS = ("name", "type", "webcam", "url", "mounting")
FIRST_CAMERA_NAME = "main"

# The single-camera keys of settings version 2 (first match wins, in this order).
SINGLE_CAMERA_KEYS = ("use_fake_camera", "stream_url", "snapshot_url", "webcam")

_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$", re.IGNORECASE)


def camera_entry(
    name: str = FIRST_CAMERA_NAME,
    type: str = WEBCAM,
    webcam: str = "",
    url: str = "",
    mounting: str = FIXED,
) -> Dict[str, str]:
    """One entry of the ``cameras`` list as config.yaml stores it."""
    return {"name": name, "type": type, "webcam": webcam, "url": url, "mounting": mounting}


# Today's one camera: OctoPrint's snapshot webcam.
DEFAULT_CAMERAS: List[Dict[str, str]] = [camera_entry()]


@dataclass(frozen=True)
class CameraSettings:
    """One camera of the list, checked."""

    name: str
    type: str
    webcam: str = ""
    url: str = ""
    mounting: str = FIXED

    def to_storable(self) -> Dict[str, str]:
        return camera_entry(self.name, self.type, self.webcam, self.url, self.mounting)


def camera_key(index: int, field: str) -> str:
    """The key an error about ``field`` of camera ``index`` is reported under
    (``cameras.1.url``); the settings panel shows it next to that field."""
    return f"cameras.{index}.{field}"


def submitted_url(data: Mapping[str, Any], key: str) -> Optional[Any]:
    """The value submitted for ``cameras.<i>.url`` (for masking it in messages)."""
    parts = key.split(".")
    if len(parts) != 3 or parts[0] != "cameras" or parts[2] != "url" or not parts[1].isdigit():
        return None
    cameras = data.get("cameras")
    index = int(parts[1])
    if not isinstance(cameras, list) or index >= len(cameras):
        return None
    entry = cameras[index]
    return entry.get("url") if isinstance(entry, Mapping) else None


def check_cameras(value: Any) -> Tuple[Tuple[CameraSettings, ...], List[Tuple[str, str]]]:
    """The cameras of a ``cameras`` value and every problem found, as ``(key, message)``
    pairs; with problems the cameras returned are the default ones."""
    default = tuple(_checked(entry, 0, [])[0] for entry in DEFAULT_CAMERAS)
    if not isinstance(value, list):
        return default, [("cameras", f"must be a list of cameras, got {type(value).__name__}")]
    if not value:
        return default, [("cameras", "must list at least one camera")]
    if len(value) > MAX_CAMERAS:
        return default, [("cameras", f"at most {MAX_CAMERAS} cameras, got {len(value)}")]
    errors: List[Tuple[str, str]] = []
    cameras = []
    seen: Dict[str, int] = {}
    for index, entry in enumerate(value):
        camera, problems = _checked(entry, index, errors)
        if problems:
            continue
        if camera.name in seen:
            errors.append(
                (
                    camera_key(index, "name"),
                    f"{camera.name!r} is the name of camera {seen[camera.name] + 1} already: "
                    "each camera needs a name of its own",
                )
            )
        seen.setdefault(camera.name, index)
        cameras.append(camera)
    if errors:
        return default, errors
    return tuple(cameras), []


def _checked(entry: Any, index: int, errors: List[Tuple[str, str]]) -> Tuple[CameraSettings, bool]:
    """One entry; appends its problems to ``errors`` and says whether there were any."""
    before = len(errors)
    if not isinstance(entry, Mapping):
        errors.append(
            (
                f"cameras.{index}",
                f"must be an object with a name and a type, got a {type(entry).__name__}",
            )
        )
        return CameraSettings(FIRST_CAMERA_NAME, WEBCAM), True

    def fail(field: str, message: str) -> None:
        errors.append((camera_key(index, field), message))

    for unknown in sorted(set(map(str, entry)) - set(CAMERA_KEYS)):
        fail(unknown, "is not a camera setting")

    def text(field: str, max_length: int, default: str = "") -> str:
        value = entry.get(field, default)
        if value is None:
            return default
        if not isinstance(value, str):
            fail(field, f"must be text, got {value!r}")
            return default
        if len(value) > max_length:
            fail(field, f"must be at most {max_length} characters")
        return value.strip()

    name = text("name", 200)
    if not is_camera_name(name):
        fail(
            "name",
            f"must be 1 to {CAMERA_NAME_LENGTH} lowercase letters, digits or '-' (file names carry "
            f"it), got {name!r}",
        )
    kind = entry.get("type", WEBCAM)
    if kind not in CAMERA_TYPES:
        names = ", ".join(repr(t) for t in CAMERA_TYPES)
        fail("type", f"must be one of {names}, got {kind!r}")
        kind = WEBCAM
    webcam = text("webcam", 200)
    before_url = len(errors)
    url = text("url", 2000)
    if len(errors) > before_url:
        pass  # not text, or too long: said already
    elif url and not _URL.match(url):
        fail("url", f"must be an http:// or https:// URL, got {url!r}")
    elif not url and kind in URL_TYPES:
        what = "snapshot" if kind == SNAPSHOT else "MJPEG stream"
        fail("url", f"a {what} camera needs its URL")
    mounting = entry.get("mounting", FIXED)
    if mounting not in MOUNTINGS:
        fail("mounting", f"must be 'fixed' (the only mounting so far), got {mounting!r}")
        mounting = FIXED
    return CameraSettings(name, str(kind), webcam, url, str(mounting)), len(errors) > before


def cameras_from_single(stored: Mapping[str, Any]) -> Tuple[List[Dict[str, str]], List[str]]:
    """The one-camera list that behaves as the version 2 keys in ``stored`` did, and the
    keys that were set but not used (a URL behind the fake camera...), which the caller
    may name in the log. The camera is called :data:`FIRST_CAMERA_NAME`; as the first
    camera its file names are the single-camera ones."""

    def text(key: str) -> str:
        value = stored.get(key)
        return value.strip() if isinstance(value, str) else ""

    fake = stored.get("use_fake_camera")
    fake = fake is True or (isinstance(fake, str) and fake.lower() == "true")
    stream, snapshot, webcam = text("stream_url"), text("snapshot_url"), text("webcam")
    if fake:
        entry = camera_entry(type=FAKE, webcam=webcam, url=stream or snapshot)
    elif stream:
        entry = camera_entry(type=STREAM, webcam=webcam, url=stream)
    elif snapshot:
        entry = camera_entry(type=SNAPSHOT, webcam=webcam, url=snapshot)
    else:
        entry = camera_entry(type=WEBCAM, webcam=webcam)
    kept = {entry["url"], entry["webcam"]}
    unused = [
        key
        for key, value in (("stream_url", stream), ("snapshot_url", snapshot))
        if value and value not in kept
    ]
    return [entry], unused
