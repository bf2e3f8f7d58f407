"""Hostile input through the real API: wrong types, unicode, oversized bodies, odd ids.

Every request gets a clear 4xx (or, for OctoPrint's own settings API, which answers 200
whatever a plugin says, a ``settings_rejected`` message naming the field) and changes
nothing: the stored settings and the capture folder are compared before and after.
Path traversal has its own tests in test_api.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, Set, Tuple

import pytest
import requests
from harness import OctoPrintServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

BASE = "/plugin/layercapture"
KEYS = [
    "grid_center_x",
    "grid_spacing",
    "grid_size",
    "z_offset",
    "bed_max_x",
    "capture_every_n_layers",
    "capture_z_heights",
    "min_layer_height",
    "cameras",
    "snapshot_timeout",
    "image_quality",
    "stop_mode",
    "movement_speed",
    "retract_length",
    "capture_folder",
]
CAMERA_FIELDS = ["name", "type", "webcam", "url", "mounting"]
GRID_FIT_KEYS = ("grid_center_x", "grid_size", "bed_max_x")
HOSTILE_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "../../etc",
            "/etc/passwd",
            "C:\\\\x",
            "💥" * 50,
            "1e999",
            "NaN",
            "-0",
            "\x00",
            "x" * 100_000,
            "javascript:alert(1)",
        ]
    ),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.booleans(),
    st.none(),
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def tree(root: Path) -> Set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.is_dir() else set()


@pytest.fixture(scope="module")
def server(octoprint_server: OctoPrintServer) -> Iterator[OctoPrintServer]:
    yield octoprint_server


@pytest.fixture
def unchanged(server: OctoPrintServer) -> Iterator[None]:
    """Fails the test when the stored settings or the capture folder changed."""
    before = server.plugin_settings_now()
    folder = server.uploads_dir
    files = tree(folder)
    yield
    assert server.plugin_settings_now() == before
    assert tree(folder) == files


def validate_raw(server: OctoPrintServer, data: Dict[str, Any]) -> Tuple[int, Any]:
    """``POST settings/validate`` of ``data``: 200 or 400, and the answer."""
    # json.dumps writes NaN and Infinity as a browser's JSON.parse never would, but Python's
    # own reader (Flask's) takes them: hostile input
    response = server.api(
        "POST",
        f"{BASE}/settings/validate",
        data=json.dumps(data, allow_nan=True),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400), response.text[:300]
    return response.status_code, response.json()


@FUZZ
@given(field=st.sampled_from(CAMERA_FIELDS), value=HOSTILE_VALUES)
def test_a_hostile_camera_field_is_named_or_accepted(
    server: OctoPrintServer, unchanged: None, field: str, value: Any
) -> None:
    """The second of two cameras with one field hostile: 400 naming that field
    (``cameras.1.<field>``), or a valid value."""
    second = {"name": "nozzle", "type": "snapshot", "url": "http://cam/snap", field: value}
    status, body = validate_raw(server, {"cameras": [{"name": "main", "type": "fake"}, second]})
    if status == 400:
        keys = {e["key"] for e in body["errors"]}
        # a camera type without its URL is the URL's error; any name but main is fine
        assert keys <= {f"cameras.1.{field}", "cameras.1.url"}, body["errors"]
        assert all(e["message"] for e in body["errors"])
    else:
        assert body["errors"] == []


@FUZZ
@given(key=st.sampled_from(KEYS), value=HOSTILE_VALUES)
def test_validate_answers_400_naming_the_field_or_accepts_a_valid_value(
    server: OctoPrintServer, unchanged: None, key: str, value: Any
) -> None:
    status, body = validate_raw(server, {key: value})
    if status == 400:
        keys = [e["key"] for e in body["errors"]]
        if key == "cameras":  # the list, or its entries and their fields (cameras.0.url)
            assert all(k == key or k.startswith(key + ".") for k in keys), body["errors"]
            keys = [key]
        # a grid that no longer fits the bed is reported on the spacing, whichever of the
        # grid's fields moved it
        assert keys in ([key], ["grid_spacing"]), body["errors"]
        if keys == ["grid_spacing"] and key != "grid_spacing":
            assert key in GRID_FIT_KEYS and "outside the bed" in body["errors"][0]["message"]
        assert all(e["message"] for e in body["errors"])
    else:
        assert body["errors"] == []


def test_saving_invalid_values_through_octoprint_changes_nothing(
    server: OctoPrintServer, unchanged: None
) -> None:
    cases: Dict[str, Any] = {
        "grid_size": "three",
        "grid_spacing": [1, 2],
        "capture_z_heights": {"a": 1},
        "stop_mode": "💥",
        "capture_folder": "../../outside",
        "image_quality": "1e999",
        "cameras": [{"name": "main", "type": "webcam", "webcam": "x" * 100_000}],
        "snapshot_url": "http://cam/snap",  # settings version 2's: replaced by "cameras"
        "not_a_setting": 1,
    }
    expected = {"cameras": "cameras.0.webcam"}
    for key, value in cases.items():
        mark = server.events.mark()
        response = server.save_plugin_settings({key: value})
        assert response.status_code == 200  # OctoPrint's settings API always says 200
        rejected = server.wait_for_plugin_message(
            10, lambda data: data.get("type") == "settings_rejected", since=mark
        )
        assert [e["key"] for e in rejected.payload["errors"]] == [expected.get(key, key)]


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2, 3]",
        b'"grid_size"',
        b"null",
        b"42",
        b"{not json",
        b'{"grid_size": 3',
        json.dumps({"webcam": "y" * 90_000}).encode(),
    ],
    ids=["list", "string", "null", "number", "broken", "unterminated", "oversized"],
)
@pytest.mark.parametrize("path", ["settings/validate", "camera/test"])
def test_bodies_that_are_not_a_settings_object_get_400(
    server: OctoPrintServer, unchanged: None, path: str, body: bytes
) -> None:
    response = server.api(
        "POST", f"{BASE}/{path}", data=body, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    assert response.status_code != 404


@pytest.mark.parametrize("path", ["settings/validate", "camera/test"])
def test_bodies_beyond_octoprints_size_limit_are_refused(
    server: OctoPrintServer, unchanged: None, path: str
) -> None:
    # OctoPrint refuses request bodies over server.maxSize (100 KB) before any plugin
    # code runs: an error status or a closed connection, never a 2xx
    body = json.dumps({"webcam": "y" * 2_000_000}).encode()
    try:
        response = server.api(
            "POST", f"{BASE}/{path}", data=body, headers={"Content-Type": "application/json"}
        )
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        return
    assert response.status_code >= 400, response.status_code


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=-1",
        "limit=0",
        "limit=100000",
        "offset=-5",
        "offset=1e3",
        "offset=%F0%9F%92%A5",
        "limit=2000000&limit=1",
        "offset=" + "9" * 400,
    ],
)
def test_bad_paging_gets_400(server: OctoPrintServer, query: str) -> None:
    response = server.api("GET", f"{BASE}/prints?{query}")
    assert response.status_code == 400, (query, response.status_code)
    assert response.json().get("error")


@pytest.mark.parametrize(
    "print_id", ["💥", "a" * 10_000, "%00", "..%2F..%2F", "-1", "null", " ", "0" * 16]
)
def test_unknown_or_odd_print_ids_are_404_and_delete_nothing(
    server: OctoPrintServer, unchanged: None, print_id: str
) -> None:
    for method in ("GET", "DELETE"):
        response = server.api(method, f"{BASE}/prints/{print_id}")
        assert response.status_code in (404, 405) and response.status_code != 500, (
            method,
            print_id,
            response.status_code,
        )
    response = server.api("GET", f"{BASE}/download/{print_id}.zip")
    assert response.status_code == 404
