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
from grader.compare import assert_close, assert_equal, check

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
    e = cfg.n_embd
    sd = {}
    for key, value in _hf(cfg).state_dict().items():
        shape = tuple(value.shape)
        if key == "lm_head.weight":
            continue
        if key.endswith(("wte.weight", "wpe.weight")):
            sd[key] = rng.randn(*shape, scale=0.5)
        elif ".ln_" in key and key.endswith("weight"):
            sd[key] = 1.0 + rng.randn(*shape, scale=0.2)
        elif key.endswith("bias"):
            sd[key] = rng.randn(*shape, scale=0.1)
        elif key.endswith("c_attn.weight"):
            sd[key] = rng.randn(*shape, scale=1.5 * e**-0.5)
        else:  # c_proj, c_fc: (in_features, out_features)
            sd[key] = rng.randn(*shape, scale=shape[0] ** -0.5)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def _expected(cfg: Cfg, sd: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    hf = _hf(cfg)
    hf.load_state_dict(sd)
    with torch.no_grad():
        return hf(ids).logits


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


def _logits(ns: Any, cfg: Cfg, sd: dict[str, torch.Tensor], ids: torch.Tensor) -> Any:
    return _build(ns, cfg, sd)(ids)


def _compare(solution: Any, mistakes: Any, rng: Any, cfg: Cfg, batch: int, seq: int) -> None:
    sd = _hf_weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab_size, (batch, seq))
    ids[0, 0] = cfg.vocab_size - 1  # the last row of wte must be reachable too
    assert_close(
        _logits(solution, cfg, sd, ids),
        _expected(cfg, sd, ids),
        **TOL,
        name=f"{cfg} after load_hf_state_dict: logits for input_ids of shape {tuple(ids.shape)}"
        " vs transformers' GPT2LMHeadModel with the same weights",
        mistakes=mistakes(lambda m: _logits(m, cfg, sd, ids)),
    )


def test_state_dict_names_and_shapes(solution):
    for cfg in (BASE, Cfg(vocab_size=37, n_positions=5, n_embd=24, n_layer=1, n_head=3)):
        m = solution.GPT2(**cfg.kwargs())
        got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
        expected = {k: tuple(v.shape) for k, v in _mapped(_hf(cfg).state_dict()).items()}
        assert_equal(got, expected, name=f"{cfg}.state_dict(): parameter names and shapes")


@pytest.mark.points(2)
def test_load_hf_state_dict_maps_and_transposes(solution, rng, mistakes):
    cfg = BASE
    sd = _hf_weights(rng, cfg)
    assert_equal(
        _build(solution, cfg, sd).state_dict(),
        _mapped(sd),
        name=f"{cfg}.state_dict() after load_hf_state_dict(a GPT2LMHeadModel state dict)",
        mistakes=mistakes(lambda m: _build(m, cfg, sd).state_dict()),
    )


@pytest.mark.points(3)
def test_logits_match_gpt2_lm_head_model(solution, rng, mistakes):
    _compare(solution, mistakes, rng, BASE, batch=2, seq=9)


@pytest.mark.points(2)
def test_full_context(solution, rng, mistakes):
    # T = n_positions: every row of wpe is used, the last one included
    _compare(solution, mistakes, rng, BASE, batch=2, seq=BASE.n_positions)


def test_length_one(solution, rng, mistakes):
    _compare(solution, mistakes, rng, BASE, batch=2, seq=1)


@pytest.mark.points(2)
def test_one_and_three_layers_odd_sizes(solution, rng, mistakes):
    # batch of 3, vocabularies and widths that are not powers of two, head_dim 8 from 48 / 6,
    # and a layer_norm_epsilon other than the default
    one = Cfg(vocab_size=37, n_positions=7, n_embd=24, n_layer=1, n_head=3)
    three = Cfg(
        vocab_size=50, n_positions=10, n_embd=48, n_layer=3, n_head=6, layer_norm_epsilon=1e-3
    )
    _compare(solution, mistakes, rng.child("one"), one, batch=3, seq=6)
    _compare(solution, mistakes, rng.child("three"), three, batch=3, seq=10)


