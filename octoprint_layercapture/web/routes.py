"""The plugin's blueprint routes: a permission check and one call into :class:`Endpoints`.

OctoPrint collects blueprint routes from the plugin object, so they are methods of this
mixin of the plugin class; the plugin hands it its :class:`Endpoints` once
(:meth:`Routes.serve`). Large files have their own routes (``web/files.py``).

    GET    /plugin/layercapture/status                    view
    GET    /plugin/layercapture/prints?offset=&limit=     view
    GET    /plugin/layercapture/prints/<id>               view
    GET    /plugin/layercapture/prints/<id>/layers?...    view
    DELETE /plugin/layercapture/prints/<id>               manage
    POST   /plugin/layercapture/gallery/rescan            manage
    GET    /plugin/layercapture/prints/<id>/videos        view
    POST   /plugin/layercapture/prints/<id>/videos        manage
    GET    /plugin/layercapture/videos/jobs               view
    DELETE /plugin/layercapture/videos/jobs/<job id>      manage
    POST   /plugin/layercapture/settings/validate         settings
    GET    /plugin/layercapture/webcams                   settings
    POST   /plugin/layercapture/camera/test               manage (unsaved URLs: settings)
"""

from __future__ import annotations

from typing import Any, Optional

import flask
import octoprint.plugin
from octoprint.access.permissions import Permissions
from octoprint.events import Events

from .endpoints import Endpoints, error

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

route = octoprint.plugin.BlueprintPlugin.route


class Routes:
    _endpoints: Optional[Endpoints] = None

    def serve(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints

    @property
    def _web(self) -> Endpoints:
        # OctoPrint reads the plugin's public members to find routes: this one is private
        if self._endpoints is None:
            raise RuntimeError("the plugin has not been initialised")
        return self._endpoints

    def is_blueprint_protected(self) -> bool:
        return True

    def is_blueprint_csrf_protected(self) -> bool:
        return True

    @route("/status", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def get_status(self) -> Any:
        return self._web.status()

    @route("/prints", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_prints(self) -> Any:
        return self._web.prints(flask.request.args)

    @route("/prints/<print_id>", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def get_print(self, print_id: str) -> Any:
        return self._web.print_summary(print_id)

    @route("/prints/<print_id>/layers", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_layers(self, print_id: str) -> Any:
        return self._web.layers(print_id, flask.request.args)

    @route("/prints/<print_id>", methods=["DELETE"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def delete_print(self, print_id: str) -> Any:
        return self._web.delete_print(print_id)

    @route("/gallery/rescan", methods=["POST"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def rescan_gallery(self) -> Any:
        return self._web.rescan()

    @route("/prints/<print_id>/videos", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_videos(self, print_id: str) -> Any:
        return self._web.print_videos(print_id)

    @route("/prints/<print_id>/videos", methods=["POST"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def render_videos(self, print_id: str) -> Any:
        return self._web.render_videos(print_id, flask.request.get_json(silent=True))

    @route("/videos/jobs", methods=["GET"])
    @Permissions.PLUGIN_LAYERCAPTURE_VIEW.require(403)
    def list_render_jobs(self) -> Any:
        return self._web.render_jobs()

    @route("/videos/jobs/<int:job_id>", methods=["DELETE"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def cancel_render(self, job_id: int) -> Any:
        return self._web.cancel_render(job_id)

    @route("/settings/validate", methods=["POST"])
    @Permissions.SETTINGS.require(403)
    def validate_settings(self) -> Any:
        return self._web.validate_settings(flask.request.get_json(silent=True))

    @route("/webcams", methods=["GET"])
    @Permissions.SETTINGS.require(403)
    def get_webcams(self) -> Any:
        return self._web.webcam_list()

    @route("/camera/test", methods=["POST"])
    @Permissions.PLUGIN_LAYERCAPTURE_MANAGE.require(403)
    def test_camera(self) -> Any:
        return self._web.test_camera(flask.request.get_json(silent=True))


__all__ = ["FILE_EVENTS", "Routes", "error"]
