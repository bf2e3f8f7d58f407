"""Request parsing and answers of the plugin's HTTP API that need no OctoPrint.

The routes (``routes.py``) check permissions and call these; everything that decides what a
request means or what an answer holds lives here and is unit-tested alone.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import settings as lc_settings
from ..analysis.video.plan import TARGETS, RenderTarget
from ..camera_settings import submitted_url
from ..cameras.base import redact_url
from ..cameras.mounting import parse_mounting
from ..capture.grid import plan_grid
from ..numbers import finite_number
from ..store.index import is_print_id
from ..store.names import KIND_POSITION

DEFAULT_PAGE = 20
MAX_PAGE = 2000


class ApiError(Exception):
    """A request the API refuses: ``status`` is the HTTP code, ``message`` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _whole(args: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw), 10)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_page(
    args: Mapping[str, Any], default_limit: int = DEFAULT_PAGE, max_limit: int = MAX_PAGE
) -> Tuple[int, int]:
    """``offset`` and ``limit`` query parameters (``limit`` 1..max_limit)."""
    offset = _whole(args, "offset", 0, 0, 10**9)
    limit = _whole(args, "limit", default_limit, 1, max_limit)
    return offset, limit


def check_print_id(value: str) -> str:
    """A print id from a URL; anything else is an unknown print (404)."""
    if not is_print_id(value):
        raise ApiError(404, "no such print")
    return value


