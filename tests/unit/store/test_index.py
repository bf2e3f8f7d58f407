from __future__ import annotations

import json
import os
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from gallery_tree import build_print, build_tree

from octoprint_layercapture.store.index import (
    REFRESH_THREAD_NAME,
    CaptureIndex,
    capture_days,
    is_print_id,
    print_id,
)
from octoprint_layercapture.store.names import video_frames_name, video_name

START = datetime(2024, 1, 15, 10, 0, 0)


def index_of(root: Path) -> CaptureIndex:
    index = CaptureIndex(root)
    index.ensure_built()
    return index


def test_layers_are_grouped_into_prints_by_file_and_start_time(tmp_path):
    build_print(tmp_path, "a.gcode", START, 3)
    build_print(tmp_path, "a.gcode", datetime(2024, 1, 16, 8, 0, 0), 2)  # printed again
    build_print(tmp_path, "b.gcode", datetime(2024, 1, 15, 12, 0, 0), 4)
    page = index_of(tmp_path).prints()
    assert page.total == 3
    # newest first
    assert [(p["gcode_file"], p["print_start_time"], p["layer_count"]) for p in page.items] == [
        ("a.gcode", "2024-01-16T08:00:00", 2),
        ("b.gcode", "2024-01-15T12:00:00", 4),
        ("a.gcode", "2024-01-15T10:00:00", 3),
    ]
    first = page.items[2]
    assert first["id"] == print_id("a.gcode", "2024-01-15T10:00:00", "")
    assert first["image_count"] == 27
    assert is_print_id(first["id"])


def test_layers_hold_images_in_grid_order_with_relative_paths(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 2, skip_index=8)
    index = index_of(tmp_path)
    pid = index.prints().items[0]["id"]
    page = index.layers(pid)
    assert page is not None and page.total == 2
    layer = page.items[0]
    assert layer["layer"] == 3 and layer["z_height"] == 0.6 and layer["grid_size"] == 3
    assert [i["index"] for i in layer["images"]] == list(range(8))
    assert [(i["row"], i["col"]) for i in layer["images"]][:4] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert layer["skipped"] == [{"index": 8, "reason": "X is beyond bed max X"}]
    first = layer["images"][0]
    assert first["path"] == str(built.images[0].relative_to(tmp_path))
    assert first["thumbnail"] == str(built.thumbnails[0].relative_to(tmp_path))
    assert layer["metadata"] == str(built.metadata[0].relative_to(tmp_path))
    for rel in (first["path"], first["thumbnail"], layer["metadata"]):
        assert index.file_path(rel) == (tmp_path / rel).resolve()


def test_pagination(tmp_path):
    build_tree(tmp_path, images=9 * 12, prints=4)
    index = index_of(tmp_path)
    assert [len(index.prints(o, 3).items) for o in (0, 3, 4)] == [3, 1, 0]
    assert index.prints(0, 3).total == 4
    pid = index.prints().items[0]["id"]
    page = index.layers(pid, 1, 1)
    assert page is not None and page.total == 3 and [d["layer"] for d in page.items] == [6]


def test_a_new_layer_is_added_without_reading_the_folder_again(tmp_path):
    build_print(tmp_path, "a.gcode", START, 1)
    index = index_of(tmp_path)
    later = build_print(tmp_path / "elsewhere", "a.gcode", START, 2)  # same print, layer 6
    day = tmp_path / later.metadata[1].parent.name
    for path in [*later.images, *later.thumbnails, *later.metadata]:
        if "layer_0006" in path.name:
            os.replace(path, day / path.name)
    assert index.layers(index.prints().items[0]["id"]).total == 1  # type: ignore[union-attr]
    assert index.add_metadata_file(day / later.metadata[1].name)
    pages = index.prints()
    assert pages.total == 1 and pages.items[0]["layer_count"] == 2
    assert pages.items[0]["image_count"] == 18


