"""Calibrate's request checks and its moves (capture/calibrate.py) on the recorder printer."""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
from fakes import CONFIRM, FakeCamera, FakeClock, HeadState, PrinterFaults, RecorderPrinter

from octoprint_layercapture import settings as s
from octoprint_layercapture.capture.calibrate import (
    CalibrationRefused,
    CalibrationRequest,
    CalibrationRun,
    Calibrator,
    displacements,
    parse_request,
)

BED = s.Bounds(0.0, 0.0, 200.0, 200.0, max_z=150.0)
ROUND = s.Bounds(-100.0, -100.0, 100.0, 100.0, max_z=150.0, radius=100.0)


def test_displacements_match_the_measurement() -> None:
    pytest.importorskip("numpy")
    from octoprint_layercapture.analysis.mosaic import calibration

    assert displacements(calibration.DEFAULT_STEP_MM) == calibration.displacements()


@pytest.mark.parametrize(
    "body, key",
    [
        ({"x": 100, "y": 100}, "z"),
        ({"x": True, "y": 100, "z": 5}, "x"),
        ({"x": 100, "y": float("nan"), "z": 5}, "y"),
        ({"x": 100, "y": 100, "z": 151}, "z"),
        ({"x": 100, "y": 100, "z": 0.1}, "z"),
        ({"x": 100, "y": 100, "z": 5, "step": 30}, "step"),
        ({"x": 100, "y": 100, "z": 5, "feed": 1}, "feed"),
        ({"x": 199, "y": 100, "z": 5}, "x"),
        ({"x": 100, "y": -1, "z": 5}, "x"),
    ],
)
def test_bad_requests_name_the_field(body: Dict[str, Any], key: str) -> None:
    with pytest.raises(CalibrationRefused) as refused:
        parse_request(body, BED)
    assert refused.value.status == 400
    assert key in [e["key"] for e in refused.value.errors]


def test_every_shot_must_be_on_a_round_bed_too() -> None:
    with pytest.raises(CalibrationRefused, match="outside the bed"):
        parse_request({"x": 70, "y": 70, "z": 5}, ROUND)
    assert parse_request({"x": 0, "y": 0, "z": 5}, ROUND) == CalibrationRequest(0, 0, 5, 2.0)


def test_without_a_bed_size_nothing_moves() -> None:
    with pytest.raises(CalibrationRefused) as refused:
        parse_request({"x": 0, "y": 0, "z": 5}, None)
    assert refused.value.status == 409


def _run(faults: Optional[PrinterFaults] = None) -> Tuple[CalibrationRun, RecorderPrinter, list]:
    clock = FakeClock()
    printer = RecorderPrinter(clock, HeadState(20.0, 30.0, 0.4, 0.0), faults=faults)
    camera = FakeCamera(clock)
    values = s.validate({**s.DEFAULTS, "capture_delay": 0.0}, None)
    seen: List[Any] = []

    def measure(
        reference: bytes, shots: Sequence[Tuple[Tuple[float, float], bytes]]
    ) -> Dict[str, Any]:
        seen.append([move for move, _ in shots])
        return {"ok": True}

    request = CalibrationRequest(100.0, 90.0, 8.0, 2.0)
    run = CalibrationRun(request, values, BED, printer, camera, clock, measure, lambda _: None)
    return run, printer, seen


def test_lift_first_visit_each_spot_confirmed_then_back_where_it_started() -> None:
    run, printer, seen = _run()
    result = run.run()
    assert result["start"] == {"x": 20.0, "y": 30.0, "z": 0.4}
    assert seen == [displacements(2.0)]
    lines = [line for line in printer.log if line != CONFIRM]
    assert lines[:2] == ["G90", "G0 Z8 F600"]  # above the shot Z and the start's clearance
    assert lines[2] == "G0 X100 Y90 F6000"
    assert lines[-3:] == ["G0 Z8 F600", "G0 X20 Y30 F6000", "G0 Z0.4 F600"]
    assert (printer.head.x, printer.head.y, printer.head.z) == (20.0, 30.0, 0.4)
    # every move is followed by its confirmation before the next line goes out
    for i, line in enumerate(printer.log[:-1]):
        if line.startswith("G0"):
            assert printer.log[i + 1] == CONFIRM, printer.log[i : i + 2]
    xy = [m.after[:2] for m in printer.moves if m.changes_xy]
    assert xy[1:6] == [(102, 90), (100, 92), (98, 90), (100, 88), (102, 92)]


def test_a_move_never_confirmed_ends_the_run_unmeasured() -> None:
    run, _printer, seen = _run(PrinterFaults(wrong_reports=frozenset(range(5, 40))))
    with pytest.raises(Exception, match="not confirmed"):
        run.run()
    assert seen == []  # nothing measured


def test_one_calibration_at_a_time_on_its_named_thread() -> None:
    started, release = threading.Event(), threading.Event()
    names: List[str] = []

    class Slow:
        printer = None
        camera = FakeCamera(FakeClock())

        def run(self) -> Dict[str, Any]:
            names.append(threading.current_thread().name)
            started.set()
            release.wait(5)
            return {"ok": True}

    states: List[Dict[str, Any]] = []
    calibrator = Calibrator(lambda r, p: Slow(), states.append, logging.getLogger("t"))  # type: ignore[arg-type,return-value]
    calibrator.start(CalibrationRequest(1, 2, 3))
    assert started.wait(5)
    with pytest.raises(CalibrationRefused, match="already running"):
        calibrator.start(CalibrationRequest(1, 2, 3))
    release.set()
    calibrator.stop()
    assert names == ["layercapture-calibrate"]
    assert calibrator.state()["state"] == "done"
    assert states[-1]["result"] == {"ok": True}
