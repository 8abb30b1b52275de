"""The student's loop: a cold `grade EXERCISE` against `python -c "import torch"`, and a
`grade watch` re-grade after a save, each measured in the same run.

    python bench/bench_student_loop.py [--repeat 5] [--saves 10] [--exercise foundations.softmax]

Cold: the median wall time of `grade --solutions reference EXERCISE -q` and of the same
exercise's untouched stub, each over the median of `python -c "import torch"`, runs
interleaved. Watch: `grade watch EXERCISE` in a pseudo-terminal on a copy of the
references; each save rewrites the exercise's file and is timed until the next prompt is
printed (the new result is on screen). Prints the medians; targets: cold <= 1.5x,
re-grade < 0.5 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_grade import ROOT, timed  # this folder is on sys.path when a script here runs

sys.path.insert(0, str(ROOT / "tests"))

GRADE = [sys.executable, "-c", "from grader.cli import main; main()"]


def cold(exercise: str, repeat: int) -> None:
    torch_cmd = [sys.executable, "-c", "import torch"]
    reference = [*GRADE, "--solutions", "reference", exercise, "-q"]
    stub = [*GRADE, "--solutions", "exercises", exercise, "-q"]
    times: dict[str, list[float]] = {"torch": [], "reference": [], "stub": []}
    for _ in range(repeat):  # interleaved, so drift in machine load hits all alike
        times["torch"].append(timed(torch_cmd))
        times["reference"].append(timed(reference))
        times["stub"].append(timed(stub))
    base = statistics.median(times["torch"])
    print(f"cold, {repeat} runs each (median wall time)")
    print(f"  python -c 'import torch':             {base:6.2f} s")
    for what in ("reference", "stub"):
        t = statistics.median(times[what])
        print(f"  grade {exercise} ({what + ')':10s} {t:6.2f} s  {t / base:5.2f}x import torch")


def watch(exercise: str, saves: int) -> None:
    from helpers import Terminal

    track, name = exercise.split(".")
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        project = Path(tmp)
        solutions = project / "solutions"
        shutil.copytree(ROOT / "reference", solutions, ignore=shutil.ignore_patterns("__pycache__"))
        (project / "grade.toml").write_text(f'solutions = "{solutions}"\n')
        target = solutions / track / f"{name}.py"
        source = target.read_text()
        term = Terminal([*GRADE, "watch", exercise], cwd=project)
        try:
            term.read_until(r"Save to re-grade", timeout=120)
            times = []
            for i in range(saves):
                time.sleep(0.3)  # a student's saves are seconds apart; let the watcher settle
                started = time.perf_counter()
                target.write_text(f"{source}\n# save {i}\n")
                term.read_until(r"Save to re-grade", timeout=60)
                times.append(time.perf_counter() - started)
            term.type("q")
            term.proc.wait(timeout=30)
        finally:
            term.close()
    print(f"grade watch {exercise}: {saves} saves, from the save to the new result on screen")
    print(f"  median {statistics.median(times):.3f} s  (min {min(times):.3f}, max {max(times):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--exercise", default="foundations.softmax")
    args = parser.parse_args()
    cold(args.exercise, args.repeat)
    watch(args.exercise, args.saves)


if __name__ == "__main__":
    main()
