"""Checks for architectures.bert_encoder: parity with transformers' BertLayer (eager, float32).

The student's layer is built in its own process (`solution.BertLayer(...)`), gets the judge's
random weights through `load_state_dict` (which also proves the parameter names and shapes),
and its output is compared with transformers' `BertLayer` on the same weights. BertLayer takes
the 4-D additive mask that BertModel builds, so the judge builds it from the same (B, T)
padding mask with transformers' own `create_bidirectional_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import BertConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertLayer as HFBertLayer

from grader.compare import check, fail

# float32 end to end; the only differences are summation order in matmuls, softmax, LayerNorm.
TOL = {"atol": 1e-5, "rtol": 1e-5}


@dataclass(frozen=True)
class Shape:
    hidden: int
    heads: int
    inter: int
    eps: float | None = None  # None: the constructor's default (BERT's 1e-12)

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "hidden_size": self.hidden,
            "num_heads": self.heads,
            "intermediate_size": self.inter,
        }
        if self.eps is not None:
            kw["layer_norm_eps"] = self.eps
        return kw

    def __str__(self) -> str:
        return "BertLayer(" + ", ".join(f"{k}={v}" for k, v in self.kwargs().items()) + ")"


BASE = Shape(32, 4, 64)
_CONFIGS: dict[Shape, BertConfig] = {}


def _config(s: Shape) -> BertConfig:
    if s not in _CONFIGS:
        _CONFIGS[s] = BertConfig(
            hidden_size=s.hidden,
            num_attention_heads=s.heads,
            intermediate_size=s.inter,
            layer_norm_eps=1e-12 if s.eps is None else s.eps,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            num_hidden_layers=1,
            vocab_size=16,
            attn_implementation="eager",
        )
    return _CONFIGS[s]


def _hf_layer(s: Shape) -> HFBertLayer:
    torch.manual_seed(0)
    return HFBertLayer(_config(s)).eval()


def _weights(rng: Any, s: Shape, attn_out_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Random weights for every parameter, LayerNorms included (not HF's trivial 1 and 0 init).

    Scaled so the attention softmax is far from uniform and GELU sees inputs of order 1, where
    the erf and tanh forms differ. `attn_out_scale` shrinks the attention sublayer's output
    (and the check shrinks x with it) so that the first LayerNorm sees a small variance.
    """
    h, i = s.hidden, s.inter
    w: dict[str, torch.Tensor] = {}
    for name, fan_in, fan_out, gain in (
        ("attention.self.query", h, h, 1.5),
        ("attention.self.key", h, h, 1.5),
        ("attention.self.value", h, h, 1.0),
        ("attention.output.dense", h, h, attn_out_scale),
        ("intermediate.dense", h, i, 1.2),
        ("output.dense", i, h, 1.0),
    ):
        bias_scale = 0.02 * attn_out_scale if name == "attention.output.dense" else 0.2
        w[f"{name}.weight"] = rng.randn(fan_out, fan_in, scale=gain * fan_in**-0.5)
        w[f"{name}.bias"] = rng.randn(fan_out, scale=bias_scale)
    for name in ("attention.output.LayerNorm", "output.LayerNorm"):
        w[f"{name}.weight"] = 1.0 + rng.randn(h, scale=0.3)
        w[f"{name}.bias"] = rng.randn(h, scale=0.3)
    return w


def _layer(ns: Any, s: Shape, weights: dict[str, torch.Tensor]) -> Any:
    """`ns.BertLayer` (the student's or a known mistake's) holding `weights`."""
    m = ns.BertLayer(**s.kwargs())
    m.load_state_dict(weights)
    return m


def _real_rows(out: Any, mask: Any) -> Any:
    """Zero the rows of padding positions: their outputs are not specified."""
    if mask is None or not isinstance(out, torch.Tensor) or out.shape[:2] != mask.shape:
        return out
    return out.masked_fill(~mask.bool()[..., None], 0.0)


def _parity(expect: Any, s: Shape, weights: dict[str, torch.Tensor], x: torch.Tensor, mask: Any = None,
            what: str = "") -> None:
    """The layer vs transformers' BertLayer on the same weights, given the 4-D additive mask
    BertModel builds from the same (B, T) padding mask."""
    if mask is None:
        hf_args, kwargs, shown = (x,), {}, ""
    else:
        extended = create_bidirectional_mask(config=_config(s), inputs_embeds=x, attention_mask=mask.long())
        hf_args, kwargs = (x, extended), {"attention_mask": mask}
        shown = f", attention_mask={mask.long().tolist()}"
    expect.hf_parity(
        lambda m: _real_rows(_layer(m, s, weights)(x, **kwargs), mask), _hf_layer(s), weights, *hf_args,
        output=lambda out: _real_rows(out, mask), **TOL,
        name=f"{s}(x of shape {tuple(x.shape)}{shown}){what}"
        + ("" if mask is None else " (rows of padding positions set to 0)"),
    )