def test_add_refuses_files_outside_the_root_or_with_other_names(tmp_path):
    build_print(tmp_path / "root", "a.gcode", START, 1)
    other = build_print(tmp_path / "other", "b.gcode", START, 1)
    index = index_of(tmp_path / "root")
    assert not index.add_metadata_file(other.metadata[0])
    stray = tmp_path / "root" / "2024-01-15" / "notes.json"
    stray.write_text("{}")
    assert not index.add_metadata_file(stray)
    assert index.prints().total == 1


def test_only_our_names_in_day_folders_and_no_symlinks_are_indexed(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 1)
    secret = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    secret.write_text("secret")
    meta_path = built.metadata[0]
    meta = json.loads(meta_path.read_text())
    # metadata naming files elsewhere, and an image replaced by a symlink
    meta["images"][0]["path"] = "../../" + secret.name
    meta["images"][1]["path"] = str(secret)
    os.unlink(built.images[2])
    os.symlink(secret, built.images[2])
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "not-a-day").mkdir()
    build_print(tmp_path / "not-a-day", "b.gcode", START, 1)
    os.symlink(tmp_path / "not-a-day" / "2024-01-15", tmp_path / "2024-01-20")
    index = index_of(tmp_path)
    assert index.prints().total == 1
    layer = index.layers(index.prints().items[0]["id"]).items[0]  # type: ignore[union-attr]
    assert [i["index"] for i in layer["images"]] == [3, 4, 5, 6, 7, 8]
    for bad in (
        "../" + secret.name,
        str(secret),
        str(built.images[2].relative_to(tmp_path)),
        "2024-01-20/" + built.images[3].name,
        "",
        "2024-01-15",
    ):
        assert index.file_path(bad) is None, bad


def test_a_file_swapped_for_a_symlink_after_indexing_is_refused(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 1)
    index = index_of(tmp_path)
    rel = str(built.images[0].relative_to(tmp_path))
    assert index.file_path(rel) is not None
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(b"x")
    os.unlink(built.images[0])
    os.symlink(outside, built.images[0])
    assert index.file_path(rel) is None


