"""Pushes leave from their own thread once started, in order, and survive a failing send."""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List

import pytest

from octoprint_layercapture.web import push
from octoprint_layercapture.web.push import Pushes


class SlowPluginManager:
    def __init__(self) -> None:
        self.sent: List[Dict[str, Any]] = []
        self.release = threading.Event()
        self.done = threading.Event()

    def send_plugin_message(self, plugin: str, data: Dict[str, Any], permissions: Any) -> None:
        self.release.wait(5)
        if data.get("fail"):
            raise RuntimeError("socket gone")
        self.sent.append(data)
        if data.get("last"):
            self.done.set()


@pytest.fixture(autouse=True)
def no_octoprint_permissions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "_permission", lambda kind: kind)


def test_a_started_push_never_waits_for_the_browsers() -> None:
    manager = SlowPluginManager()
    pushes = Pushes(manager, "layercapture", logging.getLogger("test"))
    pushes.start()
    try:
        pushes.status({"state": "capturing"})  # returns although the manager blocks
        pushes.send({"type": "status", "fail": True})
        pushes.send({"type": "status", "last": True})
        assert manager.sent == []
        manager.release.set()
        assert manager.done.wait(5)
        assert [d.get("status", d) for d in manager.sent] == [
            {"state": "capturing"},
            {"type": "status", "last": True},
        ]
    finally:
        pushes.stop()
    assert not any(t.name == "layercapture-push" for t in threading.enumerate())


def test_before_start_pushes_go_out_at_once() -> None:
    manager = SlowPluginManager()
    manager.release.set()
    Pushes(manager, "layercapture", logging.getLogger("test")).status({"state": "idle"})
    assert manager.sent == [{"type": "status", "status": {"state": "idle"}}]


def test_a_renders_progress_is_pushed_as_a_video_message_for_view_captures() -> None:
    manager = SlowPluginManager()
    manager.release.set()
    Pushes(manager, "layercapture", logging.getLogger("test")).video({"id": 3, "state": "done"})
    assert manager.sent == [{"type": "video", "job": {"id": 3, "state": "done"}}]
    assert push.permission_name(push.VIDEO) == "PLUGIN_LAYERCAPTURE_VIEW"
    assert push.permission_name(push.STATUS) == "PLUGIN_LAYERCAPTURE_VIEW"
    assert push.permission_name(push.SETTINGS_REJECTED) == "SETTINGS"


class User:
    def __init__(self, *permissions: str) -> None:
        self.permissions = permissions

    def has_permission(self, permission: Any) -> bool:
        return permission in self.permissions


def test_video_pushes_reach_only_users_with_view_captures() -> None:
    pushes = Pushes(SlowPluginManager(), "layercapture", logging.getLogger("test"))
    message = {"plugin": "layercapture", "data": {"type": "video", "job": {"id": 1}}}
    # (the permissions are the message kinds here: see no_octoprint_permissions)
    assert pushes.allows(User("video"), "plugin", message)
    assert not pushes.allows(User("settings_rejected"), "plugin", message)
    assert not pushes.allows(None, "plugin", message)
