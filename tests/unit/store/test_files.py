from __future__ import annotations

import io
import os
from datetime import date, datetime
from pathlib import Path

import jsonschema
import pytest
from PIL import Image
from sample_records import sample_metadata

from octoprint_layercapture.schemas import load_schema
from octoprint_layercapture.store import files as storage
from octoprint_layercapture.store.files import (
    CaptureStore,
    make_thumbnail,
    remove_stale_temp_files,
    resolve_inside,
    write_atomic,
)
from octoprint_layercapture.store.records import (
    read_metadata,
)

WHEN = datetime(2024, 1, 15, 10, 30, 0)
SCHEMA = load_schema("metadata")
SPEC_KEYS = [
    "layer",
    "z_height",
    "timestamp",
    "gcode_file",
    "print_start_time",
    "images",
    "settings",
]


def jpeg(size=(1920, 1080), colour=(200, 100, 50), quality=90) -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", size, colour)
    # some structure so the encoder has something to do
    for x in range(0, size[0], 64):
        image.paste((x % 255, 30, 200), (x, 0, x + 8, size[1]))
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def png(size=(800, 600), mode="RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


# ---- resolve_inside ------------------------------------------------------------------------


def test_resolve_inside_accepts_paths_below_root(tmp_path):
    (tmp_path / "2024-01-15").mkdir()
    assert resolve_inside(tmp_path, "2024-01-15/a.jpg") == (tmp_path / "2024-01-15/a.jpg").resolve()
    assert resolve_inside(tmp_path, "") == tmp_path.resolve()
    assert resolve_inside(tmp_path, "./2024-01-15") == (tmp_path / "2024-01-15").resolve()


@pytest.mark.parametrize(
    "relative",
    [
        "..",
        "../x",
        "2024-01-15/../../x",
        "/etc/passwd",
        "a\x00b",
        "..\\x",
        "C:/Windows",
    ],
)
def test_resolve_inside_refuses_escapes(tmp_path, relative):
    with pytest.raises(ValueError):
        resolve_inside(tmp_path / "root", relative)


def test_resolve_inside_refuses_symlinks_pointing_outside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("x")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    (root / "dirlink").symlink_to(tmp_path)
    (root / "inside.jpg").write_text("x")
    (root / "ok").symlink_to(root / "inside.jpg")
    for rel in ("link", "dirlink/secret.txt", "dirlink"):
        with pytest.raises(ValueError):
            resolve_inside(root, rel)
    assert resolve_inside(root, "ok") == (root / "inside.jpg").resolve()


def test_resolve_inside_works_with_a_symlinked_root(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert resolve_inside(tmp_path / "alias", "a.jpg") == real.resolve() / "a.jpg"


# ---- atomic writes -------------------------------------------------------------------------


def test_write_atomic_writes_and_replaces(tmp_path):
    target = tmp_path / "a.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["a.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_atomic_failure_leaves_no_temp_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    temps = []
    real_mkstemp = storage.tempfile.mkstemp

    def spy_mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        temps.append(name)
        return fd, name

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.tempfile, "mkstemp", spy_mkstemp)
    monkeypatch.setattr(storage.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, b"new and partial")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.json"]
    name = Path(temps[0]).name
    assert name.startswith(".a.json.") and name.endswith(".tmp")


def test_write_atomic_failure_without_old_file_leaves_nothing(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(storage.os, "replace", failing_replace)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "b.jpg", b"data")
    assert os.listdir(tmp_path) == []


def test_write_atomic_failure_on_interrupt_cleans_up(tmp_path, monkeypatch):
    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "c.jpg", b"data")
    assert os.listdir(tmp_path) == []


def test_write_atomic_into_a_missing_folder_raises(tmp_path):
    with pytest.raises(OSError):
        write_atomic(tmp_path / "missing" / "a.jpg", b"x")


def test_remove_stale_temp_files(tmp_path):
    day = tmp_path / "2024-01-15"
    day.mkdir()
    (day / ".layer_0003_metadata_20240115_103000.json.abc123.tmp").write_text("{")
    (tmp_path / ".x.tmp").write_text("")
    (day / "keep.jpg").write_text("x")
    (day / ".hidden").write_text("x")
    (day / "visible.tmp").write_text("x")
    assert remove_stale_temp_files(tmp_path) == 2
    assert sorted(os.listdir(day)) == [".hidden", "keep.jpg", "visible.tmp"]
    assert os.listdir(tmp_path) == ["2024-01-15"]
    assert remove_stale_temp_files(tmp_path / "nope") == 0


# ---- thumbnails ----------------------------------------------------------------------------


def test_thumbnail_is_a_small_jpeg_with_the_aspect_ratio():
    thumb = make_thumbnail(jpeg((1920, 1080)))
    image = Image.open(io.BytesIO(thumb))
    assert image.format == "JPEG"
    assert image.size == (320, 180)


def test_thumbnail_respects_max_size_for_portrait_images():
    image = Image.open(io.BytesIO(make_thumbnail(jpeg((1080, 1920)), max_size=(160, 120))))
    assert image.width <= 160 and image.height == 120


