"""Labelled blanks and letterboxed frames (analysis/video/tiles.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from octoprint_layercapture.analysis.video.tiles import blank_frame, image_size, letterboxed


def test_a_blank_is_a_jpeg_of_the_size_with_its_label_drawn():
    data = blank_frame((320, 240), "#4", ["layer 12", "camera failure: " + "x " * 80])
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("JPEG", (320, 240))
    plain = Image.open(io.BytesIO(blank_frame((320, 240), "", []))).convert("L")
    labelled = image.convert("L")
    # the text is light on a dark frame: more bright pixels with a label than without
    bright = sum(labelled.histogram()[151:])
    assert bright > 200 and bright > 20 * (1 + sum(plain.histogram()[151:]))


def test_letterboxed_fits_another_size_keeping_the_aspect(tmp_path: Path):
    source = tmp_path / "wide.jpg"
    Image.new("RGB", (400, 100), (250, 250, 250)).save(source, "JPEG")
    boxed = Image.open(io.BytesIO(letterboxed(source, (200, 200)))).convert("L")
    assert boxed.size == (200, 200)
    assert boxed.getpixel((100, 100)) > 200  # the picture, 200 x 50 in the middle
    assert boxed.getpixel((100, 10)) < 30 and boxed.getpixel((100, 190)) < 30  # black bars
    small = tmp_path / "small.jpg"
    Image.new("RGB", (40, 30), (250, 250, 250)).save(small, "JPEG")
    enlarged = Image.open(io.BytesIO(letterboxed(small, (400, 300)))).convert("L")
    assert enlarged.getpixel((5, 5)) > 200  # scaled up to fill the frame


def test_sizes_come_from_the_header_and_garbage_is_an_oserror(tmp_path: Path):
    path = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48)).save(path, "JPEG")
    assert image_size(path) == (64, 48)
    (tmp_path / "bad.jpg").write_bytes(b"<html>login</html>")
    for name in ("bad.jpg", "missing.jpg"):
        with pytest.raises(OSError):
            image_size(tmp_path / name)
        with pytest.raises(OSError):
            letterboxed(tmp_path / name, (10, 10))
