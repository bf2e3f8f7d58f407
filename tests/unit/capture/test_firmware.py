"""Firmware families, motion-mode histories and soft limits (capture.firmware)."""

from __future__ import annotations

import itertools
from typing import List, Optional

import pytest

from octoprint_layercapture.capture import firmware, moves
from octoprint_layercapture.capture.firmware import ModeHistory, SoftLimits, SoftLimitsWatch

MODE_COMMANDS = ["G90", "G91", "M82", "M83"]


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("Marlin 2.1.2.1 (Aug  1 2024 12:00:00)", "marlin"),
        ("Marlin bugfix-2.1.x", "marlin"),
        ("Marlin 1.1.9", "marlin_legacy"),
        ("Prusa-Firmware 3.13.2 based on Marlin", "marlin_legacy"),
        ("Klipper", "klipper"),
        ("RepRapFirmware for Duet 3 MB6HC", "reprapfirmware"),
        ("Virtual Marlin 1.0", "marlin_legacy"),
        ("Smoothieware", None),
        ("", None),
        (None, None),
    ],
)
def test_family_from_the_firmware_name(name: Optional[str], family: Optional[str]) -> None:
    assert firmware.family_from_name(name) == family


def test_a_setting_wins_over_the_name() -> None:
    assert firmware.resolve_family("klipper", "Marlin 2.1") == "klipper"
    assert firmware.resolve_family("auto", "Marlin 2.1") == "marlin"
    assert firmware.resolve_family("auto", None) is None


def simulate(commands: List[str], family: str) -> bool:
    """What each firmware's E mode is after ``commands`` (from its power-on default)."""
    xyz_relative, flag_relative, marlin_relative = False, False, False
    for command in commands:
        if command in ("G90", "G91"):
            xyz_relative = marlin_relative = command == "G91"
        else:
            flag_relative = marlin_relative = command == "M83"
    if family == "marlin":
        return not marlin_relative
    if family in ("klipper", "marlin_legacy"):
        return not (xyz_relative or flag_relative)
    return not flag_relative


def simulate_xyz(commands: List[str]) -> bool:
    relative = False
    for command in commands:
        if command in ("G90", "G91"):
            relative = command == "G91"
    return relative


@pytest.mark.parametrize("length", [1, 2, 3, 4])
@pytest.mark.parametrize("retract", [True, False])
def test_what_the_sequence_changes_it_gives_back_on_every_family(
    length: int, retract: bool
) -> None:
    # from any sequence of mode commands: our set-up (G90 only for a G91 job, M83 only to
    # retract, and only when the job's E mode is known) then our restore give each
    # firmware exactly the E and XYZ modes it had
    for commands in itertools.product(MODE_COMMANDS, repeat=length):
        history = ModeHistory()
        for command in commands:
            history = history.after(command)
        kind = moves.retract_kind(1.0 if retract else 0.0, history, False, False)
        ours = moves.setup_commands(history, kind)
        back = moves.restore_mode_commands(history, kind, None)
        replayed = [*commands, *ours, *back]
        assert ours or not back
        for family in ("marlin", "klipper", "reprapfirmware"):
            assert simulate(replayed, family) == simulate(list(commands), family), (
                commands,
                family,
            )
        assert simulate_xyz(replayed) == simulate_xyz(list(commands))


@pytest.mark.parametrize("length", [1, 2, 3])
def test_absolute_e_is_known_only_when_the_family_says(length: int) -> None:
    for commands in itertools.product(MODE_COMMANDS, repeat=length):
        history = ModeHistory()
        for command in commands:
            history = history.after(command)
        for family in ("marlin", "klipper", "reprapfirmware"):
            known = history.absolute_e(family)
            if known is not None:
                assert known == simulate(list(commands), family), (commands, family)
        unknown = history.absolute_e(None)
        if unknown is not None:  # the families agree
            assert all(
                simulate(list(commands), f) == unknown
                for f in ("marlin", "klipper", "reprapfirmware")
            )


def test_the_issues_example_is_ambiguous_without_a_family() -> None:
    history = ModeHistory()
    for command in ("M83", "G91", "G90"):
        history = history.after(command)
    assert history.absolute_e("marlin") is True
    assert history.absolute_e("klipper") is False
    assert history.absolute_e(None) is None
    assert history.replay() == ["M83", "G90"]


@pytest.mark.parametrize(
    "lines",
    [
        ["echo:Soft endstops: On  Min:  X0.00 Y-5.00 Z0.00  Max:  X235.00 Y235.00 Z250.00", "ok"],
        [
            "echo:; Soft Endstops:",
            "echo:  M211 S1 ; ON",
            "echo:  Min:  X0.00 Y-5.00 Z0.00   Max:  X235.00 Y235.00 Z250.00",
            "ok",
        ],
    ],
    ids=["marlin-2.0", "marlin-2.1"],
)
def test_soft_limits_from_m211(lines: List[str]) -> None:
    assert firmware.parse_soft_limits(lines) == SoftLimits(0, -5, 0, 235, 235, 250)
    watch = SoftLimitsWatch(started=0.0)
    done = [watch.feed(line, 0.1) for line in lines]
    assert done[-1] or any(done)
    assert watch.limits == SoftLimits(0, -5, 0, 235, 235, 250)


def test_soft_limits_off_or_absent_mean_none() -> None:
    off = "echo:Soft endstops: Off  Min:  X0.00 Y0.00 Z0.00  Max:  X200.00 Y200.00 Z200.00"
    assert firmware.parse_soft_limits([off]) is None
    assert (
        firmware.parse_soft_limits(["echo:  M211 S0 ; OFF", "echo:  Min: X0 Y0 Z0 Max: X1 Y1 Z1"])
        is None
    )
    assert firmware.parse_soft_limits(['echo:Unknown command: "M211"', "ok"]) is None
    watch = SoftLimitsWatch(started=0.0, wait=1.0)
    assert not watch.feed("T:20.0 /0.0 B:20.0 /0.0", 0.5)
    assert watch.feed("wait", 1.5), "gives up after its wait"
    assert watch.limits is None
