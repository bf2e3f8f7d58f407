"""What the metadata records about a captured layer besides its images (schema version 2).

Gathered in three places, each doing only what its thread can afford:

* OctoPrint's comm thread (the queuing hook, every line): :class:`ProcessState` follows the
  feed-rate and flow factors (M220/M221), the part fan (M106/M107) and the active tool
  (T<n>) in every line sent, from the file or the terminal, for as long as the printer is
  connected; :class:`LayerSpans` keeps, per layer change only, the ``filepos`` of the line
  that started the layer and the tracker's motion state before it. At the stop both go into
  a :class:`LayerContext` with the capture request: a few small objects, no parsing.
* The worker thread, when the sequence starts: OctoPrint's current temperatures and each
  camera's identity (:func:`describe_camera`).
* The image writer's thread, after the layer's images: the file's SHA-256, the layer's line
  numbers and bytes, its toolpath (JSON + SVG, :mod:`.toolpath`) and each image's hash and
  size (:func:`complete_metadata`).

Never sent means the firmware's default: 100 % for both factors, tool 0, and the fan
unknown; ``process.not_sent`` lists the values that are such defaults. Pure module.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..cameras.base import redact_url
from ..cameras.fake import FakeCamera
from ..cameras.http import SnapshotUrlCamera
from ..cameras.mjpeg import MjpegStreamCamera
from ..cameras.sources import OctoPrintWebcam
from ..capture.firmware import ModeHistory
from ..capture.shots import RigCamera
from ..settings import Bounds
from ..store.files import CaptureStore, write_atomic
from ..store.names import toolpath_name
from ..store.records import ImageRecord, LayerMetadata
from ..store.writer import ShotKey, WrittenImage
from .gcode_file import GcodeFile
from .toolpath import PathStart, read_toolpath, toolpath_document, toolpath_svg

_logger = logging.getLogger("octoprint.plugins.layercapture.analysis.records")

#: The G-code words :class:`ProcessState` reads (as OctoPrint's ``gcode`` hook argument
#: names them: ``T`` for any tool change); the hook checks this set before calling it.
PROCESS_CODES = frozenset({"M106", "M107", "M220", "M221", "T"})
DEFAULT_PERCENT = 100.0
FAN_FULL = 255.0
# a layer longer than this is not read for its toolpath (a malformed file, not a layer)
MAX_LAYER_BYTES = 64 * 1024 * 1024

_S = re.compile(r"[Ss]\s*([-+]?\d*\.?\d+)")
_P = re.compile(r"[Pp]\s*(\d+)")
_T = re.compile(r"[Tt]\s*(\d+)")


def _word(pattern: re.Pattern[str], text: str) -> Optional[float]:
    match = pattern.search(text)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


class ProcessState:
    """Factors, fan and tool as the lines sent so far set them (one thread feeds it)."""

    def __init__(self) -> None:
        self.feed_rate: Optional[float] = None  # M220 S (percent)
        self._feed_backup: Optional[float] = None  # M220 B / R (Marlin 2)
        self.flow: Dict[int, float] = {}  # M221 S per tool
        self.fan: Optional[float] = None  # M106 S of the part fan (P0), 0-255
        self.tool: Optional[int] = None  # the last T<n>

    def feed(self, gcode: str, line: str) -> None:
        """One line whose G-code word is in :data:`PROCESS_CODES`; never raises."""
        try:
            self._feed(gcode, line.split(";", 1)[0])
        except Exception:  # a line must never break the print
            _logger.debug(f"could not read {line!r}", exc_info=True)

    def _feed(self, gcode: str, text: str) -> None:
        rest = text.strip()[len(gcode) :]
        if gcode == "T":
            tool = _word(_T, text)
            if tool is not None:
                self.tool = int(tool)
            return
        value = _word(_S, rest)
        if gcode == "M220":
            upper = rest.upper()
            if "B" in upper:
                self._feed_backup = self.feed_rate
            elif "R" in upper:
                self.feed_rate = self._feed_backup
            elif value is not None and value >= 0:
                self.feed_rate = value
        elif gcode == "M221":
            tool = _word(_T, rest)
            if value is not None and value >= 0:
                self.flow[int(tool) if tool is not None else self.tool or 0] = value
        elif gcode in ("M106", "M107"):
            fan = _word(_P, rest)
            if fan is not None and fan != 0:
                return  # another fan than the part fan
            if gcode == "M107":
                self.fan = 0.0
            else:
                self.fan = FAN_FULL if value is None else min(max(value, 0.0), FAN_FULL)

    def snapshot(self) -> Dict[str, Any]:
        """The values in force, for the metadata (temperatures are added by the worker)."""
        tool = self.tool if self.tool is not None else 0
        flow = self.flow.get(tool)
        not_sent = [
            name
            for name, value in (
                ("feed_rate_percent", self.feed_rate),
                ("flow_percent", flow),
                ("fan_speed", self.fan),
                ("tool", self.tool),
            )
            if value is None
        ]
        return {
            "temperatures": {},
            "feed_rate_percent": DEFAULT_PERCENT if self.feed_rate is None else self.feed_rate,
            "flow_percent": DEFAULT_PERCENT if flow is None else flow,
            "fan_speed": self.fan,
            "fan_percent": None if self.fan is None else round(self.fan / FAN_FULL * 100, 2),
            "tool": tool,
            "not_sent": not_sent,
        }


def filepos(tags: Optional[Iterable[str]]) -> Optional[int]:
    """The ``filepos:N`` of OctoPrint's tags for a file line (the byte after it)."""
    for tag in tags or ():
        if tag.startswith("filepos:"):
            try:
                return int(tag[8:])
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class LayerStart:
    layer: int
    end_of_line: Optional[int]  # filepos of the line that started the layer
    state: Optional[Any]  # the tracker's MotionState before that line


