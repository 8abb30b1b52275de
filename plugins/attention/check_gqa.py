"""Checks for attention.gqa: parity with transformers' LlamaAttention (eager) with copied weights.

The student's module is built in its own process (`GroupedQueryAttention(...)`), gets the
judge's random weights (drawn for LlamaAttention's state_dict) through `load_state_dict`, and
its output is compared with LlamaAttention's on the same weights. LlamaAttention takes the
RoPE (cos, sin) from LlamaRotaryEmbedding and, in eager mode, adds the attention mask it is
given and nothing else, so the judge builds the causal part of that mask itself (with
finfo.min, as Llama does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding
from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

from grader.checks import hf_output, random_state_dict

MIN = torch.finfo(torch.float32).min
# float32 end to end; the only differences are summation order in the matmuls and softmax.
TOL = {"atol": 1e-5, "rtol": 1e-5}


@dataclass(frozen=True)
class Shape:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int | None = None
    theta: float = 10000.0

    @property
    def d(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden // self.heads

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "hidden_size": self.hidden,
            "num_heads": self.heads,
            "num_kv_heads": self.kv_heads,
        }
        if self.head_dim is not None:
            kw["head_dim"] = self.head_dim
        if self.theta != 10000.0:
            kw["rope_theta"] = self.theta
        return kw

    def __str__(self) -> str:
        return (
            "GroupedQueryAttention(" + ", ".join(f"{k}={v}" for k, v in self.kwargs().items()) + ")"
        )


GQA = Shape(32, 4, 2)


def _llama(s: Shape) -> LlamaAttention:
    """transformers' LlamaAttention (eager, float32, no biases, no dropout) for shape `s`."""
    return LlamaAttention(_config(s), layer_idx=0)


def _config(s: Shape) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=s.hidden,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        head_dim=s.d,
        rope_parameters={"rope_type": "default", "rope_theta": s.theta},
        attention_bias=False,
        attention_dropout=0.0,
        num_hidden_layers=1,
        intermediate_size=8,
        vocab_size=16,
        attn_implementation="eager",
    )


def _weights(rng: Any, s: Shape) -> dict[str, torch.Tensor]:
    """Random weights for LlamaAttention's state_dict, N(0, 1/fan_in) with q and k 1.5 times
    larger, so that q, k, v and the output are O(1) and the softmax is not flat."""
    return random_state_dict(rng, _llama(s), lambda name, shape: (1.5 if name[0] in "qk" else 1.0) * shape[1] ** -0.5)


def _llama_inputs(s: Shape, x: torch.Tensor, position_ids: Any = None, mask: Any = None) -> dict[str, Any]:
    """LlamaAttention's keyword arguments for `x`: the RoPE (cos, sin) of LlamaRotaryEmbedding
    and the eager attention mask, causal (finfo.min above the diagonal) plus `mask`."""
    batch, seq, _ = x.shape
    if position_ids is None:
        position_ids = torch.arange(seq).expand(batch, seq)
    cos, sin = LlamaRotaryEmbedding(_config(s))(x, position_ids)
    allowed = torch.ones(seq, seq, dtype=torch.bool).tril()
    extra = torch.zeros(batch, 1, seq, seq) if mask is None else mask
    return {"position_embeddings": (cos, sin), "attention_mask": torch.where(allowed, extra, torch.tensor(MIN))}


def _module(ns: Any, s: Shape, weights: dict[str, torch.Tensor]) -> Any:
    """`ns.GroupedQueryAttention` (the student's, or a known mistake's) holding `weights`."""
    m = ns.GroupedQueryAttention(**s.kwargs())
    m.load_state_dict(weights)
    return m


def _expect_llama(expect: Any, s: Shape, weights: dict, x: torch.Tensor, what: str = "", **kwargs: Any) -> None:
    """The student's module on `x` (and `kwargs`) must give LlamaAttention's output."""
    expect.hf_parity(lambda m: _module(m, s, weights)(x, **kwargs), _llama(s), weights, x,
                     **_llama_inputs(s, x, kwargs.get("position_ids"), kwargs.get("attention_mask")),
                     output=lambda out: out[0], **TOL, name=f"{s}(x of shape {tuple(x.shape)}{what})")


def test_state_dict_names_and_shapes(expect):
    for s in (GQA, Shape(40, 4, 1, head_dim=16)):
        expect(lambda m, s=s: {k: tuple(v.shape) for k, v in m.GroupedQueryAttention(**s.kwargs()).state_dict().items()},
               truth={k: tuple(v.shape) for k, v in _llama(s).state_dict().items()},
               name=f"{s}.state_dict(): parameter names and shapes (LlamaAttention's)")


@pytest.mark.points(2)
def test_repeat_kv_matches_transformers(expect, rng):
    for kv_heads, n_rep in ((2, 3), (3, 2), (1, 4), (2, 1)):
        x = rng.randn(2, kv_heads, 5, 4)
        expect(lambda m, x=x, n=n_rep: m.repeat_kv(x, n), truth=hf_repeat_kv(x, n_rep),
               name=f"repeat_kv(x of shape {tuple(x.shape)}, n_rep={n_rep})")


