"""Typed view of the plugin settings and their validation.

This module is the one place that knows the setting keys, their defaults and what
values they accept. It imports nothing from OctoPrint so it can be tested alone.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .camera_settings import (
    DEFAULT_CAMERAS,
    SINGLE_CAMERA_KEYS,
    CameraSettings,
    cameras_from_single,
    check_cameras,
)
from .cameras.mounting import CameraMounting, parse_mounting
from .cameras.toolhead import FakeToolheadOptions, parse_options
from .capture.firmware import AUTO, FIRMWARE_CHOICES

# 2: one value per setting (no per-axis keys); 3: the video settings (video_*);
# 4: one list of cameras (``cameras``) instead of the four single-camera keys;
# 5: the toolhead camera's mounting and mosaic (camera_mounting, for the first camera;
# fake_toolhead, mosaic_max_correction, departure_warning_score)
SETTINGS_VERSION = 5

STOP_MODES = ("pause", "hold")
# How a move is awaited before M114 confirms it: the G-code that waits for the printer's
# move queue to empty, or "poll" (M114 alone, asked again until it shows the target).
WAIT_POLL = "poll"
WAIT_FOR_MOVES = ("M400", "G4 P0", WAIT_POLL)
GRID_SIZES = (1, 3, 5)
# Settings that name addresses for the OctoPrint host to fetch; they may carry credentials
# (user:password@, ?pwd=): masked in messages, shown only to users who may change settings.
CAMERA_URL_KEYS = ("cameras",)

# Grouped as the settings panel shows them. Keys are the public config.yaml interface.
DEFAULTS: Dict[str, Any] = {
    # master switch
    "enabled": True,
    # grid
    "grid_center_x": 125.0,
    "grid_center_y": 105.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "z_offset": 5.0,
    "bed_min_x": None,
    "bed_min_y": None,
    "bed_max_x": None,
    "bed_max_y": None,
    # the highest Z the head may go to (firmware without reported limits: Klipper)
    "bed_max_z": None,
    # layers
    "capture_every_n_layers": 3,
    "capture_z_heights": [],
    "min_layer_height": 0.05,
    # cameras: every one is taken at every grid position (see camera_settings.py)
    "cameras": DEFAULT_CAMERAS,
    "snapshot_timeout": 5.0,
    "snapshot_retries": 1,
    "capture_delay": 0.25,
    "pre_capture_delay": 0.0,
    "image_quality": 90,
    "create_thumbnails": True,
    # movement
    "return_to_origin": True,
    "movement_speed": 6000,
    "z_speed": 600,
    "retract_length": 1.0,
    "retract_speed": 2100,
    "wait_for_moves": "M400",
    # how the firmware reads G90/G91 for E, and whether it reports soft limits
    "firmware": AUTO,
    # stop mode and its timeouts
    "stop_mode": "pause",
    "pause_timeout": 60.0,
    "resume_timeout": 30.0,
    "movement_timeout": 30.0,
    "emergency_resume_attempts": 3,
    # capture folder, relative to OctoPrint's uploads folder
    "capture_folder": "layercapture",
    # videos of a print's captures (rendered with OctoPrint's ffmpeg); fps and hold as
    # OctoPrint's timelapse defaults
    "video_fps": 25,
    "video_hold_seconds": 0.0,
    "video_render_after_print": False,
    "video_render_while_printing": False,
    # the camera's mounting (cameras.mounting): fixed, or on the toolhead with its geometry
    "camera_mounting": CameraMounting().to_dict(),
    # the fake camera when mounted on the toolhead (cameras.toolhead): defect and noise
    "fake_toolhead": FakeToolheadOptions().to_dict(),
    # the toolhead mosaic (analysis.mosaic): the largest correction of a shot's place (mm)
    # and the departure score that warns in the tab (0: no warning)
    "mosaic_max_correction": 1.5,
    "departure_warning_score": 0.02,
}
# settings whose value is a mapping of its own (a form may send a part of it)
MAPPING_KEYS = ("camera_mounting", "fake_toolhead")

# The plugin's earlier public version split some settings per axis; version 2 keeps one
# value per setting. Maps old key -> new key (the X axis wins when both axes differ).
LEGACY_KEYS: Dict[str, str] = {
    "grid_size_x": "grid_size",
    "grid_spacing_x": "grid_spacing",
    "z_offset_base": "z_offset",
}
LEGACY_ONLY_KEYS = ("grid_size_y", "grid_spacing_y")

_FOLDER_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_Z_HEIGHTS = 200


@dataclass(frozen=True)
class Bounds:
    """Where the head may go (mm, printer coordinates): a box, and on a circular bed
    (deltas) also the circle ``radius`` around ``center``."""

    min_x: float
    min_y: float
    max_x: float
    max_y: float
    max_z: Optional[float] = None
    radius: Optional[float] = None
    center: Tuple[float, float] = (0.0, 0.0)

    def contains_xy(self, x: float, y: float) -> bool:
        in_box = self.min_x <= x <= self.max_x and self.min_y <= y <= self.max_y
        return in_box and self.outside_circle(x, y) is None

    def outside_circle(self, x: float, y: float) -> Optional[float]:
        """How far (mm) a point lies from the centre when that is beyond the radius."""
        if self.radius is None:
            return None
        distance = math.hypot(x - self.center[0], y - self.center[1])
        return distance if distance > self.radius + 1e-9 else None

    def within(
        self,
        min_x: float,
        min_y: float,
        max_x: float,
        max_y: float,
        max_z: Optional[float] = None,
    ) -> Bounds:
        """These bounds cut down to a box the firmware allows (its soft limits)."""
        top = self.max_z if max_z is None else max_z
        if self.max_z is not None and max_z is not None:
            top = min(self.max_z, max_z)
        return Bounds(
            max(self.min_x, min_x),
            max(self.min_y, min_y),
            min(self.max_x, max_x),
            min(self.max_y, max_y),
            top,
            self.radius,
            self.center,
        )


@dataclass(frozen=True)
class CaptureSettings:
    enabled: bool
    grid_center_x: float
    grid_center_y: float
    grid_spacing: float
    grid_size: int
    z_offset: float
    bed_min_x: Optional[float]
    bed_min_y: Optional[float]
    bed_max_x: Optional[float]
    bed_max_y: Optional[float]
    bed_max_z: Optional[float]
    capture_every_n_layers: int
    capture_z_heights: Tuple[float, ...]
    min_layer_height: float
    cameras: Tuple[CameraSettings, ...]
    snapshot_timeout: float
    snapshot_retries: int
    capture_delay: float
    pre_capture_delay: float
    image_quality: int
    create_thumbnails: bool
    return_to_origin: bool
    movement_speed: float
    z_speed: float
    retract_length: float
    retract_speed: float
    wait_for_moves: str
    firmware: str
    stop_mode: str
    pause_timeout: float
    resume_timeout: float
    movement_timeout: float
    emergency_resume_attempts: int
    capture_folder: str
    video_fps: int
    video_hold_seconds: float
    video_render_after_print: bool
    video_render_while_printing: bool
    camera_mounting: CameraMounting = field(default_factory=CameraMounting)
    fake_toolhead: FakeToolheadOptions = field(default_factory=FakeToolheadOptions)
    mosaic_max_correction: float = 1.5
    departure_warning_score: float = 0.02

    @property
    def first_camera(self) -> str:
        """The name of the first camera: the one ``camera_mounting`` describes."""
        return self.cameras[0].name

    def mounting_of(self, camera: CameraSettings) -> CameraMounting:
        """Where ``camera`` is mounted: ``camera_mounting`` for the first camera of the
        list, fixed for the others (a toolhead mounting per camera is not there yet)."""
        if camera.name == self.first_camera:
            return self.camera_mounting
        return CameraMounting()

    def bounds(self, profile_bounds: Optional[Bounds]) -> Optional[Bounds]:
        """Explicit bed settings override the printer profile, per edge."""
        bounds = effective_bounds(
            profile_bounds, self.bed_min_x, self.bed_min_y, self.bed_max_x, self.bed_max_y
        )
        if bounds is None or self.bed_max_z is None:
            return bounds
        return bounds.within(bounds.min_x, bounds.min_y, bounds.max_x, bounds.max_y, self.bed_max_z)


@dataclass(frozen=True)
class SettingsError:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class InvalidSettings(ValueError):
    def __init__(self, errors: List[SettingsError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def effective_bounds(
    profile: Optional[Bounds],
    min_x: Optional[float],
    min_y: Optional[float],
    max_x: Optional[float],
    max_y: Optional[float],
) -> Optional[Bounds]:
    edges = (min_x, min_y, max_x, max_y)
    if profile is None and any(e is None for e in edges):
        return None
    base = profile or Bounds(0.0, 0.0, 0.0, 0.0)

    def pick(value: Optional[float], fallback: float) -> float:
        return fallback if value is None else float(value)

    return Bounds(
        pick(min_x, base.min_x),
        pick(min_y, base.min_y),
        pick(max_x, base.max_x),
        pick(max_y, base.max_y),
        base.max_z,
        base.radius,
        base.center,
    )


def parse_z_heights(value: Any) -> Tuple[float, ...]:
    """Accept a list of numbers or a text such as ``"0.6, 3.0 10"``; sorted, unique."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,;\s]+", value.strip()) if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ValueError("expected a list of heights or a text like '0.6, 3.0, 10'")
    if len(parts) > MAX_Z_HEIGHTS:
        raise ValueError(f"at most {MAX_Z_HEIGHTS} heights")
    heights = []
    for part in parts:
        if isinstance(part, bool):
            raise ValueError(f"{part!r} is not a height")
        try:
            z = float(part)
        except (TypeError, ValueError):
            raise ValueError(f"{part!r} is not a number") from None
        if not math.isfinite(z) or z <= 0:
            raise ValueError(f"{part!r} must be a height above 0 mm")
        heights.append(round(z, 4))
    return tuple(sorted(set(heights)))


