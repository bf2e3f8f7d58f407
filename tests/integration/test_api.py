"""The gallery/status HTTP API on a real OctoPrint: permissions, CSRF, path safety, the
listing, files, zips, deleting and the index following a real captured print.

One server for the module. Its capture folder is filled before start-up (so the start-up
index is tested too) with prints built by tests/support/gallery_tree.py, plus traps for path
traversal: a secret file beside the capture folder, symlinks and metadata pointing out.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
from gallery_tree import BuiltPrint, build_print
from harness import ADMIN, VIEWER, OctoPrintServer
from small_prints import QUICK_CAPTURE, write_square_print

pytestmark = pytest.mark.integration

BASE = "/plugin/layercapture"
LOOKER = "looker"  # may view captures, not manage them
SECRET = b"LC-SECRET-DO-NOT-SERVE-7f3a"
SETTINGS = QUICK_CAPTURE


class Api:
    """The module's server plus its three kinds of users."""

    def __init__(self, server: OctoPrintServer, looker_key: str) -> None:
        self.server = server
        self.keys: Dict[Optional[str], Optional[str]] = {
            ADMIN: server.admin_key,
            VIEWER: server.viewer_key,
            LOOKER: looker_key,
            None: None,
        }
        self.root = server.uploads_dir / "layercapture"
        self.prints: Dict[str, BuiltPrint] = {}

    def request(self, user: Optional[str], method: str, path: str, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", None) or {})
        key = self.keys[user]
        if key:
            headers["X-Api-Key"] = key
        if user is None and method != "GET":
            # a valid CSRF token, so what refuses the request is the missing permission
            with requests.Session() as session:
                session.get(f"{self.server.url}/login/", timeout=30)
                headers["X-CSRF-Token"] = session.cookies[f"csrf_token_P{self.server.port}"]
                return session.request(
                    method, self.server.url + path, headers=headers, timeout=30, **kw
                )
        return requests.request(method, self.server.url + path, headers=headers, timeout=30, **kw)

    def raw_get(self, path: str, user: Optional[str] = ADMIN) -> Tuple[int, bytes]:
        """GET with the path sent exactly as written (no dot-segment clean-up)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            headers = {"X-Api-Key": self.keys[user]} if self.keys[user] else {}
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def print_id(self, name: str) -> str:
        built = self.prints[name]
        listing = self.request(ADMIN, "GET", f"{BASE}/prints?limit=100").json()["prints"]
        start = built.start.isoformat(timespec="seconds")
        return next(p["id"] for p in listing if p["print_start_time"] == start)


def _add_looker(server: OctoPrintServer) -> str:
    response = server.api(
        "POST",
        "/api/access/users",
        json={
            "name": LOOKER,
            "password": "lc-looker-pass",
            "active": True,
            "groups": ["users"],
            "permissions": ["PLUGIN_LAYERCAPTURE_VIEW"],
        },
    )
    assert response.status_code == 200, response.text
    response = server.api("POST", f"/api/access/users/{LOOKER}/apikey")
    assert response.status_code == 200, response.text
    return str(response.json()["apikey"])


def _plant_traps(root: Path, day: str) -> None:
    """Files the API must never serve: outside the capture folder, reached through a
    symlinked image, a symlinked day folder, and metadata naming paths outside."""
    (root.parent / "secret.txt").write_bytes(SECRET)
    (root.parent.parent / "secret.txt").write_bytes(SECRET)
    folder = root / day
    link = folder / "layer_0099_pos_00_z_0_60_20240101_090000.jpg"
    os.symlink(root.parent / "secret.txt", link)
    meta = {
        "layer": 99,
        "z_height": 0.6,
        "timestamp": "2024-01-01T09:00:00",
        "gcode_file": "trap.gcode",
        "print_start_time": "2024-01-01T08:00:00",
        "images": [
            {"path": link.name, "index": 0, "position": {"x": 1, "y": 1, "z": 1}},
            {"path": "../../secret.txt", "index": 1, "position": {"x": 1, "y": 1, "z": 1}},
            {"path": str(root.parent / "secret.txt"), "index": 2, "position": {}},
        ],
        "settings": {"grid_size": 3},
    }
    (folder / "layer_0099_metadata_20240101_090000.json").write_text(json.dumps(meta))
    outside = root.parent / "outside-captures"
    build_print(outside, "outside.gcode", datetime(2024, 2, 2, 9, 0, 0), 1, image=SECRET)
    os.symlink(outside / "2024-02-02", root / "2024-02-02")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = OctoPrintServer(
        tmp_path_factory.mktemp("op-api"),
        plugin_settings=SETTINGS,
        # simulated link errors (one stalls for 30 s) belong to the fault tests
        virtual_printer={"simulated_errors": []},
        name="test_api-server",
    )
    server.prepare()
    root = server.uploads_dir / "layercapture"
    prints = {
        "box": build_print(root, "box.gcode", datetime(2024, 1, 1, 9, 0, 0), 4, skip_index=8),
        "vase": build_print(root, "vase.gcode", datetime(2024, 1, 3, 9, 0, 0), 2),
        "doomed": build_print(root, "doomed.gcode", datetime(2024, 1, 5, 9, 0, 0), 1),
        "csrf": build_print(root, "csrf.gcode", datetime(2024, 1, 6, 9, 0, 0), 1),
    }
    _plant_traps(root, "2024-01-01")
    try:
        server.start()
        server.connect()
        handle = Api(server, _add_looker(server))
    except BaseException:
        server.stop()
        raise
    handle.prints = prints
    yield handle
    server.stop()


# ---- permissions -------------------------------------------------------------------------


def _endpoints(api: Api) -> List[Tuple[str, str, str, Dict[str, Any]]]:
    """(method, path, needed permission, request kwargs) for every route (see _ANSWERS for
    those that answer other than 200 once allowed)."""
    box = api.print_id("box")
    layer = api.request(ADMIN, "GET", f"{BASE}/prints/{box}/layers?limit=1").json()["layers"][0]
    image = layer["images"][0]
    return [
        ("GET", f"{BASE}/status", "view", {}),
        ("GET", f"{BASE}/prints", "view", {}),
        ("GET", f"{BASE}/prints/{box}", "view", {}),
        ("GET", f"{BASE}/prints/{box}/layers", "view", {}),
        ("GET", f"{BASE}/files/{image['path']}", "view", {}),
        ("GET", f"{BASE}/files/{image['thumbnail']}", "view", {}),
        ("GET", f"{BASE}/files/{layer['metadata']}", "view", {}),
        ("GET", f"{BASE}/download/{box}.zip", "view", {}),
        ("GET", f"{BASE}/export/{box}.zip", "view", {}),
        ("GET", f"{BASE}/prints/{box}/videos", "view", {}),
        ("GET", f"{BASE}/videos/jobs", "view", {}),
        ("POST", f"{BASE}/gallery/rescan", "manage", {"json": {}}),
        ("DELETE", f"{BASE}/prints/{'0' * 16}", "manage", {}),  # 404 once allowed
        ("POST", f"{BASE}/prints/{box}/videos", "manage", {"json": {"target": "film"}}),
        ("DELETE", f"{BASE}/videos/jobs/999", "manage", {}),
        ("POST", f"{BASE}/settings/validate", "settings", {"json": {}}),
    ]


# what a route answers once allowed, where that is not 200 (nothing is deleted, rendered)
_ANSWERS = {"DELETE": (200, 404), "POST videos": (400,)}


def test_every_endpoint_refuses_users_without_the_permission(api: Api) -> None:
    allowed = {
        ADMIN: {"view", "manage", "settings"},
        LOOKER: {"view"},
        VIEWER: set(),
        None: set(),
    }
    problems = []
    for method, path, needed, kwargs in _endpoints(api):
        for user, permissions in allowed.items():
            response = api.request(user, method, path, **kwargs)
            if needed in permissions:
                key = "POST videos" if method == "POST" and path.endswith("/videos") else method
                ok = response.status_code in _ANSWERS.get(key, (200,))
            else:
                ok = response.status_code in ((401, 403) if user is None else (403,))
            if not ok:
                problems.append(f"{user or 'anonymous'} {method} {path}: {response.status_code}")
    assert problems == []


def test_csrf_token_is_required_for_session_requests(api: Api) -> None:
    session = requests.Session()
    url = api.server.url
    session.get(f"{url}/login/", timeout=30)
    token = session.cookies.get(f"csrf_token_P{api.server.port}")
    assert token, session.cookies
    login = session.post(
        f"{url}/api/login",
        json={"user": ADMIN, "pass": api.server.users[ADMIN].password, "remember": False},
        headers={"X-CSRF-Token": token},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    pid = api.print_id("csrf")
    files = api.prints["csrf"].images + api.prints["csrf"].metadata

    assert session.get(f"{url}{BASE}/prints/{pid}", timeout=30).status_code == 200
    assert session.delete(f"{url}{BASE}/prints/{pid}", timeout=30).status_code == 400
    assert session.post(f"{url}{BASE}/gallery/rescan", json={}, timeout=30).status_code == 400
    forged = session.delete(
        f"{url}{BASE}/prints/{pid}", headers={"X-CSRF-Token": "forged"}, timeout=30
    )
    assert forged.status_code == 400
    assert all(p.exists() for p in files)

    good = session.delete(f"{url}{BASE}/prints/{pid}", headers={"X-CSRF-Token": token}, timeout=30)
    assert good.status_code == 200, good.text
    assert not any(p.exists() for p in files)


# ---- path safety -------------------------------------------------------------------------

TRAVERSALS = [
    "/files/../secret.txt",
    "/files/../../secret.txt",
    "/files/2024-01-01/../../secret.txt",
    "/files/%2e%2e/secret.txt",
    "/files/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/files/..%2f..%2fsecret.txt",
    "/files/%252e%252e%252fsecret.txt",
    "/files/..%5c..%5csecret.txt",
    "/files//etc/passwd",
    "/files/%2Fetc%2Fpasswd",
    "/files/%2F" + "tmp",
    "/files/2024-01-01/%00.jpg",
    "/files/2024-01-01/layer_0099_pos_00_z_0_60_20240101_090000.jpg",  # symlink to secret
    "/files/2024-02-02/" + "layer_0003_pos_00_z_0_60_20240202_090130.jpg",  # symlinked day
    "/files/2024-01-01",
    "/files/",
    "/download/..%2f..%2fsecret.txt",
    "/download/%2e%2e.zip",
    "/export/..%2f..%2fsecret.txt",
    "/export/%2e%2e.zip",
    "/prints/..%2f..%2fsecret.txt",
    "/prints/%2e%2e/layers",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_never_reads_outside_the_capture_folder(api: Api, path: str) -> None:
    real = api.prints["box"].images[0]
    assert api.raw_get(f"{BASE}/files/{real.relative_to(api.root)}") == (200, real.read_bytes())
    status, body = api.raw_get(BASE + path)
    assert status in (400, 403, 404), (status, body[:200])
    assert SECRET not in body


def test_traps_are_not_listed_and_a_symlinked_day_is_ignored(api: Api) -> None:
    listing = api.request(ADMIN, "GET", f"{BASE}/prints?limit=100").json()
    names = {p["gcode_file"] for p in listing["prints"]}
    assert "outside.gcode" not in names
    trap = next(p for p in listing["prints"] if p["gcode_file"] == "trap.gcode")
    assert trap["image_count"] == 0  # every image of the trap metadata was refused
    layers = api.request(ADMIN, "GET", f"{BASE}/prints/{trap['id']}/layers").json()
    assert layers["layers"][0]["images"] == []
    zipped = api.request(ADMIN, "GET", f"{BASE}/download/{trap['id']}.zip")
    assert zipped.status_code == 200 and SECRET not in zipped.content
    exported = api.request(ADMIN, "GET", f"{BASE}/export/{trap['id']}.zip")
    assert exported.status_code == 404 and SECRET not in exported.content  # no image left


# ---- listing, files, zip, delete ---------------------------------------------------------


def test_listing_is_paginated_newest_first(api: Api) -> None:
    first = api.request(ADMIN, "GET", f"{BASE}/prints?offset=0&limit=2").json()
    rest = api.request(ADMIN, "GET", f"{BASE}/prints?offset=2&limit=100").json()
    assert first["total"] == rest["total"] >= 4
    assert len(first["prints"]) == 2 and first["limit"] == 2
    starts = [p["print_start_time"] for p in first["prints"] + rest["prints"]]
    assert starts == sorted(starts, reverse=True)
    box = api.print_id("box")
    layers = api.request(ADMIN, "GET", f"{BASE}/prints/{box}/layers?offset=1&limit=2").json()
    assert layers["total"] == 4 and [d["layer"] for d in layers["layers"]] == [6, 9]
    assert all(len(d["images"]) == 8 and d["skipped"][0]["index"] == 8 for d in layers["layers"])
    for query in ("limit=0", "limit=abc", "offset=-1", "limit=100000"):
        response = api.request(ADMIN, "GET", f"{BASE}/prints?{query}")
        assert response.status_code == 400 and "error" in response.json(), query
    assert api.request(ADMIN, "GET", f"{BASE}/prints/{'f' * 16}/layers").status_code == 404


def test_images_thumbnails_and_metadata_are_served_as_stored(api: Api) -> None:
    box = api.print_id("box")
    layer = api.request(ADMIN, "GET", f"{BASE}/prints/{box}/layers?limit=1").json()["layers"][0]
    image = layer["images"][4]
    assert (image["index"], image["row"], image["col"]) == (4, 1, 1)
    for rel, kind in (
        (image["path"], "image/jpeg"),
        (image["thumbnail"], "image/jpeg"),
        (layer["metadata"], "application/json"),
    ):
        response = api.request(ADMIN, "GET", f"{BASE}/files/{rel}")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith(kind)
        assert response.content == (api.root / rel).read_bytes()
    partial = api.request(
        ADMIN, "GET", f"{BASE}/files/{image['path']}", headers={"Range": "bytes=0-9"}
    )
    assert partial.status_code == 206 and len(partial.content) == 10


def test_zip_holds_the_images_and_metadata_of_one_print(api: Api) -> None:
    box = api.print_id("box")
    built = api.prints["box"]
    response = api.request(ADMIN, "GET", f"{BASE}/download/{box}.zip", stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert (
        'filename="layercapture-box-20240101_090000.zip"' in response.headers["Content-Disposition"]
    )
    length = int(response.headers["Content-Length"])  # sized up front: streamed, not built
    data = response.raw.read()
    assert len(data) == length
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        expected = sorted(
            f"layercapture-box-20240101_090000/{p.relative_to(api.root)}"
            for p in built.images + built.metadata
        )
        assert sorted(names) == expected
        for path in built.images[:3] + built.metadata[:1]:
            arcname = f"layercapture-box-20240101_090000/{path.relative_to(api.root)}"
            assert archive.read(arcname) == path.read_bytes()
    assert api.request(ADMIN, "GET", f"{BASE}/download/{'a' * 16}.zip").status_code == 404


def test_delete_removes_one_print_and_nothing_else(api: Api) -> None:
    doomed = api.prints["doomed"]
    pid = api.print_id("doomed")
    others = api.prints["vase"].images + api.prints["vase"].metadata
    response = api.request(ADMIN, "DELETE", f"{BASE}/prints/{pid}")
    assert response.status_code == 200, response.text
    assert response.json()["deleted"] == len(doomed.images + doomed.thumbnails + doomed.metadata)
    assert not any(p.exists() for p in doomed.images + doomed.thumbnails + doomed.metadata)
    assert all(p.exists() for p in others)
    assert api.request(ADMIN, "GET", f"{BASE}/prints/{pid}").status_code == 404
    assert api.request(ADMIN, "DELETE", f"{BASE}/prints/{pid}").status_code == 404
    rel = doomed.images[0].relative_to(api.root)
    assert api.request(ADMIN, "GET", f"{BASE}/files/{rel}").status_code == 404


# ---- a real print ------------------------------------------------------------------------


def test_a_captured_print_appears_in_the_gallery_and_the_status(api: Api, tmp_path: Path) -> None:
    server = api.server
    gcode = write_square_print(tmp_path, "api_square.gcode", layers=6)
    mark = server.mark()
    server.start_print(gcode)

    def state_is(state: str, layer: Optional[int] = None) -> Any:
        def check(data: Dict[str, Any]) -> bool:
            status = data.get("status") or {}
            return status.get("state") == state and layer in (None, status.get("layer"))

        return check

    waiting = server.wait_for_plugin_message(15, state_is("waiting"), since=mark)
    assert waiting.payload["status"]["next_layer"] == 2
    assert waiting.payload["status"]["estimate_source"] == "plan"
    first = server.wait_for_plugin_message(30, state_is("captured"), since=mark)
    assert first.payload["status"]["layer"] == 2
    # the layer is listed at once: the worker told the index, nobody rescanned
    listing = api.request(ADMIN, "GET", f"{BASE}/prints").json()
    current = listing["current"]
    ours = next(p for p in listing["prints"] if p["gcode_file"] == "api_square.gcode")
    assert ours["id"] == current and ours["layer_count"] == 1 and ours["image_count"] == 9
    refused = api.request(ADMIN, "DELETE", f"{BASE}/prints/{current}")
    assert refused.status_code == 409
    server.wait_print_done(timeout=60, since=mark)
    server.wait_for_plugin_message(15, state_is("captured", 4), since=mark)
    assert api.request(ADMIN, "GET", f"{BASE}/prints").json()["current"] is None  # ended
    layers = api.request(ADMIN, "GET", f"{BASE}/prints/{current}/layers").json()["layers"]
    assert [d["layer"] for d in layers] == [2, 4]
    for layer in layers:
        assert [i["index"] for i in layer["images"]] == list(range(9))
        got = api.request(ADMIN, "GET", f"{BASE}/files/{layer['images'][0]['path']}")
        assert got.content[:2] == b"\xff\xd8"  # a JPEG of the fake camera
    status = api.request(ADMIN, "GET", f"{BASE}/status").json()["status"]
    assert status["estimate_source"] == "measured" and status["measured_layers"] == 2
    assert status["estimate_s"] > 0 and status["gcode_file"] == "api_square.gcode"


def test_validation_answers_errors_and_the_grid_preview_without_saving(api: Api) -> None:
    before = api.server.plugin_settings_now()
    ok = api.request(ADMIN, "POST", f"{BASE}/settings/validate", json={"grid_size": 5})
    assert ok.status_code == 200 and ok.json()["errors"] == []
    assert len(ok.json()["preview"]["points"]) == 25
    off = api.request(ADMIN, "POST", f"{BASE}/settings/validate", json={"grid_center_x": 195})
    assert off.status_code == 400
    body = off.json()
    assert [e["key"] for e in body["errors"]] == ["grid_spacing"]
    outside = [(p["x"], p["y"]) for p in body["preview"]["points"] if not p["inside"]]
    assert sorted(outside) == [(215.0, 80.0), (215.0, 100.0), (215.0, 120.0)]
    assert body["preview"]["bed_center"] == {"x": 100.0, "y": 100.0}  # default profile
    bad = api.request(ADMIN, "POST", f"{BASE}/settings/validate", json={"image_quality": 150})
    assert bad.status_code == 400 and bad.json()["errors"][0]["key"] == "image_quality"
    assert api.request(ADMIN, "POST", f"{BASE}/settings/validate", data="[").status_code == 400
    assert api.server.plugin_settings_now() == before
