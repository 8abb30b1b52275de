"""Checks for attention.gqa: parity with transformers' LlamaAttention (eager) with copied weights.

The student's module is built in its own process (`solution.GroupedQueryAttention(...)`), gets
the judge's random weights through `load_state_dict`, and its output is compared with
LlamaAttention's on the same weights. LlamaAttention takes the RoPE (cos, sin) from
LlamaRotaryEmbedding and, in eager mode, adds the attention mask it is given and nothing else,
so the judge builds the causal part of that mask itself (with finfo.min, as Llama does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding
from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

from grader.compare import assert_close, assert_equal, check

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


def _weights(rng: Any, s: Shape) -> dict[str, torch.Tensor]:
    """Random weights scaled so that q, k, v and the output are O(1) and the softmax is not flat."""
    d = s.d
    return {
        "q_proj.weight": rng.randn(s.heads * d, s.hidden, scale=1.5 * s.hidden**-0.5),
        "k_proj.weight": rng.randn(s.kv_heads * d, s.hidden, scale=1.5 * s.hidden**-0.5),
        "v_proj.weight": rng.randn(s.kv_heads * d, s.hidden, scale=s.hidden**-0.5),
        "o_proj.weight": rng.randn(s.hidden, s.heads * d, scale=(s.heads * d) ** -0.5),
    }


class _Zeros:
    """Stands in for `rng` when only the weights' shapes are needed."""

    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.zeros(*shape)


