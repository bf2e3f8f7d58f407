"""Camera sources behind one small interface: ``take(request) -> Snapshot``.

* :class:`OctoPrintWebcam`: a webcam OctoPrint knows (1.9+ webcam providers such as the
  classic webcam or multi-camera plugins), through its provider's snapshot call, shown
  the way OctoPrint shows it (flip/rotate);
* :class:`~.camera_http.SnapshotUrlCamera`: a snapshot URL;
* :class:`~.camera_mjpeg.MjpegStreamCamera`: one frame of an MJPEG stream;
* :class:`FakeCamera`: drawn images, for trying everything without hardware.

:func:`camera_port` makes the port of one camera of the settings, :func:`rig_cameras`
those of all of them. Nothing here imports OctoPrint: the
plugin describes its webcams as :class:`WebcamInfo` values with a plain snapshot callable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..camera_settings import FAKE, SNAPSHOT, STREAM, CameraSettings
from ..capture.ports import CameraError, CameraPort, ShotRequest, Snapshot
from ..capture.shots import RigCamera

if TYPE_CHECKING:  # annotations only: the worker uses this module
    from ..capture.grid import GridPlan
    from ..capture.worker import CaptureRequest
from ..settings import Bounds, CaptureSettings
from .base import (
    MAX_IMAGE_BYTES,
    PermanentCameraError,
    RealCamera,
    Transform,
    check_jpeg,
    explain_io_error,
    http_error,
)
from .fake import FakeCamera
from .http import SnapshotUrlCamera
from .mjpeg import MjpegStreamCamera
from .toolhead_camera import SceneLoader, ToolheadFakeCamera, printed_so_far

WEBCAM_SETTINGS_HINT = "(Settings > Webcam & Timelapse)"


@dataclass(frozen=True)
class WebcamInfo:
    """A webcam as OctoPrint's webcam API describes it, plus its snapshot call."""

    name: str
    display_name: str
    can_snapshot: bool
    is_snapshot_webcam: bool  # OctoPrint's snapshot webcam, the plugin's default
    flip_h: bool
    flip_v: bool
    rotate90: bool
    snapshot: Callable[[], Iterable[bytes]]

    @property
    def transform(self) -> Transform:
        return Transform(self.flip_h, self.flip_v, self.rotate90)

    def to_json(self) -> Dict[str, Any]:
        """The ``GET /plugin/layercapture/webcams`` entry."""
        return {
            "name": self.name,
            "displayName": self.display_name,
            "canSnapshot": self.can_snapshot,
            "snapshot": self.is_snapshot_webcam,
            "flipH": self.flip_h,
            "flipV": self.flip_v,
            "rotate90": self.rotate90,
        }


class OctoPrintWebcam(RealCamera):
    """A webcam through its provider plugin's ``take_webcam_snapshot``.

    The provider does the HTTP (with the authentication configured in OctoPrint); this
    class bounds the wait by the plugin's timeout, retries and checks the JPEG. The bytes
    are stored as received unless the webcam is set to be flipped or rotated:
    :attr:`transform` says so, and the image writer applies it off the printer's path.
    """

    def __init__(self, webcam: WebcamInfo, timeout: float, retries: int, **kwargs: Any) -> None:
        super().__init__(
            f"webcam {webcam.name!r}", timeout, retries, transform=webcam.transform, **kwargs
        )
        self._snapshot = webcam.snapshot
        self.webcam = webcam  # for the metadata's camera record

    def fetch(self, deadline: float) -> Tuple[bytes, str]:
        data = bytearray()
        try:
            for chunk in self._snapshot():
                if chunk:
                    data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise CameraError(
                        f"{self.label}: answer larger than {MAX_IMAGE_BYTES // 2**20} MB"
                    )
                self.remaining(deadline)
        except CameraError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "WebcamNotAbleToTakeSnapshotException":
                raise PermanentCameraError(f"{self.label}: cannot take snapshots") from exc
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if isinstance(status, int) and type(exc).__name__ == "HTTPError":
                reason = getattr(exc.response, "reason", "") or ""  # type: ignore[attr-defined]
                raise http_error(self.label, status, reason) from exc
            if _is_io_error(exc):
                raise CameraError(explain_io_error(exc, self.label, None)) from exc
            raise CameraError(
                f"{self.label}: snapshot failed ({type(exc).__name__}: {exc})"
            ) from exc
        check_jpeg(data, self.label)
        return bytes(data), "image/jpeg"


