"""A broken or hostile solution costs only its own checks: never the grader, another
exercise, the results file, or a stray process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import exercise_scores, load_results, processes_with_marker, run_grade

TARGETS = ["foundations.softmax", "foundations.cross_entropy"]
TIMEOUT_S = 3.0

HOSTILE = {
    "hangs": """
def softmax(x, dim=-1, keepdim=False):
    while True:
        pass
log_softmax = logsumexp = softmax
""",
    "exits_at_import": """
import os
os._exit(0)
""",
    "segfaults": """
import ctypes
def softmax(x, dim=-1, keepdim=False):
    return ctypes.string_at(0)
log_softmax = logsumexp = softmax
""",
    "equal_to_everything": """
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __bool__(self):
        return True
    def __getattr__(self, name):
        return self
    def __call__(self, *a, **k):
        return self
def softmax(x, dim=-1, keepdim=False):
    return Anything()
log_softmax = logsumexp = softmax
""",
    "patches_the_comparisons": """
import numpy
import numpy.testing
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
def softmax(x, dim=-1, keepdim=False):
    return x * 0
log_softmax = softmax
def logsumexp(x, dim=-1, keepdim=False):
    return x.sum(dim)
""",
    "allocates_without_bound": """
import torch
def softmax(x, dim=-1, keepdim=False):
    hoard = []
    while True:
        hoard.append(torch.empty(1 << 28))  # 1 GiB more each time
log_softmax = logsumexp = softmax
""",
    "prints_a_gigabyte": """
import sys
def softmax(x, dim=-1, keepdim=False):
    chunk = "x" * (1 << 24)
    for _ in range(64):
        sys.stdout.write(chunk)
    print("y" * (1 << 20), file=sys.stderr)
    return x
log_softmax = logsumexp = softmax
""",
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[float, float, str]]:
    out = tmp_path_factory.mktemp("baseline") / "results.json"
    proc = run_grade("--solutions", "reference", *TARGETS, "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    return exercise_scores(load_results(out))


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_solution_costs_only_its_own_exercise(case, baseline, solutions_copy: Path, tmp_path: Path, marker: str):
    (solutions_copy / "foundations" / "softmax.py").write_text(HOSTILE[case])
    out = tmp_path / "results.json"
    started = time.monotonic()
    proc = run_grade(
        "--solutions", str(solutions_copy), *TARGETS, "--report", f"json:{out}", "--timeout", str(TIMEOUT_S), "-q",
        env={marker.split("=")[0]: marker.split("=")[1]},
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"grade exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    scores = exercise_scores(load_results(out))
    assert set(scores) == set(TARGETS), "the results file must list every exercise"
    assert scores["foundations.cross_entropy"] == baseline["foundations.cross_entropy"]
    score, max_score, status = scores["foundations.softmax"]
    assert max_score == baseline["foundations.softmax"][1]
    assert score < max_score, f"a hostile solution ({case}) scored full marks"
    assert processes_with_marker(marker) == [], "a solution process outlived the run"
    data = load_results(out)
    checks = [c for t in data["tracks"] for e in t["exercises"] if e["id"] == "foundations.softmax" for c in e["checks"]]
    if case == "hangs":
        assert all(c["outcome"] == "timeout" for c in checks)
        assert all(c["duration_s"] <= TIMEOUT_S + 2 for c in checks), [c["duration_s"] for c in checks]
        assert elapsed < 120
    if case == "segfaults":
        assert all(c["outcome"] == "crashed" for c in checks)
        assert "SIGSEGV" in checks[0]["message"]
    if case == "exits_at_import":
        assert status == "error"
        assert "exited with status 0" in checks[0]["message"]
    if case == "allocates_without_bound":
        assert any("memory limit" in c["message"] for c in checks), checks[0]["message"]
    if case == "prints_a_gigabyte":
        assert all(len(c["output"]) < 200_000 for c in checks)
