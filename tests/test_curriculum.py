"""The curriculum proves itself: for every exercise the reference scores full marks, the
untouched stub fails every check and counts as not started, and every known mistake
fails at least one check (at least one of them diagnosed by name)."""

from __future__ import annotations

import pytest
from helpers import ROOT, exercise_scores, load_results, run_grade

from grader.config import load_config
from grader.plugins import GradePlugins
from grader.selfcheck import check_exercise

CATALOG = GradePlugins(load_config(ROOT)).catalog()


@pytest.mark.parametrize("exercise_id", [e.id for e in CATALOG.exercises])
def test_exercise_is_sound(exercise_id: str):
    verdict = check_exercise(CATALOG, CATALOG.exercise(exercise_id), mode="direct")
    assert verdict.ok, "\n".join(verdict.lines + ["problems:"] + verdict.problems)


@pytest.mark.parametrize("track", [t.id for t in CATALOG.tracks])
def test_isolated_reference_full_marks_and_stubs_zero(track: str, tmp_path):
    ref_out, stub_out = tmp_path / "ref.json", tmp_path / "stub.json"
    ref = run_grade("--solutions", "reference", track, "--report", f"json:{ref_out}", "-q")
    assert ref.returncode == 0, ref.stdout + ref.stderr
    for exercise_id, (score, max_score, status) in exercise_scores(load_results(ref_out)).items():
        assert (score, status) == (max_score, "passed"), f"{exercise_id}: reference scored {score}/{max_score}"
    stub = run_grade("--solutions", "exercises", track, "--report", f"json:{stub_out}", "-q")
    assert stub.returncode == 0, stub.stdout + stub.stderr
    data = load_results(stub_out)
    for exercise_id, (score, _, status) in exercise_scores(data).items():
        assert (score, status) == (0, "not_started"), f"{exercise_id}: stub scored {score} ({status})"
    outcomes = {c["outcome"] for t in data["tracks"] for e in t["exercises"] for c in e["checks"]}
    assert outcomes == {"failed"}, "stubs must fail cleanly, with no errors, crashes or timeouts"
