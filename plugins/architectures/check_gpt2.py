"""Checks for architectures.gpt2: logits parity with transformers' GPT2LMHeadModel.

The judge builds a tiny `GPT2LMHeadModel` (eager attention, dropout 0, eval, float32), fills
it with random weights from `rng` (GPT-2's own init is too small for mistakes such as the
exact GELU to show in the logits), and sends its `state_dict()` (data) to the student's
model, built in the student's process: `m = solution.GPT2(...)`, `m.load_hf_state_dict(sd)`.
Then `m(ids)` is compared with the HF model's `.logits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from grader import probes
from grader.checks import hf_output, random_state_dict
from grader.compare import assert_equal, check

# float32 end to end; logits are O(10), so 1e-4 relative leaves room only for summation order.
TOL = {"atol": 1e-4, "rtol": 1e-4}
# gradients sum over every position and vocabulary entry: float32 rounding reaches ~3e-5 there
GRAD_TOL = {"atol": 3e-4, "rtol": 3e-4}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass(frozen=True)
class Cfg:
    vocab_size: int = 61
    n_positions: int = 12
    n_embd: int = 32
    n_layer: int = 2
    n_head: int = 4
    layer_norm_epsilon: float = 1e-5

    def kwargs(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return "GPT2(" + ", ".join(f"{k}={v}" for k, v in self.kwargs().items()) + ")"


BASE = Cfg()
_MODELS: dict[Cfg, GPT2LMHeadModel] = {}


def _hf(cfg: Cfg) -> GPT2LMHeadModel:
    """The HF model for `cfg`, built once per check module (weights are replaced per check)."""
    if cfg not in _MODELS:
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.n_positions,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            layer_norm_epsilon=cfg.layer_norm_epsilon,
            attn_pdrop=0.0,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
            attn_implementation="eager",
        )
        _MODELS[cfg] = GPT2LMHeadModel(config).eval()
    return _MODELS[cfg]


def _hf_weights(rng: Any, cfg: Cfg) -> dict[str, torch.Tensor]:
    """A random GPT2LMHeadModel state dict (Conv1D layout) with O(1) activations.

    The scales keep attention peaked rather than flat and GELU inputs around +-2, where the
    tanh and erf forms differ, so every known mistake moves the logits well past TOL.
    """

    def scale(key: str, shape: tuple[int, ...]) -> float | None:
        if key == "lm_head.weight":
            return None  # tied: set to wte below
        if key.endswith(("wte.weight", "wpe.weight")):
            return 0.5
        if ".ln_" in key:
            return 0.2 if key.endswith("weight") else 0.1  # LayerNorm gains are 1 + N(0, 0.2^2)
        if key.endswith("bias"):
            return 0.1
        if key.endswith("c_attn.weight"):
            return 1.5 * cfg.n_embd**-0.5
        return shape[0] ** -0.5  # c_proj, c_fc: (in_features, out_features)

    sd = random_state_dict(rng, _hf(cfg), scale)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def _mapped(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's state dict after loading `sd`: prefix dropped, Conv1D transposed, no head."""
    out = {}
    for key, value in sd.items():
        if key == "lm_head.weight":
            continue
        name = key.removeprefix("transformer.")
        out[name] = value.t().contiguous() if name.endswith(CONV1D) else value
    return out


def _build(ns: Any, cfg: Cfg, sd: dict[str, torch.Tensor]) -> Any:
    """`ns.GPT2(...)` (the student's module or a known mistake) with `sd` loaded."""
    m = ns.GPT2(**cfg.kwargs())
    m.load_hf_state_dict(sd)
    return m


def _shapes(ns: Any, cfg: Cfg) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in ns.GPT2(**cfg.kwargs()).state_dict().items()}


def _logits_match(expect: Any, rng: Any, cfg: Cfg, batch: int, seq: int) -> None:
    sd = _hf_weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab_size, (batch, seq))
    ids[0, 0] = cfg.vocab_size - 1  # the last row of wte must be reachable too
    expect.hf_parity(lambda s: _build(s, cfg, sd)(ids), _hf(cfg), sd, ids, **TOL,
                     name=f"{cfg} after load_hf_state_dict: logits for input_ids of shape {tuple(ids.shape)}")


def test_state_dict_names_and_shapes(expect):
    for cfg in (BASE, Cfg(vocab_size=37, n_positions=5, n_embd=24, n_layer=1, n_head=3)):
        expected = {k: tuple(v.shape) for k, v in _mapped(_hf(cfg).state_dict()).items()}
        # no known mistakes here: every untied head adds the same lm_head.weight, which can't tell them apart
        assert_equal(_shapes(expect.solution, cfg), expected, name=f"{cfg}.state_dict(): parameter names and shapes")


@pytest.mark.points(2)
def test_load_hf_state_dict_maps_and_transposes(expect, rng):
    cfg = BASE
    sd = _hf_weights(rng, cfg)
    expect(lambda s: _build(s, cfg, sd).state_dict(), truth=_mapped(sd),
           name=f"{cfg}.state_dict() after load_hf_state_dict(a GPT2LMHeadModel state dict)")


@pytest.mark.points(3)
def test_logits_match_gpt2_lm_head_model(expect, rng):
    _logits_match(expect, rng, BASE, batch=2, seq=9)


