"""Diagnosis past the listed mistakes: a known mistake is named only when it explains
everything the check compared, and a numeric mismatch of a recognisable shape gets one
observed sentence (grader.diagnose)."""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import load_results, run_grade

from grader import recording
from grader.compare import CheckFailure, Mistakes, assert_close, assert_equal
from grader.diagnose import diagnose


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


X = torch.randn(4, 8, 64, generator=_g(), dtype=torch.float64)
P = torch.softmax(X, -1)
S = torch.randn(2, 6, 6, generator=_g(1), dtype=torch.float64)
SQ = torch.randn(8, 8, generator=_g(2), dtype=torch.float64)
MASK = torch.rand(4, 8, generator=_g(3)) > 0.3


def _padded(p: torch.Tensor) -> torch.Tensor:
    out = p.clone()
    out[~MASK] = 0.1
    return out


def _causal_scores() -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.ones(6, 6).tril().bool()
    return S, S.masked_fill(~keep, -1e9)  # got: no mask; expected: masked


def _off_by_one_scores() -> tuple[torch.Tensor, torch.Tensor]:
    expected = S.masked_fill(~torch.ones(6, 6).tril().bool(), -1e9)
    return S.masked_fill(~torch.ones(6, 6).tril(-1).bool(), -1e9), expected


def _overflow() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = X.clone()
    x[0] *= 200
    x = x.float()
    naive = torch.exp(x) / torch.exp(x).sum(-1, keepdim=True)
    return naive, torch.softmax(x, -1), x