def _llama(
    s: Shape,
    weights: dict[str, torch.Tensor],
    x: torch.Tensor,
    position_ids: Any = None,
    mask: Any = None,
) -> torch.Tensor:
    """transformers' LlamaAttention (eager, float32) on the same weights and inputs."""
    config = LlamaConfig(
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
    attn = LlamaAttention(config, layer_idx=0).eval()
    attn.load_state_dict(weights)
    batch, seq, _ = x.shape
    if position_ids is None:
        position_ids = torch.arange(seq).expand(batch, seq)
    cos, sin = LlamaRotaryEmbedding(config)(x, position_ids)
    allowed = torch.ones(seq, seq, dtype=torch.bool).tril()
    extra = torch.zeros(batch, 1, seq, seq) if mask is None else mask
    full = torch.where(allowed, extra, torch.tensor(MIN))
    with torch.no_grad():
        out, _ = attn(x, position_embeddings=(cos, sin), attention_mask=full)
    return out


def _run(
    ns: Any, s: Shape, weights: dict[str, torch.Tensor], x: torch.Tensor, **kwargs: Any
) -> Any:
    """Build the module in `ns` (the student's module or a known mistake), load weights, call it."""
    m = ns.GroupedQueryAttention(**s.kwargs())
    m.load_state_dict(weights)
    return m(x, **kwargs)


def _compare(
    solution: Any, mistakes: Any, s: Shape, weights: dict, x: torch.Tensor, what: str, **kwargs: Any
) -> None:
    got = _run(solution, s, weights, x, **kwargs)
    expected = _llama(s, weights, x, kwargs.get("position_ids"), kwargs.get("attention_mask"))
    assert_close(
        got,
        expected,
        **TOL,
        name=f"{s}(x of shape {tuple(x.shape)}{what})"
        " vs transformers' LlamaAttention with the same weights",
        mistakes=mistakes(lambda m: _run(m, s, weights, x, **kwargs)),
    )


def test_state_dict_names_and_shapes(solution):
    for s in (GQA, Shape(40, 4, 1, head_dim=16)):
        m = solution.GroupedQueryAttention(**s.kwargs())
        got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
        expected = {k: tuple(v.shape) for k, v in _weights(_Zeros(), s).items()}
        assert_equal(got, expected, name=f"{s}.state_dict(): parameter names and shapes")


@pytest.mark.points(2)
def test_repeat_kv_matches_transformers(solution, rng, mistakes):
    for kv_heads, n_rep in ((2, 3), (3, 2), (1, 4), (2, 1)):
        x = rng.randn(2, kv_heads, 5, 4)
        assert_equal(
            solution.repeat_kv(x, n_rep),
            hf_repeat_kv(x, n_rep),
            name=f"repeat_kv(x of shape {tuple(x.shape)}, n_rep={n_rep})",
            mistakes=mistakes(lambda m, x=x, n=n_rep: m.repeat_kv(x, n)),
        )


@pytest.mark.points(2)
def test_grouped_query_matches_llama_attention(solution, rng, mistakes):
    x = rng.randn(2, 7, GQA.hidden)
    _compare(solution, mistakes, GQA, _weights(rng, GQA), x, "")


@pytest.mark.points(2)
def test_multi_query_and_multi_head(solution, rng, mistakes):
    for s in (Shape(32, 4, 1), Shape(32, 4, 4)):
        x = rng.randn(2, 6, s.hidden)
        _compare(solution, mistakes, s, _weights(rng, s), x, "")


def test_non_power_of_two_sizes(solution, rng, mistakes):
    # head_dim 8 from 48 / 6; then an explicit head_dim with num_heads * head_dim != hidden_size
    for s, seq in ((Shape(48, 6, 3), 5), (Shape(40, 4, 2, head_dim=16, theta=500.0), 9)):
        x = rng.randn(3, seq, s.hidden)
        _compare(solution, mistakes, s, _weights(rng, s), x, "")


def test_length_one(solution, rng, mistakes):
    s = Shape(48, 6, 2)
    x = rng.randn(2, 1, s.hidden)
    w = _weights(rng, s)
    _compare(solution, mistakes, s, w, x, "")
    position_ids = torch.tensor([[4], [11]])
    _compare(solution, mistakes, s, w, x, ", position_ids=[[4], [11]]", position_ids=position_ids)


@pytest.mark.points(2)
def test_position_ids(solution, rng, mistakes):
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
    shown = ", position_ids=" + str(position_ids.tolist())
    _compare(solution, mistakes, s, w, x, shown, position_ids=position_ids)


@pytest.mark.points(2)
def test_left_padding_mask(solution, rng, mistakes):
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
    kwargs = {"position_ids": position_ids, "attention_mask": mask}

    def real_rows(out: Any) -> Any:
        # padding queries see only masked keys: their rows are unspecified, so zero them out
        if isinstance(out, torch.Tensor) and out.shape == x.shape:
            return out.masked_fill(~real[..., None], 0.0)
        return out

    assert_close(
        real_rows(_run(solution, s, w, x, **kwargs)),
        real_rows(_llama(s, w, x, position_ids, mask)),
        **TOL,
        name=f"{s} with left padding (lengths {lengths} of {seq}; attention_mask holds finfo.min"
        " at padding keys; position_ids count real tokens from 0) vs LlamaAttention,"
        " rows of padding tokens set to 0",
        mistakes=mistakes(lambda m: real_rows(_run(m, s, w, x, **kwargs))),
    )


def test_additive_bias_mask(solution, rng, mistakes):
    s = GQA
    x = rng.randn(2, 6, s.hidden)
    bias = rng.randn(2, 1, 6, 6, scale=2.0)
    _compare(
        solution,
        mistakes,
        s,
        _weights(rng, s),
        x,
        ", attention_mask=a random additive bias",
        attention_mask=bias,
    )


def test_future_tokens_do_not_change_the_past(solution, rng):
    s = GQA
    seq, t = 7, 3
    x = rng.randn(2, seq, s.hidden)
    changed = x.clone()
    changed[:, t:] = rng.randn(2, seq - t, s.hidden)
    m = solution.GroupedQueryAttention(**s.kwargs())
    m.load_state_dict(_weights(rng, s))
    before, after = m(x), m(changed)
    for out in (before, after):
        check(
            isinstance(out, torch.Tensor) and out.shape == x.shape,
            f"{s}(x of shape {tuple(x.shape)}) must return a tensor of shape {tuple(x.shape)}",
        )
    assert_close(
        after[:, :t],
        before[:, :t],
        atol=1e-6,
        rtol=1e-6,
        name=f"outputs at positions 0..{t - 1} after changing the tokens at positions"
        f" {t}..{seq - 1} (causal attention: they must not change)",
    )
