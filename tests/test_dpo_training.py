"""The judged DPO run: the judge trains nothing itself and trusts no number the student
reports; it loads the returned weights and measures the held-out margin and the KL. That
check must fail for untrained weights, a flipped sign and a loss without the reference
model, and pass the reference."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from grader.config import load_config
from grader.plugins import GradePlugins
from grader.selfcheck import _grade, copy_references, mutant_solutions

CHECK = "training_raises_held_out_margin"
CATALOG = GradePlugins(load_config(ROOT)).catalog()
DPO = next(e for e in CATALOG.exercises if e.id == "alignment.dpo")


def _training_check(solutions: Path):
    result = _grade(CATALOG, DPO, solutions, "direct")
    return next(c for c in result.checks if c.name == CHECK)


def test_the_reference_passes_the_training_check(tmp_path: Path):
    copy_references(CATALOG, tmp_path)
    check = _training_check(tmp_path)
    assert check.outcome == "passed", check.message


@pytest.mark.parametrize("mutant, words", [
    ("returns_initial_weights", "the returned weights are the initial weights"),
    ("flipped_sign", "margin"),
    ("no_reference", "margin"),
])
def test_the_training_check_fails(mutant: str, words: str, tmp_path: Path):
    check = _training_check(mutant_solutions(CATALOG, DPO, mutant, tmp_path))
    assert check.outcome == "failed", (mutant, check.outcome, check.message)
    assert words in check.message, check.message
