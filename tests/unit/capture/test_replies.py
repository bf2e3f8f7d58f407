"""Reading the printer's answers to the move confirmation: position formats of the common
firmwares, line kinds, and when an answer can never become a position report."""

from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octoprint_layercapture.capture.ports import Position
from octoprint_layercapture.capture.replies import (
    ACK,
    CHATTER,
    COMMUNICATION,
    OTHER,
    POSITION,
    REPLY_GRACE,
    UNKNOWN_COMMAND,
    ReplyWatch,
    classify,
    parse_position,
)

# ---- position formats


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # OctoPrint's virtual printer (its default m114FormatString, ok on the same line)
        ("ok X:105.0 Y:85.0 Z:5.6 E:0.0 Count: A:10500 B:8500 C:560", (105, 85, 5.6, 0.0)),
        # Marlin 2: the report, then "ok" on its own line; Count repeats X/Y/Z in steps
        ("X:105.00 Y:85.00 Z:5.60 E:12.34 Count X:8400 Y:6800 Z:2240", (105, 85, 5.6, 12.34)),
        # Prusa firmware: blanks after the Count colons
        ("X:105.00 Y:85.00 Z:5.60 E:0.00 Count X: 105.00 Y:85.00 Z:5.60 E:0.00", (105, 85, 5.6, 0)),
        # RepRapFirmware 3: E, E0, machine coordinates and bed compensation after the report
        (
            "X:105.000 Y:85.000 Z:5.600 E:1.0 E0:1.0 Count 8400 6800 2240 Machine 105.000 "
            "85.000 5.600 Bed comp 0.000",
            (105, 85, 5.6, 1.0),
        ),
        # RepRapFirmware 2 and multi-extruder Marlin: only numbered extruders
        ("X:105.000 Y:85.000 Z:5.600 E0:2.5 E1:0.0 Count 8400 6800 2240", (105, 85, 5.6, 2.5)),
        # Klipper and Repetier
        ("X:105.000 Y:85.000 Z:5.600 E:0.000", (105, 85, 5.6, 0.0)),
        # Smoothieware: no E at all (OctoPrint's own parser refuses this one)
        ("ok C: X:105.0000 Y:85.0000 Z:5.6000", (105, 85, 5.6, None)),
        # blanks after the colons, signs, leading dots, commas
        ("X: -1.5 Y: +2 Z: .25 E: -.5", (-1.5, 2, 0.25, -0.5)),
        ("X:1.0, Y:2.0, Z:3.0, E:4.0", (1, 2, 3, 4)),
        # Python's float repr, as the virtual printer writes it after relative moves
        (
            "ok X:5.551115123125783e-17 Y:1E+2 Z:0.2 E:-1e-05",
            (5.551115123125783e-17, 100, 0.2, -1e-5),
        ),
    ],
)
def test_position_formats(line: str, expected: tuple) -> None:
    position = parse_position(line)
    assert position == Position(*expected)
    assert classify(line).kind == POSITION and classify(line).position == position


@pytest.mark.parametrize(
    "line",
    [
        "Position 105.0/85.0/5.6",  # what our "garbled firmware" test printer answers
        "X=105.0 Y=85.0 Z=5.6",
        "X:105.0 Y:85.0",  # no Z
        "X:abc Y:1 Z:2 E:3",
        "Count X:8400 Y:6800",
        "",
    ],
)
def test_not_a_position(line: str) -> None:
    assert parse_position(line) is None
    assert classify(line).kind != POSITION


@given(
    st.floats(-1000, 1000, allow_nan=False),
    st.floats(-1000, 1000, allow_nan=False),
    st.floats(0, 1000, allow_nan=False),
    st.one_of(st.none(), st.floats(-1e5, 1e5, allow_nan=False)),
    st.sampled_from(["{:.2f}", "{:.3f}", "{:.4f}", "{}"]),
)
def test_any_reported_number_is_read_back(
    x: float, y: float, z: float, e: Optional[float], number: str
) -> None:
    words = [f"X:{number.format(x)}", f"Y:{number.format(y)}", f"Z:{number.format(z)}"]
    if e is not None:
        words.append(f"E:{number.format(e)}")
    position = parse_position(" ".join(words) + " Count X:1 Y:2 Z:3")
    assert position is not None
    for got, sent in zip((position.x, position.y, position.z, position.e), (x, y, z, e)):
        if sent is None:
            assert got is None
        else:
            assert got == pytest.approx(float(number.format(sent)))


