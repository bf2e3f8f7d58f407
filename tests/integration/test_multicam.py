"""Every camera at every position (issue 18) on a real OctoPrint with its virtual printer.

Three real cameras on 127.0.0.1: two snapshot URLs (tests/support/harness/camera_servers.py,
each with a JPEG of its own) and one MJPEG stream from ffmpeg (harness/mjpeg_servers.py,
which starts every client with a frame kept from before, as ustreamer does). In both stop
modes every grid position gets one image per camera, each the camera's bytes unchanged,
the three asked at the same moment; a camera that hangs past its timeout is recorded
failed for its own shots while the others are stored; and an OctoPrint whose config.yaml
still has settings version 2's single-camera keys is migrated and names its files exactly
as before.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Sequence, Tuple

import jsonschema
import pytest
import yaml
from capture_checks import METADATA_RE, apply_settings, capture_files, wait_for_captured_layers
from harness import OctoPrintServer
from harness.camera_servers import Hit, SnapshotServer, make_jpeg
from harness.mjpeg_servers import MjpegRelay, RelayClient
from small_prints import write_square_print

from octoprint_layercapture.camera_settings import camera_entry
from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.settings import SETTINGS_VERSION

pytestmark = pytest.mark.integration

LAYERS = 5  # a square print; every 2nd layer is captured: layers 2 and 4 (the last, 5, never)
CAPTURED = [2, 4]
GRID = 9
SETTINGS: Dict[str, Any] = {
    "enabled": True,
    "grid_center_x": 100.0,
    "grid_center_y": 100.0,
    "grid_spacing": 20.0,
    "grid_size": 3,
    "capture_every_n_layers": 2,
    "capture_z_heights": [],
    "capture_delay": 0.05,
    "pre_capture_delay": 0.0,
    "retract_length": 0.0,
    "snapshot_timeout": 5.0,
    "snapshot_retries": 0,
    "create_thumbnails": True,
}
# the snapshot cameras answer after this long: taken one after the other, the three cameras
# of a position would cost at least twice it
LATENCY_S = 0.3
# settings version 2's names, as main's store/names.py made them (no camera part): what an
# old single-camera config must still produce
OLD_IMAGE = re.compile(
    r"^layer_(?P<layer>\d{4})_pos_(?P<index>\d{2})_z_(?P<z>\d+_\d{2})"
    r"_(?P<stamp>\d{8}_\d{6})(?P<thumb>_thumb)?\.jpg$"
)
OLD_TOOLPATH = re.compile(r"^layer_\d{4}_toolpath_\d{8}_\d{6}\.(json|svg)$")
VALIDATOR = jsonschema.Draft202012Validator(load_schema("metadata"))


@dataclass
class Cameras:
    bed: SnapshotServer  # the first camera: plain file names
    nozzle: SnapshotServer
    side: MjpegRelay


@pytest.fixture(scope="module")
def cameras() -> Iterator[Cameras]:
    with (
        SnapshotServer(make_jpeg(seed=1)) as bed,
        SnapshotServer(make_jpeg((320, 240), seed=2)) as nozzle,
        MjpegRelay(keep_last=True) as side,
    ):
        assert bed.jpeg != nozzle.jpeg
        yield Cameras(bed, nozzle, side)


@pytest.fixture(scope="module")
def octoprint_server_options() -> Dict[str, Any]:
    # the virtual printer's simulated link errors (one stalls for 30 s) are test_faults'
    return {"virtual_printer": {"simulated_errors": []}}


def three_cameras(cams: Cameras, nozzle_path: str) -> List[Dict[str, str]]:
    return [
        camera_entry(name="bed", type="snapshot", url=cams.bed.url(f"slow?delay={LATENCY_S}")),
        camera_entry(name="nozzle", type="snapshot", url=cams.nozzle.url(nozzle_path)),
        camera_entry(name="side", type="stream", url=cams.side.url),
    ]


@dataclass
class Run:
    metadata: List[Tuple[Path, Dict[str, Any]]]  # by layer
    files: List[Path]  # every new file of the capture folder
    seconds: float  # the print, start to done


def run_print(server: OctoPrintServer, folder: Path, settings: Mapping[str, Any], name: str) -> Run:
    if settings:
        apply_settings(server, {**SETTINGS, **settings})
    server.wait_for_state("Operational", 30)
    known = capture_files(server)
    mark = server.mark()
    started = time.monotonic()
    server.start_print(write_square_print(folder, name, layers=LAYERS))
    server.wait_print_done(timeout=120, since=mark)
    seconds = time.monotonic() - started
    wait_for_captured_layers(server, len(CAPTURED), since=mark, timeout=30)
    files = sorted(capture_files(server) - known)
    metadata = sorted(
        (
            (p, json.loads(p.read_text(encoding="utf-8")))
            for p in files
            if METADATA_RE.match(p.name)
        ),
        key=lambda item: int(item[1]["layer"]),
    )
    assert [meta["layer"] for _, meta in metadata] == CAPTURED
    for path, meta in metadata:
        errors = [f"{list(e.path)}: {e.message}" for e in VALIDATOR.iter_errors(meta)]
        assert not errors, f"{path.name}:\n" + "\n".join(errors)
        assert meta["schema_version"] == 3
    return Run(metadata, files, seconds)


def by_camera(meta: Mapping[str, Any]) -> Dict[str, Dict[int, Dict[str, Any]]]:
    """The layer's images by camera name and grid index (one image each, checked)."""
    found: Dict[str, Dict[int, Dict[str, Any]]] = {}
    for image in meta["images"]:
        mine = found.setdefault(image["camera_name"], {})
        assert image["index"] not in mine, f"two images of {image['camera_name']} at one position"
        mine[image["index"]] = image
    return found


