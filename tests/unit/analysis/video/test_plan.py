"""Frame plans and the grid layout (analysis/video/plan.py)."""

from __future__ import annotations

import pytest
from video_layers import ALL, NINE, layer

from octoprint_layercapture.analysis.video.plan import (
    RenderTarget,
    VideoError,
    even_size,
    hold_frame_count,
    plan_grid_layout,
    plan_videos,
    print_cameras,
    target_problem,
)

PID = "0123456789abcdef"


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
    with pytest.raises(VideoError, match=r"index 5 \(position 6\) has no image"):
        plan_videos(layers, RenderTarget("position", 5))
    only = plan_videos(layers, RenderTarget("position", 1))
    assert [(p.kind, p.index) for p in only] == [("position", 1)]
    assert [p.kind for p in plan_videos(layers, RenderTarget("grid"))] == ["grid"]


def test_a_single_camera_print_keeps_todays_video_names():
    layers = [layer(3, NINE), layer(6, NINE)]
    names = [p.file_name(PID) for p in plan_videos(layers, ALL)]
    assert names == [f"video_{PID}_pos_{i:02d}.mp4" for i in NINE] + [f"video_{PID}_grid.mp4"]
    assert [p.label() for p in plan_videos(layers, ALL)][-2:] == [
        "position 9 video",
        "grid video",
    ]
    assert print_cameras(layers) == [""]


def test_several_cameras_one_video_per_camera_and_position_and_a_grid_each():
    """The first camera keeps the names of a single-camera print, the other adds its name;
    each video shows only its camera's images, a position the camera missed is a blank
    that names that camera's failure (not the other's)."""
    cams = {"main": NINE, "nozzle": [i for i in NINE if i != 2]}
    layers = [
        layer(3, NINE, cameras=cams),
        layer(6, NINE, cameras={"main": NINE, "nozzle": [0, 1]}),
    ]
    layers[1]["failures"] = [
        {"index": 4, "phase": "capture", "message": "nozzle timed out", "camera": "nozzle"},
    ]
    plans = plan_videos(layers, ALL)
    assert print_cameras(layers) == ["main", "nozzle"]
    assert [(p.camera, p.kind, p.index) for p in plans] == (
        [("main", "position", i) for i in NINE]
        + [("main", "grid", None)]
        + [("nozzle", "position", i) for i in NINE if i != 2]
        + [("nozzle", "grid", None)]
    )
    names = [p.file_name(PID) for p in plans]
    assert names[:10] == [f"video_{PID}_pos_{i:02d}.mp4" for i in NINE] + [f"video_{PID}_grid.mp4"]
    assert names[10] == f"video_{PID}_pos_00_cam_nozzle.mp4"
    assert names[-1] == f"video_{PID}_grid_cam_nozzle.mp4"
    assert len(set(names)) == len(names)
    main4, nozzle4 = plans[4].inputs[0], plans[10 + 3].inputs[0]
    assert nozzle4.index == 4
    assert [f.image for f in main4.frames] == [
        "2024-01-01/layer_0003_pos_04.jpg",
        "2024-01-01/layer_0006_pos_04.jpg",
    ]
    assert nozzle4.frames[0].image == "2024-01-01/layer_0003_pos_04_cam_nozzle.jpg"
    assert nozzle4.frames[1].image is None and nozzle4.frames[1].missing == "nozzle timed out"
    assert plans[-1].inputs[2].frames[0].missing == "no image"  # nozzle never took 2
    assert plans[-1].label() == "grid video of camera nozzle"
    assert plans[4].label() == "position 5 video of camera main"


def test_a_render_of_one_camera_or_one_position_of_every_camera():
    cams = {"main": NINE, "nozzle": [0, 1]}
    layers = [layer(3, NINE, cameras=cams)]
    one = plan_videos(layers, RenderTarget("all", camera="nozzle"))
    assert [(p.camera, p.index) for p in one] == [("nozzle", 0), ("nozzle", 1), ("nozzle", None)]
    both = plan_videos(layers, RenderTarget("position", 1))
    assert [(p.camera, p.index) for p in both] == [("main", 1), ("nozzle", 1)]
    only_main = plan_videos(layers, RenderTarget("position", 5))
    assert [(p.camera, p.index) for p in only_main] == [("main", 5)]
    grids = plan_videos(layers, RenderTarget("grid"))
    assert [(p.camera, p.file_name(PID)) for p in grids] == [
        ("main", f"video_{PID}_grid.mp4"),
        ("nozzle", f"video_{PID}_grid_cam_nozzle.mp4"),
    ]
    assert "one of this print's cameras ('main', 'nozzle')" in str(
        target_problem(layers, RenderTarget("all", camera="top"))
    )
    assert "no image" in str(target_problem(layers, RenderTarget("position", 5, "nozzle")))


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