def test_future_tokens_do_not_change_the_past(solution, rng):
    cfg, seq, t = BASE, 10, 4
    m = _build(solution, cfg, _hf_weights(rng, cfg))
    ids = rng.randint(0, cfg.vocab_size, (2, seq))
    changed = ids.clone()
    shift = 1 + rng.randint(0, cfg.vocab_size - 1, (2, seq - t))  # every later token changes
    changed[:, t:] = (ids[:, t:] + shift) % cfg.vocab_size
    before, after = m(ids), m(changed)
    for out in (before, after):
        check(
            isinstance(out, torch.Tensor) and tuple(out.shape) == (2, seq, cfg.vocab_size),
            f"{cfg}(input_ids of shape (2, {seq})) must return a tensor of shape"
            f" (2, {seq}, {cfg.vocab_size})",
        )
    assert_close(
        after[:, :t],
        before[:, :t],
        atol=1e-6,
        rtol=1e-6,
        name=f"logits at positions 0..{t - 1} after changing the tokens at positions {t}..{seq - 1}"
        " (causal attention: they must not change)",
    )


def _count(ns: Any, cfg: Cfg) -> int:
    return sum(int(p.numel()) for _, p in list(ns.GPT2(**cfg.kwargs()).named_parameters()))


@pytest.mark.points(2)
def test_head_is_tied_to_wte(solution, rng, mistakes):
    cfg = BASE
    # lm_head.weight is ignored: the head is wte, whatever the state dict says about it
    sd = _hf_weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab_size, (2, 7))
    decoy = dict(sd, **{"lm_head.weight": rng.randn(cfg.vocab_size, cfg.n_embd)})
    assert_close(
        _logits(solution, cfg, decoy, ids),
        _expected(cfg, sd, ids),
        **TOL,
        name=f"{cfg} logits after load_hf_state_dict(sd) where sd['lm_head.weight'] differs from"
        " sd['transformer.wte.weight'] (it must be ignored: the head is wte.weight)",
        mistakes=mistakes(lambda m: _logits(m, cfg, decoy, ids)),
    )
    # no mistakes= here: every untied head gives the same count, which can't tell them apart
    assert_equal(
        _count(solution, cfg),
        _hf(cfg).num_parameters(),
        name=f"number of parameters of {cfg} (sum of numel over named_parameters()) vs the tied"
        " GPT2LMHeadModel's num_parameters(): the head must reuse wte.weight, not add its own",
    )


def _param_grads(ns: Any, cfg: Cfg, sd: dict, ids: torch.Tensor, grad_output: torch.Tensor) -> Any:
    return probes.grad(_build(ns, cfg, sd), [ids], grad_output)["param_grads"]


@pytest.mark.points(2)
def test_gradients_match_tied_model(solution, rng, mistakes):
    # With a tied head, wte.weight's gradient sums its use as the embedding and as the head.
    cfg = BASE
    sd = _hf_weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab_size, (2, 6))
    grad_output = rng.randn(2, 6, cfg.vocab_size)
    hf = _hf(cfg)
    hf.load_state_dict(sd)
    hf.zero_grad(set_to_none=True)
    hf(ids).logits.backward(grad_output)
    hf_grads = {n: p.grad.detach().clone() for n, p in hf.named_parameters()}
    hf.zero_grad(set_to_none=True)
    expected = _mapped(hf_grads)
    got = _param_grads(solution, cfg, sd, ids, grad_output)
    check(isinstance(got, dict), "named_parameters() of the model did not come back as a dict")
    assert_equal(
        dict.fromkeys(got),
        dict.fromkeys(expected),
        name=f"names of {cfg}'s parameters (named_parameters(), a tied head counted once)",
    )
    for name in sorted(expected):
        assert_close(
            got[name],
            expected[name],
            **GRAD_TOL,
            name=f"gradient of {name} for a random upstream gradient on the logits vs the tied"
            " GPT2LMHeadModel's",
            mistakes=mistakes(lambda m, n=name: _param_grads(m, cfg, sd, ids, grad_output).get(n)),
        )