def grid_offsets(size: int, spacing: float) -> List[float]:
    """Offsets of the grid lines from the centre along one axis (mm)."""
    half = (size - 1) // 2
    return [(i - half) * spacing for i in range(size)]


class _Checker:
    """Collects coercion errors per key so all problems are reported at once."""

    def __init__(self, data: Mapping[str, Any]):
        self.data = data
        self.errors: List[SettingsError] = []

    def fail(self, key: str, message: str) -> None:
        self.errors.append(SettingsError(key, message))

    def boolean(self, key: str) -> bool:
        value = self.data[key]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(key, f"must be true or false, got {value!r}")
        return bool(DEFAULTS[key])

    def number(
        self,
        key: str,
        minimum: Optional[float] = None,
        *,
        exclusive: bool = False,
        maximum: Optional[float] = None,
        optional: bool = False,
    ) -> Any:
        value = self.data[key]
        if value is None or (optional and value == ""):
            if optional:
                return None
            self.fail(key, "is required")
            return DEFAULTS[key]
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            self.fail(key, f"must be a number, got {value!r}")
            return DEFAULTS[key]
        if not math.isfinite(number):
            self.fail(key, "must be a finite number")
            return DEFAULTS[key]
        if minimum is not None:
            if exclusive and number <= minimum:
                self.fail(key, f"must be greater than {minimum:g}")
            elif not exclusive and number < minimum:
                self.fail(key, f"must be at least {minimum:g}")
        if maximum is not None and number > maximum:
            self.fail(key, f"must be at most {maximum:g}")
        return number

    def integer(self, key: str, minimum: int, maximum: Optional[int] = None) -> int:
        number = self.number(key, minimum, maximum=maximum)
        if number is None or float(number) != int(number):
            if not any(e.key == key for e in self.errors):
                self.fail(key, f"must be a whole number, got {self.data[key]!r}")
            return int(DEFAULTS[key])
        return int(number)

    def text(self, key: str, max_length: int = 2000) -> str:
        value = self.data[key]
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(key, f"must be text, got {value!r}")
            return str(DEFAULTS[key])
        if len(value) > max_length:
            self.fail(key, f"must be at most {max_length} characters")
        return value.strip()


