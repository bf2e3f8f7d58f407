"""The gate that makes renders wait, and a job as the API shows it (analysis/video/jobs.py)."""

from __future__ import annotations

from typing import Dict

import pytest

from octoprint_layercapture.analysis.video.jobs import (
    CAPTURING,
    PRINTING,
    RenderGate,
    RenderJob,
)
from octoprint_layercapture.analysis.video.plan import RenderTarget
from octoprint_layercapture.vocabulary import RenderState


def gate(state: Dict[str, bool]) -> RenderGate:
    return RenderGate(
        capturing=lambda: state["capturing"],
        printing=lambda: state["printing"],
        while_printing=lambda: state["while_printing"],
    )


@pytest.mark.parametrize(
    ("capturing", "printing", "while_printing", "reason"),
    [
        (False, False, False, None),
        (False, True, False, PRINTING),  # by default not while a print runs
        (False, True, True, None),  # allowed: between the captures
        (True, True, True, CAPTURING),  # never while the head is away
        (True, False, False, CAPTURING),  # (a capture asked for by hand, say)
    ],
)
def test_the_gate(capturing: bool, printing: bool, while_printing: bool, reason: object) -> None:
    state = {"capturing": capturing, "printing": printing, "while_printing": while_printing}
    assert gate(state).reason() == reason


def test_the_gate_reads_its_inputs_each_time() -> None:
    state = {"capturing": False, "printing": True, "while_printing": False}
    closed = gate(state)
    assert closed.reason() == PRINTING
    state["printing"] = False
    assert closed.reason() is None


def test_a_jobs_snapshot_counts_frames_and_names_its_state() -> None:
    job = RenderJob(7, "0123456789abcdef", "box.gcode", RenderTarget("position", 4), auto=False)
    first = job.snapshot()
    assert (first["state"], first["percent"], first["index"], first["target"]) == (
        "queued",
        None,
        4,
        "position",
    )
    job.state, job.frames_done, job.frames_total = RenderState.RENDERING, 30, 120
    assert job.snapshot()["percent"] == 25 and job.snapshot()["state"] == "rendering"
