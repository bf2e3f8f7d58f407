"""Frame plans, the grid layout and ffmpeg's command lines (analysis/video.py)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from octoprint_layercapture.analysis.video import (
    FfmpegSettings,
    RenderTarget,
    VideoError,
    error_summary,
    even_size,
    ffmpeg_problem,
    ffmpeg_settings,
    grid_command,
    hold_frame_count,
    plan_grid_layout,
    plan_videos,
    position_command,
    progress_frames,
    target_problem,
)


def layer(
    number: int,
    indexes: List[int],
    grid_size: int = 3,
    skipped: Optional[Dict[int, str]] = None,
    failed: Optional[Dict[int, str]] = None,
) -> Dict[str, Any]:
    """A layer record as the gallery keeps it."""
    return {
        "layer": number,
        "z_height": round(number * 0.2, 2),
        "metadata": f"2024-01-01/layer_{number:04d}_metadata_20240101_090000.json",
        "timestamp": f"2024-01-01T09:{number:02d}:00",
        "grid_size": grid_size,
        "images": [
            {"index": i, "path": f"2024-01-01/layer_{number:04d}_pos_{i:02d}.jpg"} for i in indexes
        ],
        "skipped": [{"index": i, "reason": r} for i, r in (skipped or {}).items()],
        "failures": [
            {"index": i, "phase": "capture", "message": m} for i, m in (failed or {}).items()
        ],
    }


ALL = RenderTarget("all")
NINE = list(range(9))


def test_all_means_each_position_with_an_image_and_the_grid_one_frame_per_layer_in_order():
    layers = [
        layer(6, NINE),
        layer(3, [i for i in NINE if i != 8], skipped={8: "X is beyond bed max X"}),
        layer(9, [i for i in NINE if i not in (4, 8)], skipped={8: "outside"}, failed={4: "boom"}),
    ]
    plans = plan_videos(layers, ALL)
    assert [(p.kind, p.index) for p in plans] == [("position", i) for i in NINE] + [("grid", None)]
    four = plans[4].inputs[0]
    assert [f.layer for f in four.frames] == [3, 6, 9]  # sorted, not as listed
    assert [f.image is not None for f in four.frames] == [True, True, False]
    assert four.frames[2].missing == "boom"
    eight = plans[8].inputs[0]
    assert [f.missing for f in eight.frames] == ["X is beyond bed max X", None, "outside"]
    grid = plans[-1]
    assert len(grid.inputs) == 9 and grid.layer_count == 3
    assert [p.index for p in grid.inputs] == NINE
    assert (grid.inputs[5].row, grid.inputs[5].col) == (1, 2)


def test_a_position_never_photographed_gets_no_video_and_a_1x1_print_no_grid():
    layers = [layer(3, [0, 1], skipped={2: "outside"}), layer(6, [0, 1])]
    assert [p.index for p in plan_videos(layers, ALL)] == [0, 1, None]
    single = [layer(3, [0], grid_size=1), layer(6, [0], grid_size=1)]
    assert [(p.kind, p.index) for p in plan_videos(single, ALL)] == [("position", 0)]


def test_targets_that_cannot_be_rendered_say_why():
    layers = [layer(3, [0, 1])]
    assert target_problem(layers, RenderTarget("position", 1)) is None
    assert "no image" in str(target_problem(layers, RenderTarget("position", 5)))
    assert "0 to 8" in str(target_problem(layers, RenderTarget("position", 9)))
    assert "0 to 8" in str(target_problem(layers, RenderTarget("position", -1)))
    assert "no captured layers" in str(target_problem([], ALL))
    assert "1x1" in str(target_problem([layer(3, [0], grid_size=1)], RenderTarget("grid")))
    assert "no images" in str(target_problem([layer(3, [])], ALL))
    with pytest.raises(VideoError, match="position 5 has no image"):
        plan_videos(layers, RenderTarget("position", 5))
    only = plan_videos(layers, RenderTarget("position", 1))
    assert [(p.kind, p.index) for p in only] == [("position", 1)]
    assert [p.kind for p in plan_videos(layers, RenderTarget("grid"))] == ["grid"]


@pytest.mark.parametrize(
    ("grid", "source", "tile", "lowres"),
    [
        (5, (1920, 1080), (384, 216), 2),  # the grid is 1920 x 1080
        (3, (1920, 1080), (640, 360), 1),
        (3, (640, 480), (640, 480), 0),  # never enlarged
        (1, (3840, 2160), (1920, 1080), 1),
        (5, (1281, 721), (384, 216), 1),  # 1/4 would be 321 px: too small
        (3, (641, 481), (640, 480), 0),  # even sides for yuv420p
    ],
)
def test_grid_layout_fits_1920_wide_keeps_the_aspect_and_decodes_small(grid, source, tile, lowres):
    layout = plan_grid_layout(grid, source)
    assert (layout.tile_width, layout.tile_height) == tile
    assert layout.lowres == lowres
    assert (layout.width, layout.height) == (grid * tile[0], grid * tile[1])
    assert layout.width <= 1920 and layout.width % 2 == 0 and layout.height % 2 == 0
    # what ffmpeg decodes at that scale still covers a tile
    assert -(-source[0] // 2**lowres) >= tile[0] and -(-source[1] // 2**lowres) >= tile[1]


def test_tiles_lie_as_on_the_bed_seen_from_above():
    layout = plan_grid_layout(3, (100, 50))
    assert layout.origin(0) == (0, 100)  # front-left: bottom left
    assert layout.origin(2) == (200, 100)  # front-right: bottom right
    assert layout.origin(6) == (0, 0)  # back-left: top left
    assert layout.origin(4) == (100, 50)
    tiles = layout.to_dict()["tiles"]
    assert tiles[7] == {"index": 7, "row": 2, "col": 1, "x": 100, "y": 0}


def test_sizes_and_hold_frames():
    assert even_size((641, 481)) == (640, 480)
    assert even_size((1, 1)) == (2, 2)
    assert hold_frame_count(25, 0) == 0
    assert hold_frame_count(25, 2.0) == 50
    assert hold_frame_count(30, 0.5) == 15
    with pytest.raises(ValueError):
        plan_grid_layout(0, (10, 10))
    with pytest.raises(ValueError):
        plan_grid_layout(3, (0, 10))


FFMPEG = FfmpegSettings("/usr/bin/ffmpeg", "5000k", 2)


def test_grid_command_tiles_every_input_with_the_layouts_offsets():
    layout = plan_grid_layout(3, (1920, 1080))
    patterns = [f"/w/p{i:02d}/f_%05d.jpg" for i in range(9)]
    command = grid_command(FFMPEG, patterns, layout, 25, 50, "/out/.v.tmp", "/w/progress")
    assert command[0] == "/usr/bin/ffmpeg"
    assert command.count("-i") == 9 and command.count("-lowres") == 9
    assert command[command.index("-lowres") + 1] == "1"
    graph = command[command.index("-filter_complex") + 1]
    assert "xstack=inputs=9:layout=0_720|640_720|1280_720|0_360|640_360|1280_360|0_0|" in graph
    assert "scale=640:360:force_original_aspect_ratio=decrease,pad=640:360" in graph
    assert "tpad=stop_mode=clone:stop=50" in graph and "format=yuv420p" in graph
    for option, value in (("-c:v", "libx264"), ("-b:v", "5000k"), ("-threads", "2")):
        assert command[command.index(option) + 1] == value
    assert command[command.index("-movflags") + 1] == "+faststart"
    assert command[command.index("-progress") + 1] == "/w/progress"
    assert command[-3:] == ["mp4", "-y", "/out/.v.tmp"]  # a temp name: the format is given
    with pytest.raises(ValueError):
        grid_command(FFMPEG, patterns[:8], layout, 25, 0, "/o", "/p")


def test_position_command_scales_into_the_even_size_without_hold_by_default():
    command = position_command(FFMPEG, "/w/f_%05d.jpg", (640, 480), 10, 0, "/o.tmp", "/p")
    assert command[command.index("-framerate") + 1] == "10"
    assert command[command.index("-r") + 1] == "10"
    graph = command[command.index("-filter_complex") + 1]
    assert graph.startswith("[0:v]scale=640:480") and "tpad" not in graph
    assert "-lowres" not in command


def test_ffmpeg_problems_name_the_setting_to_fix(tmp_path: Path):
    assert "no ffmpeg set" in str(ffmpeg_problem(None))
    assert "no ffmpeg set" in str(ffmpeg_problem("  "))
    missing = str(ffmpeg_problem("/nonexistent/ffmpeg"))
    assert "not found at '/nonexistent/ffmpeg'" in missing and "Path to FFMPEG" in missing
    plain = tmp_path / "ffmpeg"
    plain.write_text("not a program")
    assert "not an executable" in str(ffmpeg_problem(str(plain)))
    assert "not an executable" in str(ffmpeg_problem(str(tmp_path)))
    plain.chmod(plain.stat().st_mode | stat.S_IXUSR)
    assert ffmpeg_problem(str(plain)) is None
    assert ffmpeg_problem("sh") is None  # a bare name is looked up on PATH
    assert ffmpeg_settings("sh", None, None).path == shutil.which("sh")


def test_ffmpeg_settings_take_octoprints_defaults_and_refuse_odd_bitrates(tmp_path: Path):
    settings = ffmpeg_settings("/bin/sh", None, None)
    assert (settings.bitrate, settings.threads) == ("10000k", 1)
    assert ffmpeg_settings("/bin/sh", "2.5M", "4") == FfmpegSettings("/bin/sh", "2.5M", 4)
    assert ffmpeg_settings("/bin/sh", "800k", "lots").threads == 1
    for bad in ("-f null", "fast", "10000 k"):
        with pytest.raises(VideoError, match="not a bitrate"):
            ffmpeg_settings("/bin/sh", bad, 1)
    with pytest.raises(VideoError, match="not found"):
        ffmpeg_settings(str(tmp_path / "none"), "1k", 1)


def test_progress_and_errors_are_read_from_ffmpegs_output():
    assert progress_frames("") is None
    text = "frame=3\nfps=0.0\nprogress=continue\nframe=17\nprogress=end\n"
    assert progress_frames(text) == 17
    assert progress_frames("frame=  12\n") == 12
    stderr = "\n".join(f"line {i}" for i in range(10)) + "\nUnknown encoder 'libx264'\n\n"
    assert error_summary(stderr) == "line 7 | line 8 | line 9 | Unknown encoder 'libx264'"
    assert error_summary("x" * 2000).startswith("...") and len(error_summary("x" * 2000)) == 603
