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
    GET    /plugin/layercapture/files/<day>/<file>        view   (tornado; videos too)
    GET    /plugin/layercapture/download/<id>.zip         view   (tornado, streamed)
    GET    /plugin/layercapture/prints/<id>/videos        view   (VideoRoutes)
    POST   /plugin/layercapture/prints/<id>/videos        manage
    GET    /plugin/layercapture/videos/jobs               view
    DELETE /plugin/layercapture/videos/jobs/<job id>      manage

A zip is produced on a worker thread and only sent by the web server's one thread (see
:class:`api.ZipDownloads`): at most ``api.ZIPS_PER_USER`` per user at a time (429 beyond),
and a print is not deleted while it is downloaded (409).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import flask
import octoprint.plugin
from octoprint.access.permissions import Permissions
from octoprint.events import Events

from . import api
from .analysis.render_jobs import RenderRefused
from .analysis.renderer import VideoRenderer
from .gallery import CaptureIndex, capture_days, is_print_id, print_id
from .settings import DEFAULTS
from .status import LiveStatus
from .storage import resolve_inside

_logger = logging.getLogger("octoprint.plugins.layercapture.routes")

# A zip download whose client takes no data for this long is ended (its slot is freed).
ZIP_STALL_SECONDS = 120

# OctoPrint's file manager events (the Files panel, /api/files) that may change captures.
FILE_EVENTS = frozenset(
    {
        Events.FILE_ADDED,
        Events.FILE_REMOVED,
        Events.FILE_MOVED,
        Events.FOLDER_ADDED,
        Events.FOLDER_REMOVED,
        Events.FOLDER_MOVED,
    }
)


def _error(status: int, message: str) -> Any:
    return flask.make_response(flask.jsonify(error=message), status)


class GalleryRoutes:
    """Blueprint routes of the plugin class for the status and the gallery.

    The plugin class provides ``_settings``, ``_gallery`` (:class:`CaptureIndex`),
    ``_downloads`` (:class:`api.ZipDownloads`), ``_live_status`` (:class:`LiveStatus`),
    ``_tracker``, ``_job`` and ``_last_settings_errors``.
    """

    _settings: Any
    _gallery: CaptureIndex
    _downloads: api.ZipDownloads
    _live_status: LiveStatus
    _tracker: Any
    _job: Optional[Dict[str, Any]]
    _last_settings_errors: List[Dict[str, str]]
    _renderer: VideoRenderer

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

    def _follow_file_change(self, payload: Dict[str, Any]) -> None:
        """A file event of OctoPrint's file manager: the day folders of ours that it touched
        are read again in the background, so the gallery stays true."""
        if payload.get("storage") != "local":
            return
        uploads = Path(self._settings.global_get_basefolder("uploads"))
        try:
            folder = self._capture_root().relative_to(uploads.resolve()).as_posix()
        except (OSError, ValueError):
            return
        paths = [payload.get(key) for key in ("path", "source_path", "destination_path")]
        touched = [capture_days(folder, path) for path in paths if isinstance(path, str)]
        if any(days is None for days in touched):
            self._gallery_index().refresh_later(None)  # the capture folder itself
        elif any(touched):
            self._gallery_index().refresh_later(set().union(*touched))

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
        if not self._renderer.cancel_print(print_id):  # its videos are files of the print
            return _error(409, "a video of this print is still being cancelled; try again")
        with self._downloads.deleting(print_id) as nobody_downloads:
            if not nobody_downloads:
                return _error(409, "this print is being downloaded; delete it when that has ended")
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