def _is_io_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return isinstance(exc, OSError) or module.startswith(("requests", "urllib3"))


class NoCamera:
    """Stands in when no camera can be used: every capture fails with the reason."""

    name = "no camera"
    transform = Transform()

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def take(self, request: ShotRequest) -> Snapshot:
        raise CameraError(self.reason)

    def close(self) -> None:
        pass


def camera_port(
    camera: CameraSettings,
    values: CaptureSettings,
    find_webcam: Callable[[str], Optional[WebcamInfo]],
    bounds: Optional[Bounds] = None,
    grid_points: Sequence[Tuple[float, float]] = (),
    load_scene: Optional[SceneLoader] = None,
) -> CameraPort:
    """The port of one camera of the settings (the timeout, retries and quality are the
    settings' own). ``find_webcam("")`` returns OctoPrint's snapshot webcam."""
    timeout, retries = values.snapshot_timeout, values.snapshot_retries
    mounting = values.mounting_of(camera)
    if camera.type == FAKE and mounting.on_toolhead:
        return ToolheadFakeCamera(mounting, values.fake_toolhead, values.image_quality, load_scene)
    if camera.type == FAKE:
        return FakeCamera(values.image_quality, bounds, grid_points)
    if camera.type == STREAM:
        return MjpegStreamCamera(camera.url, timeout, retries)
    if camera.type == SNAPSHOT:
        return SnapshotUrlCamera(camera.url, timeout, retries)
    webcam = find_webcam(camera.webcam)
    if webcam is None:
        if camera.webcam:
            return NoCamera(
                f"OctoPrint has no webcam named {camera.webcam!r} {WEBCAM_SETTINGS_HINT}"
            )
        return NoCamera(f"OctoPrint has no snapshot webcam {WEBCAM_SETTINGS_HINT}")
    if not webcam.can_snapshot:
        return NoCamera(
            f"webcam {webcam.name!r}: cannot take snapshots (no snapshot URL) "
            + WEBCAM_SETTINGS_HINT
        )
    return OctoPrintWebcam(webcam, timeout, retries)


def rig_cameras(
    values: CaptureSettings,
    find_webcam: Callable[[str], Optional[WebcamInfo]],
    bounds: Optional[Bounds] = None,
    grid_points: Sequence[Tuple[float, float]] = (),
    load_scene: Optional[SceneLoader] = None,
) -> List[RigCamera]:
    """Every camera of the settings, in their order; the first one's file names are the
    single-camera names, the others' carry the camera's name. The first camera's mounting
    is ``camera_mounting`` (fixed or toolhead); the others are fixed."""
    return [
        RigCamera(
            camera.name,
            camera_port(camera, values, find_webcam, bounds, grid_points, load_scene),
            name_in_files=number > 0,
            mounting=values.mounting_of(camera).mode,
        )
        for number, camera in enumerate(values.cameras)
    ]


def cameras_for(
    request: CaptureRequest, plan: GridPlan, find_webcam: Callable[[str], Optional[WebcamInfo]]
) -> List[RigCamera]:
    """The cameras of a capture request (the fake camera draws the plan's points)."""
    points = [(p.x, p.y) for p in plan.points]
    scene = _scene_loader(request)
    return rig_cameras(request.settings, find_webcam, request.bounds, points, scene)


def _scene_loader(request: CaptureRequest) -> Optional[SceneLoader]:
    """What the fake toolhead camera sees printed: the file read up to the layer's end."""
    context = request.context
    source = None if context is None else context.print_records.gcode
    if context is None or source is None:
        return None
    end = None if context.span is None else context.span.next_line_end
    family = context.print_records.firmware_family
    options = request.settings.fake_toolhead
    return lambda layer, z: printed_so_far(source.path, end, family, z, options, layer)


def webcam_info(provided: Any, snapshot_webcam: Optional[str]) -> WebcamInfo:
    """A :class:`WebcamInfo` from OctoPrint's ``ProvidedWebcam`` (``octoprint.webcams``)."""
    config = provided.config
    name = str(config.name)
    provider = provided.providerPlugin
    return WebcamInfo(
        name=name,
        display_name=str(config.displayName or name),
        can_snapshot=bool(config.canSnapshot),
        is_snapshot_webcam=name == snapshot_webcam,
        flip_h=bool(config.flipH),
        flip_v=bool(config.flipV),
        rotate90=bool(config.rotate90),
        snapshot=lambda: provider.take_webcam_snapshot(name),
    )