# ---- line kinds


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("ok", ACK),
        ("ok\n", ACK),
        ("ok N123 P15 B3", ACK),
        ('echo:Unknown command: "M400"', UNKNOWN_COMMAND),  # Marlin
        ('!! Unknown command:"M400"', UNKNOWN_COMMAND),  # Klipper
        ("Error: Unsupported command: M400", UNKNOWN_COMMAND),
        ("Unknown command:M400", UNKNOWN_COMMAND),  # Repetier
        ("Resend: 123", COMMUNICATION),
        ("rs 123", COMMUNICATION),
        ("Error: Checksum mismatch", COMMUNICATION),
        ("Error:Line Number is not Last Line Number+1, Last Line: 122", COMMUNICATION),
        ("Error: expected line 5 got 7", COMMUNICATION),
        ("wait", CHATTER),
        ("busy:processing", CHATTER),
        ("echo:busy: processing", CHATTER),
        ("echo:busy paused for user", CHATTER),
        (" T:210.00 /210.00 B:60.00 /60.00 @:64", CHATTER),
        ("T0:210.0 /210.0 T1:0.0 /0.0", CHATTER),
        ("//action:paused", CHATTER),
        ("echo:Settings Stored", CHATTER),
        ("SD printing byte 12/100", CHATTER),
        ("Position 105.0/85.0/5.6", OTHER),
        ("Error: MINTEMP triggered", OTHER),
    ],
)
def test_line_kinds(line: str, kind: str) -> None:
    assert classify(line).kind == kind


# ---- one confirmation


def test_lines_before_our_commands_go_out_are_not_read() -> None:
    watch = ReplyWatch()
    assert not watch.listening
    assert not watch.feed("ok X:1 Y:1 Z:1 E:0", 0.0)  # someone else's M114
    assert watch.position is None


def test_the_report_answers_in_every_ok_order() -> None:
    for lines in (
        ["ok X:5 Y:6 Z:7 E:1"],  # the virtual printer
        ["X:5.00 Y:6.00 Z:7.00 E:1.00 Count X:400 Y:480 Z:2800", "ok"],  # Marlin
        ["ok", "X:5.00 Y:6.00 Z:7.00 E:1.00"],  # okBeforeCommandOutput
    ):
        watch = ReplyWatch()
        watch.sent("M400")
        assert not watch.feed("echo:busy: processing", 0.0)
        assert not watch.feed("ok", 0.1)  # M400's ok
        watch.sent("M114")
        settled = [watch.feed(line, 0.2) for line in lines]
        assert settled[-1] or watch.position is not None, lines
        assert watch.position == Position(5, 6, 7, 1)
        assert not watch.listening and not watch.expired(100.0)


def test_an_ok_without_a_report_expires_after_the_grace() -> None:
    watch = ReplyWatch()
    watch.sent("M114")
    watch.feed("Position 5/6/7", 10.0)
    watch.feed("ok", 10.0)
    assert watch.listening and not watch.expired(10.0 + REPLY_GRACE - 0.01)
    assert watch.expired(10.0 + REPLY_GRACE)
    assert watch.unrecognised() == (
        "the printer answered M114 with 'Position 5/6/7', not a position report"
    )


def test_an_answer_on_the_ok_line_is_quoted() -> None:
    watch = ReplyWatch()
    watch.sent("M114")
    watch.feed("ok Position 5/6/7", 0.0)
    assert watch.expired(REPLY_GRACE)
    assert watch.unrecognised() == (
        "the printer answered M114 with 'ok Position 5/6/7', not a position report"
    )


def test_an_ok_alone_expires_with_its_own_message() -> None:
    watch = ReplyWatch()
    watch.sent("M114")
    watch.feed("wait", 0.0)
    watch.feed("ok", 0.0)
    assert watch.expired(5.0)
    assert watch.unrecognised() == "the printer acknowledged M114 without a position report"


def test_a_resend_request_restarts_the_wait_for_the_answer() -> None:
    watch = ReplyWatch()
    watch.sent("M114")
    watch.feed("Error: Checksum mismatch", 0.0)
    watch.feed("Resend: 57", 0.0)
    watch.feed("ok", 0.0)  # acknowledges the resend request, not our M114
    assert watch.acknowledged_at == 0.0
    watch.feed("Resend: 57", 0.5)
    assert watch.acknowledged_at is None and not watch.expired(100.0)
    watch.feed("ok X:1 Y:2 Z:3 E:4", 0.6)
    assert watch.position == Position(1, 2, 3, 4)


@pytest.mark.parametrize("wait", ["M400", "G4"])
def test_an_unknown_wait_command_is_a_problem_at_once(wait: str) -> None:
    watch = ReplyWatch()
    watch.sent(wait)
    assert watch.feed(f'echo:Unknown command: "{wait}"', 0.0)
    others = {"M400": "'G4 P0' or 'poll'", "G4": "'M400' or 'poll'"}[wait]
    assert watch.problem == (
        f"the printer does not know {wait}: it answered 'echo:Unknown command: \"{wait}\"'; "
        f"set wait_for_moves to {others}"
    )
    assert not watch.listening


def test_an_unknown_m114_is_a_problem_without_the_settings_hint() -> None:
    watch = ReplyWatch()
    watch.sent("M114")
    watch.feed("Error: Unsupported command: M114", 0.0)
    assert watch.problem == (
        "the printer does not know M114: it answered 'Error: Unsupported command: M114'"
    )


def test_long_and_many_unread_lines_are_cut_short() -> None:
    watch = ReplyWatch()
    watch.sent("M114")
    for number in range(5):
        watch.feed(f"garbage {number} " + "x" * 300, 0.0)
    watch.feed("ok", 0.0)
    message = watch.unrecognised()
    assert message.count("garbage") == 3 and len(message) < 500
