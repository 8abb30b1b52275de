"""Checks for architectures.gpt2_block: parity with transformers' GPT2Block (Conv1D weights).

The judge draws random weights in Hugging Face's layout (Conv1D weights are (in, out)), loads
them into a transformers GPT2Block, and sends the same state dict (data) to the student's
block, built in its own process, through `load_hf_state_dict`. Outputs are compared on random
inputs, and so is the student's own `state_dict()` after loading (nn.Linear layout, so the
Conv1D weights transposed).

In transformers 5.x the eager GPT2Attention adds the attention mask it is given and nothing
else (the model, not the block, builds the causal mask), so the judge passes the causal mask
itself: 0 on and below the diagonal, finfo.min above it, as GPT2Model does.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from transformers import GPT2Config
from transformers.models.gpt2.modeling_gpt2 import GPT2Block as HFGPT2Block

from grader.checks import hf_output

# float32 end to end; the only differences are summation order in matmuls, softmax and LayerNorm.
TOL = {"atol": 1e-5, "rtol": 1e-5}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@functools.cache
def _hf_block(n_embd: int, n_head: int, eps: float) -> HFGPT2Block:
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=n_embd,
        n_head=n_head,
        n_layer=1,
        n_positions=64,
        vocab_size=16,
        bos_token_id=0,
        eos_token_id=0,
        layer_norm_epsilon=eps,
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_implementation="eager",
    )
    return HFGPT2Block(config, layer_idx=0).eval()


def _hf_weights(rng: Any, c: int) -> dict[str, torch.Tensor]:
    """Random GPT2Block weights in Hugging Face's layout (Conv1D weights are (in, out)).

    Scaled so every activation is O(1) and the attention softmax is far from flat; LayerNorm
    gains and all biases are random too, so that every parameter matters.
    """
    return {
        "ln_1.weight": 1.0 + rng.randn(c, scale=0.2),
        "ln_1.bias": rng.randn(c, scale=0.2),
        "attn.c_attn.weight": rng.randn(c, 3 * c, scale=1.5 * c**-0.5),
        "attn.c_attn.bias": rng.randn(3 * c, scale=0.2),
        "attn.c_proj.weight": rng.randn(c, c, scale=c**-0.5),
        "attn.c_proj.bias": rng.randn(c, scale=0.2),
        "ln_2.weight": 1.0 + rng.randn(c, scale=0.2),
        "ln_2.bias": rng.randn(c, scale=0.2),
        "mlp.c_fc.weight": rng.randn(c, 4 * c, scale=1.5 * c**-0.5),
        "mlp.c_fc.bias": rng.randn(4 * c, scale=0.2),
        "mlp.c_proj.weight": rng.randn(4 * c, c, scale=(4 * c) ** -0.5),
        "mlp.c_proj.bias": rng.randn(c, scale=0.2),
    }


def _linear_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the student's state_dict() must hold after loading `hf`: Conv1D weights transposed."""
    return {k: (v.t().contiguous() if k in CONV1D else v) for k, v in hf.items()}


def _causal_mask(seq: int) -> torch.Tensor:
    """GPT-2's causal mask as GPT2Model builds it: 0 on and below the diagonal, finfo.min above,
    shaped (1, 1, T, T) to broadcast over batch and heads."""
    future = torch.ones(seq, seq, dtype=torch.bool).triu(1)
    return torch.zeros(seq, seq).masked_fill(future, torch.finfo(torch.float32).min)[None, None]


def _hf(c: int, h: int, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """transformers' GPT2Block (eager, float32) on the same weights, with GPT-2's causal mask."""
    return hf_output(_hf_block(c, h, 1e-5), weights, x, attention_mask=_causal_mask(x.shape[1]))


def _block(ns: Any, c: int, h: int, weights: dict[str, torch.Tensor], **kwargs: Any) -> Any:
    """The student's (or a known mistake's) block, built in its own namespace, weights loaded."""
    m = ns.GPT2Block(c, h, **kwargs)
    m.load_hf_state_dict(weights)
    return m


def _run(ns: Any, c: int, h: int, weights: dict[str, torch.Tensor], x: torch.Tensor, **kwargs: Any) -> Any:
    return _block(ns, c, h, weights, **kwargs)(x)


def _parity(expect: Any, c: int, h: int, x: torch.Tensor, weights: dict, what: str = "", eps: float | None = None,
            student: dict | None = None) -> None:
    """The student's block loaded with `student` (default `weights`) vs transformers' with `weights`;
    `eps` goes to both as layer_norm_epsilon."""
    kwargs = {} if eps is None else {"layer_norm_epsilon": eps}
    hf = _hf_block(c, h, 1e-5 if eps is None else eps)
    expect.hf_parity(lambda s: _run(s, c, h, student or weights, x, **kwargs), hf, weights, x,
                     attention_mask=_causal_mask(x.shape[1]), **TOL,
                     name=f"GPT2Block(n_embd={c}, n_head={h}" + "".join(f", {k}={v}" for k, v in kwargs.items())
                     + f")(x of shape {tuple(x.shape)}){what}")


def _shapes(ns: Any, c: int, h: int) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in ns.GPT2Block(c, h).state_dict().items()}


def test_state_dict_names_and_shapes(expect):
    for c, h in ((32, 4), (48, 3)):
        expected = {k: tuple(v.shape) for k, v in _linear_layout(_hf_block(c, h, 1e-5).state_dict()).items()}
        expect(lambda s, c=c, h=h: _shapes(s, c, h), truth=expected,
               name=f"GPT2Block(n_embd={c}, n_head={h}).state_dict(): parameter names and shapes"
               " (nn.Linear layout, (out_features, in_features))")