@dataclass(frozen=True)
class LayerSpan:
    """Where a completed layer lies in the file: from the line that started it to the
    line that started the next one (exclusive); offsets are ``filepos`` values."""

    layer: int
    start_line_end: Optional[int]
    next_line_end: Optional[int]
    start_state: Optional[Any]


class LayerSpans:
    """The starts of the current and the previous layer (the comm thread feeds it once
    per layer change)."""

    def __init__(self) -> None:
        self.layer = 0
        self._previous: Optional[LayerStart] = None
        self._current: Optional[LayerStart] = None

    def started(self, layer: int, tags: Optional[Iterable[str]], state: Optional[Any]) -> None:
        self.layer = layer
        self._previous = self._current
        self._current = LayerStart(layer, filepos(tags), state)

    def completed(self, layer: int) -> Optional[LayerSpan]:
        """The span of ``layer``, which the line just fed completed; None when the layer's
        start was not seen (a marker that skips layers, a print resumed mid-file)."""
        start, following = self._previous, self._current
        if start is None or start.layer != layer or following is None:
            return None
        return LayerSpan(layer, start.end_of_line, following.end_of_line, start.state)


@dataclass(frozen=True)
class PrintRecords:
    """What is known about a print when it starts (the plugin builds it when arming)."""

    gcode_path: Optional[Path]  # on disk; None for prints not from local storage
    gcode_storage_path: Optional[str]  # the path in OctoPrint's local storage
    firmware_family: Optional[str]
    printer_profile: Optional[Dict[str, Any]]
    read_temperatures: Optional[Callable[[], Mapping[str, Any]]] = None
    # one per print, used by the image writer's thread only
    gcode: Optional[GcodeFile] = field(default=None, compare=False)


@dataclass(frozen=True)
class LayerContext:
    """What the comm thread knew at the stop, handed to the worker with the request."""

    print_records: PrintRecords
    span: Optional[LayerSpan]
    process: Dict[str, Any]


def printer_profile_record(
    profile: Optional[Mapping[str, Any]], bounds: Optional[Bounds]
) -> Dict[str, Any]:
    """OctoPrint's printer profile as the metadata keeps it; ``bounds``: what the grid
    was held to (the profile, the settings' bed edges, the firmware's soft limits)."""
    profile = profile or {}
    volume = profile.get("volume")

    def number(value: Any) -> Optional[float]:
        try:
            return None if value is None or isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            return None

    def text(value: Any) -> Optional[str]:
        return None if value is None else str(value)

    return {
        "id": text(profile.get("id")),
        "name": text(profile.get("name")),
        "model": text(profile.get("model")),
        "volume": None
        if not isinstance(volume, Mapping)
        else {
            "width": number(volume.get("width")),
            "depth": number(volume.get("depth")),
            "height": number(volume.get("height")),
            "origin": text(volume.get("origin")),
            "form_factor": text(volume.get("formFactor") or profile.get("formFactor")),
        },
        "bounds": None
        if bounds is None
        else {
            "min_x": bounds.min_x,
            "min_y": bounds.min_y,
            "max_x": bounds.max_x,
            "max_y": bounds.max_y,
            "max_z": bounds.max_z,
            "radius": bounds.radius,
        },
    }