@pytest.mark.points(2)
def test_full_context(expect, rng):
    # T = n_positions: every row of wpe is used, the last one included
    _logits_match(expect, rng, BASE, batch=2, seq=BASE.n_positions)


def test_length_one(expect, rng):
    _logits_match(expect, rng, BASE, batch=2, seq=1)


@pytest.mark.points(2)
def test_one_and_three_layers_odd_sizes(expect, rng):
    # batch of 3, vocabularies and widths that are not powers of two, head_dim 8 from 48 / 6,
    # and a layer_norm_epsilon other than the default
    one = Cfg(vocab_size=37, n_positions=7, n_embd=24, n_layer=1, n_head=3)
    three = Cfg(vocab_size=50, n_positions=10, n_embd=48, n_layer=3, n_head=6, layer_norm_epsilon=1e-3)
    _logits_match(expect, rng.child("one"), one, batch=3, seq=6)
    _logits_match(expect, rng.child("three"), three, batch=3, seq=10)


def test_future_tokens_do_not_change_the_past(expect, rng):
    cfg, seq = BASE, 10
    sd = _hf_weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab_size, (2, seq))
    expect.causal(lambda s: _build(s, cfg, sd), ids, t=4, rng=rng, vocab_size=cfg.vocab_size,
                  output_shape=(2, seq, cfg.vocab_size), name=f"{cfg}(input_ids of shape (2, {seq})) logits")


def _count(ns: Any, cfg: Cfg) -> int:
    return sum(int(p.numel()) for _, p in list(ns.GPT2(**cfg.kwargs()).named_parameters()))


@pytest.mark.points(2)
def test_head_is_tied_to_wte(expect, rng):
    cfg = BASE
    # lm_head.weight is ignored: the head is wte, whatever the state dict says about it
    sd = _hf_weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab_size, (2, 7))
    decoy = dict(sd, **{"lm_head.weight": rng.randn(cfg.vocab_size, cfg.n_embd)})
    expect(lambda s: _build(s, cfg, decoy)(ids), truth=hf_output(_hf(cfg), sd, ids), **TOL,
           name=f"{cfg} logits after load_hf_state_dict(sd) where sd['lm_head.weight'] differs from"
           " sd['transformer.wte.weight'] (it must be ignored: the head is wte.weight)")
    # no known mistakes here: every untied head gives the same count, which can't tell them apart
    assert_equal(
        _count(expect.solution, cfg),
        _hf(cfg).num_parameters(),
        name=f"number of parameters of {cfg} (sum of numel over named_parameters()) vs the tied"
        " GPT2LMHeadModel's num_parameters(): the head must reuse wte.weight, not add its own",
    )


def _param_grads(ns: Any, cfg: Cfg, sd: dict, ids: torch.Tensor, grad_output: torch.Tensor) -> Any:
    return probes.grad(_build(ns, cfg, sd), [ids], grad_output)["param_grads"]


@pytest.mark.points(2)
def test_gradients_match_tied_model(expect, rng):
    # With a tied head, wte.weight's gradient sums its use as the embedding and as the head.
    cfg = BASE
    sd = _hf_weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab_size, (2, 6))
    grad_output = rng.randn(2, 6, cfg.vocab_size)
    hf = _hf(cfg)
    hf.load_state_dict(sd)
    hf.zero_grad(set_to_none=True)
    hf(ids).logits.backward(grad_output)
    expected = _mapped({n: p.grad.detach().clone() for n, p in hf.named_parameters()})
    hf.zero_grad(set_to_none=True)
    got = _param_grads(expect.solution, cfg, sd, ids, grad_output)
    check(isinstance(got, dict), "named_parameters() of the model did not come back as a dict")
    # no known mistakes here: every untied head adds the same name, which can't tell them apart
    assert_equal(dict.fromkeys(got), dict.fromkeys(expected),
                 name=f"names of {cfg}'s parameters (named_parameters(), a tied head counted once)")
    for name in sorted(expected):
        expect.compare(got[name], expected[name], lambda m, n=name: _param_grads(m, cfg, sd, ids, grad_output).get(n),
                       **GRAD_TOL,
                       name=f"gradient of {name} for a random upstream gradient on the logits vs the tied"
                       " GPT2LMHeadModel's")


@pytest.mark.hidden
def test_hidden_fresh_sizes(expect, rng):
    """Sizes drawn per seed, none of them the public ones: 1 to 4 heads of an odd or even
    head_dim from 5 to 9, 1 to 3 layers, a vocabulary of 20 to 119, a context of 3 to 15, a
    layer_norm_epsilon other than the default, a batch of 1 to 4 and any length up to the
    full context: a model that hard-codes the public shapes fails here."""
    n_head = int(rng.np.integers(1, 5))
    cfg = Cfg(vocab_size=int(rng.np.integers(20, 120)), n_positions=int(rng.np.integers(3, 16)),
              n_embd=n_head * int(rng.np.integers(5, 10)), n_layer=int(rng.np.integers(1, 4)), n_head=n_head,
              layer_norm_epsilon=float(rng.np.choice([1e-6, 1e-4, 1e-3])))
    _logits_match(expect, rng, cfg, batch=int(rng.np.integers(1, 5)), seq=int(rng.np.integers(1, cfg.n_positions + 1)))