def merge_form(stored: Mapping[str, Any], form: Mapping[str, Any]) -> Dict[str, Any]:
    """Every setting as stored, with the values of a form (saved or not) on top: what the
    settings panel, its checks and the camera test work on."""
    candidate = {key: stored.get(key, DEFAULTS[key]) for key in DEFAULTS}
    for key, value in form.items():
        old = candidate.get(key)
        if key in MAPPING_KEYS and isinstance(old, Mapping) and isinstance(value, Mapping):
            value = {**old, **value}
        candidate[key] = value
    return candidate


def validate(data: Mapping[str, Any], profile_bounds: Optional[Bounds] = None) -> CaptureSettings:
    """Coerce and check a complete settings mapping.

    Raises :class:`InvalidSettings` listing every problem; returns the typed settings
    otherwise. ``profile_bounds`` are the active printer profile's bed bounds, used for
    the edges the settings leave empty.
    """
    unknown = sorted(set(data) - set(DEFAULTS))
    merged = {**DEFAULTS, **data}
    c = _Checker(merged)
    for key in unknown:
        if key in SINGLE_CAMERA_KEYS:
            c.fail(key, "was replaced by the list 'cameras' (settings version 4)")
        else:
            c.fail(key, "is not a Layer Capture setting")
    cameras, camera_errors = check_cameras(merged["cameras"])
    for key, message in camera_errors:
        c.fail(key, message)

    grid_size = c.integer("grid_size", 1)
    if grid_size not in GRID_SIZES and not any(e.key == "grid_size" for e in c.errors):
        c.fail("grid_size", f"must be 1, 3 or 5, got {grid_size}")
    try:
        z_heights = parse_z_heights(merged["capture_z_heights"])
    except ValueError as exc:
        c.fail("capture_z_heights", str(exc))
        z_heights = ()

    stop_mode = merged["stop_mode"]
    if stop_mode not in STOP_MODES:
        c.fail("stop_mode", f"must be 'pause' or 'hold', got {stop_mode!r}")
        stop_mode = DEFAULTS["stop_mode"]
    wait_for_moves = _check_wait_for_moves(c)
    mounting, problems = parse_mounting(merged["camera_mounting"])
    fake_toolhead, fake_problems = parse_options(merged["fake_toolhead"])
    for prefix, found in (("camera_mounting", problems), ("fake_toolhead", fake_problems)):
        for field_name, message in found:
            c.fail(f"{prefix}.{field_name}" if field_name else prefix, message)

    values = CaptureSettings(
        enabled=c.boolean("enabled"),
        grid_center_x=c.number("grid_center_x"),
        grid_center_y=c.number("grid_center_y"),
        grid_spacing=c.number("grid_spacing", 0, exclusive=True, maximum=1000),
        grid_size=grid_size,
        z_offset=c.number("z_offset", 0, maximum=500),
        bed_min_x=c.number("bed_min_x", optional=True),
        bed_min_y=c.number("bed_min_y", optional=True),
        bed_max_x=c.number("bed_max_x", optional=True),
        bed_max_y=c.number("bed_max_y", optional=True),
        bed_max_z=c.number("bed_max_z", 0, exclusive=True, optional=True),
        capture_every_n_layers=c.integer("capture_every_n_layers", 0, 100000),
        capture_z_heights=z_heights,
        min_layer_height=c.number("min_layer_height", 0, exclusive=True, maximum=10),
        cameras=cameras,
        snapshot_timeout=c.number("snapshot_timeout", 0, exclusive=True, maximum=300),
        snapshot_retries=c.integer("snapshot_retries", 0, 20),
        capture_delay=c.number("capture_delay", 0, maximum=60),
        pre_capture_delay=c.number("pre_capture_delay", 0, maximum=60),
        image_quality=c.integer("image_quality", 1, 100),
        create_thumbnails=c.boolean("create_thumbnails"),
        return_to_origin=c.boolean("return_to_origin"),
        movement_speed=c.number("movement_speed", 0, exclusive=True, maximum=100000),
        z_speed=c.number("z_speed", 0, exclusive=True, maximum=100000),
        retract_length=c.number("retract_length", 0, maximum=20),
        retract_speed=c.number("retract_speed", 0, exclusive=True, maximum=100000),
        wait_for_moves=wait_for_moves,
        firmware=_check_choice(c, "firmware", FIRMWARE_CHOICES),
        stop_mode=stop_mode,
        pause_timeout=c.number("pause_timeout", 0, exclusive=True, maximum=3600),
        resume_timeout=c.number("resume_timeout", 0, exclusive=True, maximum=3600),
        movement_timeout=c.number("movement_timeout", 0, exclusive=True, maximum=3600),
        emergency_resume_attempts=c.integer("emergency_resume_attempts", 0, 20),
        capture_folder=_check_folder(c),
        video_fps=c.integer("video_fps", 1, 120),
        video_hold_seconds=c.number("video_hold_seconds", 0, maximum=60),
        video_render_after_print=c.boolean("video_render_after_print"),
        video_render_while_printing=c.boolean("video_render_while_printing"),
        camera_mounting=mounting,
        fake_toolhead=fake_toolhead,
        mosaic_max_correction=c.number("mosaic_max_correction", 0, maximum=20),
        departure_warning_score=c.number("departure_warning_score", 0, maximum=1),
    )
    _check_bounds(c, values, profile_bounds)
    if c.errors:
        raise InvalidSettings(c.errors)
    return values


