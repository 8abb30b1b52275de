"""Checks for alignment.logprobs: per-token log-probs with the shift, masked sums and means,
entropies, and their gradients.

Ground truth is the formulas TRL documents, written out here: `selective_log_softmax(logits,
index)` is `torch.gather(logits.log_softmax(-1), dim=-1, index=index.unsqueeze(-1)).squeeze(-1)`
and `entropy_from_logits` is `-(exp(logp) * logp).sum(-1)` with `logp = log_softmax(logits)`.
trl itself is not a dependency of the grader: it pulls in datasets, pandas and pyarrow, and its
DPO and GRPO losses live inside Trainer classes that need a model and a dataset to run. Second
opinions come from torch: `-F.cross_entropy(..., reduction="none")` for the log-probs and
`torch.distributions.Categorical(logits=...).entropy()` for the entropy. Gradients are compared
under autograd with the same formulas (`expect.gradients`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

# float32 end to end: sums of up to ~30 log-probs of size ~5 differ from the formula by a few ulps
TOL = {"atol": 1e-5, "rtol": 1e-5}


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """TRL's documented equivalent of its selective_log_softmax."""
    return torch.gather(logits.log_softmax(-1), dim=-1, index=index.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """TRL's entropy_from_logits: -(exp(logp) * logp).sum(-1)."""
    logp = F.log_softmax(logits, dim=-1)
    return -(torch.exp(logp) * logp).sum(-1)


def per_token(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return selective_log_softmax(logits[:, :-1].float(), ids[:, 1:])


def per_sequence(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Written with the mask shifted to the scored positions, and the count clamped to 1."""
    scored = (mask[:, 1:] != 0).float()
    total = (per_token(logits, ids) * scored).sum(-1)
    return total / scored.sum(-1).clamp(min=1) if average else total


def mean_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    scored = (mask[:, 1:] != 0).float()
    return (entropy_from_logits(logits[:, :-1].float()) * scored).sum(-1) / scored.sum(-1).clamp(min=1)


def response_mask(lengths: list[tuple[int, int, int]], T: int, side: str = "right") -> torch.Tensor:
    """One row per (prompt, response, padding) length triple, padding on `side`: 1 on the response."""
    rows = []
    for prompt, response, pad in lengths:
        assert prompt + response + pad == T
        row = [0] * prompt + [1] * response
        rows.append(row + [0] * pad if side == "right" else [0] * pad + row)
    return torch.tensor(rows, dtype=torch.long)


@pytest.mark.points(2)
def test_token_logprobs_shift(expect, rng):
    # a vocabulary smaller than the sequence first: there, gathering along the wrong axis runs
    small = rng.randn(2, 12, 5, scale=2.0)
    small_ids = rng.randint(0, 5, (2, 12))
    expect(lambda s: s.token_logprobs(small, small_ids), truth=per_token(small, small_ids), **TOL,
           name="token_logprobs(logits (2, 12, 5): 5 tokens in the vocabulary, 12 positions) vs TRL's "
                "selective_log_softmax(logits[:, :-1], input_ids[:, 1:])")
    logits = rng.randn(3, 11, 37, scale=3.0)
    ids = rng.randint(0, 37, (3, 11))
    expect(lambda s: s.token_logprobs(logits, ids), truth=per_token(logits, ids), **TOL,
           name="token_logprobs(logits (3, 11, 37), input_ids (3, 11)) vs selective_log_softmax(logits[:, :-1], "
                "input_ids[:, 1:])")
    expect(lambda s: s.token_logprobs(logits, ids),
           truth=-F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none"), **TOL,
           name="token_logprobs(logits (3, 11, 37), input_ids (3, 11)) vs -F.cross_entropy(logits[:, :-1], "
                "input_ids[:, 1:], reduction='none')")


@pytest.mark.points(2)
def test_sequence_logprobs_sum_and_mean(expect, rng):
    T = 14
    logits = rng.randn(4, T, 23, scale=2.5)
    ids = rng.randint(0, 23, (4, T))
    # right padding, left padding, a response of one token, a response up to the last position
    right = response_mask([(5, 6, 3), (3, 11, 0), (12, 1, 1), (2, 4, 8)], T)
    left = response_mask([(5, 6, 3), (3, 11, 0), (12, 1, 1), (2, 4, 8)], T, side="left")
    for mask, what in ((right, "int64 mask, right padding"), (left.bool(), "bool mask, left padding"),
                       (left.float(), "float mask, left padding")):
        for average in (False, True):
            kind = "mean" if average else "sum"
            expect(lambda s, m=mask, a=average: s.sequence_logprobs(logits, ids, m, average=a),
                   truth=per_sequence(logits, ids, mask, average), **TOL,
                   name=f"sequence_logprobs(logits (4, {T}, 23), {what}, average={average}) vs the {kind} of "
                        "selective_log_softmax over the positions t with response_mask[:, t + 1] = 1")


@pytest.mark.points(2)
def test_entropy(expect, rng):
    logits = rng.randn(3, 9, 31, scale=2.0)
    logits[1, 4] = 0.0  # a uniform distribution: log(31)
    logits[2, 2, 7] = 40.0  # nearly one-hot: about 0
    expect(lambda s: s.token_entropy(logits), truth=entropy_from_logits(logits), **TOL,
           name="token_entropy(logits (3, 9, 31)) vs TRL's entropy_from_logits")
    expect(lambda s: s.token_entropy(logits), truth=torch.distributions.Categorical(logits=logits).entropy(), **TOL,
           name="token_entropy(logits (3, 9, 31)) vs torch.distributions.Categorical(logits=logits).entropy()")
    mask = response_mask([(2, 5, 2), (4, 5, 0), (1, 1, 7)], 9)
    expect(lambda s: s.masked_entropy(logits, mask), truth=mean_entropy(logits, mask), **TOL,
           name="masked_entropy(logits (3, 9, 31), response_mask) vs the mean of entropy_from_logits(logits[:, :-1]) "
                "over the positions t with response_mask[:, t + 1] = 1")


def test_empty_rows_and_length_one(expect, rng):
    # row 1 has no response token (only response_mask[1, 0] is set, and position 0 is never scored)
    logits = rng.randn(3, 8, 13, scale=2.0)
    ids = rng.randint(0, 13, (3, 8))
    mask = response_mask([(3, 5, 0), (0, 0, 8), (6, 2, 0)], 8)
    mask[1, 0] = 1
    for average in (False, True):
        expect(lambda s, a=average: s.sequence_logprobs(logits, ids, mask, average=a),
               truth=per_sequence(logits, ids, mask, average), **TOL,
               name=f"sequence_logprobs(logits (3, 8, 13), row 1 has no response token, average={average}): "
                    "0 for row 1 (the mean's count is clamped to 1), never NaN")
    expect(lambda s: s.masked_entropy(logits, mask), truth=mean_entropy(logits, mask), **TOL,
           name="masked_entropy(logits (3, 8, 13), row 1 has no response token): 0 for row 1, never NaN")
    # T = 1: nothing is predicted
    short = rng.randn(2, 1, 13)
    short_ids = rng.randint(0, 13, (2, 1))
    ones = torch.ones(2, 1, dtype=torch.long)
    expect(lambda s: s.token_logprobs(short, short_ids), truth=per_token(short, short_ids),
           **TOL, name="token_logprobs(logits (2, 1, 13)): shape (2, 0)")
    for average in (False, True):
        expect(lambda s, a=average: s.sequence_logprobs(short, short_ids, ones, average=a),
               truth=torch.zeros(2), **TOL, name=f"sequence_logprobs(T = 1, average={average}): 0 for every row")


def test_huge_logits(expect, rng):
    # gaps of thousands between logits: softmax underflows to 0 for most tokens, so log(softmax)
    # is -inf there and exp() of unshifted logits overflows; the targets are the unlikely tokens
    logits = rng.randn(2, 7, 19, scale=3000.0) + 5000.0
    ids = logits.argmin(-1)
    mask = response_mask([(2, 5, 0), (1, 4, 2)], 7)
    expect(lambda s: s.token_logprobs(logits, ids), truth=per_token(logits, ids), atol=1e-3, rtol=1e-5,
           name="token_logprobs(float32 logits ~ 5000 +- 3000, each target the least likely token) vs "
                "selective_log_softmax (finite, in the thousands)")
    expect(lambda s: s.sequence_logprobs(logits, ids, mask, average=True),
           truth=per_sequence(logits, ids, mask, True), atol=1e-3, rtol=1e-5,
           name="sequence_logprobs(float32 logits ~ 5000 +- 3000, average=True)")
    expect(lambda s: s.token_entropy(logits), truth=entropy_from_logits(logits), atol=1e-5, rtol=1e-5,
           name="token_entropy(float32 logits ~ 5000 +- 3000) vs entropy_from_logits (about 0, finite)")


def test_bfloat16_logits_upcast(expect, rng):
    logits = (rng.randn(3, 10, 41, scale=6.0) + 100.0).to(torch.bfloat16)
    ids = rng.randint(0, 41, (3, 10))
    mask = response_mask([(4, 6, 0), (2, 5, 3), (7, 3, 0)], 10)
    up = logits.float()
    expect(lambda s: s.token_logprobs(logits, ids), truth=per_token(up, ids), **TOL,
           name="token_logprobs(bfloat16 logits (3, 10, 41) near 100) vs selective_log_softmax(logits.float()): "
                "computed and returned in float32")
    expect(lambda s: s.sequence_logprobs(logits, ids, mask), truth=per_sequence(up, ids, mask), **TOL,
           name="sequence_logprobs(bfloat16 logits (3, 10, 41)) (float32 expected)")
    expect(lambda s: s.masked_entropy(logits, mask), truth=mean_entropy(up, mask), **TOL,
           name="masked_entropy(bfloat16 logits (3, 10, 41)) (float32 expected)")


@pytest.mark.points(2)
def test_gradients(expect, rng):
    # row 2 has no response token: its gradient is 0, not NaN
    logits = rng.randn(3, 9, 17, scale=2.0)
    ids = rng.randint(0, 17, (3, 9))
    mask = response_mask([(3, 6, 0), (2, 4, 3), (9, 0, 0)], 9)
    for average in (False, True):
        expect.gradients(lambda s: s.sequence_logprobs, [logits, ids, mask, average], truth=per_sequence,
                         atol=1e-6, rtol=1e-5,
                         name=f"sequence_logprobs(logits (3, 9, 17), input_ids, response_mask, average={average}) under "
                              "autograd (input 0 is the logits; row 2 has no response token)")
    expect.gradients(lambda s: s.masked_entropy, [logits, mask], truth=mean_entropy, atol=1e-6, rtol=1e-5,
                     name="masked_entropy(logits (3, 9, 17), response_mask) under autograd (input 0 is the logits)")


@pytest.mark.hidden
def test_hidden_other_shapes_and_dtypes(expect, rng):
    """What the public checks do not show: a batch of one, T = 2, a vocabulary of 3, float16
    logits near 1000 with gaps of hundreds, float64 logits (still float32 results), a mask of
    0.0/1.0 floats set only on the last token, and gradients of float64 logits through the mean."""
    tiny = rng.randn(1, 2, 3, scale=2.0)
    tiny_ids = rng.randint(0, 3, (1, 2))
    last = torch.tensor([[0, 1]])
    for average in (False, True):
        expect(lambda s, a=average: s.sequence_logprobs(tiny, tiny_ids, last, average=a),
               truth=per_sequence(tiny, tiny_ids, last, average), **TOL,
               name=f"sequence_logprobs(logits (1, 2, 3), response_mask [[0, 1]], average={average})")
    half = (rng.randn(4, 6, 29, scale=300.0) + 1000.0).to(torch.float16)
    half_ids = half.float().argmin(-1)
    half_mask = response_mask([(1, 5, 0), (3, 2, 1), (5, 1, 0), (2, 3, 1)], 6).double()
    up = half.float()
    expect(lambda s: s.sequence_logprobs(half, half_ids, half_mask, average=True),
           truth=per_sequence(up, half_ids, half_mask, True), atol=1e-3, rtol=1e-5,
           name="sequence_logprobs(float16 logits ~ 1000 +- 300, each target the least likely, float64 mask, "
                "average=True)")
    expect(lambda s: s.masked_entropy(half, half_mask), truth=mean_entropy(up, half_mask), **TOL,
           name="masked_entropy(float16 logits ~ 1000 +- 300, float64 mask)")
    wide = rng.randn(2, 13, 53, dtype=torch.float64, scale=3.0)
    wide_ids = rng.randint(0, 53, (2, 13))
    only_last = torch.zeros(2, 13)
    only_last[:, -1] = 1.0
    expect(lambda s: s.token_logprobs(wide, wide_ids), truth=per_token(wide, wide_ids), **TOL,
           name="token_logprobs(float64 logits (2, 13, 53)) (float32 expected)")
    expect(lambda s: s.sequence_logprobs(wide, wide_ids, only_last), truth=per_sequence(wide, wide_ids, only_last),
           **TOL, name="sequence_logprobs(float64 logits (2, 13, 53), a float mask set only on the last token)")
    expect.gradients(lambda s: s.sequence_logprobs, [wide, wide_ids, only_last.long(), True], truth=per_sequence,
                     atol=1e-6, rtol=1e-5,
                     name="sequence_logprobs(float64 logits (2, 13, 53), input_ids, only the last token a response "
                          "token, average=True) under autograd (input 0 is the logits)")
