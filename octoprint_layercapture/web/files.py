"""Large files through OctoPrint's tornado handlers (the ``octoprint.server.http.routes``
hook): images, thumbnails, metadata, toolpath files, videos and their frames files
streamed from disk with ranges and ETags (a browser seeks in a video with ranges), and a
print's zip (its videos too) produced on a worker thread while it is sent.

    GET /plugin/layercapture/files/<day>/<file>        view
    GET /plugin/layercapture/download/<id>.zip         view   (streamed; ?camera=<name>)
    GET /plugin/layercapture/export/<id>.zip           view   (streamed dataset)

A zip is produced on a worker thread and only sent by the web server's one thread (see
:class:`downloads.ZipDownloads`): at most ``downloads.ZIPS_PER_USER`` per user at a time
(429 beyond), and a print is not deleted while it is downloaded (409). A dataset export
(:func:`downloads.dataset_body`) is counted with the zips and waits while a capture
sequence moves the head.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..store.index import CaptureIndex, is_print_id
from . import api, downloads

_logger = logging.getLogger("octoprint.plugins.layercapture.routes")

# A zip download whose client takes no data for this long is ended (its slot is freed).
ZIP_STALL_SECONDS = 120
# How often a dataset export looks again whether the capture sequence is over.
CAPTURE_WAIT_SECONDS = 0.25


def file_routes(
    gallery: Callable[[], CaptureIndex],
    zips: downloads.ZipDownloads,
    capturing: Callable[[], bool] = lambda: False,
    plugin_version: str = "",
) -> List[Tuple[str, Any, Dict[str, Any]]]:
    """Routes for the ``octoprint.server.http.routes`` hook (below /plugin/layercapture/).

    ``capturing`` says whether a capture sequence is moving the head: a dataset export
    waits while one is (reading thousands of metadata files competes with OctoPrint's
    comm threads for the interpreter)."""
    import tornado.gen
    import tornado.ioloop
    import tornado.iostream
    import tornado.util
    import tornado.web
    from octoprint.access.permissions import Permissions
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
        """An indexed file of the current capture folder (image, thumbnail, metadata,
        toolpath, video, frames file)."""

        def initialize(self) -> None:
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
        is sent (see :class:`downloads.ZipDownloads`); this handler only passes blocks on.
        ``?camera=<name>`` keeps only that camera's images (``one_camera``)."""

        one_camera = True
        _camera: Optional[str] = None

        def _hang_up(self) -> None:
            connection = self.request.connection
            if connection is not None:
                connection.close()  # type: ignore[attr-defined]  # tornado's HTTP1Connection

        def _refuse(self, status: int, message: str) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": message}))

        async def _in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
            loop = tornado.ioloop.IOLoop.current()
            return await loop.run_in_executor(zips.executor, fn, *args)

        async def get(self, name: str) -> None:
            access(self.request)
            user = requester.name
            pid = name[: -len(".zip")] if name.endswith(".zip") else ""
            index = gallery()
            summary = index.print_summary(pid) if is_print_id(pid) else None
            if summary is None:
                return self._refuse(404, "no such print")
            try:
                if self.one_camera:
                    self._camera = api.zip_camera(self.get_query_argument("camera", None), summary)
                slot = zips.acquire(user, pid)
            except api.ApiError as exc:
                return self._refuse(exc.status, exc.message)
            try:
                await self._send_zip(index, pid, summary)
            finally:
                zips.release(slot)

        def _attachment(self, summary: Dict[str, Any], pid: str) -> str:
            return api.zip_name(
                summary["gcode_file"], summary["print_start_time"], pid, self._camera
            )

        def _plan(self, index: CaptureIndex, pid: str, folder: str) -> Optional[downloads.ZipBody]:
            # thousands of files: listed and checked on the worker thread too
            files = index.print_files(pid, camera=self._camera) or []
            entries = [(f"{folder}/{relative}", relative) for relative, _ in files]
            return downloads.ZipBody.of(entries, index.files_on_disk)

        async def _between_blocks(self) -> None:
            """Before planning and before each block (the export waits for the head)."""

        async def _send_zip(self, index: CaptureIndex, pid: str, summary: Dict[str, Any]) -> None:
            attachment = self._attachment(summary, pid)
            folder = attachment[: -len(".zip")]
            try:
                await self._between_blocks()
                body: Optional[downloads.ZipBody] = await self._in_worker(
                    self._plan, index, pid, folder
                )
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
                    await self._between_blocks()
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
                self._hang_up()
            except (OSError, RuntimeError) as exc:
                # a file was removed or changed on disk (OctoPrint's file manager, a
                # shell): the zip cannot be completed, so the connection is cut short
                _logger.warning(
                    f"zip of print {pid}: {_short(exc)}; download ended after {sent} of "
                    f"{body.size} bytes"
                )
                self._hang_up()
            finally:
                body.close()  # closes the file being read: quick, no worker needed

    class DatasetExportHandler(CaptureZipHandler):
        """One print's captures as a Hugging Face ImageFolder dataset (analysis.dataset):
        streamed like the zip, counted with the zips per user, and paused while a capture
        sequence moves the head. Every camera's images are in it (its ``camera`` column)."""

        one_camera = False

        def _attachment(self, summary: Dict[str, Any], pid: str) -> str:
            return api.dataset_name(summary["gcode_file"], summary["print_start_time"], pid)

        def _plan(self, index: CaptureIndex, pid: str, folder: str) -> Optional[downloads.ZipBody]:
            return downloads.dataset_body(index, pid, folder, plugin_version, datetime.now())

        async def _between_blocks(self) -> None:
            while capturing():
                await tornado.gen.sleep(CAPTURE_WAIT_SECONDS)

    return [
        (r"/files/(.*)", CaptureFileHandler, {}),
        (r"/download/([^/]*)", CaptureZipHandler, {}),
        (r"/export/([^/]*)", DatasetExportHandler, {}),
    ]


def _short(exc: BaseException) -> str:
    """An exception as one line without paths outside the capture folder's name."""
    if isinstance(exc, FileNotFoundError):
        return f"{Path(str(exc.filename)).name} was removed during the download"
    return f"{type(exc).__name__}: {exc}"