def temperatures_record(current: Optional[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """``printer.get_current_temperatures()`` as ``{heater: {actual, target, offset}}``."""
    heaters: Dict[str, Dict[str, Any]] = {}
    for name, value in (current or {}).items():
        if not isinstance(value, Mapping) or not re.match(r"^(tool\d+|bed|chamber)$", name):
            continue
        record = {}
        for key in ("actual", "target", "offset"):
            raw = value.get(key)
            record[key] = (
                float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else None
            )
        heaters[name] = record
    return heaters


def describe_camera(camera: Any) -> Dict[str, Any]:
    """Which camera took the layer's pictures (URLs without credentials)."""
    webcam = None
    url = None
    if isinstance(camera, FakeCamera):
        kind = "fake"
    elif isinstance(camera, OctoPrintWebcam):
        kind = "webcam"
        info = camera.webcam
        webcam = {
            "name": info.name,
            "display_name": info.display_name,
            "flip_h": info.flip_h,
            "flip_v": info.flip_v,
            "rotate90": info.rotate90,
        }
    elif isinstance(camera, MjpegStreamCamera):
        kind, url = "stream_url", redact_url(camera.url)
    elif isinstance(camera, SnapshotUrlCamera):
        kind, url = "snapshot_url", redact_url(camera.url)
    else:
        kind = "none"
    return {
        "kind": kind,
        "name": str(getattr(camera, "name", "") or ""),
        "webcam": webcam,
        "url": url,
        "resolution": None,
    }


@dataclass(frozen=True)
class StopObservation:
    """What the worker saw when the sequence started: the temperatures and, by the
    cameras' names in the settings (in their order), each camera's identity."""

    temperatures: Dict[str, Dict[str, Any]]
    cameras: Dict[str, Dict[str, Any]]

    @property
    def camera(self) -> Dict[str, Any]:
        """The first camera's identity (the version 2 ``camera_info``)."""
        return next(iter(self.cameras.values()), describe_camera(None))


def observe_stop(context: Optional[LayerContext], cameras: Sequence[RigCamera]) -> StopObservation:
    """Temperatures right now (OctoPrint's last report) and each camera's identity."""
    temperatures: Dict[str, Dict[str, Any]] = {}
    reader = None if context is None else context.print_records.read_temperatures
    if reader is not None:
        try:
            temperatures = temperatures_record(reader())
        except Exception:
            _logger.exception("Could not read the temperatures")
    return StopObservation(
        temperatures, {camera.name: describe_camera(camera.port) for camera in cameras}
    )


# ---- on the image writer's thread ------------------------------------------------------


def _gcode_record(
    records: PrintRecords, span: Optional[LayerSpan]
) -> Tuple[Dict[str, Any], Optional[Tuple[int, int]]]:
    """The ``gcode`` record and the layer's byte range (None when unknown)."""
    record: Dict[str, Any] = {
        "path": records.gcode_storage_path,
        "sha256": None,
        "size_bytes": None,
        "first_line": None,
        "last_line": None,
        "byte_range": None,
        "error": None,
    }
    source = records.gcode
    if source is None:
        record["error"] = "the printed file is not on this OctoPrint's disk"
        return record, None
    try:
        digest = source.digest()
        record["sha256"], record["size_bytes"] = digest.sha256, digest.size_bytes
        if span is None or span.start_line_end is None or span.next_line_end is None:
            record["error"] = "the layer's place in the file is not known"
            return record, None
        first = source.line_start(span.start_line_end)
        end = source.line_start(span.next_line_end)
        record["first_line"] = source.line_number(first)
        record["last_line"] = max(record["first_line"], source.line_number(end) - 1)
        record["byte_range"] = [first, end]
        return record, (first, end)
    except OSError as exc:
        record["error"] = f"could not read the printed file: {exc.strerror or exc}"
        return record, None


def _path_start(state: Any, width: Optional[float], kind: Optional[str]) -> PathStart:
    if state is None:
        return PathStart(None, None, None, None, width=width, kind=kind)
    return PathStart(
        state.x,
        state.y,
        state.z,
        state.e,
        bool(state.absolute_xyz),
        state.modes if isinstance(state.modes, ModeHistory) else ModeHistory(),
        width,
        kind,
    )


def _no_toolpath(error: Optional[str]) -> Dict[str, Any]:
    """The metadata's ``toolpath`` record before (or without) the layer's toolpath."""
    return {
        "path": None,
        "svg": None,
        "extruded_e": None,
        "path_length": None,
        "polylines": None,
        "moves": None,
        "widths": [],
        "error": error,
    }


def _toolpath(
    meta: LayerMetadata,
    context: LayerContext,
    gcode: Dict[str, Any],
    byte_range: Optional[Tuple[int, int]],
    store: CaptureStore,
    when: datetime,
) -> Dict[str, Any]:
    summary = _no_toolpath(None)
    source = context.print_records.gcode
    if source is None or byte_range is None or context.span is None:
        summary["error"] = gcode["error"] or "the layer's lines are not known"
        return summary
    first, end = byte_range
    if end - first > MAX_LAYER_BYTES:
        summary["error"] = f"the layer has {end - first} bytes of G-code, more than is read"
        return summary
    try:
        width, kind = source.comments_before(first)
        text = source.read(first, end).decode("utf-8", "replace")
    except OSError as exc:
        summary["error"] = f"could not read the printed file: {exc.strerror or exc}"
        return summary
    start = _path_start(context.span.start_state, width, kind)
    path = read_toolpath(text.splitlines(), start, context.print_records.firmware_family)
    document = toolpath_document(
        path,
        meta.layer,
        meta.z_height,
        {k: gcode[k] for k in ("path", "sha256", "first_line", "last_line", "byte_range")},
    )
    json_name = toolpath_name(meta.layer, when)
    svg_name = toolpath_name(meta.layer, when, svg=True)
    try:
        folder = store.folder_for(meta.layer, when)
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n"
        write_atomic(folder / json_name, body.encode("utf-8"), store.file_mode)
        write_atomic(folder / svg_name, toolpath_svg(path).encode("utf-8"), store.file_mode)
    except OSError as exc:
        summary["error"] = f"could not write the toolpath: {exc.strerror or exc}"
        return summary
    summary.update(
        path=json_name,
        svg=svg_name,
        extruded_e=document["extruded_e"],
        path_length=document["path_length"],
        polylines=len(path.polylines),
        moves=path.moves,
        widths=path.widths(),
    )
    return summary


def _camera_info(
    name: Optional[str],
    observed: Optional[StopObservation],
    written: Mapping[ShotKey, WrittenImage],
) -> Dict[str, Any]:
    """Camera ``name``'s identity with the size of the pictures it delivered."""
    if observed is None or name is None:
        camera = describe_camera(None)
    else:
        camera = dict(observed.cameras.get(name) or describe_camera(None))
    sizes = [
        facts.camera_size
        for (_, taken_by), facts in written.items()
        if facts.camera_size is not None and (name is None or taken_by == name)
    ]
    if sizes:
        camera["resolution"] = {"width": sizes[0][0], "height": sizes[0][1]}
    return camera


def complete_metadata(
    meta: LayerMetadata,
    context: Optional[LayerContext],
    observed: Optional[StopObservation],
    written: Mapping[ShotKey, WrittenImage],
    store: CaptureStore,
    when: datetime,
) -> None:
    """Fill in the version 2 and 3 fields of ``meta`` (image writer's thread): the printed
    file's record, the process state, each camera, the per-image facts and the toolpath
    (written next to the metadata, named after ``when``). ``written`` is keyed by grid
    index and camera name. Failures are recorded in the fields' ``error``, never raised."""
    images: List[ImageRecord] = meta.images
    for image in images:
        facts = written.get((image.index, image.camera_name))
        if facts is None:
            continue
        image.sha256, image.width, image.height = facts.sha256, facts.width, facts.height
        image.camera_latency_s = (
            None if facts.camera_latency is None else round(facts.camera_latency, 4)
        )
    for entry in meta.cameras:
        entry["camera_info"] = _camera_info(entry.get("name"), observed, written)
    first = meta.cameras[0].get("name") if meta.cameras else None
    meta.camera_info = (
        dict(meta.cameras[0]["camera_info"]) if meta.cameras else _camera_info(first, None, written)
    )
    if context is None:
        return
    process = dict(context.process)
    process["temperatures"] = observed.temperatures if observed is not None else {}
    meta.process = process
    meta.printer_profile = context.print_records.printer_profile
    gcode, byte_range = _gcode_record(context.print_records, context.span)
    meta.gcode = gcode
    try:
        meta.toolpath = _toolpath(meta, context, gcode, byte_range, store, when)
    except Exception as exc:
        _logger.exception(f"layer {meta.layer}: could not make the toolpath")
        meta.toolpath = _no_toolpath(f"could not make the toolpath: {exc!r}")
