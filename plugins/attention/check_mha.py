"""Checks for attention.mha: parity with torch.nn.MultiheadAttention holding the same weights.

The judge draws the weights, loads them into the student's module (built in the solution
process, strict `load_state_dict`) and into `nn.MultiheadAttention(batch_first=True,
dropout=0)` built here, and compares the outputs and head-averaged attention weights.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from grader.checks import one_torch_thread
from grader.compare import assert_close, check

# float32, outputs of size ~2: the reference is within 3e-6 of nn.MultiheadAttention (weights
# within 3e-7); every known mistake is off by more than 1e-2.
TOL = {"atol": 2e-5, "rtol": 1e-5}
W_TOL = {"atol": 2e-6, "rtol": 1e-5}  # attention weights are probabilities in [0, 1]
Params = dict[str, tuple[torch.Tensor, torch.Tensor | None]]


def _params(rng: Any, embed_dim: int, bias: bool) -> Params:
    """Weights (out, in) and biases of the q, k, v and out projections."""
    out: Params = {}
    for name in ("q", "k", "v", "out"):
        # 1.5/sqrt(E) makes the softmax peaked enough that head and scale mistakes stand out.
        w = rng.randn(embed_dim, embed_dim, scale=1.5 / math.sqrt(embed_dim))
        out[name] = (w, rng.randn(embed_dim, scale=0.5) if bias else None)
    return out


def _student_state(p: Params, fused: bool) -> dict[str, torch.Tensor]:
    """The state_dict the stub documents for fused / separate projections."""
    names = {"in_proj": ("q", "k", "v")} if fused else {"q_proj": ("q",), "k_proj": ("k",), "v_proj": ("v",)}
    names["out_proj"] = ("out",)
    sd = {}
    for layer, parts in names.items():
        sd[f"{layer}.weight"] = torch.cat([p[x][0] for x in parts])
        if p["q"][1] is not None:
            sd[f"{layer}.bias"] = torch.cat([p[x][1] for x in parts])
    return sd


def _expected_names(embed_dim: int, bias: bool, fused: bool) -> dict[str, tuple[int, ...]]:
    e = embed_dim
    layers = {"in_proj": 3 * e} if fused else {"q_proj": e, "k_proj": e, "v_proj": e}
    layers["out_proj"] = e
    out: dict[str, tuple[int, ...]] = {}
    for layer, rows in layers.items():
        out[f"{layer}.weight"] = (rows, e)
        if bias:
            out[f"{layer}.bias"] = (rows,)
    return out


def _torch_attention(p: Params, embed_dim: int, num_heads: int, args: dict[str, Any]) -> Any:
    """Ground truth: nn.MultiheadAttention with the same weights (kept in training mode, so
    its inference fast path, which returns zeros at padded positions, is never taken)."""
    bias = p["q"][1] is not None
    mha = nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=bias, batch_first=True)
    sd = {"in_proj_weight": torch.cat([p[x][0] for x in "qkv"]), "out_proj.weight": p["out"][0]}
    if bias:
        sd["in_proj_bias"] = torch.cat([p[x][1] for x in "qkv"])
        sd["out_proj.bias"] = p["out"][1]
    mha.load_state_dict(sd)
    with one_torch_thread(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "mismatched key_padding_mask and attn_mask" is intended
        return mha(**args, average_attn_weights=True)


def _run(ns: Any, embed_dim: int, num_heads: int, bias: bool, fused: bool, sd: Any, args: dict[str, Any]) -> Any:
    """Build `ns.MultiHeadAttention` (the student's, or a mutant's), load `sd`, call it once."""
    module = ns.MultiHeadAttention(embed_dim, num_heads, bias=bias, fused=fused)
    module.load_state_dict(sd)  # strict: the names and shapes the stub documents
    return module(**args)


def _expect_torch(
    expect: Any,
    p: Params,
    num_heads: int,
    what: str,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    attn_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    fused: bool = True,
) -> Any:
    """One forward pass of the student's module against nn.MultiheadAttention; returns it."""
    embed_dim = query.shape[-1]
    bias = p["q"][1] is not None
    sd = _student_state(p, fused)
    args = {
        "query": query, "key": key, "value": value, "key_padding_mask": key_padding_mask,
        "attn_mask": attn_mask, "need_weights": need_weights,
    }
    label = f"MultiHeadAttention({embed_dim}, {num_heads}, bias={bias}, fused={fused}) on {what}"

    def run(m: Any) -> Any:
        return _run(m, embed_dim, num_heads, bias, fused, sd, args)

    got = run(expect.solution)
    check(
        isinstance(got, (tuple, list)) and len(got) == 2,
        f"{label}: forward must return a pair (output, attn_weights), got {type(got).__name__}",
    )
    expected = _torch_attention(p, embed_dim, num_heads, args)
    expect.compare(got[0], expected[0], lambda m: run(m)[0], **TOL, name=f"output of {label}")
    if need_weights:
        expect.compare(got[1], expected[1], lambda m: run(m)[1], **W_TOL,
                       name=f"attn_weights (mean over heads) of {label}")
    else:
        check(got[1] is None, f"{label} with need_weights=False: attn_weights must be None, "
                              f"got {type(got[1]).__name__}")
    return got


def _padding(lengths: list[int], total: int) -> torch.Tensor:
    """(B, total) bool, True at key positions >= that row's length (True = ignore)."""
    return torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]


