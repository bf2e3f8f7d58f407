"""The fake toolhead camera as a camera port: :mod:`.toolhead` draws, this takes the shots.

The scene is the job's extrusion moves so far, read from the printed file up to the end of
the layer being captured (:func:`printed_so_far`, with :mod:`analysis.toolpath`'s reader),
once per layer, at the layer's first shot. Each shot is drawn where the head reported
itself (the sequence's M114 confirmation, else the commanded point), displaced by the
options' placement noise. A fake for tests and the demo: on a long print reading the file
from its start for every captured layer costs time while the head is away.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

from ..analysis.gcode_file import GcodeFile
from ..analysis.toolpath import PathStart, read_toolpath
from ..capture.ports import ShotRequest, Snapshot
from .base import Transform
from .mounting import CameraMounting
from .toolhead import FakeToolheadOptions, Scene, render_view, scene_from_polylines, shot_offset

SceneLoader = Callable[[int, float], Scene]  # (layer, layer Z) -> what is printed so far


def printed_so_far(
    path: Path,
    end: Optional[int],
    family: Optional[str],
    layer_z: float,
    options: FakeToolheadOptions,
    layer: int,
) -> Scene:
    """The extrusion moves of the file at ``path`` before the line that ends at ``end``
    (a ``filepos``; None: the whole file), as a scene whose current layer is at ``layer_z``."""
    source = GcodeFile(path)
    stop = source.digest().size_bytes if end is None else source.line_start(end)
    text = source.read(0, stop).decode("utf-8", "replace")
    start = PathStart(None, None, None, None)
    path_read = read_toolpath(text.splitlines(), start, family)
    polylines = [p.to_dict() for p in path_read.polylines]
    return scene_from_polylines(polylines, layer_z, options.defect_for(layer))


class ToolheadFakeCamera:
    """Renders each shot of a toolhead camera from the job's printed moves."""

    name = "fake toolhead camera"
    transform = Transform()

    def __init__(
        self,
        mounting: CameraMounting,
        options: FakeToolheadOptions,
        quality: int,
        load_scene: Optional[SceneLoader] = None,
    ) -> None:
        self._mounting = options.true_mounting or mounting
        self._options = options
        self._quality = quality
        self._load_scene = load_scene
        self._scene: Optional[Scene] = None
        self._scene_layer: Optional[int] = None

    def _scene_for(self, layer: int, layer_z: float) -> Scene:
        if self._scene is None or self._scene_layer != layer:
            loaded = None if self._load_scene is None else self._load_scene(layer, layer_z)
            scene = loaded if loaded is not None else Scene()  # outside a print: the bed
            self._scene = replace(scene, bed_texture=self._options.bed_texture)
            self._scene_layer = layer
        return self._scene

    def take(self, request: ShotRequest) -> Snapshot:
        started = time.monotonic()
        scene = self._scene_for(request.layer, request.layer_z)
        measured = request.measured
        x = request.x if measured is None or measured.x is None else measured.x
        y = request.y if measured is None or measured.y is None else measured.y
        dx, dy = shot_offset(self._options, request.layer, request.index)
        seed = request.layer * 1000 + request.index
        image = render_view(
            scene, self._mounting, (x + dx, y + dy), self._options.pixel_noise, seed
        )
        out = io.BytesIO()
        image.save(out, "JPEG", quality=self._quality)
        return Snapshot(out.getvalue(), "image/jpeg", time.monotonic() - started, self.name)

    def close(self) -> None:
        self._scene = None
