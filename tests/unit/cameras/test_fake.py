from __future__ import annotations

import io
import time
from datetime import datetime

import pytest
from PIL import Image, ImageChops

from octoprint_layercapture.cameras.fake import FakeFrameRequest, render_fake_frame
from octoprint_layercapture.capture.grid import plan_grid
from octoprint_layercapture.settings import Bounds

BED = Bounds(0.0, 0.0, 235.0, 235.0, 250.0)
WHEN = datetime(2024, 1, 15, 10, 30, 0)
PLAN = plan_grid(125, 105, 20, 3, 0.6, 5, BED)
POINTS = [(p.x, p.y) for p in PLAN.points]


def frame(**changes) -> bytes:
    args = {
        "layer": 3,
        "layer_z": 0.6,
        "position": (125.0, 105.0, 5.6),
        "index": 4,
        "count": 9,
        "bounds": BED,
        "grid_points": POINTS,
        "when": WHEN,
    }
    args.update(changes)
    return render_fake_frame(**args)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def differs(a: bytes, b: bytes) -> bool:
    return ImageChops.difference(decode(a), decode(b)).getbbox() is not None


def test_frame_is_a_jpeg_of_the_default_size():
    data = frame()
    assert data[:3] == b"\xff\xd8\xff"
    image = decode(data)
    assert image.format == "JPEG"
    assert image.size == (640, 480)
    assert image.mode == "RGB"


@pytest.mark.parametrize("size", [(320, 240), (1280, 720), (64, 48), (480, 640)])
def test_frame_has_the_requested_size(size):
    assert decode(frame(size=size)).size == size


def test_frames_are_deterministic():
    assert frame() == frame()


def test_different_layers_give_different_frames():
    assert frame(layer=3, layer_z=0.6) != frame(layer=6, layer_z=1.2)
    assert differs(frame(layer=3, layer_z=0.6), frame(layer=6, layer_z=1.2))


def test_the_layer_stack_grows_with_the_layer():
    # only the stack panel (bottom-right) and the overlay text (top) may change
    low = decode(frame(layer=3, layer_z=0.6, position=(125, 105, 5.6)))
    high = decode(frame(layer=300, layer_z=60.0, position=(125, 105, 5.6)))
    box = ImageChops.difference(low, high).getbbox()
    assert box is not None
    stack_region = (500, 300, 640, 480)
    assert ImageChops.difference(low.crop(stack_region), high.crop(stack_region)).getbbox()
    # the orange bars cover more pixels on the higher layer
    assert _orange_pixels(high.crop(stack_region)) > 3 * _orange_pixels(low.crop(stack_region))


def _orange_pixels(image: Image.Image) -> int:
    return sum(1 for r, g, b in _pixels(image) if r > 180 and 90 < g < 190 and b < 90)


def _pixels(image: Image.Image):
    data = image.convert("RGB").tobytes()
    return zip(data[0::3], data[1::3], data[2::3])


def test_crosshair_moves_with_the_position():
    a = decode(frame(position=(105, 85, 5.6), index=0))
    b = decode(frame(position=(145, 125, 5.6), index=8))
    assert differs(frame(position=(105, 85, 5.6)), frame(position=(145, 125, 5.6)))
    # a red crosshair is drawn near each position (front = bottom of the image)
    assert _red_centre(a)[1] > _red_centre(b)[1]
    assert _red_centre(a)[0] < _red_centre(b)[0]


def _red_centre(image: Image.Image):
    bed_only = image.crop((0, 90, 500, 480))  # left of the stack panel, below the overlay
    xs, ys = [], []
    for i, (r, g, b) in enumerate(_pixels(bed_only)):
        if r > 200 and g < 120 and b < 120:
            xs.append(i % bed_only.width)
            ys.append(i // bed_only.width)
    assert xs, "no crosshair found"
    return sum(xs) / len(xs), sum(ys) / len(ys)


def test_timestamp_and_index_change_the_frame():
    assert differs(frame(), frame(when=datetime(2024, 1, 15, 10, 30, 1)))
    assert differs(frame(index=4), frame(index=5))


def test_quality_is_used():
    small = frame(quality=10)
    large = frame(quality=95)
    assert len(small) < len(large)
    assert decode(small).size == (640, 480)


@pytest.mark.parametrize("quality", [0, 101, -5, 50.5, True])
def test_invalid_quality_is_refused(quality):
    with pytest.raises(ValueError):
        frame(quality=quality)


def test_tiny_sizes_are_refused():
    with pytest.raises(ValueError):
        frame(size=(10, 10))


def test_works_without_bounds_and_points():
    data = frame(bounds=None, grid_points=[])
    assert decode(data).size == (640, 480)
    assert differs(data, frame())


def test_odd_geometry_does_not_crash():
    for bounds in (
        Bounds(-100, -100, 100, 100, None),
        Bounds(0, 0, 1000, 50, 2000),
        Bounds(5, 5, 5, 5, 10),
    ):
        decode(frame(bounds=bounds))
    # a position off the bed, layer 0, huge Z and more than 40 layers still draw
    decode(frame(position=(-50, 999, 900), layer=0, layer_z=0.0))
    decode(frame(layer=5000, layer_z=1000.0, position=(125, 105, 1005)))


def test_request_dataclass_matches_the_arguments():
    request = FakeFrameRequest(layer=3, layer_z=0.6, position=(125.0, 105.0, 5.6), index=4, count=9)
    data = render_fake_frame(
        **request.__dict__, bounds=BED, grid_points=POINTS, when=WHEN, quality=90
    )
    assert data == frame()


def test_rendering_is_fast():
    frame()  # warm the caches
    n = 20
    started = time.perf_counter()
    for layer in range(n):
        frame(layer=layer, layer_z=layer * 0.2)
    per_frame = (time.perf_counter() - started) / n
    assert per_frame < 0.1  # target is < 15 ms; loose here for slow CI machines