def parse_render_request(body: Any) -> RenderTarget:
    """The body of ``POST prints/<id>/videos``: ``{"target": "all"}``, ``{"target": "grid"}``
    or ``{"target": "position", "index": 4}``, each with an optional ``"camera"`` (one
    camera's videos; without it every camera's). Whether the print has that position or
    camera is the renderer's to say."""
    if not isinstance(body, Mapping):
        raise ApiError(400, 'expected a JSON object like {"target": "all"}')
    unknown = sorted(set(body) - {"target", "index", "camera"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(map(str, unknown))}")
    target = body.get("target", "all")
    if target not in TARGETS:
        names = ", ".join(repr(t) for t in TARGETS)
        raise ApiError(400, f"target must be one of {names}, got {target!r}")
    camera = body.get("camera")
    if camera is not None and not isinstance(camera, str):
        raise ApiError(400, f"camera must be a camera's name, got {camera!r}")
    index = body.get("index")
    if target != KIND_POSITION:
        if index is not None:
            raise ApiError(400, f"index is only for target 'position', not {target!r}")
        return RenderTarget(target, camera=camera)
    if isinstance(index, bool) or not isinstance(index, int):
        raise ApiError(400, f"index must be a whole number (a position, from 0), got {index!r}")
    return RenderTarget(target, index, camera)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def zip_camera(value: Optional[str], summary: Mapping[str, Any]) -> Optional[str]:
    """The ``camera`` of a zip request: None (every camera) or one of the print's cameras
    (400 for any other)."""
    if value is None or value == "":
        return None
    cameras = [name for name in summary.get("cameras") or [] if name]
    if value not in cameras:
        known = ", ".join(repr(name) for name in cameras) or "none with a name"
        raise ApiError(400, f"this print has no camera {value!r} (its cameras: {known})")
    return value


def zip_name(
    gcode_file: str, print_start_time: Optional[str], print_id: str, camera: Optional[str] = None
) -> str:
    """``layercapture-<file stem>-<YYYYmmdd_HHMMSS>.zip`` with only safe characters;
    ``...-<YYYYmmdd_HHMMSS>-<camera>.zip`` for one camera's images."""
    stem = gcode_file.rsplit("/", 1)[-1]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    stem = _UNSAFE.sub("_", stem).strip("._-")[:60] or "print"
    when = re.sub(r"[^0-9]", "", print_start_time or "")[:14]
    stamp = f"{when[:8]}_{when[8:]}" if len(when) == 14 else print_id
    which = "" if camera is None else "-" + _UNSAFE.sub("_", camera)
    return f"layercapture-{stem}-{stamp}{which}.zip"


def dataset_name(gcode_file: str, print_start_time: Optional[str], print_id: str) -> str:
    """``layercapture-<file stem>-<YYYYmmdd_HHMMSS>-dataset.zip`` (see :func:`zip_name`)."""
    return zip_name(gcode_file, print_start_time, print_id)[: -len(".zip")] + "-dataset.zip"


def grid_preview(
    data: Mapping[str, Any], profile_bounds: Optional[lc_settings.Bounds]
) -> Optional[Dict[str, Any]]:
    """The grid the settings in ``data`` would visit, for the settings panel's drawing.

    Works on unsaved (even invalid) values: points outside the bounds are included with
    ``inside: false`` and the reason, which is what the drawing marks. None when the grid
    fields themselves are not usable numbers.
    """
    cx, cy = finite_number(data.get("grid_center_x")), finite_number(data.get("grid_center_y"))
    spacing = finite_number(data.get("grid_spacing"))
    size = finite_number(data.get("grid_size"))
    if cx is None or cy is None or spacing is None or size is None:
        return None
    if size not in lc_settings.GRID_SIZES or (spacing <= 0 and size > 1) or spacing > 1000:
        return None
    edges = [
        finite_number(data.get(k)) for k in ("bed_min_x", "bed_min_y", "bed_max_x", "bed_max_y")
    ]
    bounds = lc_settings.effective_bounds(profile_bounds, *edges)
    if bounds is not None and (bounds.min_x >= bounds.max_x or bounds.min_y >= bounds.max_y):
        bounds = None
    # no max Z here (the layer is not known); a round bed stays round
    flat = (
        None
        if bounds is None
        else lc_settings.Bounds(*_xy(bounds), None, bounds.radius, bounds.center)
    )
    plan = plan_grid(cx, cy, max(spacing, 0.0), int(size), 0.0, 0.0, flat)
    points: List[Dict[str, Any]] = [
        {"index": p.index, "row": p.row, "col": p.col, "x": p.x, "y": p.y, "inside": True}
        for p in plan.points
    ]
    for s in plan.skipped:
        row, col = divmod(s.index, int(size))
        points.append(
            {
                "index": s.index,
                "row": row,
                "col": col,
                "x": s.x,
                "y": s.y,
                "inside": False,
                "reason": s.reason,
            }
        )
    points.sort(key=lambda p: p["index"])
    mounting, problems = parse_mounting(data.get("camera_mounting"))
    if mounting.on_toolhead and not problems:  # each shot's patch of the bed, as drawn
        for p in points:
            corners = mounting.footprint((p["x"], p["y"]))
            p["footprint"] = [[round(x, 3), round(y, 3)] for x, y in corners]
    return {
        "points": points,
        "order": [p.index for p in plan.points],
        "bounds": _box(bounds),
        "profile_bounds": _box(profile_bounds),
        "bed_center": None
        if bounds is None
        else {"x": (bounds.min_x + bounds.max_x) / 2, "y": (bounds.min_y + bounds.max_y) / 2},
    }


def _xy(bounds: lc_settings.Bounds) -> Tuple[float, float, float, float]:
    return (bounds.min_x, bounds.min_y, bounds.max_x, bounds.max_y)


def _box(bounds: Optional[lc_settings.Bounds]) -> Optional[Dict[str, Optional[float]]]:
    if bounds is None:
        return None
    box: Dict[str, Optional[float]] = dict(zip(("min_x", "min_y", "max_x", "max_y"), _xy(bounds)))
    box["max_z"] = bounds.max_z
    box["radius"] = bounds.radius
    return box


# a match starts only where a run of such characters starts: without the look-behind every
# position of a long run without "@" would be tried again, quadratic in its length (a
# hostile 100 kB value held the request for a minute)
_USERINFO = re.compile(r"(?<![^\s/@'\"])[^\s/@'\"]+@")


def masked_value(value: Any) -> str:
    """A settings value as it may be shown to others: URLs as the log shows them
    (credentials replaced by ``***``), anything that is no text by its type only."""
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    return repr(_USERINFO.sub("***@", redact_url(value)))


def submitted_value(data: Mapping[str, Any], key: str) -> Optional[Any]:
    """What was submitted for an error's key when it may carry credentials: a camera's
    URL (``cameras.<i>.url``, or ``camera.url`` of a camera test); None otherwise."""
    if key == "camera.url":
        camera = data.get("camera")
        return camera.get("url") if isinstance(camera, Mapping) else None
    return submitted_url(data, key)


def settings_errors(
    errors: Sequence[lc_settings.SettingsError], data: Mapping[str, Any]
) -> List[Dict[str, str]]:
    """The errors as ``{"key", "message"}``, where a message that repeats a camera URL
    from ``data`` (what was submitted; it may carry credentials, http://user:password@...)
    shows it masked: these go to the log, to ``GET status`` and in a push."""
    answer = []
    for error in errors:
        message = error.message
        value = submitted_value(data, error.key)
        if value is not None:
            shown = [value, value.strip()] if isinstance(value, str) else [value]
            for candidate in shown:
                if candidate != "":
                    message = message.replace(repr(candidate), masked_value(candidate))
        answer.append({"key": error.key, "message": message})
    return answer
