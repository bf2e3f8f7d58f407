"""Shared helpers for the benchmarks: timing, machine facts and one result format.

Every benchmark measures its baseline in the same run and reports rows through
:func:`record`: ``run_all.py`` collects them into one table (the README's figures).
A benchmark is a script, never a timed unit test.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Callable, List, Optional

ROOT = Path(__file__).resolve().parent.parent
RESULTS_ENV = "LC_BENCH_RESULTS"  # run_all.py points this at its results file


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``runs`` measured calls."""

    median: float
    best: float
    p95: float
    runs: int


def measure(fn: Callable[[], object], runs: int = 20, warmup: int = 2) -> Timing:
    """Times ``fn`` ``runs`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples: List[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return Timing(statistics.median(samples), samples[0], p95, runs)


@dataclass(frozen=True)
class Row:
    bench: str
    metric: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: Optional[float] = None
    target: str = ""
    note: str = ""
    # False: ratio = baseline / value, "N times faster than the baseline";
    # True: ratio = value / baseline, "N times the baseline" (an overhead, a floor)
    ratio_of_baseline: bool = False

    @property
    def ratio(self) -> Optional[float]:
        if self.baseline_value is None or not self.value or not self.baseline_value:
            return None
        if self.ratio_of_baseline:
            return self.value / self.baseline_value
        return self.baseline_value / self.value

    def describe_ratio(self) -> str:
        ratio = self.ratio
        if ratio is None:
            return ""
        if self.ratio_of_baseline:
            return f"{ratio:.2f}x the baseline"
        return f"{ratio:.2f}x faster"


def record(row: Row) -> Row:
    """Prints the row and appends it to the run's results file (when run_all started us)."""
    ratio = f"  ({row.describe_ratio()}: {row.baseline})" if row.ratio is not None else ""
    target = f"  (target {row.target})" if row.target else ""
    sys.stdout.write(f"  {row.metric}: {row.value:.4g} {row.unit}{ratio}{target}\n")
    sys.stdout.flush()
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(row)) + "\n")
    return row


def machine_summary() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import octoprint

        octoprint_version = octoprint.__version__
    except Exception:
        octoprint_version = "not installed"
    return (
        f"{date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, OctoPrint {octoprint_version}"
    )
