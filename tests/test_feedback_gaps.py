"""The feedback gaps of issue 9, found by grading independently written solutions: wrong
solutions (not the known mistakes' own text) are caught and named, and every stub whose
checks feed it float64 says how float64 inputs are computed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, load_results, run_grade

# A softmax that normalises over one fixed axis, whatever `dim` says; log_softmax and
# logsumexp are right. AXIS is replaced by -1 or 0.
FIXED_AXIS_SOFTMAX = '''
import numpy as np
import torch


def softmax(x, dim=-1):
    if isinstance(x, np.ndarray):
        e = np.exp(x - x.max(axis=AXIS, keepdims=True))
        return e / e.sum(axis=AXIS, keepdims=True)
    e = torch.exp(x - x.max(dim=AXIS, keepdim=True).values)
    return e / e.sum(dim=AXIS, keepdim=True)


def logsumexp(x, dim=-1, keepdim=False):
    lib = np if isinstance(x, np.ndarray) else torch
    m = x.max(axis=dim, keepdims=True) if lib is np else x.amax(dim=dim, keepdim=True)
    m = lib.where(lib.isinf(m), lib.zeros_like(m), m)
    s = lib.exp(x - m).sum(axis=dim, keepdims=True) if lib is np else lib.exp(x - m).sum(dim=dim, keepdim=True)
    out = m + lib.log(s)
    if keepdim:
        return out
    return np.squeeze(out, axis=dim) if lib is np else out.squeeze(dim)


def log_softmax(x, dim=-1):
    return x - logsumexp(x, dim=dim, keepdim=True)
'''

# A tokenizer that merges every occurrence of the best-ranked pair in one sweep.
ALL_AT_ONCE_BPE = r'''
import regex

PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Tokenizer:
    def __init__(self, vocab, merges, special_tokens=None):
        self.vocab = vocab
        self.ids = {token: i for i, token in vocab.items()}
        self.ranks = {pair: r for r, pair in enumerate(merges)}

    def _bpe(self, data):
        tokens = [data[i:i + 1] for i in range(len(data))]
        while True:
            pairs = [p for p in zip(tokens, tokens[1:]) if p in self.ranks]
            if not pairs:
                return tokens
            best = min(pairs, key=self.ranks.get)
            merged, k = [], 0
            while k < len(tokens):
                if tuple(tokens[k:k + 2]) == best:
                    merged.append(best[0] + best[1])
                    k += 2
                else:
                    merged.append(tokens[k])
                    k += 1
            tokens = merged

    def encode(self, text):
        return [self.ids[t] for word in regex.findall(PATTERN, text) for t in self._bpe(word.encode("utf-8"))]

    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")
'''


def _grade(solutions: Path, tmp_path: Path, *targets: str) -> dict[str, dict[str, Any]]:
    """check name -> its result, for every check of `targets` graded from `solutions`."""
    out = tmp_path / "results.json"
    proc = run_grade("--solutions", str(solutions), *targets, "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = load_results(out)
    return {f"{e['id']}.{c['name']}": c for t in data["tracks"] for e in t["exercises"] for c in e["checks"]}


@pytest.mark.parametrize("axis, mistake", [(-1, "fixed_last_axis"), (0, "fixed_first_axis")])
def test_softmax_over_a_fixed_axis_is_caught_and_named(axis: int, mistake: str, solutions_copy: Path, tmp_path: Path):
    (solutions_copy / "foundations" / "softmax.py").write_text(FIXED_AXIS_SOFTMAX.replace("AXIS", str(axis)))
    checks = _grade(solutions_copy, tmp_path, "foundations.softmax")
    check = checks["foundations.softmax.softmax_matches_torch"]
    assert check["outcome"] == "failed", check
    assert check["mistake"] == mistake, check["message"]
    assert "normalising over a fixed axis" in check["message"]


def test_merging_every_occurrence_at_once_is_caught_and_named(solutions_copy: Path, tmp_path: Path):
    (solutions_copy / "tokenization" / "bpe_encode.py").write_text(ALL_AT_ONCE_BPE)
    name = "tokenization.bpe_encode.merges_one_occurrence_at_a_time"
    check = _grade(solutions_copy, tmp_path, name)[name]
    assert check["outcome"] == "failed", check
    assert check["mistake"] == "merges_every_occurrence", check["message"]
    assert "expected tokens [b'aba', b'b', b'a'], got [b'ab', b'aba']" in check["message"]


# The exercises whose checks hand float64 values to the solution (found with
# `grep -n float64 plugins/*/check_*.py`, keeping the inputs a check builds for the solution,
# not its own ground truth). A float64 result computed with one float32 constant fails a
# float64 tolerance, so the stub must say how float64 inputs are computed.
FED_FLOAT64 = [
    "foundations.softmax", "foundations.cross_entropy", "foundations.autograd",
    "foundations.layernorm_backward", "foundations.mlp_backward", "foundations.init_and_clip",
    "attention.sdpa", "attention.positional", "architectures.norms_ffn",
    "pretraining.clm_loss", "pretraining.schedule", "inference.speculative", "alignment.logprobs",
    "alignment.ppo", "alignment.dpo", "alignment.grpo",
]


@pytest.mark.parametrize("exercise_id", FED_FLOAT64)
def test_stubs_fed_float64_say_how_it_is_computed(exercise_id: str):
    track, name = exercise_id.split(".")
    stub = ROOT / "exercises" / track / f"{name}.py"
    # One sentence (a period inside a name such as `numpy.ndarray` does not end it).
    assert re.search(r"float64(?:[^.]|\.(?!\s))*computed\s+in\s+float(?:64|32)", stub.read_text()), (
        f"{stub} does not say how float64 inputs are computed (e.g. 'float64 inputs are computed in float64')")
