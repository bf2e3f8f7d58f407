"""The gallery and status HTTP API: blueprint routes and the large-file routes.

The blueprint routes are methods of :class:`GalleryRoutes`, a mixin of the plugin class
(OctoPrint collects routes from the plugin object); they only check permissions, call
:mod:`api` and :mod:`gallery`, and answer. Images, thumbnails, metadata files and zips go
through OctoPrint's tornado handlers (:func:`file_routes`), which stream from disk with
ranges and ETags instead of passing files through Flask.

    GET    /plugin/layercapture/status                    view
    GET    /plugin/layercapture/prints?offset=&limit=     view
    GET    /plugin/layercapture/prints/<id>               view
    GET    /plugin/layercapture/prints/<id>/layers?...    view
    DELETE /plugin/layercapture/prints/<id>               manage
    POST   /plugin/layercapture/gallery/rescan            manage
    GET    /plugin/layercapture/files/<day>/<file>        view   (tornado)
    GET    /plugin/layercapture/download/<id>.zip         view   (tornado, streamed)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import flask
import octoprint.plugin
from octoprint.access.permissions import Permissions

from . import api
from .gallery import CaptureIndex, is_print_id, print_id
from .settings import DEFAULTS
from .status import LiveStatus
from .storage import resolve_inside

_logger = logging.getLogger("octoprint.plugins.layercapture.routes")


def _error(status: int, message: str) -> Any:
    return flask.make_response(flask.jsonify(error=message), status)


class GalleryRoutes:
    """Blueprint routes of the plugin class for the status and the gallery.

    The plugin class provides ``_settings``, ``_gallery`` (:class:`CaptureIndex`),
    ``_live_status`` (:class:`LiveStatus`), ``_tracker``, ``_job`` and
    ``_last_settings_errors``.
    """

    _settings: Any
    _gallery: CaptureIndex
    _live_status: LiveStatus
    _tracker: Any
    _job: Optional[Dict[str, Any]]
    _last_settings_errors: List[Dict[str, str]]

    def _capture_root(self) -> Path:
        uploads = Path(self._settings.global_get_basefolder("uploads"))
        folder = self._settings.get(["capture_folder"]) or DEFAULTS["capture_folder"]
        try:
            return resolve_inside(uploads, str(folder))
        except ValueError:
            _logger.warning(f"capture_folder {folder!r} is not usable, using the default")
            return uploads / DEFAULTS["capture_folder"]

    def _gallery_index(self) -> CaptureIndex:
        self._gallery.use_root(self._capture_root())
        return self._gallery

    def _current_print_id(self) -> Optional[str]:
        """The gallery id of the print being captured (armed), else None."""
        job = self._job
        if job is None or self._tracker is None:
            return None
        info = job["print_info"]
        return print_id(info.gcode_file, info.started_at.isoformat(timespec="seconds"), "")

    @octoprint.plugin.BlueprintPlugin.route("/status", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def get_status(self) -> Any:
        status = self._live_status.snapshot()
        tracker = self._tracker
        if tracker is not None:
            status["captured_layers"] = list(tracker.captured_layers())
        return flask.jsonify(status=status, settings_errors=self._last_settings_errors)

    @octoprint.plugin.BlueprintPlugin.route("/prints", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_prints(self) -> Any:
        try:
            offset, limit = api.parse_page(flask.request.args)
        except api.ApiError as exc:
            return _error(exc.status, exc.message)
        page = self._gallery_index().prints(offset, limit)
        answer = page.to_dict("prints")
        answer["current"] = self._current_print_id()
        return flask.jsonify(answer)

    @octoprint.plugin.BlueprintPlugin.route("/prints/<print_id>", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def get_print(self, print_id: str) -> Any:
        summary = None
        if is_print_id(print_id):
            summary = self._gallery_index().print_summary(print_id)
        if summary is None:
            return _error(404, "no such print")
        return flask.jsonify(summary)

    @octoprint.plugin.BlueprintPlugin.route("/prints/<print_id>/layers", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_layers(self, print_id: str) -> Any:
        try:
            api.check_print_id(print_id)
            offset, limit = api.parse_page(flask.request.args)
        except api.ApiError as exc:
            return _error(exc.status, exc.message)
        text = self._gallery_index().layers_json(print_id, offset, limit)
        if text is None:
            return _error(404, "no such print")
        # compact, pre-serialised layers: a page may list thousands of images
        return flask.Response(text, mimetype="application/json")

    @octoprint.plugin.BlueprintPlugin.route("/prints/<print_id>", methods=["DELETE"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def delete_print(self, print_id: str) -> Any:
        if not is_print_id(print_id):
            return _error(404, "no such print")
        if print_id == self._current_print_id():
            return _error(409, "this print is being captured; delete it when it has ended")
        result = self._gallery_index().delete_print(print_id)
        if result is None:
            return _error(404, "no such print")
        if result.failed:
            return _error(500, f"could not delete {len(result.failed)} file(s), see the log")
        _logger.info(f"Deleted print {print_id}: {result.files} files")
        return flask.jsonify(deleted=result.files)

    @octoprint.plugin.BlueprintPlugin.route("/gallery/rescan", methods=["POST"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def rescan_gallery(self) -> Any:
        index = self._gallery_index()
        index.rebuild()
        prints, files = index.counts()
        return flask.jsonify(prints=prints, files=files)


def file_routes(gallery: Callable[[], CaptureIndex]) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """Routes for the ``octoprint.server.http.routes`` hook (below /plugin/layercapture/)."""
    import tornado.web
    from octoprint.server import app
    from octoprint.server.util.flask import permission_validator
    from octoprint.server.util.tornado import (
        LargeResponseHandler,
        StaticZipBundleHandler,
        access_validation_factory,
        path_validation_factory,
    )

    def may_view(request: Any) -> None:
        # looked up per request: the plugin's permissions are registered after the hooks
        permission_validator(request, Permissions.PLUGIN_LAYERCAPTURE_VIEW)

    access = access_validation_factory(app, may_view)

    class CaptureFileHandler(LargeResponseHandler):
        """An indexed image, thumbnail or metadata file of the current capture folder."""

        def initialize(self) -> None:  # type: ignore[override]
            index = gallery()
            root = index.root or Path("/nonexistent-layercapture")
            super().initialize(
                path=str(root),
                access_validation=access,
                # only what the index knows: our names, regular files inside the folder
                path_validation=path_validation_factory(
                    lambda path: index.file_path(path) is not None, status_code=404
                ),
            )

    class CaptureZipHandler(StaticZipBundleHandler):
        """One print's images and metadata as a zip, streamed from disk while it is sent."""

        def initialize(self) -> None:  # type: ignore[override]
            super().initialize(
                files=[],
                as_attachment=True,
                attachment_name="layercapture.zip",
                access_validation=access,
            )

        def get(self, name: str) -> Any:  # type: ignore[override]
            self._access_validator(self.request)
            pid = name[: -len(".zip")] if name.endswith(".zip") else ""
            index = gallery()
            summary = index.print_summary(pid) if is_print_id(pid) else None
            files = index.print_files(pid) if summary is not None else None
            if summary is None or files is None:
                raise tornado.web.HTTPError(404)
            self._attachment_name = api.zip_name(
                summary["gcode_file"], summary["print_start_time"], pid
            )
            folder = self._attachment_name[: -len(".zip")]
            entries = [
                {"name": f"{folder}/{relative}", "path": str(path)}
                for relative, path in files
                if index.file_path(relative) is not None
            ]
            return self.stream_zip(entries)

    return [
        (r"/files/(.*)", CaptureFileHandler, {}),
        (r"/download/([^/]*)", CaptureZipHandler, {}),
    ]