@pytest.mark.points(2)
def test_load_hf_state_dict_transposes_conv1d(expect, rng):
    c, h = 48, 3
    hf = _hf_weights(rng, c)
    expect(lambda s: _block(s, c, h, hf).state_dict(), truth=_linear_layout(hf),
           name=f"GPT2Block(n_embd={c}, n_head={h}).state_dict() after load_hf_state_dict(hf_sd)"
           " (expected: hf_sd with the four Conv1D weights transposed, everything else as is)")


def test_ignores_legacy_mask_buffers(expect, rng):
    # older transformers kept the causal mask as buffers 'attn.bias' and 'attn.masked_bias',
    # listed between ln_1 and attn.c_attn; only those two exact keys are to be skipped
    c, h, n_positions = 32, 4, 16
    hf = _hf_weights(rng, c)
    legacy: dict[str, torch.Tensor] = {}
    for k, v in hf.items():
        if k == "attn.c_attn.weight":
            legacy["attn.bias"] = torch.ones(n_positions, n_positions, dtype=torch.bool).tril()[None, None]
            legacy["attn.masked_bias"] = torch.tensor(-1e4)
        legacy[k] = v
    expect(lambda s: _block(s, c, h, legacy).state_dict(), truth=_linear_layout(hf),
           name=f"GPT2Block(n_embd={c}, n_head={h}).state_dict() after load_hf_state_dict of a state"
           " dict that also holds the old mask buffers 'attn.bias' and 'attn.masked_bias'")
    _parity(expect, c, h, rng.randn(2, 6, c), hf, " loaded from a state dict with the old mask buffers", student=legacy)


@pytest.mark.points(3)
def test_matches_transformers_gpt2_block(expect, rng):
    c, h = 32, 4
    x = rng.randn(2, 9, c)
    _parity(expect, c, h, x, _hf_weights(rng, c))


@pytest.mark.points(2)
def test_non_power_of_two_sizes(expect, rng):
    # n_embd 48 with 3 heads (head_dim 16), and 36 with 6 heads (head_dim 6)
    for (c, h), seq in (((48, 3), 5), ((36, 6), 11)):
        x = rng.randn(3, seq, c)
        _parity(expect, c, h, x, _hf_weights(rng, c))


def test_length_one(expect, rng):
    c, h = 48, 3
    w = _hf_weights(rng, c)
    for batch in (1, 3):
        _parity(expect, c, h, rng.randn(batch, 1, c), w, " (a single token)")


@pytest.mark.points(2)
def test_batch_of_one_and_of_three(expect, rng):
    # each sequence is processed on its own: a batch of 3 gives what 3 batches of 1 give,
    # from the same block object
    c, h, seq = 32, 4, 7
    w = _hf_weights(rng, c)
    x = rng.randn(3, seq, c)
    m = _block(expect.solution, c, h, w)
    expected = _hf(c, h, w, x)
    expect.compare(m(x), expected, lambda s: _run(s, c, h, w, x), **TOL,
                   name=f"GPT2Block(n_embd={c}, n_head={h})(x of shape {tuple(x.shape)}) vs transformers' GPT2Block")
    for b in range(3):
        expect.compare(m(x[b : b + 1]), expected[b : b + 1], lambda s, b=b: _run(s, c, h, w, x[b : b + 1]), **TOL,
                       name=f"GPT2Block(n_embd={c}, n_head={h})(x[{b}:{b + 1}]), a batch of one, on the block"
                       " that ran the batch of 3, vs transformers' GPT2Block on the same sequence")


@pytest.mark.points(2)
def test_future_tokens_do_not_change_the_past(expect, rng):
    c, h, seq = 32, 4, 8
    w = _hf_weights(rng, c)
    x = rng.randn(2, seq, c)
    expect.causal(lambda s: _block(s, c, h, w), x, t=3, rng=rng, scale=3.0, output_shape=x.shape,
                  name=f"GPT2Block(n_embd={c}, n_head={h})(x of shape {tuple(x.shape)})")


def test_layer_norm_epsilon(expect, rng):
    # inputs with per-token variance ~0.01: an eps of 1e-2 changes the normalisation a lot
    c, h, eps = 32, 4, 1e-2
    w = _hf_weights(rng, c)
    x = rng.randn(2, 5, c, scale=0.1)
    _parity(expect, c, h, x, w, " (std 0.1; transformers' GPT2Block built with GPT2Config(layer_norm_epsilon=1e-2))",
            eps=eps)


@pytest.mark.hidden
def test_hidden_fresh_sizes_long_sequences(expect, rng):
    """Sizes drawn per seed, none of them the public ones: 1 to 5 heads of head_dim 5 to 12, a
    layer_norm_epsilon of 1e-6 or 1e-3, a batch of 1 to 4 and 12 to 40 tokens (longer than
    any public sequence, so a mask cached at a small fixed size fails), each token at its own
    scale from 0.1 to 10 (LayerNorm must normalise per token, eps in its place)."""
    h = int(rng.np.integers(1, 6))
    c = h * int(rng.np.integers(5, 13))
    eps = float(rng.np.choice([1e-6, 1e-3]))
    w = _hf_weights(rng, c)
    batch, seq = int(rng.np.integers(1, 5)), int(rng.np.integers(12, 41))
    x = rng.randn(batch, seq, c) * 10 ** (2 * rng.rand(batch, seq, 1) - 1)
    _parity(expect, c, h, x, w, ", each token scaled by 0.1 to 10", eps=eps)
