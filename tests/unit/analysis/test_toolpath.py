"""The toolpath reader: extrusion moves only, in bed mm, with the slicer's widths."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from octoprint_layercapture.analysis.toolpath import (
    PathStart,
    read_toolpath,
    toolpath_document,
    toolpath_svg,
)
from octoprint_layercapture.capture.firmware import MARLIN, MARLIN_LEGACY, ModeHistory

ABSOLUTE = PathStart(10.0, 10.0, 0.2, 5.0, True, ModeHistory("G90", "M82", True))
RELATIVE_E = PathStart(10.0, 10.0, 0.2, 0.0, True, ModeHistory("G90", "M83", True))


def test_absolute_e_extrusions_travels_and_retractions() -> None:
    path = read_toolpath(
        [
            ";TYPE:Perimeter",
            ";WIDTH:0.45",
            "G1 X20 Y10 E5.5",  # extrudes 0.5 from (10, 10)
            "G1 X20 Y20 E6.0 ; a comment",
            "G1 E4.0 F2400",  # retract: no XY
            "G1 Z0.6",  # hop
            "G0 X30 Y30",  # travel
            "G1 Z0.2",
            "G1 E6.0",  # unretract
            ";TYPE:Solid infill",
            ";WIDTH:0.5",
            "G1 X40 Y30 E6.3",
        ],
        ABSOLUTE,
        MARLIN,
    )
    assert path.moves == 3
    assert path.extruded_e == pytest.approx(0.5 + 0.5 + 0.3)
    assert path.path_length == pytest.approx(10 + 10 + 10)
    assert [(p.kind, p.width, p.xy) for p in path.polylines] == [
        ("Perimeter", 0.45, [10.0, 10.0, 20.0, 10.0, 20.0, 20.0]),
        ("Solid infill", 0.5, [30.0, 30.0, 40.0, 30.0]),
    ]
    assert path.widths() == [0.45, 0.5]


def test_relative_e_g92_and_the_start_state() -> None:
    path = read_toolpath(
        ["G1 X11 Y10 E0.1", "G92 E0", "G1 X12 Y10 E0.2", "G1 X13 Y10 E-0.5", "G1 X14 Y10 E0.1"],
        RELATIVE_E,
        MARLIN,
    )
    # the E-0.5 move is a wipe: no extrusion, and the next piece starts a new polyline
    assert path.extruded_e == pytest.approx(0.4)
    assert [p.xy for p in path.polylines] == [[10, 10, 11, 10, 12, 10], [13, 10, 14, 10]]
    assert path.polylines[0].width is None and path.polylines[0].kind is None


def test_the_width_in_force_comes_from_the_start() -> None:
    start = PathStart(0.0, 0.0, 0.4, 0.0, True, ModeHistory("G90", "M83", True), 0.42, "Infill")
    path = read_toolpath(["G1 X1 Y0 E0.05"], start, MARLIN)
    assert (path.polylines[0].width, path.polylines[0].kind) == (0.42, "Infill")


def test_g91_follows_the_firmware_family() -> None:
    # Marlin 2: G91 makes E relative too; Marlin 1 keeps the M82 flag
    lines = ["G91", "G1 X1 Y0 E0.5", "G90"]
    start = PathStart(0.0, 0.0, 0.2, 3.0, True, ModeHistory("G90", "M82", True))
    assert read_toolpath(lines, start, MARLIN).extruded_e == pytest.approx(0.5)
    assert read_toolpath(lines, start, MARLIN_LEGACY).extruded_e == pytest.approx(0.5)
    flag_kept = PathStart(0.0, 0.0, 0.2, 3.0, True, ModeHistory("G90", "M82", True))
    # RepRapFirmware: G91 leaves E absolute, E0.5 < 3.0 is no extrusion
    assert read_toolpath(lines, flag_kept, "reprapfirmware").extruded_e == 0


def test_unknown_start_position_skips_only_the_first_move() -> None:
    start = PathStart(None, None, 0.2, 0.0, True, ModeHistory("G90", "M83", True))
    path = read_toolpath(["G1 X1 Y1 E0.1", "G1 X2 Y1 E0.1"], start, MARLIN)
    assert path.moves == 1 and path.polylines[0].xy == [1, 1, 2, 1]


def test_arcs_are_split_into_short_pieces_with_their_e() -> None:
    # a half circle of radius 5 around (10, 10), counter-clockwise, from (15, 10)
    start = PathStart(15.0, 10.0, 0.2, 0.0, True, ModeHistory("G90", "M83", True))
    path = read_toolpath(["G3 X5 Y10 I-5 J0 E1.5"], start, MARLIN)
    points = path.polylines[0].xy
    assert points[-2:] == [5, 10]
    for x, y in zip(points[0::2], points[1::2]):
        assert math.hypot(x - 10, y - 10) == pytest.approx(5, abs=1e-6)
        assert y >= 10 - 1e-9  # counter-clockwise from the right goes over the top
    assert path.path_length == pytest.approx(math.pi * 5, rel=0.01)
    assert path.polylines[0].e == pytest.approx(1.5)
    # the R form, clockwise: from (0, 0) to (10, 0) with R 5 goes over the top too
    start = PathStart(0.0, 0.0, 0.2, 0.0, True, ModeHistory("G90", "M83", True))
    arc = read_toolpath(["G2 X10 Y0 R5 E1"], start, MARLIN).polylines[0].xy
    assert max(arc[1::2]) == pytest.approx(5, abs=0.01)


def test_unreadable_lines_never_raise() -> None:
    path = read_toolpath(
        ["", "G1 Xnope Y1 E1", "M117 hello", "T1", "G28 X", "G1 X5 Y5 E9", "N12 G1 X6 Y5 E9.5*77"],
        ABSOLUTE,
        MARLIN,
    )
    # G28 X made X unknown: the move after it has no start; the numbered line extrudes
    assert path.moves == 1 and path.polylines[0].xy == [5, 5, 6, 5]


def test_document_and_svg() -> None:
    path = read_toolpath([";TYPE:<script>alert(1)</script>", "G1 X20 Y10 E6"], ABSOLUTE, MARLIN)
    doc = toolpath_document(path, 3, 0.6, {"path": "a.gcode"})
    assert doc["schema_version"] == 1 and doc["layer"] == 3 and doc["moves"] == 1
    assert doc["polylines"] == [
        {
            "type": "<script>alert(1)</script>",
            "width": None,
            "z": 0.2,
            "e": 1.0,
            "xy": [10, 10, 20, 10],
        }
    ]
    assert doc["bounds"] == {"min_x": 10, "min_y": 10, "max_x": 20, "max_y": 10}
    svg = toolpath_svg(path)
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "script" not in svg  # nothing from the G-code gets into the SVG
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    assert [line.get("points") for line in lines] == ["10.000,10.000 20.000,10.000"]
    assert toolpath_svg(read_toolpath([], ABSOLUTE, MARLIN)).startswith("<svg")