@pytest.mark.points(2)
def test_grouped_query_matches_llama_attention(expect, rng):
    x = rng.randn(2, 7, GQA.hidden)
    _expect_llama(expect, GQA, _weights(rng, GQA), x)


@pytest.mark.points(2)
def test_multi_query_and_multi_head(expect, rng):
    for s in (Shape(32, 4, 1), Shape(32, 4, 4)):
        x = rng.randn(2, 6, s.hidden)
        _expect_llama(expect, s, _weights(rng, s), x)


def test_non_power_of_two_sizes(expect, rng):
    # head_dim 8 from 48 / 6; then an explicit head_dim with num_heads * head_dim != hidden_size
    for s, seq in ((Shape(48, 6, 3), 5), (Shape(40, 4, 2, head_dim=16, theta=500.0), 9)):
        x = rng.randn(3, seq, s.hidden)
        _expect_llama(expect, s, _weights(rng, s), x)


def test_length_one(expect, rng):
    s = Shape(48, 6, 2)
    x = rng.randn(2, 1, s.hidden)
    w = _weights(rng, s)
    _expect_llama(expect, s, w, x)
    _expect_llama(expect, s, w, x, ", position_ids=[[4], [11]]", position_ids=torch.tensor([[4], [11]]))


@pytest.mark.points(2)
def test_position_ids(expect, rng):
    # RoPE only sees relative positions, so a plain offset must change nothing; positions that
    # restart (packed documents) or skip do change the output.
    seq = 8
    s = GQA
    w = _weights(rng, s)
    x = rng.randn(3, seq, s.hidden)
    offset = torch.arange(seq) + 37
    packed = torch.tensor([0, 1, 2, 0, 1, 2, 3, 4])
    gaps = torch.sort(torch.from_numpy(rng.np.choice(64, seq, replace=False))).values
    position_ids = torch.stack([offset, packed, gaps])
    _expect_llama(expect, s, w, x, ", position_ids=" + str(position_ids.tolist()), position_ids=position_ids)


@pytest.mark.points(2)
def test_left_padding_mask(expect, rng):
    s = Shape(48, 6, 2)
    batch, seq = 3, 6
    lengths = [6, 4, 1]
    w = _weights(rng, s)
    x = rng.randn(batch, seq, s.hidden)
    real = torch.zeros(batch, seq, dtype=torch.bool)
    for b, n in enumerate(lengths):
        real[b, seq - n :] = True
    mask = torch.zeros(batch, 1, seq, seq)
    mask.masked_fill_(~real[:, None, None, :], MIN)  # no query may look at a padding key
    position_ids = (real.long().cumsum(-1) - 1).clamp(min=0)  # real tokens count from 0

    def real_rows(out: Any) -> Any:
        # padding queries see only masked keys: their rows are unspecified, so zero them out
        if isinstance(out, torch.Tensor) and out.shape == x.shape:
            return out.masked_fill(~real[..., None], 0.0)
        return out

    truth = hf_output(_llama(s), w, x, **_llama_inputs(s, x, position_ids, mask), output=lambda out: out[0])
    expect(lambda m: real_rows(_module(m, s, w)(x, position_ids=position_ids, attention_mask=mask)),
           truth=real_rows(truth), **TOL,
           name=f"{s} with left padding (lengths {lengths} of {seq}; attention_mask holds finfo.min"
                " at padding keys; position_ids count real tokens from 0) vs LlamaAttention,"
                " rows of padding tokens set to 0")


def test_additive_bias_mask(expect, rng):
    s = GQA
    x = rng.randn(2, 6, s.hidden)
    bias = rng.randn(2, 1, 6, 6, scale=2.0)
    _expect_llama(expect, s, _weights(rng, s), x, ", attention_mask=a random additive bias", attention_mask=bias)


def test_future_tokens_do_not_change_the_past(expect, rng):
    s = GQA
    x = rng.randn(2, 7, s.hidden)
    w = _weights(rng, s)
    expect.causal(lambda m: _module(m, s, w), x, t=3, rng=rng, output_shape=x.shape,
                  name=f"{s}(x of shape {tuple(x.shape)})")


@pytest.mark.hidden
def test_hidden_odd_pairs_unsorted_positions(expect, rng):
    """A configuration the public checks do not show: a batch of one, 13 tokens, groups of
    three query heads, head_dim 10 (an odd number of RoPE pairs) with num_heads * head_dim !=
    hidden_size, rope_theta 1e6, unsorted positions that may repeat, and an additive bias."""
    s = Shape(48, 6, 2, head_dim=10, theta=1e6)
    x = rng.randn(1, 13, s.hidden)
    position_ids = rng.randint(0, 1000, (1, 13))
    bias = rng.randn(1, 1, 13, 13)
    _expect_llama(expect, s, _weights(rng, s), x, f", position_ids={position_ids.tolist()}, a random additive bias",
                  position_ids=position_ids, attention_mask=bias)
