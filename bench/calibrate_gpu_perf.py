"""Calibrate the GPU performance checks' floors on the GPU the course grades on.

    python bench/calibrate_gpu_perf.py            # grade the reference kernels, print the figures
    python bench/calibrate_gpu_perf.py --write    # ... and set each floor in plugins/gpu_perf/floors.toml

Grades the reference solutions of every exercise named in `plugins/gpu_perf/floors.toml`,
reads each perf check's `fraction_of_peak` from the results, and proposes a floor of
`--ratio` (0.75) times what the reference reaches: a student's kernel within 25% of the
reference passes. `--write` records the floors, the figures and the GPU's name, and clears
`provisional`. `--from-results FILE` reads an earlier results JSON instead of grading.
Without CUDA the perf checks are skipped and this says so (exit 2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLOORS = ROOT / "plugins" / "gpu_perf" / "floors.toml"
sys.path.insert(0, str(ROOT))

from grader.tomlload import read_toml  # noqa: E402


def grade_references(exercises: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        subprocess.run([sys.executable, "-c", "from grader.cli import main; main()", "--solutions", "reference",
                        *exercises, "--report", f"json:{out}", "-q"], cwd=ROOT, check=False)
        return json.loads(out.read_text())


def measured(results: dict[str, Any], floors: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(exercise, check) -> the check's result, for every check named in the floors file."""
    found = {}
    for track in results["tracks"]:
        for exercise in track["exercises"]:
            for check in exercise["checks"]:
                if check["name"] in floors.get(exercise["id"], {}):
                    found[(exercise["id"], check["name"])] = check
    return found


def render(floors: dict[str, dict[str, Any]]) -> str:
    lines = [line for line in FLOORS.read_text().splitlines() if line.startswith("#")]
    for exercise_id, checks in floors.items():
        for name, entry in checks.items():
            lines += ["", f'["{exercise_id}".{name}]']
            for key, value in entry.items():
                lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write the floors into plugins/gpu_perf/floors.toml")
    parser.add_argument("--ratio", type=float, default=0.75, help="floor = ratio x the reference's fraction")
    parser.add_argument("--from-results", type=Path, help="read this results JSON instead of grading")
    args = parser.parse_args(argv)
    floors = read_toml(FLOORS)
    results = json.loads(args.from_results.read_text()) if args.from_results else grade_references(list(floors))
    device = results.get("metadata", {}).get("device", "unknown")
    checks = measured(results, floors)
    skipped = [f"{e}.{c}" for (e, c), r in checks.items() if r["outcome"] == "skipped"]
    if not checks or skipped:
        print(f"The perf checks were skipped on this machine ({device}): "
              f"{'; '.join(sorted({r['message'] for r in checks.values()})) or 'none ran'}. "
              "Run this on the GPU the course grades on.")
        return 2
    print(f"{'check':<58} {'fraction':>8} {'rate':>12} {'eager x':>8} {'floor':>6}")
    for (exercise_id, name), check in sorted(checks.items()):
        figures = check["figures"]
        if "fraction_of_peak" not in figures:
            print(f"{exercise_id}.{name}: no figures ({check['outcome']}: {check['message']})")
            return 3
        fraction = figures["fraction_of_peak"]
        rate = f"{figures['gbps']:.0f} GB/s" if "gbps" in figures else f"{figures.get('tflops', 0):.1f} TFLOP/s"
        floor = round(args.ratio * fraction, 3)
        print(f"{exercise_id + '.' + name:<58} {fraction:>8.3f} {rate:>12} {figures.get('speedup_vs_eager', 0):>8.2f} "
              f"{floor:>6.3f}")
        entry = floors[exercise_id][name]
        entry.update({"floor": floor, "provisional": False, "measured_on": device,
                      "reference_fraction_of_peak": fraction})
        entry.update({f"reference_{k}": v for k, v in figures.items() if k in ("gbps", "tflops", "speedup_vs_eager")})
    if args.write:
        FLOORS.write_text(render(floors))
        print(f"wrote {FLOORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