def in_visiting_order(images: Mapping[int, Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    return sorted(images.values(), key=lambda image: str(image["captured_at"]))


def hits_between(hits: Sequence[Hit], start: float, end: float) -> List[Hit]:
    return [hit for hit in hits if start <= hit.at <= end]


def check_stream_images(
    images: Sequence[Mapping[str, Any]], folder: Path, relay: MjpegRelay, clients: List[RelayClient]
) -> None:
    """Each stream image is one of ffmpeg's frames byte for byte, from a connection of its
    own, closed after it, and never the frame the server kept from before."""
    frames = relay.frame_data()
    assert len(clients) == len(images), "one connection per position"
    for image, client in zip(images, clients):
        stored = (folder / image["path"]).read_bytes()
        index = frames.get(stored)
        assert index is not None, f"{image['path']} is none of ffmpeg's frames"
        assert client.closed.wait(5), "the stream must be closed after its frame"
        kept = client.sent[0][0]
        assert index > kept, "the frame kept from before the settle point must not be used"
        assert index in [sent for sent, _ in client.sent], "the frame came on its own connection"


@pytest.mark.parametrize("mode", ["hold", "pause"])
def test_every_position_has_one_image_per_camera_as_each_camera_sent_it(
    octoprint_server: OctoPrintServer, cameras: Cameras, tmp_path: Path, mode: str
) -> None:
    server = octoprint_server
    bed_hits, nozzle_hits = len(cameras.bed.hits), len(cameras.nozzle.hits)
    clients_before = len(cameras.side.clients)
    started = time.monotonic()
    run = run_print(
        server,
        tmp_path,
        {
            "stop_mode": mode,
            "cameras": three_cameras(cams=cameras, nozzle_path=f"slow?delay={LATENCY_S}"),
        },
        f"multicam_{mode}.gcode",
    )
    new_clients = cameras.side.clients[clients_before:]
    assert len(new_clients) == GRID * len(CAPTURED)
    bed = cameras.bed.hits[bed_hits:]
    nozzle = cameras.nozzle.hits[nozzle_hits:]
    assert len(bed) == len(nozzle) == GRID * len(CAPTURED), "one request per position each"
    assert all(hit.at >= started for hit in bed + nozzle)
    for number, (path, meta) in enumerate(run.metadata):
        folder = path.parent
        assert meta["failures"] == [], meta["failures"]
        assert [c["name"] for c in meta["cameras"]] == ["bed", "nozzle", "side"]
        kinds = [c["camera_info"]["kind"] for c in meta["cameras"]]
        assert kinds == ["snapshot_url", "snapshot_url", "stream_url"]
        assert meta["camera_info"] == meta["cameras"][0]["camera_info"]
        images = by_camera(meta)
        assert {name: sorted(found) for name, found in images.items()} == {
            name: list(range(GRID)) for name in ("bed", "nozzle", "side")
        }
        for name, camera in (("bed", cameras.bed), ("nozzle", cameras.nozzle)):
            for image in images[name].values():
                assert (folder / image["path"]).read_bytes() == camera.jpeg, image["path"]
                assert image["sha256"] is not None and image["size_bytes"] == len(camera.jpeg)
        # the first camera keeps the single-camera names, the others carry their own
        for name, images_of in images.items():
            for image in images_of.values():
                part = f"_pos_{image['index']:02d}_cam_{name}_z_"
                assert (part in image["path"]) == (name != "bed"), image["path"]
                assert (folder / image["thumbnail"]).is_file()
        resolutions = [c["camera_info"]["resolution"] for c in meta["cameras"]]
        assert resolutions[:2] == [{"width": 640, "height": 480}, {"width": 320, "height": 240}]
        clients = new_clients[number * GRID : (number + 1) * GRID]
        side = in_visiting_order(images["side"])
        check_stream_images(side, folder, cameras.side, clients)
        # per position the three cameras are asked at the same moment, after the head
        # settled: the stream connection opens with the two snapshot requests, never
        # before them (a stream kept open from an earlier position would)
        layer_bed = bed[number * GRID : (number + 1) * GRID]
        layer_nozzle = nozzle[number * GRID : (number + 1) * GRID]
        for a, b, client in zip(layer_bed, layer_nozzle, clients):
            asked = [a.at, b.at, client.connected_at]
            assert max(asked) - min(asked) < 0.25, f"cameras asked {asked} apart"
        # so a position costs about the slowest camera, not the sum of the three
        capture = float(meta["timings"]["capture"])
        assert capture < GRID * 1.7 * LATENCY_S, meta["timings"]
    assert run.seconds < 60, run.seconds


def test_a_camera_that_hangs_fails_alone_and_the_others_are_stored(
    octoprint_server: OctoPrintServer, cameras: Cameras, tmp_path: Path
) -> None:
    """The nozzle camera accepts and never answers: each of its pictures fails after its
    1 s timeout, two in a row drop it for the layer's rest; the bed and stream cameras
    keep taking every position, and the head is held no longer than that."""
    server = octoprint_server
    clients_before = len(cameras.side.clients)
    try:
        run = run_print(
            server,
            tmp_path,
            {
                "stop_mode": "pause",
                "cameras": three_cameras(cams=cameras, nozzle_path="hang"),
                "snapshot_timeout": 1.0,
                "snapshot_retries": 0,
            },
            "multicam_hang.gcode",
        )
    finally:
        cameras.nozzle.release_hangs()
    url = cameras.nozzle.url("hang")
    clients = cameras.side.clients[clients_before:]
    for number, (path, meta) in enumerate(run.metadata):
        images = by_camera(meta)
        assert sorted(images) == ["bed", "side"], "no image of the hanging camera"
        assert sorted(images["bed"]) == sorted(images["side"]) == list(range(GRID))
        for image in images["bed"].values():
            assert (path.parent / image["path"]).read_bytes() == cameras.bed.jpeg
        check_stream_images(
            in_visiting_order(images["side"]),
            path.parent,
            cameras.side,
            clients[number * GRID : (number + 1) * GRID],
        )
        failures = meta["failures"]
        assert all(f["camera"] == "nozzle" and f["phase"] == "capture" for f in failures)
        timed_out = [f for f in failures if f["index"] is not None]
        assert len(timed_out) == 2, failures
        for failure in timed_out:
            where = f"position {failure['index'] + 1} of {GRID} (nozzle): "
            assert failure["message"] == f"{where}snapshot URL {url}: timed out after 1 s"
            assert failure["duration_s"] == pytest.approx(1.0, abs=0.5)
        (dropped,) = [f for f in failures if f["index"] is None]
        assert dropped["message"] == (
            "camera 'nozzle': 2 failures in a row: its remaining 7 positions of this layer "
            "are skipped; the other cameras go on"
        )
        # the two timeouts ran beside the other cameras, the skipped positions cost nothing
        assert float(meta["timings"]["capture"]) < 2 * 1.0 + GRID * 1.7 * LATENCY_S


def test_an_old_single_camera_config_keeps_todays_file_names(
    make_server: Callable[..., OctoPrintServer], cameras: Cameras, tmp_path: Path
) -> None:
    """config.yaml as settings version 2 wrote it (the four single-camera keys, no
    ``cameras``): OctoPrint's migration turns it into one camera, and its files are named
    exactly as before, each image the camera's bytes."""
    url = cameras.bed.url("jpeg")
    old = {
        **SETTINGS,
        "use_fake_camera": False,
        "webcam": "",
        "snapshot_url": url,
        "stream_url": "",
        "stop_mode": "hold",
        "_config_version": 2,
    }
    server = make_server(plugin_settings=old, virtual_printer={"simulated_errors": []})
    stored = yaml.safe_load(server.config_path.read_text(encoding="utf-8"))
    ours = stored["plugins"]["layercapture"]
    assert ours["_config_version"] == SETTINGS_VERSION
    assert ours["cameras"] == [camera_entry(type="snapshot", url=url)]
    assert not {"use_fake_camera", "webcam", "snapshot_url", "stream_url"} & set(ours)
    assert f"Migrated settings from version 2 to {SETTINGS_VERSION}" in server.log_text(0)
    run = run_print(server, tmp_path, {}, "old_config.gcode")
    names = {p.name for p in run.files}
    for path, meta in run.metadata:
        assert meta["failures"] == [] and len(meta["images"]) == GRID
        assert [c["name"] for c in meta["cameras"]] == ["main"]
        z = f"{float(meta['z_height']):.2f}".replace(".", "_")
        for image in meta["images"]:
            # the time the picture came, to the second: 2024-01-15T10:30:00 -> 20240115_103000
            stamp = re.sub(r"[-:]", "", str(image["captured_at"])[:19]).replace("T", "_")
            expected = f"layer_{meta['layer']:04d}_pos_{image['index']:02d}_z_{z}_{stamp}.jpg"
            assert image["path"] == expected
            assert image["thumbnail"] == expected[: -len(".jpg")] + "_thumb.jpg"
            assert (path.parent / image["path"]).read_bytes() == cameras.bed.jpeg
    for name in names:
        assert OLD_IMAGE.match(name) or METADATA_RE.match(name) or OLD_TOOLPATH.match(name), name
    assert len([n for n in names if OLD_IMAGE.match(n)]) == 2 * GRID * len(CAPTURED)
