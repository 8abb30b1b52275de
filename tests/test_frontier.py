"""frontier.flash_attention's memory check, run in place: the tiled reference passes, an
implementation that builds the (N, N) scores fails, named as the known mistake, and so does
one that keeps every row of the scores alive at once."""

from __future__ import annotations

import importlib.util
import math
import types
from pathlib import Path

import pytest
import tomllib
import torch

from grader.checks import Expect
from grader.compare import CheckFailure
from grader.imports import import_reference
from grader.rng import Rng

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugins" / "frontier"


def _check_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("check_flash_attention", PLUGIN / "check_flash_attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _materialising() -> tuple[str, types.ModuleType]:
    """The known mistake materialises_scores, built from the reference by its toml edit."""
    (mutant,) = [m for m in tomllib.loads((PLUGIN / "flash_attention.toml").read_text())["mutants"]
                 if m["name"] == "materialises_scores"]
    source = (ROOT / "reference" / "frontier" / "flash_attention.py").read_text()
    assert source.count(mutant["replace"]) == 1
    module = types.ModuleType("materialises_scores")
    exec(compile(source.replace(mutant["replace"], mutant["with"]), "materialises_scores", "exec"), module.__dict__)
    return mutant["misconception"], module


def _per_head_scores(q, k, v, causal=False, block_q=64, block_k=64):
    """Correct (out, lse), written another way: the (N, N) scores of one head at a time."""
    outs, lses = [], []
    for qh, kh, vh in zip(q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:]), v.reshape(-1, *v.shape[-2:])):
        s = qh @ kh.t() / math.sqrt(q.shape[-1])  # (N, N): what the check forbids
        m = s.amax(-1, keepdim=True)
        e = torch.exp(s - m)
        outs.append(e @ vh / e.sum(-1, keepdim=True))
        lses.append(m[:, 0] + torch.log(e.sum(-1)))
    return torch.stack(outs).reshape(q.shape), torch.stack(lses).reshape(q.shape[:-1])


def _rows_kept(q, k, v, causal=False, block_q=64, block_k=64):
    """Correct (out, lse) one query row at a time, each row's probabilities kept in a list:
    no tensor is (N, N), but N * N elements per head are held at once."""
    outs, lses, kept = [], [], []
    for qh, kh, vh in zip(q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:]), v.reshape(-1, *v.shape[-2:])):
        for i in range(qh.shape[0]):
            s = kh[: i + 1 if causal else None] @ qh[i] / math.sqrt(q.shape[-1])
            lse = torch.logsumexp(s, 0)
            kept.append(torch.exp(s - lse))
            outs.append(kept[-1] @ vh[: s.shape[0]])
            lses.append(lse)
    return torch.stack(outs).reshape(q.shape), torch.stack(lses).reshape(q.shape[:-1])


def test_the_memory_check_passes_the_tiled_reference_and_fails_the_n_by_n_scores():
    check = _check_module().test_memory_is_linear_in_n
    reference = import_reference("frontier", ROOT / "reference" / "frontier", "flash_attention")
    mistake = _materialising()
    mutants = lambda: {"materialises_scores": mistake}  # noqa: E731
    check(Expect(reference, mutants), Rng(0))
    with pytest.raises(CheckFailure) as failure:
        check(Expect(mistake[1], mutants), Rng(0))
    assert failure.value.mistake == "materialises_scores"
    assert "never allocate a tensor as large as the score matrix" in str(failure.value)
    other = types.SimpleNamespace(flash_attention_forward=_per_head_scores,
                                  flash_attention_backward=reference.flash_attention_backward)
    with pytest.raises(CheckFailure) as failure:
        check(Expect(other, mutants), Rng(0))
    assert "allocated a tensor of 262144 elements" in str(failure.value)
    rows = types.SimpleNamespace(flash_attention_forward=_rows_kept,
                                 flash_attention_backward=reference.flash_attention_backward)
    with pytest.raises(CheckFailure) as failure:
        check(Expect(rows, mutants), Rng(0))
    assert "elements at once in tensors it made" in str(failure.value)