CASES: dict[str, tuple[Any, Any, dict[str, Any], str]] = {
    # name: (got, expected, diagnose's keywords, the sentence's telling part)
    "scale 1/sqrt(d)": (P / math.sqrt(32), P, {"inputs": [("q", torch.zeros(2, 3, 32))]},
                        "times 0.176777 = 1/sqrt(32) (32: the size of axis 2 of `q`)"),
    "scale with two names": (P / 8, P, {}, "times 0.125 = 1/8 (8: the size of axis 1 of the output) or 1/sqrt(64)"),
    "scale 1/d": (P / 64, P, {}, "times 0.015625 = 1/64"),
    "scale 2": (P * 2, P, {}, "times 2"),
    "scale 1/2": (P / 2, P, {}, "times 0.5 = 1/2"),
    "scale -1": (-P, P, {}, "times -1"),
    "scale other": (P * 0.37, P, {}, "times 0.37, the same factor everywhere"),
    "scalar scale": (3.0, 1.5, {}, "times 2"),
    "offset": (P + 0.5, P, {}, "plus 0.5, the same amount everywhere"),
    "per-row offset": (X, torch.log_softmax(X, -1), {}, "plus an amount that is the same all along axis 2"),
    "per-row factor": (P * torch.rand(4, 8, 1, generator=_g(4), dtype=torch.float64), P, {},
                       "times a factor that is the same all along axis 2"),
    "transposed": (SQ.T, SQ, {}, "with axes 0 and 1 swapped (.transpose(0, 1))"),
    "permuted shape": (P.transpose(0, 1), P, {}, "permuted as .permute(1, 0, 2), shape (8, 4, 64) instead of (4, 8, 64)"),
    "reshaped": (P.reshape(8, 4, 64), P, {}, "in the expected order, with shape (8, 4, 64) instead of (4, 8, 64)"),
    "shift later": (torch.cat([P[:, :1], P[:, :-1]], 1), P, {}, "moved one position later along axis 1"),
    "shift earlier": (torch.cat([P[:, 1:], P[:, -1:]], 1), P, {}, "moved one position earlier along axis 1"),
    "reduction axis": (torch.softmax(X, 1), P, {}, "sums to 1 along axis 1, while the expected one sums to 1 along axis 2"),
    "causal mask off": (*_causal_scores(), {}, "with j - i > 0 (above the diagonal"),
    "causal mask off by one": (*_off_by_one_scores(), {}, "exactly on the diagonal (the entries [i, i]"),
    "prefix": (torch.cat([P[:, :3], P[:, 3:] + 1], 1), P, {}, "matches the expected one at positions 0..2 of axis 1 and"
               " differs at every position from 3 on"),
    "suffix": (torch.cat([P[:, :5] + 1, P[:, 5:]], 1), P, {}, "differs from the expected one at positions 0..4 of axis 1"
               " and matches from position 5 on"),
    "masked positions": (_padded(P), P, {"inputs": [("attention_mask", MASK)]},
                         "only where `attention_mask` is False"),
    "overflow": (*_overflow()[:2], {"inputs": [("x", _overflow()[2])]}, "all in rows where `x` reaches"),
    "float32 rounding": (P.float().double(), P, {"atol": 1e-12, "rtol": 1e-12}, "within float32 rounding"),
    "equals an input": (X, P, {"inputs": [("x", X)]}, "equals the input `x`, unchanged"),
    "zeros": (torch.zeros_like(P), P, {}, "every value of your output is 0"),
    "close": (P * (1 + 1e-3 * torch.rand(P.shape, generator=_g(5), dtype=torch.float64)), P, {},
              "everywhere, yet outside the tolerance"),
    "a few rows": (torch.cat([P[:2], P[2:3] + 1, P[3:]]).index_add(0, torch.tensor([0]), torch.ones(1, 8, 64, dtype=torch.float64)), P, {},
                   "only at positions 0, 2 of axis 0 (2 of 4)"),
    "ignored labels": (torch.where(torch.arange(8) % 3 == 0, 0.5, P[0, :, 0]), P[0, :, 0],
                       {"inputs": [("labels", torch.where(torch.arange(8) % 3 == 0, -100, 7))]},
                       "only where `labels` is -100, the ignored positions: 3 of the 3 entries there differ"),
    "mask inverted": (~torch.ones(5, 5).tril().bool(), torch.ones(5, 5).tril().bool(), {"atol": 0, "rtol": 0},
                      "inverted: True exactly where the expected one is False"),
    "finite for -inf": (torch.zeros(5, 5).masked_fill(~torch.ones(5, 5).tril().bool(), -1e9),
                        torch.zeros(5, 5).masked_fill(~torch.ones(5, 5).tril().bool(), -math.inf), {"atol": 0, "rtol": 0},
                        "holds -1e+09 where the expected one is -inf (10 entries)"),
    "items reordered": ([(1, 2), (3, 4)], [(3, 4), (1, 2)], {}, "holds exactly the expected items in another order"),
    "item missing": ([b"a", b"c"], [b"a", b"b", b"c"], {}, "without 1 item (missing: b'b' at index 1)"),
    "item added": (["a", "", "b"], ["a", "b"], {}, "with 1 item (extra: '' at index 1)"),
    "split differently": (["ab", " c"], ["a", "b ", "c"], {}, "join to exactly the expected text"),
    "ids off by one": ([1, 2, 3, 4, 5], [0, 1, 2, 3, 4], {"atol": 0, "rtol": 0}, "plus 1, the same amount everywhere"),
    "at an input's value": (torch.where(SQ == SQ[0, 0], 1.0, SQ).where(torch.arange(8) % 2 == 1, 1.0), SQ.where(torch.arange(8) % 2 == 1, 0.0),
                            {"inputs": [("x", (torch.arange(8) % 2).expand(8, 8))]},
                            "differs from the expected one exactly where `x` is 0 (32 entries)"),
    "one value for another": (torch.tensor([[5, 7, 0, 0], [2, 0, 9, 4]]), torch.tensor([[5, 7, -100, -100], [2, -100, 9, 4]]),
                              {"atol": 0, "rtol": 0}, "the expected value is -100 and yours is 0"),
    "NaN where 0": (torch.where(torch.arange(8) < 3, math.nan, P[0, :, 0]), torch.where(torch.arange(8) < 3, 0.0, P[0, :, 0]),
                    {}, "the expected value is 0 and yours is NaN"),
    "slices reordered": (SQ[[0, 2, 1, 3, 4, 5, 6, 7]], SQ, {}, "slices along axis 0 in another order (your 1 is the expected 2"),
    "only where one value is expected": (torch.tensor([[5, 7, 3, 0], [2, 6, 9, -100]]), torch.tensor([[5, 7, -100, -100], [2, -100, 9, -100]]),
                                         {"atol": 0, "rtol": 0}, "only at entries whose expected value is -100 (3 of the 4 such entries)"),
    "one value held": (torch.tensor([[5, 0, 3, 0], [2, 6, 0, 1]]), torch.tensor([[5, 7, 3, 8], [2, 6, 9, 1]]),
                       {"atol": 0, "rtol": 0}, "everywhere your output differs from the expected one (3 entries), yours holds 0"),
    "an earlier call's answer": (P[1:], torch.softmax(X[:3] * 2, -1), {"earlier": [("softmax(Tensor(3, 8, 64))", P[1:])]},
                                 "equals what your code returned for an earlier call in this check, softmax("),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_diagnoser_describes_its_mismatch(case: str):
    got, expected, kwargs, words = CASES[case]
    kwargs = {"atol": 1e-6, "rtol": 1e-5, **kwargs}
    sentence = diagnose(got, expected, **kwargs)
    assert sentence is not None and words in sentence, sentence


@pytest.mark.parametrize("seed", range(5))
def test_a_mismatch_of_no_kind_gets_no_sentence(seed: int):
    g = _g(100 + seed)
    noise = torch.randn(P.shape, generator=g, dtype=torch.float64) * 0.05 * float(P.max())  # 5%: not "close"
    assert diagnose(P + noise, P, atol=1e-6, rtol=1e-5, inputs=[("x", X), ("attention_mask", MASK)]) is None
    other = torch.randn(3, 5, generator=g)
    assert diagnose(other, torch.randn(3, 5, generator=g), atol=1e-6, rtol=1e-5) is None
    assert diagnose(2.1, 1.5, atol=1e-6, rtol=1e-5) is None  # a ratio of 1.4 is no named factor
    assert diagnose(["x", "y"], ["a", "b"], atol=0, rtol=0) is None
    assert diagnose([3, 1, 4], [1, 5, 9, 2], atol=0, rtol=0) is None


def test_the_sentence_reaches_the_failure_message_and_a_named_mistake_comes_first():
    with pytest.raises(CheckFailure) as failure:
        assert_close(P / 8, P, atol=1e-6, rtol=1e-5, name="attention")
    assert "\nLooking closer: your output equals the expected one times 0.125 = 1/8" in str(failure.value)
    mutant = types.SimpleNamespace(f=lambda: P / 8)
    with pytest.raises(CheckFailure) as failure:
        assert_close(P / 8, P, atol=1e-6, rtol=1e-5, name="attention",
                     mistakes=Mistakes({"eighth": ("divided by 8", mutant)}, lambda m: m.f()))
    assert failure.value.mistake == "eighth" and "Looking closer" not in str(failure.value)


def test_the_sentence_describes_the_item_of_a_tuple_that_differs():
    with pytest.raises(CheckFailure) as failure:
        assert_equal((torch.arange(4), torch.arange(5) * 2), (torch.arange(4), torch.arange(5)))
    assert "Looking closer: item [1]: your output equals the expected one times 2" in str(failure.value)


def test_inputs_and_earlier_answers_come_from_the_recorded_calls():
    answers = iter([P, P])
    solution = types.SimpleNamespace(softmax=lambda x: next(answers))
    with recording.recording(recording.signatures_from(types.SimpleNamespace(softmax=lambda x, dim=-1: None))):
        first = solution.softmax(X)
        recording.record("softmax", (X,), {}, first)
        second = solution.softmax(X * 2)
        recording.record("softmax", (X * 2,), {}, second)
        with pytest.raises(CheckFailure) as failure:
            assert_close(second, torch.softmax(X * 2, -1), atol=1e-6, rtol=1e-5)
    assert "equals what your code returned for an earlier call in this check, softmax(Tensor(4, 8, 64))" in \
        str(failure.value)


# --- naming: only a mistake that explains everything the check compared ---------------------


def _module(**fns: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**fns)


def test_two_mistakes_that_agree_on_everything_are_both_named():
    known = {"a": ("mistake A", _module(f=lambda: 2)), "b": ("mistake B", _module(f=lambda: 2)),
             "c": ("mistake C", _module(f=lambda: 3))}
    with pytest.raises(CheckFailure) as failure:
        assert_equal(2, 1, mistakes=Mistakes(known, lambda m: m.f()))
    assert failure.value.mistake == "a, b"
    assert "each of these known mistakes" in str(failure.value)
    assert "mistake A" in str(failure.value) and "mistake B" in str(failure.value)
    assert "mistake C" not in str(failure.value)


def test_a_mistake_that_disagrees_with_an_earlier_passed_comparison_is_not_named():
    # "opposite" gives the student's wrong second output, but not the right first one the
    # student gave: naming it would describe the opposite of what the student did
    known = {"opposite": ("labels everywhere", _module(first=lambda: 10, second=lambda: 2))}
    with recording.recording():
        assert_equal(5, 5, mistakes=Mistakes(known, lambda m: m.first()))
        with pytest.raises(CheckFailure) as failure:
            assert_equal(2, 1, mistakes=Mistakes(known, lambda m: m.second()))
    assert failure.value.mistake == "" and "known mistake" not in str(failure.value)
    with recording.recording():  # without that earlier comparison it is what the student did
        with pytest.raises(CheckFailure) as failure:
            assert_equal(2, 1, mistakes=Mistakes(known, lambda m: m.second()))
    assert failure.value.mistake == "opposite"


# Labels set only at the [MASK] positions, not at the 10% random and 10% kept ones: the
# opposite of labels_everywhere, whose corrupted input is the same as this one's.
def _labels_only_at_mask(reference: Path) -> str:
    source = reference.read_text()
    assert source.count("labels[~selected] = -100") == 1
    return source.replace("labels[~selected] = -100", "labels[~replaced] = -100")


def test_labels_only_at_mask_positions_is_not_named_labels_everywhere(solutions_copy: Path, tmp_path: Path):
    target = solutions_copy / "pretraining" / "mlm_masking.py"
    target.write_text(_labels_only_at_mask(target))
    out = tmp_path / "results.json"
    proc = run_grade("--solutions", str(solutions_copy), "pretraining.mlm_masking", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for t in load_results(out)["tracks"] for e in t["exercises"] for c in e["checks"]}
    failed = [c for c in checks.values() if c["outcome"] == "failed"]
    assert failed, "the mistake must be caught"
    assert not any("labels_everywhere" in c["mistake"] for c in failed), [c["message"] for c in failed]
    assert checks["labels_and_special_tokens"]["outcome"] == "failed"



def test_grade_check_fails_a_mutant_named_as_another(monkeypatch: pytest.MonkeyPatch):
    """`grade check` proves no listed mistake is named as a different one."""
    from helpers import ROOT

    from grader import selfcheck
    from grader.config import load_config
    from grader.plugins import GradePlugins
    from grader.results import CheckResult, ExerciseResult

    catalog = GradePlugins(load_config(ROOT)).catalog()
    exercise = catalog.exercise("foundations.softmax")
    first, second = exercise.mutants[0].name, exercise.mutants[1].name

    def fake_grade(catalog: Any, ex: Any, solutions: Any, mode: str, maxfail: int = 0,
                   hidden: bool = True) -> ExerciseResult:
        text = str(solutions or "")
        if "grade-mutant-" in text:
            # every mutant is named as the second one: right for the second, wrong for the rest
            return ExerciseResult(ex.id, "", [CheckResult("c", "failed", 0, 1, mistake=second)])
        outcome = "failed" if "grade-stub-" in text else "passed"
        return ExerciseResult(ex.id, "", [CheckResult("c", outcome, 0 if outcome == "failed" else 1, 1,
                                                      not_implemented=outcome == "failed")])

    monkeypatch.setattr(selfcheck, "_grade", fake_grade)
    verdict = selfcheck.check_exercise(catalog, exercise)
    misnamed = [p for p in verdict.problems if "is named as another known mistake" in p]
    assert any(f"mutant '{first}' is named as another known mistake, '{second}'" in p for p in misnamed), misnamed
    assert not any(f"mutant '{second}' is named" in p for p in misnamed)


def test_direct_mode_records_the_students_calls_but_not_the_mistakes(solutions_copy: Path):
    """The diagnosers read the inputs of direct-mode calls too (grade check grades mutants
    directly), and a known mistake the judge runs to name a failure is not the student's call."""
    from grader.direct import DirectModule, RecordedModule
    from grader.imports import import_from

    module = import_from("exercises", solutions_copy, "foundations", "softmax")
    with recording.recording() as rec:
        RecordedModule(module).softmax(X, dim=-1)
        DirectModule(module).softmax(X, dim=0)
    assert [(c.function, c.inputs()[0][0]) for c in rec.calls] == [("softmax", "x")]


def test_describing_a_call_never_asks_a_remote_argument_for_its_attributes():
    # a tokenizer made in the solution process and passed back to the student's function: its
    # proxy forwards attribute reads, and one for `shape` would fail the call it describes
    from grader.remote import RemoteObject

    class NoRequests:
        def ensure_started(self) -> None:
            raise AssertionError("describe_call sent a request to the solution process")

    tokenizer = RemoteObject(NoRequests(), 0, 7, "TokenizersBackend", False)
    described = recording.describe_call("tokenize_conversation", (tokenizer, [{"role": "user"}]), {"x": X})
    assert described.startswith("tokenize_conversation(<TokenizersBackend object")
    assert described.endswith(", x=Tensor(4, 8, 64))")
