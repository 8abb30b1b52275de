"""How often the error-shape diagnosers describe a known mistake on their own.

Grades every listed mutant (known mistake) of the selected exercises with the mutant table
hidden from the judge, so no failure can name a mistake and only `grader.diagnose` speaks,
and reports, per mutant, the first "Looking closer:" sentence of its failing checks.

    python bench/diagnosis_coverage.py [--json OUT] [TARGET ...]     # tracks or exercise ids

The fraction printed last is of mutants that get a sentence; whether each sentence
describes its mistake is read from the table (docs/design-notes.md keeps the latest count).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.config import load_config  # noqa: E402
from grader.plugins import GradePlugins  # noqa: E402
from grader.pytest_plugin import GradeSession  # noqa: E402
from grader.selfcheck import _grade, mutant_solutions  # noqa: E402

MARK = "Looking closer: "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="write the per-mutant sentences here")
    parser.add_argument("targets", nargs="*", help="tracks or exercise ids (default: all)")
    args = parser.parse_args()

    GradeSession.mutants_for = lambda self, exercise: {}  # type: ignore[method-assign]  # the table, hidden
    catalog = GradePlugins(load_config(ROOT)).catalog()
    chosen = [e for e in catalog.exercises
              if not args.targets or e.track in args.targets or e.id in args.targets]
    rows = []
    for exercise in chosen:
        for m in exercise.mutants:
            with tempfile.TemporaryDirectory(prefix="grade-coverage-") as tmp:
                solutions = mutant_solutions(catalog, exercise, m.name, Path(tmp))
                result = _grade(catalog, exercise, solutions, "direct")
            sentences = [(c.name, line.split(MARK, 1)[1]) for c in result.checks
                         if c.outcome not in ("passed", "skipped") for line in c.message.splitlines() if MARK in line]
            caught = any(c.outcome not in ("passed", "skipped") for c in result.checks)
            rows.append({"exercise": exercise.id, "mutant": m.name, "caught": caught,
                         "sentences": [{"check": n, "sentence": s} for n, s in sentences]})
            first = f"{sentences[0][0]}: {sentences[0][1]}" if sentences else "-"
            print(f"{exercise.id}.{m.name}\t{first}", flush=True)
    described = sum(1 for r in rows if r["sentences"])
    print(f"\n{described} of {len(rows)} known mistakes get an error-shape sentence with the table hidden"
          f" ({described / max(1, len(rows)):.0%})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