class VideoRoutes:
    """Blueprint routes of the plugin class for a print's videos. The plugin class provides
    ``_settings``, ``_renderer`` (:class:`VideoRenderer`) and ``_gallery_index()``; the
    video files themselves go through the file route of :func:`file_routes`."""

    _settings: Any
    _renderer: VideoRenderer
    _gallery_index: Callable[[], CaptureIndex]

    @octoprint.plugin.BlueprintPlugin.route("/prints/<print_id>/videos", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_videos(self, print_id: str) -> Any:
        index = self._gallery_index()
        if not is_print_id(print_id) or index.print_summary(print_id) is None:
            return _error(404, "no such print")
        return flask.jsonify(
            videos=index.videos(print_id),
            render=self._renderer.job_for(print_id),
            ffmpeg_error=self._renderer.ffmpeg_problem(),
            fps=self._settings.get_int(["video_fps"]),
            hold_seconds=self._settings.get_float(["video_hold_seconds"]),
        )

    @octoprint.plugin.BlueprintPlugin.route("/prints/<print_id>/videos", methods=["POST"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def render_videos(self, print_id: str) -> Any:
        try:
            api.check_print_id(print_id)
            target = api.parse_render_request(flask.request.get_json(silent=True))
            job = self._renderer.submit(print_id, target)
        except (api.ApiError, RenderRefused) as exc:
            return _error(exc.status, exc.message)
        return flask.make_response(flask.jsonify(job=job), 202)

    @octoprint.plugin.BlueprintPlugin.route("/videos/jobs", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_render_jobs(self) -> Any:
        return flask.jsonify(self._renderer.jobs())

    @octoprint.plugin.BlueprintPlugin.route("/videos/jobs/<int:job_id>", methods=["DELETE"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def cancel_render(self, job_id: int) -> Any:
        job = self._renderer.cancel(job_id)
        if job is None:
            return _error(404, "no such render queued or running")
        return flask.jsonify(job=job)


def file_routes(
    gallery: Callable[[], CaptureIndex], downloads: api.ZipDownloads
) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """Routes for the ``octoprint.server.http.routes`` hook (below /plugin/layercapture/)."""
    import tornado.gen
    import tornado.ioloop
    import tornado.iostream
    import tornado.util
    import tornado.web
    from octoprint.server import app
    from octoprint.server.util.flask import get_flask_user_from_request
    from octoprint.server.util.tornado import (
        LargeResponseHandler,
        RequestlessExceptionLoggingMixin,
        access_validation_factory,
        path_validation_factory,
    )

    # who passed may_view last on this thread: the zip handler counts downloads per user
    requester = threading.local()

    def may_view(request: Any) -> None:
        # looked up per request: the plugin's permissions are registered after the hooks
        user = get_flask_user_from_request(request)
        if not user.has_permission(Permissions.PLUGIN_LAYERCAPTURE_VIEW):
            raise tornado.web.HTTPError(403)
        requester.name = str(user.get_id() or "anonymous")

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

    class CaptureZipHandler(RequestlessExceptionLoggingMixin, tornado.web.RequestHandler):
        """One print's images and metadata as a zip, produced on a worker thread while it
        is sent (see :class:`api.ZipDownloads`); this handler only passes blocks on."""

        def _refuse(self, status: int, message: str) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": message}))

        async def _in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
            loop = tornado.ioloop.IOLoop.current()
            return await loop.run_in_executor(downloads.executor, fn, *args)

        async def get(self, name: str) -> None:
            access(self.request)
            user = requester.name
            pid = name[: -len(".zip")] if name.endswith(".zip") else ""
            index = gallery()
            summary = index.print_summary(pid) if is_print_id(pid) else None
            if summary is None:
                return self._refuse(404, "no such print")
            try:
                slot = downloads.acquire(user, pid)
            except api.ApiError as exc:
                return self._refuse(exc.status, exc.message)
            try:
                await self._send_zip(index, pid, summary)
            finally:
                downloads.release(slot)

        async def _send_zip(self, index: CaptureIndex, pid: str, summary: Dict[str, Any]) -> None:
            attachment = api.zip_name(summary["gcode_file"], summary["print_start_time"], pid)
            folder = attachment[: -len(".zip")]

            def plan() -> Optional[api.ZipBody]:
                # thousands of files: listed and checked on the worker thread too
                files = index.print_files(pid) or []
                entries = [(f"{folder}/{relative}", relative) for relative, _ in files]
                return api.ZipBody.of(entries, index.files_on_disk)

            try:
                body: Optional[api.ZipBody] = await self._in_worker(plan)
            except (OSError, RuntimeError) as exc:  # an unreadable folder, shutting down
                _logger.warning(f"zip of print {pid}: could not plan it: {exc}")
                return self._refuse(500, "could not read this print's files, see octoprint.log")
            if body is None:
                return self._refuse(
                    404,
                    "none of this print's files are left (removed outside the gallery?); "
                    "Rescan the gallery",
                )
            sent = 0
            try:
                self.set_header("Content-Type", "application/zip")
                self.set_header("Content-Disposition", f'attachment; filename="{attachment}"')
                self.set_header("Content-Length", str(body.size))
                if body.last_modified is not None:
                    self.set_header("Last-Modified", body.last_modified)
                while True:
                    block = await self._in_worker(body.read)
                    if not block:
                        break
                    self.write(block)
                    sent += len(block)
                    await tornado.gen.with_timeout(
                        timedelta(seconds=ZIP_STALL_SECONDS),
                        self.flush(),
                        quiet_exceptions=(tornado.iostream.StreamClosedError,),
                    )
            except tornado.iostream.StreamClosedError:
                _logger.debug(f"zip of print {pid}: the client left after {sent} bytes")
            except tornado.util.TimeoutError:
                _logger.info(
                    f"zip of print {pid}: the client took no data for {ZIP_STALL_SECONDS} s, "
                    f"download ended after {sent} of {body.size} bytes"
                )
                self.request.connection.close()
            except (OSError, RuntimeError) as exc:
                # a file was removed or changed on disk (OctoPrint's file manager, a
                # shell): the zip cannot be completed, so the connection is cut short
                _logger.warning(
                    f"zip of print {pid}: {_short(exc)}; download ended after {sent} of "
                    f"{body.size} bytes"
                )
                self.request.connection.close()
            finally:
                body.close()  # closes the file being read: quick, no worker needed

    return [
        (r"/files/(.*)", CaptureFileHandler, {}),
        (r"/download/([^/]*)", CaptureZipHandler, {}),
    ]


def _short(exc: BaseException) -> str:
    """An exception as one line without paths outside the capture folder's name."""
    if isinstance(exc, FileNotFoundError):
        return f"{Path(str(exc.filename)).name} was removed during the download"
    return f"{type(exc).__name__}: {exc}"