def test_thumbnail_uses_jpeg_draft_mode(monkeypatch):
    from PIL import JpegImagePlugin

    calls = []
    real_jpeg_draft = JpegImagePlugin.JpegImageFile.draft

    def jpeg_spy(self, mode, size):
        calls.append(("jpeg", mode, tuple(size) if size else None))
        result = real_jpeg_draft(self, mode, size)
        calls.append(("jpeg-size", self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", jpeg_spy)
    make_thumbnail(jpeg((1920, 1080)), max_size=(320, 240))
    assert calls[0] == ("jpeg", "RGB", (320, 240))
    # DCT scaling reduced the decode to 1/4 (480x270) before any pixel was decoded
    assert calls[1] == ("jpeg-size", (480, 270))


def test_thumbnail_of_png_input_works_without_draft(monkeypatch):
    from PIL import JpegImagePlugin

    def no_draft(*args):
        raise AssertionError("draft must not be used for PNG")

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", no_draft)
    for mode in ("RGBA", "P", "L", "RGB"):
        image = Image.open(io.BytesIO(make_thumbnail(png(mode=mode))))
        assert image.format == "JPEG"
        assert image.size == (320, 240)


def test_thumbnail_of_a_small_image_is_not_enlarged():
    assert Image.open(io.BytesIO(make_thumbnail(jpeg((100, 50))))).size == (100, 50)


def test_thumbnail_applies_exif_orientation():
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (640, 480), (10, 20, 30)).save(out, "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(make_thumbnail(out.getvalue()))).size == (180, 240)


def test_thumbnail_of_garbage_raises():
    with pytest.raises(OSError):
        make_thumbnail(b"not an image")


# ---- the store -----------------------------------------------------------------------------


def test_store_saves_image_bytes_unchanged_with_thumbnail(tmp_path):
    data = jpeg((1280, 720))
    saved = CaptureStore(tmp_path).save_image(3, 0, 0.6, WHEN, data, thumbnail=True)
    folder = tmp_path / "2024-01-15"
    assert saved.path == folder / "layer_0003_pos_00_z_0_60_20240115_103000.jpg"
    assert saved.path.read_bytes() == data
    assert saved.size_bytes == len(data)
    assert saved.thumbnail_path == folder / "layer_0003_pos_00_z_0_60_20240115_103000_thumb.jpg"
    assert Image.open(saved.thumbnail_path).size == (320, 180)
    assert sorted(os.listdir(folder)) == [saved.path.name, saved.thumbnail_path.name]
    assert folder.stat().st_mode & 0o777 == 0o755 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_store_without_thumbnail(tmp_path):
    saved = CaptureStore(tmp_path).save_image(3, 1, 0.6, WHEN, jpeg((64, 48)), thumbnail=False)
    assert saved.thumbnail_path is None
    assert os.listdir(saved.path.parent) == [saved.path.name]


def test_store_keeps_the_image_when_the_thumbnail_fails(tmp_path, caplog):
    data = b"\xff\xd8\xff not really a jpeg"
    saved = CaptureStore(tmp_path).save_image(3, 0, 0.6, WHEN, data, thumbnail=True)
    assert saved.path.read_bytes() == data
    assert saved.thumbnail_path is None
    assert "thumbnail" in caplog.text
    assert os.listdir(saved.path.parent) == [saved.path.name]


def test_store_refuses_empty_images(tmp_path):
    with pytest.raises(ValueError):
        CaptureStore(tmp_path).save_image(3, 0, 0.6, WHEN, b"", thumbnail=True)


def test_store_saves_metadata(tmp_path):
    path = CaptureStore(tmp_path / "layercapture").save_metadata(sample_metadata(), WHEN)
    assert path == tmp_path / "layercapture/2024-01-15/layer_0015_metadata_20240115_103000.json"
    data = read_metadata(path)
    assert data == sample_metadata().to_dict()
    jsonschema.validate(data, SCHEMA)
    assert os.listdir(path.parent) == [path.name]


def test_read_metadata_refuses_non_objects(tmp_path):
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        read_metadata(tmp_path / "m.json")


def test_a_layer_across_midnight_stays_in_one_folder(tmp_path):
    store = CaptureStore(tmp_path)
    started = datetime(2024, 1, 15, 23, 59, 58)
    first = store.save_image(9, 0, 1.8, datetime(2024, 1, 15, 23, 59, 59), b"a", False)
    second = store.save_image(9, 1, 1.8, datetime(2024, 1, 16, 0, 0, 2), b"b", False)
    meta = store.save_metadata(sample_metadata(layer=9), started)
    assert first.path.parent == second.path.parent == meta.parent == tmp_path / "2024-01-15"
    assert second.path.name.endswith("20240116_000002.jpg")
    # the pin ends with the metadata: the next capture of layer 9 (another print) is dated
    later = store.save_image(9, 0, 1.8, datetime(2024, 1, 16, 0, 5), b"c", False)
    assert later.path.parent == tmp_path / "2024-01-16"


def test_the_day_pin_expires(tmp_path):
    store = CaptureStore(tmp_path)
    store.save_image(9, 0, 1.8, datetime(2024, 1, 15, 23, 0), b"a", False)
    later = store.save_image(9, 1, 1.8, datetime(2024, 1, 16, 1, 0, 1), b"b", False)
    assert later.path.parent == tmp_path / "2024-01-16"


def test_explicit_day_wins(tmp_path):
    store = CaptureStore(tmp_path)
    saved = store.save_image(9, 0, 1.8, WHEN, b"a", False, day=date(2024, 1, 14))
    assert saved.path.parent == tmp_path / "2024-01-14"
    assert saved.path.name.endswith("20240115_103000.jpg")


def test_store_surfaces_write_errors(tmp_path):
    (tmp_path / "2024-01-15").write_text("a file where the folder should be")
    with pytest.raises(OSError):
        CaptureStore(tmp_path).save_image(3, 0, 0.6, WHEN, b"x", thumbnail=False)