def test_files_on_disk_answers_like_file_path_for_many_files(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 2)
    other = build_print(tmp_path, "b.gcode", datetime(2024, 1, 17, 10, 0, 0), 1)
    index = index_of(tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(b"x")
    os.unlink(built.images[0])
    os.symlink(outside, built.images[0])  # swapped for a symlink after indexing
    os.unlink(built.images[1])  # removed by hand
    day = other.images[0].parent
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    os.rename(day, elsewhere)
    os.symlink(elsewhere, day)  # a day folder swapped for a symlink out of the folder
    asked = [
        str(p.relative_to(tmp_path))
        for p in built.images + built.metadata + other.images + other.metadata
    ]
    asked += ["../" + outside.name, "2024-01-15", "2024-01-15/unknown.jpg"]
    found = index.files_on_disk(asked)
    assert found == {rel: index.file_path(rel) for rel in asked if index.file_path(rel)}
    assert len(found) == len(built.images) - 2 + len(built.metadata)


def test_delete_removes_the_files_of_one_print_and_empty_day_folders(tmp_path):
    a = build_print(tmp_path, "a.gcode", START, 2)
    b = build_print(tmp_path, "b.gcode", datetime(2024, 1, 17, 10, 0, 0), 1)
    index = index_of(tmp_path)
    pid = print_id("a.gcode", START.isoformat(), "")
    result = index.delete_print(pid)
    assert result is not None and result.failed == []
    assert result.files == len(a.images) + len(a.thumbnails) + len(a.metadata)
    assert not any(p.exists() for p in [*a.images, *a.thumbnails, *a.metadata])
    assert not (tmp_path / "2024-01-15").exists()
    assert all(p.exists() for p in [*b.images, *b.metadata])
    assert index.prints().total == 1 and index.layers(pid) is None
    assert index.file_path(str(a.images[0].relative_to(tmp_path))) is None
    assert index.delete_print(pid) is None
    index.rebuild()
    assert index.prints().total == 1


def test_print_files_lists_images_and_metadata(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 2)
    index = index_of(tmp_path)
    files = index.print_files(index.prints().items[0]["id"])
    assert files is not None
    assert sorted(p for _, p in files) == sorted([*built.images, *built.metadata])
    assert all(tmp_path / rel == path for rel, path in files)
    assert index.print_files("0" * 16) is None


def test_unreadable_metadata_is_skipped(tmp_path, caplog):
    built = build_print(tmp_path, "a.gcode", START, 2)
    built.metadata[0].write_text("{not json")
    index = index_of(tmp_path)
    assert index.prints().items[0]["layer_count"] == 1
    assert "unreadable" in caplog.text


def test_a_new_root_is_read_anew_and_a_missing_root_is_empty(tmp_path):
    build_print(tmp_path / "one", "a.gcode", START, 1)
    index = CaptureIndex(tmp_path / "missing")
    assert index.prints().total == 0
    index.use_root(tmp_path / "one")
    assert index.prints().total == 1


def test_concurrent_readers_and_writers(tmp_path):
    build_print(tmp_path, "a.gcode", START, 1)
    index = index_of(tmp_path)
    source = build_print(tmp_path / "src", "a.gcode", START, 40)
    day = tmp_path / "2024-01-15"
    errors = []

    def writer() -> None:
        for meta in source.metadata[1:]:
            for path in [*source.images, *source.thumbnails]:
                if path.name.startswith(meta.name[:10]) and path.parent == meta.parent:
                    os.replace(path, tmp_path / path.parent.name / path.name)
            target = tmp_path / meta.parent.name / meta.name
            target.parent.mkdir(exist_ok=True)
            os.replace(meta, target)
            index.add_metadata_file(target)

    def reader() -> None:
        try:
            for _ in range(200):
                for p in index.prints().items:
                    page = index.layers(p["id"])
                    assert page is not None and len(page.items) == page.total
                    assert all(len(d["images"]) == 9 for d in page.items)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert day.is_dir()
    assert index.prints().items[0]["layer_count"] == 40


@pytest.mark.parametrize("value", ["", "abc", "0" * 15, "G" * 16, "../" * 6, "0" * 17])
def test_print_ids_are_sixteen_hex_digits(value):
    assert not is_print_id(value)


def test_records_of_sparse_or_odd_metadata():
    from octoprint_layercapture.store.entries import layer_record

    name = "layer_0007_pos_05_z_1_40_20240115_103000.jpg"
    meta = {
        "layer": "seven",  # not a number: taken from the file name
        "settings": {"grid_size": 3},
        "images": [
            {"path": name, "position": {"x": 1, "y": True}},  # no row/col: from the index
            "not an image",
            {"path": name},  # listed twice
            {"path": name.replace(".jpg", "_thumb.jpg")},  # a thumbnail is not an image
        ],
        "failures": [{"index": 2, "phase": "capture", "message": "timed out"}, 5],
        "timings": {"total": 2.5},
    }
    sizes = {name: 1000, name.replace(".jpg", "_thumb.jpg"): 100}
    record = layer_record(
        "2024-01-15/layer_0007_metadata_20240115_103000.json", "2024-01-15", meta, sizes.get
    )
    assert record["layer"] == 7 and record["total_s"] == 2.5
    assert record["gcode_file"] == "" and record["print_start_time"] is None
    assert [(i["index"], i["row"], i["col"]) for i in record["images"]] == [(5, 1, 2)]
    image = record["images"][0]
    assert image["position"] == {"x": 1.0, "y": None}
    assert image["thumbnail"] == "2024-01-15/" + name.replace(".jpg", "_thumb.jpg")
    assert record["size_bytes"] == 1100
    assert record["failures"] == [
        {"index": 2, "phase": "capture", "message": "timed out", "camera": None}
    ]
    # metadata that names no camera: one unnamed camera
    assert image["camera"] == "" and record["cameras"] == [""]


def test_layers_json_is_the_page_as_json(tmp_path):
    build_print(tmp_path, "a.gcode", START, 5)
    index = index_of(tmp_path)
    pid = index.prints().items[0]["id"]
    for offset, limit in ((0, None), (1, 2), (4, 10), (9, 3)):
        page = index.layers(pid, offset, limit)
        assert page is not None
        assert json.loads(index.layers_json(pid, offset, limit)) == page.to_dict("layers")
    assert index.layers_json("0" * 16) is None


def test_a_layer_written_while_the_folder_is_scanned_is_not_lost(tmp_path, monkeypatch):
    from octoprint_layercapture.store import index as gallery

    build_print(tmp_path, "a.gcode", START, 1)
    late = build_print(tmp_path / "incoming", "a.gcode", START, 2)
    index = CaptureIndex(tmp_path)
    real_scan = gallery._scan

    def scan_then_a_layer_arrives(root):
        state = real_scan(root)  # the scan is done with the folder...
        for path in [*late.images, *late.thumbnails, *late.metadata]:
            if "layer_0006" in path.name:  # ...when the worker writes layer 6
                os.replace(path, tmp_path / path.parent.name / path.name)
        assert index.add_metadata_file(
            tmp_path / late.metadata[1].parent.name / late.metadata[1].name
        )
        return state

    monkeypatch.setattr(gallery, "_scan", scan_then_a_layer_arrives)
    index.ensure_built()
    assert [d["layer"] for d in index.layers(index.prints().items[0]["id"]).items] == [3, 6]


@pytest.mark.parametrize(
    ("path", "days"),
    [
        ("layercapture/2024-01-15", {"2024-01-15"}),
        ("layercapture/2024-01-15/layer_0003_pos_00_z_0_60_20240115_100130.jpg", {"2024-01-15"}),
        ("/layercapture/2024-01-15/", {"2024-01-15"}),
        ("layercapture", None),
        ("", None),
        ("layercapture/not-a-day", set()),
        ("layercapture-old/2024-01-15", set()),
        ("other/2024-01-15", set()),
    ],
)
def test_file_events_are_mapped_to_the_day_folders_they_touch(path, days):
    assert capture_days("layercapture", path) == days


def test_a_folder_above_a_nested_capture_folder_touches_everything():
    assert capture_days("prints/captures", "prints") is None
    assert capture_days("prints/captures", "prints/captures/2024-01-15/x") == {"2024-01-15"}
    assert capture_days("prints/captures", "prints/other") == set()


def test_refresh_reads_changed_day_folders_again(tmp_path):
    a = build_print(tmp_path, "a.gcode", START, 2)
    b = build_print(tmp_path, "b.gcode", datetime(2024, 1, 17, 10, 0, 0), 1)
    index = index_of(tmp_path)
    day_a, day_b = a.images[0].parent, b.images[0].parent
    moved = tmp_path.parent / f"{tmp_path.name}-archive"
    os.rename(day_b, moved)
    index.refresh({day_b.name})
    assert [p["gcode_file"] for p in index.prints().items] == ["a.gcode"]
    assert index.file_path(str(b.images[0].relative_to(tmp_path))) is None
    os.rename(moved, day_b)
    for path in a.images[:3]:
        path.unlink()
    index.refresh({day_a.name, day_b.name, "not-a-day"})
    page = index.prints()
    assert {p["gcode_file"]: p["image_count"] for p in page.items} == {
        "a.gcode": 2 * 9 - 3,
        "b.gcode": 9,
    }
    shutil.rmtree(day_a)
    shutil.rmtree(day_b)
    index.refresh(None)
    assert index.prints().total == 0


def test_refresh_later_runs_on_a_named_thread_and_gathers_changes(tmp_path):
    a = build_print(tmp_path, "a.gcode", START, 1)
    index = index_of(tmp_path)
    names = []
    started, release = threading.Event(), threading.Event()
    original = index.refresh

    def slow_refresh(days):
        names.append(threading.current_thread().name)
        started.set()
        release.wait(5)
        original(days)

    index.refresh = slow_refresh  # type: ignore[method-assign]
    shutil.rmtree(a.images[0].parent)
    index.refresh_later({a.images[0].parent.name})
    assert started.wait(5)
    index.refresh_later({"2024-01-20"})  # while the first round runs: gathered
    index.refresh_later({"2024-01-21"})
    release.set()
    deadline = time.monotonic() + 5
    while index.prints().total and time.monotonic() < deadline:
        time.sleep(0.01)
    assert index.prints().total == 0
    for thread in threading.enumerate():
        if thread.name == REFRESH_THREAD_NAME:
            thread.join(5)
    assert names == [REFRESH_THREAD_NAME, REFRESH_THREAD_NAME], "two rounds, one thread"


def test_refresh_before_the_first_read_does_nothing(tmp_path):
    build_print(tmp_path, "a.gcode", START, 1)
    index = CaptureIndex(tmp_path)
    index.refresh({"2024-01-15"})
    index.refresh(None)
    assert index.prints().total == 1  # read on first use, as always


# ---- videos --------------------------------------------------------------------------------


def _add_videos(index: CaptureIndex, root: Path, built, pid: str, indexes) -> list:
    """Video files as the renderer leaves them: the video and its frames file."""
    day = built.metadata[0].parent
    added = []
    for i in indexes:
        name = video_name(pid, i)
        (day / name).write_bytes(b"\x00\x00\x00\x18ftypmp42 video")
        frames = day / video_frames_name(name)
        doc = {"fps": 25, "frame_count": 3, "grid_size": 3, "frames": [{"layer": 3}]}
        frames.write_text(json.dumps(doc))
        added.append((day / name, frames))
    return added


def test_videos_are_indexed_served_zipped_and_deleted_with_their_print(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 2)
    other = build_print(tmp_path, "b.gcode", datetime(2024, 1, 15, 12, 0, 0), 1)
    index = index_of(tmp_path)
    pid = print_id("a.gcode", START.isoformat(), "")
    files = _add_videos(index, tmp_path, built, pid, [None, 4])
    assert index.videos(pid) == []  # not yet told
    assert all(index.add_metadata_file(frames) for _, frames in files)
    videos = index.videos(pid)
    assert [(v["kind"], v["index"]) for v in videos] == [("grid", None), ("position", 4)]
    assert videos[1]["duration_s"] == 0.12 and videos[1]["size_bytes"] == 18
    assert index.print_summary(pid)["video_count"] == 2
    assert {p["id"]: p["video_count"] for p in index.prints().items}[pid] == 2
    for video, frames in files:
        for path in (video, frames):
            assert index.file_path(path.relative_to(tmp_path).as_posix()) == path
    zipped = [rel for rel, _ in index.print_files(pid)]
    assert all(p.relative_to(tmp_path).as_posix() in zipped for pair in files for p in pair)
    # a fresh read of the folder finds them too
    assert [v["index"] for v in index_of(tmp_path).videos(pid)] == [None, 4]
    result = index.delete_print(pid)
    assert result is not None and not any(p.exists() for pair in files for p in pair)
    assert index.videos(pid) == [] and other.images[0].exists()


def test_a_frames_file_without_its_video_or_of_another_name_is_not_indexed(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 1)
    index = index_of(tmp_path)
    pid = print_id("a.gcode", START.isoformat(), "")
    ((video, frames),) = _add_videos(index, tmp_path, built, pid, [2])
    video.unlink()
    assert index.add_metadata_file(frames) is False
    stray = frames.with_name("video_notanid_pos_02.json")
    frames.rename(stray)
    assert index.add_metadata_file(stray) is False
    index.rebuild()
    assert (
        index.videos(pid) == []
        and index.file_path(f"{built.metadata[0].parent.name}/{stray.name}") is None
    )


def test_a_day_read_again_drops_videos_removed_by_hand(tmp_path):
    built = build_print(tmp_path, "a.gcode", START, 1)
    index = index_of(tmp_path)
    pid = print_id("a.gcode", START.isoformat(), "")
    ((video, frames),) = _add_videos(index, tmp_path, built, pid, [None])
    index.add_metadata_file(frames)
    video.unlink()
    frames.unlink()
    index.refresh([built.metadata[0].parent.name])
    assert index.videos(pid) == []
    assert index.file_path(frames.relative_to(tmp_path).as_posix()) is None
