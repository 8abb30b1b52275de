"""Isolation's cost: `grade --solutions reference TRACK...` against plain in-process
pytest on the same checks (direct mode), measured in the same run.

    python bench/bench_grade.py [--repeat 3] [foundations] [tokenization attention ...]
    python bench/bench_grade.py foundations.softmax        # one exercise

Prints the median wall time of each and their ratio (isolated / direct).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def direct_path(target: str) -> str:
    """The check files pytest runs in direct mode for a track or an exercise id."""
    track, _, name = target.partition(".")
    return f"plugins/{track}/check_{name}.py" if name else f"plugins/{track}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("tracks", nargs="*", default=["foundations"], help="tracks or exercise ids")
    args = parser.parse_args()
    isolated_cmd = [sys.executable, "-c", "from grader.cli import main; main()",
                    "--solutions", "reference", *args.tracks, "-q", "--fail-under", "100"]
    direct_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[direct_path(t) for t in args.tracks]]
    isolated, direct = [], []
    for _ in range(args.repeat):  # interleaved, so drift in machine load hits both alike
        direct.append(timed(direct_cmd))
        isolated.append(timed(isolated_cmd))
    d, i = statistics.median(direct), statistics.median(isolated)
    print(f"tracks {' '.join(args.tracks)}, {args.repeat} runs each (median wall time)")
    print(f"  direct mode (in-process pytest):      {d:6.2f} s")
    print(f"  isolated mode (grade, full isolation): {i:6.2f} s")
    print(f"  ratio isolated / direct:              {i / d:6.2f}x")


if __name__ == "__main__":
    main()
