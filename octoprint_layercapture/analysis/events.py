"""The plugin's OctoPrint event per captured layer, for the Event Manager and other plugins.

Registered through the ``octoprint.events.register_custom_events`` hook as
:data:`LAYER_CAPTURED`; OctoPrint names it ``plugin_layercapture_layer_captured``
(``Events.PLUGIN_LAYERCAPTURE_LAYER_CAPTURED``). It is fired on the image writer's thread
once the layer's images, toolpath and metadata are on disk.

Paths in the payload are relative to OctoPrint's uploads folder, like the ``path`` of
OctoPrint's own file events (events reach browsers too, so no absolute path of the server
is in them; ``web.push`` lets this one through to users with View captures only). Pure
module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..store.index import print_id as gallery_id
from ..store.records import read_metadata

_logger = logging.getLogger("octoprint.plugins.layercapture.analysis.events")

LAYER_CAPTURED = "layer_captured"
EVENT_NAME = "plugin_layercapture_" + LAYER_CAPTURED  # what OctoPrint makes of it


def layer_event_payload(
    metadata_file: Path, meta: Mapping[str, Any], uploads: Path, print_id: Optional[str]
) -> Dict[str, Any]:
    """The event's payload for the layer whose metadata ``meta`` was written as
    ``metadata_file`` (below ``uploads``)."""
    folder = Path(metadata_file).parent

    def relative(name: Optional[str]) -> Optional[str]:
        if not isinstance(name, str) or not name:
            return None
        try:
            return (folder / name).relative_to(uploads).as_posix()
        except ValueError:
            return None

    images: List[str] = []
    for image in meta.get("images") or []:
        if isinstance(image, Mapping):
            path = relative(image.get("path"))
            if path is not None:
                images.append(path)
    toolpath = meta.get("toolpath") if isinstance(meta.get("toolpath"), Mapping) else {}
    cameras = [
        str(camera.get("name"))
        for camera in meta.get("cameras") or []
        if isinstance(camera, Mapping) and isinstance(camera.get("name"), str)
    ]
    return {
        "layer": meta.get("layer"),
        "z_height": meta.get("z_height"),
        "gcode_file": meta.get("gcode_file"),
        "print_id": print_id,
        "storage": "local",
        "metadata": relative(Path(metadata_file).name),
        "images": images,
        "image_count": len(images),
        "cameras": cameras,  # their names, in the settings' order ([] before version 3)
        "toolpath": relative((toolpath or {}).get("path")),
        "toolpath_svg": relative((toolpath or {}).get("svg")),
        "failures": len(meta.get("failures") or []),
    }


def layer_event(metadata_file: Path, uploads: Path) -> Optional[Dict[str, Any]]:
    """The event's payload for the metadata file just written (the image writer's thread);
    None, logged, when the file cannot be read back."""
    try:
        meta = read_metadata(metadata_file)
    except (OSError, ValueError) as exc:
        _logger.warning(f"No {EVENT_NAME} event for {Path(metadata_file).name}: {exc}")
        return None
    start = meta.get("print_start_time")
    pid = gallery_id(
        str(meta.get("gcode_file") or ""), start if isinstance(start, str) else None, ""
    )
    return layer_event_payload(Path(metadata_file).resolve(), meta, Path(uploads).resolve(), pid)
