"""OctoPrint's ffmpeg setting, the command lines and ffmpeg's reports (analysis/video/ffmpeg.py)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from octoprint_layercapture.analysis.video.ffmpeg import (
    FfmpegSettings,
    error_summary,
    ffmpeg_problem,
    ffmpeg_settings,
    grid_command,
    position_command,
    progress_frames,
)
from octoprint_layercapture.analysis.video.plan import VideoError, plan_grid_layout

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