def _check_wait_for_moves(c: _Checker) -> str:
    """One of :data:`WAIT_FOR_MOVES`; case and spacing are forgiven ("g4  p0")."""
    value = c.data["wait_for_moves"]
    known = {choice.upper(): choice for choice in WAIT_FOR_MOVES}
    if isinstance(value, str) and " ".join(value.split()).upper() in known:
        return known[" ".join(value.split()).upper()]
    names = ", ".join(repr(choice) for choice in WAIT_FOR_MOVES)
    c.fail("wait_for_moves", f"must be one of {names}, got {value!r}")
    return str(DEFAULTS["wait_for_moves"])


def _check_choice(c: _Checker, key: str, choices: Tuple[str, ...]) -> str:
    value = c.data[key]
    if value in choices:
        return str(value)
    names = ", ".join(repr(choice) for choice in choices)
    c.fail(key, f"must be one of {names}, got {value!r}")
    return str(DEFAULTS[key])


def _check_folder(c: _Checker) -> str:
    folder = c.text("capture_folder", 200)
    parts = folder.rstrip("/").split("/") if folder else []
    if not parts or any(not _FOLDER_PART.match(p) for p in parts):
        c.fail(
            "capture_folder",
            "must be a relative folder name made of letters, digits, '.', '_', '-' "
            f"(sub-folders separated by '/'), got {folder!r}",
        )
        return str(DEFAULTS["capture_folder"])
    return "/".join(parts)


