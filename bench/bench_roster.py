"""Roster throughput: `grade roster` over N submissions against N times one submission's
direct-mode time (in-process pytest on the same checks), measured in the same run.

    python bench/bench_roster.py [--n 8] [--repeat 3] [TARGET ...]     # default: foundations

Each submission is a copy of the references for the targets. The target is a ratio of at
most 1.25: one warm judge and zygote for the class costs no more than grading each
student on their own in-process.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_grade import direct_path, timed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="submissions in the roster")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("targets", nargs="*", default=["foundations"], help="tracks or exercise ids")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grade-bench-roster-") as tmp:
        roster = Path(tmp) / "submissions"
        for i in range(args.n):
            for target in args.targets:
                track, _, name = target.partition(".")
                src = ROOT / "reference" / track
                dst = roster / f"student{i:03d}" / track
                dst.mkdir(parents=True, exist_ok=True)
                for f in ([src / f"{name}.py"] if name else sorted(src.glob("*.py"))):
                    shutil.copyfile(f, dst / f.name)
        one = roster / "student000"
        direct_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--grade-solutions", str(one),
                      *[direct_path(t) for t in args.targets]]
        direct, rostered = [], []
        for r in range(args.repeat):  # interleaved, so drift in machine load hits both alike
            direct.append(timed(direct_cmd))
            book = Path(tmp) / f"book{r}.sqlite"
            rostered.append(timed([sys.executable, "-c", "from grader.cli import main; main()", "roster", str(roster),
                                   *args.targets, "--gradebook", str(book)]))
            with sqlite3.connect(book) as db:  # a fast roster that graded nothing would be no figure
                rows = db.execute("SELECT score, max_score FROM submissions").fetchall()
            if len(rows) != args.n or any(score != top or top == 0 for score, top in rows):
                sys.exit(f"the roster's gradebook holds {rows}, not {args.n} submissions with full marks")
    d, r = statistics.median(direct), statistics.median(rostered)
    print(f"targets {' '.join(args.targets)}, {args.n} submissions, {args.repeat} runs each (median wall time)")
    print(f"  one submission, direct mode (in-process pytest): {d:6.2f} s")
    print(f"  the roster of {args.n} (grade roster):{'':14}{r:6.2f} s")
    print(f"  ratio roster / ({args.n} x direct):{'':15}{r / (args.n * d):6.2f}x")


if __name__ == "__main__":
    main()
