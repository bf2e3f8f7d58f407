"""`make bench`: runs every ``benchmarks/bench_*.py`` and prints one table of results.

Each benchmark runs in its own process (a clean interpreter, no state shared between
them) and appends its rows to a results file; the table at the end is what the README's
"Performance" section shows. ``--only NAME`` runs the benchmarks whose file name holds NAME.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import RESULTS_ENV, Row, machine_summary  # noqa: E402


def markdown(rows: List[Row]) -> str:
    lines = [
        "| benchmark | figure | value | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = (
            f"{r.baseline}: {r.baseline_value:.4g} {r.unit}" if r.baseline_value is not None else ""
        )
        ratio = r.describe_ratio()
        value = f"{r.value:.4g} {r.unit}"
        lines.append(f"| {r.bench} | {r.metric} | {value} | {baseline} | {ratio} | {r.target} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", default=[], help="substring of a file name")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if any(o in s.name for o in args.only)]
    print(f"machine: {machine_summary()}", flush=True)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "rows.jsonl"
        results.touch()
        env = {**os.environ, RESULTS_ENV: str(results)}
        for script in scripts:
            print(f"\n== {script.stem}", flush=True)
            code = subprocess.call([sys.executable, str(script)], env=env, cwd=str(HERE.parent))
            if code != 0:
                failed.append(script.name)
        rows = [Row(**json.loads(line)) for line in results.read_text().splitlines() if line]
    print("\n" + markdown(rows))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