def _check_bounds(c: _Checker, values: CaptureSettings, profile_bounds: Optional[Bounds]) -> None:
    for axis in ("x", "y"):
        low = getattr(values, f"bed_min_{axis}")
        high = getattr(values, f"bed_max_{axis}")
        if low is not None and high is not None and low >= high:
            c.fail(f"bed_max_{axis}", f"must be greater than bed_min_{axis} ({low:g})")
    if c.errors:
        return
    bounds = values.bounds(profile_bounds)
    if bounds is None:
        return
    offsets = grid_offsets(values.grid_size, values.grid_spacing)
    outside = [
        (values.grid_center_x + dx, values.grid_center_y + dy)
        for dy in offsets
        for dx in offsets
        if not bounds.contains_xy(values.grid_center_x + dx, values.grid_center_y + dy)
    ]
    if outside:
        bed = f"X {bounds.min_x:g}..{bounds.max_x:g}, Y {bounds.min_y:g}..{bounds.max_y:g}"
        if bounds.radius is not None:
            bed = (
                f"the round bed of radius {bounds.radius:g} around "
                f"{bounds.center[0]:g}/{bounds.center[1]:g}"
            )
        c.fail(
            "grid_spacing",
            f"{len(outside)} of {values.grid_size**2} grid points lie outside the bed "
            f"({bed}); move the centre or reduce the spacing or size",
        )


def migrate(
    data: Mapping[str, Any], from_version: Optional[int], unused: Optional[List[str]] = None
) -> Dict[str, Any]:
    """Bring stored settings of an older version to :data:`SETTINGS_VERSION`; the keys
    that were set but had no effect and are dropped are added to ``unused``."""
    result = copy.deepcopy(dict(data))
    version = from_version or 1
    if version < 2:
        for old, new in LEGACY_KEYS.items():
            if old in result:
                value = result.pop(old)
                result.setdefault(new, value)
        for old in LEGACY_ONLY_KEYS:
            result.pop(old, None)
        if isinstance(result.get("capture_z_heights"), str):
            try:
                result["capture_z_heights"] = list(parse_z_heights(result["capture_z_heights"]))
            except ValueError:
                result["capture_z_heights"] = []
    # version 3 only adds settings (video_fps, video_hold_seconds, video_render_after_print,
    # video_render_while_printing): stored settings of version 2 keep every value and take
    # the new ones' defaults, which render nothing by themselves
    if version < 4 and any(key in result for key in SINGLE_CAMERA_KEYS):
        # the one camera of version 2 becomes the first (and only) of the list: the same
        # source, and as the first camera the same file names
        single = {key: result.pop(key) for key in SINGLE_CAMERA_KEYS if key in result}
        cameras, dropped = cameras_from_single(single)
        result.setdefault("cameras", cameras)
        if unused is not None:
            unused.extend(dropped)
    if version < 5:
        # version 5 adds the first camera's mounting as one mapping; a hand-written
        # ``camera_mounting: toolhead`` (a word) becomes that mapping's mode
        mounting = result.get("camera_mounting")
        if isinstance(mounting, str):
            result["camera_mounting"] = {**DEFAULTS["camera_mounting"], "mode": mounting}
    return result


def to_storable(values: CaptureSettings) -> Dict[str, Any]:
    """The validated settings as the plain values config.yaml stores."""
    stored = {key: getattr(values, key) for key in DEFAULTS}
    stored["capture_z_heights"] = list(values.capture_z_heights)
    stored["cameras"] = [camera.to_storable() for camera in values.cameras]
    stored["camera_mounting"] = values.camera_mounting.to_dict()
    stored["fake_toolhead"] = values.fake_toolhead.to_dict()
    for key in ("grid_size", "capture_every_n_layers", "image_quality", "video_fps"):
        stored[key] = int(stored[key])
    return stored