def test_parameter_names_and_shapes(expect):
    for fused in (True, False):
        for bias in (True, False):
            expect(lambda s, b=bias, f=fused: {k: tuple(v.shape) for k, v in
                                               s.MultiHeadAttention(12, 3, bias=b, fused=f).state_dict().items()},
                   truth=_expected_names(12, bias, fused),
                   name=f"state_dict() names -> shapes of MultiHeadAttention(12, 3, bias={bias}, fused={fused})")


@pytest.mark.points(2)
def test_self_attention_matches_torch(expect, rng):
    p = _params(rng, 32, bias=True)
    x = rng.randn(2, 6, 32)
    for need_weights in (True, False):
        _expect_torch(expect, p, 4, f"self-attention (B=2, L=6), need_weights={need_weights}",
                 x, x, x, need_weights=need_weights)


@pytest.mark.points(2)
def test_cross_attention_non_power_of_two(expect, rng):
    # E=36 with 3 heads of 12; S != L; key and value are different tensors.
    p = _params(rng, 36, bias=True)
    query, key, value = rng.randn(3, 4, 36), rng.randn(3, 7, 36), rng.randn(3, 7, 36)
    _expect_torch(expect, p, 3, "cross-attention (B=3, L=4, S=7)", query, key, value)


def test_one_head_and_length_one(expect, rng):
    p = _params(rng, 20, bias=True)
    query, memory = rng.randn(2, 1, 20), rng.randn(2, 5, 20)
    _expect_torch(expect, p, 1, "cross-attention with one head, L=1, S=5", query, memory, memory)
    p = _params(rng, 12, bias=True)
    query, memory = rng.randn(2, 5, 12), rng.randn(2, 1, 12)
    _expect_torch(expect, p, 4, "cross-attention with a single key (S=1)", query, memory, memory)
    x = rng.randn(3, 1, 12)
    _expect_torch(expect, p, 2, "self-attention of length 1", x, x, x)


@pytest.mark.points(2)
def test_key_padding_mask(expect, rng):
    p = _params(rng, 24, bias=True)
    query, key, value = rng.randn(4, 5, 24), rng.randn(4, 6, 24), rng.randn(4, 6, 24)
    kpm = _padding([6, 3, 1, 5], 6)
    kpm[0, 2] = True  # a hole in the middle, not only right padding
    got = _expect_torch(expect, p, 4, "cross-attention with key_padding_mask (True = ignore key)",
                   query, key, value, key_padding_mask=kpm)
    # Parity already implies this; said separately because it is the convention's visible effect.
    check(bool((got[1][kpm[:, None, :].expand(-1, 5, -1)] == 0).all()),
          "attn_weights must be exactly 0 at keys where key_padding_mask is True")


@pytest.mark.points(2)
def test_causal_bool_mask(expect, rng):
    p = _params(rng, 30, bias=True)
    x = rng.randn(3, 7, 30)
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)  # True above the diagonal = may not attend
    _expect_torch(expect, p, 5, "self-attention with a causal bool attn_mask (True = not allowed)",
             x, x, x, attn_mask=causal)
    # Right padding with lengths >= 1 keeps key 0 visible, so no row is fully masked.
    _expect_torch(expect, p, 5, "self-attention with a causal attn_mask and key_padding_mask",
             x, x, x, attn_mask=causal, key_padding_mask=_padding([7, 4, 2], 7))


def test_additive_float_mask(expect, rng):
    p = _params(rng, 18, bias=True)
    query, memory = rng.randn(2, 4, 18), rng.randn(2, 6, 18)
    bias = rng.randn(4, 6, scale=2.0)
    bias[0, 3:] = float("-inf")
    bias[2, 0] = float("-inf")
    _expect_torch(expect, p, 3, "cross-attention with a float (additive) attn_mask",
             query, memory, memory, attn_mask=bias)
    _expect_torch(expect, p, 3, "cross-attention with a float attn_mask and a bool key_padding_mask",
             query, memory, memory, attn_mask=bias, key_padding_mask=_padding([6, 2], 6))


@pytest.mark.points(2)
def test_fused_and_separate_agree(expect, rng):
    query, memory = rng.randn(2, 5, 16), rng.randn(2, 3, 16)
    kpm = _padding([3, 2], 3)
    for bias in (True, False):
        p = _params(rng, 16, bias=bias)
        outs = [
            _expect_torch(expect, p, 2, "cross-attention with key padding", query, memory, memory,
                     key_padding_mask=kpm, fused=fused)
            for fused in (True, False)
        ]
        # The same weights must give the same attention whichever way they are stored (up to
        # float32 rounding: x @ W.T + b and F.linear may round differently).
        assert_close(outs[1][0], outs[0][0], **TOL,
                     name=f"output with fused=False vs fused=True (bias={bias}, same weights)")


@pytest.mark.hidden
def test_hidden_odd_heads_separate_no_bias(expect, rng):
    """A layout the public checks do not use: 7 heads of 3 features (an odd head count and
    head size), separate projections without biases, a batch of one, and cross-attention
    under a random key_padding_mask with holes anywhere plus a float attn_mask."""
    p = _params(rng, 21, bias=False)
    query, key, value = rng.randn(1, 3, 21), rng.randn(1, 10, 21), rng.randn(1, 10, 21)
    kpm = rng.rand(1, 10) < 0.5
    kpm[0, rng.randint(0, 10, (1,))] = False  # one key stays visible to every query
    _expect_torch(expect, p, 7, "cross-attention (B=1, L=3, S=10) with a random key_padding_mask and a float"
                  " attn_mask", query, key, value, key_padding_mask=kpm, attn_mask=rng.randn(3, 10, scale=2.0),
                  fused=False)