def _mask(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def test_state_dict_names_and_shapes(expect):
    for s in (BASE, Shape(36, 3, 100)):
        expected = {k: tuple(v.shape) for k, v in _hf_layer(s).state_dict().items()}
        expect(lambda m, s=s: {k: tuple(v.shape) for k, v in m.BertLayer(**s.kwargs()).state_dict().items()},
               truth=expected, name=f"{s}.state_dict(): parameter names and shapes")


@pytest.mark.points(3)
def test_matches_bert_layer(expect, rng):
    x = rng.randn(2, 7, BASE.hidden)
    _parity(expect, BASE, _weights(rng, BASE), x)


@pytest.mark.points(2)
def test_padding_mask(expect, rng):
    # right padding, padding in the middle and at the start, and a row with one real token
    mask = _mask([
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 0, 0],
    ])
    w = _weights(rng, BASE)
    x = rng.randn(4, 8, BASE.hidden)
    _parity(expect, BASE, w, x, mask)
    _parity(expect, BASE, w, x, mask.bool(), " with a bool mask")


def test_length_one(expect, rng):
    s = Shape(48, 6, 80)
    w = _weights(rng, s)
    x = rng.randn(3, 1, s.hidden)
    _parity(expect, s, w, x)
    _parity(expect, s, w, x, _mask([[1], [1], [1]]))


@pytest.mark.points(2)
def test_non_power_of_two_sizes(expect, rng):
    s = Shape(36, 3, 100)  # head_dim 12
    _parity(expect, s, _weights(rng, s), rng.randn(2, 5, s.hidden))
    s = Shape(40, 5, 72)  # head_dim 8, 5 heads
    mask = _mask([[1, 1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1]])
    _parity(expect, s, _weights(rng, s), rng.randn(2, 9, s.hidden), mask)


@pytest.mark.points(2)
def test_layer_norm_eps(expect, rng):
    # Small activations: the first LayerNorm's input has variance ~1e-4, so eps = 1e-5 (torch's
    # default) instead of BERT's 1e-12 visibly shrinks its output; then an explicit eps.
    for s in (BASE, Shape(32, 4, 64, eps=1e-3)):
        w = _weights(rng, s, attn_out_scale=0.01)
        x = rng.randn(2, 6, s.hidden, scale=0.01)
        _parity(expect, s, w, x, what=" (x and the attention output of size ~0.01)")


def _same_shape(out: Any, x: torch.Tensor, args: str) -> None:
    check(isinstance(out, torch.Tensor) and out.shape == x.shape,
          f"{BASE}(x of shape {tuple(x.shape)}{args}) must return a tensor of shape {tuple(x.shape)}")


@pytest.mark.points(2)
def test_bidirectional(expect, rng):
    seq = 6
    w = _weights(rng, BASE)
    x = rng.randn(2, seq, BASE.hidden)
    changed = x.clone()
    changed[:, -1] = rng.randn(2, BASE.hidden, scale=2.0)
    m = _layer(expect.solution, BASE, w)
    before, after = m(x), m(changed)
    for out in (before, after):
        _same_shape(out, x, "")
    moved = float((after[:, 0] - before[:, 0]).detach().abs().max())
    if moved <= 1e-3:
        fail(f"changing the last token (position {seq - 1}) left the output at position 0 unchanged"
             f" (max change {moved:.2e}): BERT's attention is bidirectional, every token attends to"
             " the tokens after it as well. Is there a causal mask?",
             after, expect.mistakes(lambda m: _layer(m, BASE, w)(changed)))
    _parity(expect, BASE, w, changed, what=" after changing the last token")


def test_padding_tokens_do_not_leak(expect, rng):
    mask = _mask([[1, 1, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1]])
    x = rng.randn(2, 7, BASE.hidden)
    changed = torch.where(mask.bool()[..., None], x, rng.randn(2, 7, BASE.hidden, scale=3.0))
    w = _weights(rng, BASE)
    m = _layer(expect.solution, BASE, w)
    before, after = m(x, attention_mask=mask), m(changed, attention_mask=mask)
    for out in (before, after):
        _same_shape(out, x, ", attention_mask")
    expect.compare(
        _real_rows(after, mask), _real_rows(before, mask),
        lambda m: _real_rows(_layer(m, BASE, w)(changed, attention_mask=mask), mask), atol=1e-6, rtol=1e-6,
        name=f"outputs at real tokens after changing the inputs at padding positions"
        f" (attention_mask={mask.tolist()}; padding keys must get zero attention weight)",
    )


@pytest.mark.hidden
def test_hidden_fresh_sizes_and_padding(expect, rng):
    """Sizes the public checks do not use, drawn afresh: 2 to 6 heads of an odd head_dim (5 to
    15), so hidden_size is never a power of two, any intermediate size, batch and length; and
    padding drawn anywhere in each row (every row keeps a real token), as an int and a bool mask."""
    heads, head_dim = int(rng.randint(2, 7, ())), 2 * int(rng.randint(2, 8, ())) + 1
    hidden = heads * head_dim
    s = Shape(hidden, heads, int(rng.randint(hidden // 2, 3 * hidden, ())))
    batch, seq = int(rng.randint(2, 6, ())), int(rng.randint(2, 12, ()))
    mask = rng.rand(batch, seq) < 0.6
    mask[torch.arange(batch), rng.randint(0, seq, (batch,))] = True
    w = _weights(rng, s)
    x = rng.randn(batch, seq, hidden)
    _parity(expect, s, w, x)
    _parity(expect, s, w, x, mask.long())
    _parity(expect, s, w, x, mask, " with a bool mask")
