"""Who may do what on the web side, on a real OctoPrint, as the six kinds of user: anonymous,
an Operator, a read-only user, *View captures* only, *View + Manage captures* without
Settings, and an admin (tests/support/harness/server.py WEB_USERS).

* Test camera: a Manage user without Settings tries the saved camera only; no byte of a
  non-image answer is quoted; redirects to other hosts are not followed; a test ends
  within 30 s.
* Pushes: status messages reach exactly the users with *View captures*; rejected settings
  reach Settings users only, with credentials masked (also in ``GET status`` and the log).
* OctoPrint's own file API (the Files panel): deleting or moving capture folders updates
  the gallery.

The "internal service" is a local HTTP server on another port whose answers hold a secret.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests
from gallery_tree import BuiltPrint, build_print
from harness import ADMIN, OPERATOR, READ_ONLY, VIEW_MANAGE, VIEW_ONLY, OctoPrintServer
from harness.camera_servers import SnapshotServer
from harness.events import EventListener
from small_prints import write_square_print

from octoprint_layercapture.camera_settings import camera_entry

pytestmark = pytest.mark.integration

BASE = "/plugin/layercapture"
SECRET = "INTERNAL-ONLY api_token=7d1f0c"
LAYER_EVENT = "plugin_layercapture_layer_captured"
USERS: List[Optional[str]] = [None, OPERATOR, READ_ONLY, VIEW_ONLY, VIEW_MANAGE, ADMIN]


class Site:
    def __init__(
        self,
        server: OctoPrintServer,
        camera: SnapshotServer,
        internal: SnapshotServer,
        prints: Dict[str, BuiltPrint],
    ) -> None:
        self.server, self.camera, self.internal, self.prints = server, camera, internal, prints
        self.root = server.uploads_dir / "layercapture"

    def camera_test(self, user: Optional[str], body: Any) -> requests.Response:
        if user is None:  # with a CSRF token, so the permission is what refuses it
            with requests.Session() as session:
                session.get(f"{self.server.url}/login/", timeout=30)
                token = session.cookies[f"csrf_token_P{self.server.port}"]
                return session.post(
                    f"{self.server.url}{BASE}/camera/test",
                    json=body,
                    headers={"X-CSRF-Token": token},
                    timeout=60,
                )
        return self.server.api_as(user, "POST", f"{BASE}/camera/test", json=body, timeout=60)

    def secret_url(self) -> str:
        """An address of the internal service whose answer holds the secret."""
        return self.internal.url("text")


def camera_body(kind: str, url: str) -> Dict[str, Any]:
    """A Test camera body: one camera of the form with this URL."""
    return {"camera": {"type": kind, "url": url}}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with SnapshotServer() as camera, SnapshotServer() as internal:
        internal.text = SECRET
        server = OctoPrintServer(
            tmp_path_factory.mktemp("op-web-security"),
            plugin_settings={
                "cameras": [camera_entry(type="snapshot", url=camera.url("jpeg"))],
                "snapshot_timeout": 2.0,
                "snapshot_retries": 0,
                "capture_every_n_layers": 100,  # prints are armed (status pushes), not captured
            },
            name="test_web_security-server",
        )
        server.prepare()
        root = server.uploads_dir / "layercapture"
        prints = {
            "kept": build_print(root, "kept.gcode", datetime(2024, 5, 1, 9), 2),
            "deleted": build_print(root, "deleted.gcode", datetime(2024, 5, 2, 9), 2),
            "moved": build_print(root, "moved.gcode", datetime(2024, 5, 3, 9), 2),
        }
        try:
            server.start()
            server.add_web_users()
            yield Site(server, camera, internal, prints)
        finally:
            server.stop()


# ---- Test camera ---------------------------------------------------------------------------


def test_the_saved_camera_may_be_tested_with_manage_captures(site: Site) -> None:
    expected = {None: 403, OPERATOR: 403, READ_ONLY: 403, VIEW_ONLY: 403, VIEW_MANAGE: 200}
    expected[ADMIN] = 200
    seen = {}
    for user in USERS:
        response = site.camera_test(user, {})
        seen[user] = response.status_code
        if response.status_code == 200:
            answer = response.json()
            assert answer["ok"] is True and answer["size_bytes"] == len(site.camera.jpeg)
    assert seen == expected
    # naming the saved address itself is no new address
    same = site.camera_test(VIEW_MANAGE, camera_body("snapshot", site.camera.url("jpeg")))
    assert same.status_code == 200 and same.json()["ok"] is True


@pytest.mark.parametrize("kind", ["snapshot", "stream"])
def test_an_unsaved_camera_address_needs_the_settings_permission(site: Site, kind: str) -> None:
    hits = len(site.internal.hits)
    refused = site.camera_test(VIEW_MANAGE, camera_body(kind, site.secret_url()))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"].startswith("this camera's URL is not one of the saved")
    assert "needs the Settings permission" in refused.json()["error"]
    assert SECRET not in refused.text
    assert len(site.internal.hits) == hits, "the address was never asked"
    # an admin (Settings) may try it, and learns its type and size, not its content
    allowed = site.camera_test(ADMIN, camera_body(kind, site.secret_url()))
    assert allowed.status_code == 200
    answer = allowed.json()
    assert answer["ok"] is False and len(site.internal.hits) == hits + 1
    assert SECRET not in allowed.text and "api_token" not in allowed.text
    expected = (
        f"answered text/plain with {len(SECRET)} bytes, not a JPEG"
        if kind == "snapshot"
        else "not an MJPEG stream (answered text/plain)"
    )
    assert answer["error"].endswith(expected), answer["error"]


def test_no_byte_of_an_answer_that_is_no_image_is_quoted(site: Site) -> None:
    for path, message in (
        ("text", "answered text/plain with 30 bytes"),
        ("html", "answered text/html; charset=utf-8 with"),
        ("status/500", "HTTP 500 Internal Server Error"),
        ("status/404", "HTTP 404 Not Found"),
    ):
        url = site.internal.url(path)
        response = site.camera_test(ADMIN, camera_body("snapshot", url))
        answer = response.json()
        assert answer["ok"] is False, path
        assert "<html" not in answer["error"] and SECRET not in response.text, answer
        assert message.split(";")[0] in answer["error"], (path, answer["error"])


def test_redirects_to_another_host_are_not_followed(site: Site) -> None:
    hits = len(site.internal.hits)
    away = site.camera.url("redirect?to=" + requests.utils.quote(site.secret_url(), safe=""))
    answer = site.camera_test(ADMIN, camera_body("snapshot", away)).json()
    assert answer["ok"] is False
    assert f"redirects to another host (http://127.0.0.1:{site.internal.port})" in answer["error"]
    assert "which is not followed" in answer["error"]
    assert len(site.internal.hits) == hits, "the other host was never asked"
    near = site.camera.url("redirect?to=/jpeg")  # the same host: followed
    assert site.camera_test(ADMIN, camera_body("snapshot", near)).json()["ok"] is True


def test_a_camera_test_ends_within_30_s_whatever_the_settings(site: Site) -> None:
    """16 s x 2 attempts would hold the request 32 s: the test stops after one attempt."""
    url = site.camera.url("hang")
    before = len(site.camera.hits_for("hang"))
    started = time.monotonic()
    try:
        response = site.camera_test(
            ADMIN, {**camera_body("snapshot", url), "snapshot_timeout": 16, "snapshot_retries": 1}
        )
    finally:
        site.camera.release_hangs()
    took = time.monotonic() - started
    answer = response.json()
    assert answer["ok"] is False and answer["error"] == f"snapshot URL {url}: timed out after 16 s"
    assert len(site.camera.hits_for("hang")) == before + 1, "one attempt"
    assert took < 20, took


# ---- pushes --------------------------------------------------------------------------------


def listen_all(server: OctoPrintServer) -> Dict[Optional[str], EventListener]:
    listeners: Dict[Optional[str], EventListener] = {}
    try:
        for user in USERS:
            listeners[user] = server.listen_as(user)
    except BaseException:
        stop_all(listeners)
        raise
    return listeners


def stop_all(listeners: Dict[Optional[str], EventListener]) -> None:
    for listener in listeners.values():
        listener.stop()


def ours(listener: EventListener, kind: Optional[str] = None) -> List[Any]:
    return [
        m.payload
        for m in listener.plugin_messages("layercapture")
        if kind is None or m.payload.get("type") == kind
    ]


def test_status_pushes_reach_exactly_the_users_with_view_captures(
    site: Site, tmp_path: Path
) -> None:
    server = site.server
    server.connect()
    listeners = listen_all(server)
    try:
        mark = server.mark()
        server.start_print(write_square_print(tmp_path, "pushed.gcode", layers=3))
        server.wait_print_done(timeout=60, since=mark)
        server.wait_for_plugin_message(
            15, lambda data: data.get("status", {}).get("state") == "idle", since=mark
        )
        server.barrier(list(listeners.values()))  # every push before it has arrived
    finally:
        stop_all(listeners)
    received = {user: ours(listener) for user, listener in listeners.items()}
    assert {user for user, got in received.items() if got} == {VIEW_ONLY, VIEW_MANAGE, ADMIN}
    for user in (VIEW_ONLY, VIEW_MANAGE, ADMIN):
        states = [data["status"]["state"] for data in received[user]]
        assert states[0] == "waiting" and states[-1] == "idle", (user, states)
        assert received[user][0]["status"]["gcode_file"] == "pushed.gcode"


def test_the_layer_event_reaches_only_users_with_view_captures(site: Site, tmp_path: Path) -> None:
    """OctoPrint sends events to every user with its Status permission; the plugin's
    event per captured layer names the print and its files, so only users who may view
    the captures get it (here: the admin; the View-only users have no Status at all)."""
    server = site.server
    server.connect()
    listeners = listen_all(server)
    try:
        response = server.save_plugin_settings({"capture_every_n_layers": 2, "grid_size": 1})
        assert response.status_code == 200, response.text
        mark = server.mark()
        server.start_print(write_square_print(tmp_path, "event.gcode", layers=3))
        server.wait_print_done(timeout=60, since=mark)
        server.events.wait_for_events(LAYER_EVENT, 1, timeout=30, since=mark)
        server.barrier(list(listeners.values()))
    finally:
        stop_all(listeners)
        server.save_plugin_settings({"capture_every_n_layers": 100, "grid_size": 3})
    received = {user: listener.events(LAYER_EVENT) for user, listener in listeners.items()}
    assert {user for user, got in received.items() if got} == {ADMIN}
    assert received[ADMIN][0].payload["gcode_file"] == "event.gcode"


def test_rejected_settings_reach_settings_users_only_with_credentials_masked(site: Site) -> None:
    server = site.server
    saved = server.plugin_settings_now()["cameras"]
    since = server.log_size()
    listeners = listen_all(server)
    try:
        response = server.save_plugin_settings(
            {
                "cameras": [
                    camera_entry(type="snapshot", url="ftp://admin:hunter2@cam/snap"),
                    {"name": "nozzle", "type": "stream", "url": {"pwd": "hunter2"}},
                ]
            }
        )
        assert response.status_code == 200, response.text
        server.barrier(list(listeners.values()))
    finally:
        stop_all(listeners)
    rejected = {user: ours(listener, "settings_rejected") for user, listener in listeners.items()}
    assert {user for user, got in rejected.items() if got} == {ADMIN}
    errors = {e["key"]: e["message"] for e in rejected[ADMIN][0]["errors"]}
    assert errors == {
        "cameras.0.url": "must be an http:// or https:// URL, got 'ftp://***@cam/snap'",
        "cameras.1.url": "must be text, got a dict",
    }
    status = server.api_as(VIEW_ONLY, "GET", f"{BASE}/status").json()
    assert {e["key"]: e["message"] for e in status["settings_errors"]} == errors
    line = server.wait_for_log("Refused invalid Layer Capture settings", since=since)
    assert "ftp://***@cam/snap" in line
    assert "hunter2" not in server.log_text(since)
    assert server.plugin_settings_now()["cameras"] == saved, "nothing was saved"
    assert all("hunter2" not in json.dumps(m) for got in rejected.values() for m in got)


def test_a_push_held_back_before_a_login_is_not_delivered_at_the_login(site: Site) -> None:
    """OctoPrint keeps messages for a socket that has not logged in yet and sends them
    unchecked once it has: a push must be refused for it before that."""
    server = site.server
    early = server.listen_as(OPERATOR, defer_login=True)
    try:
        mark = server.mark()
        response = server.save_plugin_settings(
            {"cameras": [camera_entry(type="snapshot", url="ftp://admin:hunter2@cam/")]}
        )
        assert response.status_code == 200, response.text
        # the admin got it, so it went out to every socket, the early one too
        server.wait_for_plugin_message(
            10, lambda data: data.get("type") == "settings_rejected", since=mark
        )
        early.log_in()
        server.barrier([early])
    finally:
        early.stop()
    assert ours(early) == []


# ---- OctoPrint's file API (the Files panel) ------------------------------------------------


def listed(site: Site) -> Dict[str, Dict[str, Any]]:
    prints = site.server.get_json(f"{BASE}/prints?limit=100")["prints"]
    return {p["gcode_file"]: p for p in prints}


def wait_for_gallery(site: Site, check: Any, timeout: float = 10.0) -> Dict[str, Dict[str, Any]]:
    """Polls the listing until ``check(listing)`` holds (the index is updated in the
    background after OctoPrint's file event)."""
    deadline = time.monotonic() + timeout
    while True:
        now = listed(site)
        if check(now):
            return now
        assert time.monotonic() < deadline, f"the gallery did not follow: {sorted(now)}"
        time.sleep(0.05)


def test_a_day_folder_deleted_through_octoprints_file_api_leaves_the_gallery(site: Site) -> None:
    server = site.server
    built = site.prints["deleted"]
    day = built.images[0].parent.name
    before = listed(site)
    pid = before["deleted.gcode"]["id"]
    image = f"{BASE}/files/{built.images[0].relative_to(site.root)}"
    assert server.api("GET", image).status_code == 200
    # OctoPrint's own permission decides: FILES_DELETE (Operators and admins by default)
    for user in (READ_ONLY, VIEW_ONLY, VIEW_MANAGE):
        refused = server.api_as(user, "DELETE", f"/api/files/local/layercapture/{day}")
        assert refused.status_code == 403, (user, refused.status_code)
    removed = server.api_as(OPERATOR, "DELETE", f"/api/files/local/layercapture/{day}")
    assert removed.status_code == 204, removed.text
    after = wait_for_gallery(site, lambda now: "deleted.gcode" not in now)
    assert after["kept.gcode"] == before["kept.gcode"]
    assert server.api("GET", f"{BASE}/prints/{pid}").status_code == 404
    assert server.api("GET", image).status_code == 404
    assert server.api("GET", f"{BASE}/download/{pid}.zip").status_code == 404


def test_a_day_folder_moved_away_and_back_through_octoprint_follows_in_the_gallery(
    site: Site,
) -> None:
    server = site.server
    day = site.prints["moved"].images[0].parent.name
    before = listed(site)["moved.gcode"]
    away = server.api_as(
        OPERATOR,
        "POST",
        f"/api/files/local/layercapture/{day}",
        json={"command": "move", "destination": "archived-captures"},
    )
    assert away.status_code == 201, away.text
    wait_for_gallery(site, lambda now: "moved.gcode" not in now)
    back = server.api_as(
        OPERATOR,
        "POST",
        "/api/files/local/archived-captures",
        json={"command": "move", "destination": f"layercapture/{day}"},
    )
    assert back.status_code == 201, back.text
    after = wait_for_gallery(site, lambda now: "moved.gcode" in now)
    assert after["moved.gcode"] == before


def test_capture_images_are_not_served_by_octoprints_own_download_route(site: Site) -> None:
    """What the README says the Files panel can do: list and delete or move capture
    folders, not read the images."""
    built = site.prints["kept"]
    relative = built.images[0].relative_to(site.root)
    for user in (OPERATOR, READ_ONLY, ADMIN):
        response = site.server.api_as(
            user, "GET", f"/downloads/files/local/layercapture/{relative}"
        )
        assert response.status_code == 404, (user, response.status_code)
    listing = site.server.get_json("/api/files/local/layercapture?recursive=true")
    names = json.dumps(listing)
    assert built.images[0].parent.name in names and built.images[0].name not in names


# ---- OctoPrint's settings API -------------------------------------------------------------


@pytest.mark.parametrize("user", [OPERATOR, READ_ONLY, VIEW_ONLY, VIEW_MANAGE, ADMIN])
def test_camera_urls_reach_only_users_who_may_change_settings(site: Site, user: str) -> None:
    # a camera URL may carry credentials (user:password@, ?pwd=): /api/settings hands it
    # only to users with the Settings permission, as OctoPrint's classic webcam does
    server = site.server
    url = site.camera.url("jpeg")
    response = server.api_as(user, "GET", "/api/settings")
    if user in (VIEW_ONLY, VIEW_MANAGE):
        # groups without OctoPrint's Settings read permission get no settings at all
        assert response.status_code == 403, response.text
        return
    assert response.status_code == 200, response.text
    ours = response.json().get("plugins", {}).get("layercapture", {})
    if user == ADMIN:
        assert ours["cameras"][0]["url"] == url
    else:
        assert not ours.get("cameras") and url not in json.dumps(ours), ours
