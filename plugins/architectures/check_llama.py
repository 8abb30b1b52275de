"""Checks for architectures.llama: logits parity with transformers' LlamaForCausalLM.

The student's model is built in its own process (`solution.Llama(...)`); the judge checks its
state-dict names and shapes against LlamaForCausalLM's, loads the same random weights into both
(drawn from `rng`, scaled so attention is not flat and the norms' weights are not all ones) and
compares the logits. transformers runs eager attention in float32 with dropout 0; it is given an
all-ones attention_mask so that it never reads non-contiguous position_ids as packed sequences
and applies only the plain causal mask, which is what the student's model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grader.checks import hf_output, random_state_dict
from grader.compare import check

# float32 end to end; the only differences are summation orders in matmuls and reductions.
TOL = {"atol": 1e-4, "rtol": 1e-4}


@dataclass(frozen=True)
class Cfg:
    vocab: int = 61
    hidden: int = 32
    intermediate: int = 72
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    eps: float = 1e-6
    theta: float = 10000.0
    tie: bool = False

    def kwargs(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "rms_norm_eps": self.eps,
            "rope_theta": self.theta,
            "tie_word_embeddings": self.tie,
        }

    def __str__(self) -> str:
        shown = dict(self.kwargs())
        for key, default in (("rms_norm_eps", 1e-6), ("rope_theta", 10000.0), ("tie_word_embeddings", False)):
            if shown[key] == default:
                del shown[key]
        return "Llama(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"


GQA = Cfg()  # 4 query heads share 2 kv heads, head_dim 8
_HF: dict[Cfg, Any] = {}


def _hf_model(cfg: Cfg) -> Any:
    """LlamaForCausalLM (eager, float32, dropout 0) for `cfg`, built once per module."""
    if cfg not in _HF:
        config = LlamaConfig(
            vocab_size=cfg.vocab,
            hidden_size=cfg.hidden,
            intermediate_size=cfg.intermediate,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            num_key_value_heads=cfg.kv_heads,
            rms_norm_eps=cfg.eps,
            # transformers 5.x keeps rope_theta under rope_parameters
            rope_parameters={"rope_type": "default", "rope_theta": cfg.theta},
            tie_word_embeddings=cfg.tie,
            attention_bias=False,
            mlp_bias=False,
            attention_dropout=0.0,
            attn_implementation="eager",
        )
        torch.manual_seed(0)
        _HF[cfg] = LlamaForCausalLM(config).eval()
    return _HF[cfg]


def _expected_keys(cfg: Cfg) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in _hf_model(cfg).state_dict().items()}


def _weights(rng: Any, cfg: Cfg) -> dict[str, torch.Tensor]:
    """Random weights for every state-dict entry of LlamaForCausalLM(cfg), in its key order.

    Norm weights are 1 + noise (all-ones would hide a norm applied to the wrong tensor);
    q/k projections are a little larger than 1/sqrt(fan_in) so the softmax is not flat.
    """

    def scale(key: str, shape: tuple[int, ...]) -> float | None:
        if key.endswith("norm.weight"):
            return 0.3
        if key == "model.embed_tokens.weight":
            return 1.0
        if key == "lm_head.weight" and cfg.tie:
            return None  # the embedding itself, set below
        return (1.5 if ("q_proj" in key or "k_proj" in key) else 1.0) * shape[1] ** -0.5

    out = random_state_dict(rng, _hf_model(cfg), scale)
    if cfg.tie:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def _hf_inputs(ids: torch.Tensor, position_ids: Any = None) -> dict[str, Any]:
    """LlamaForCausalLM's inputs: plain causal attention, positions 0..T-1 unless given."""
    batch, seq = ids.shape
    if position_ids is None:
        position_ids = torch.arange(seq).expand(batch, seq)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "position_ids": position_ids,
            "use_cache": False}


def _build(ns: Any, cfg: Cfg, weights: dict[str, torch.Tensor], strict: bool = True) -> Any:
    """The model in `ns` (the student's module or a known mistake) with `weights` loaded."""
    m = ns.Llama(**cfg.kwargs())
    if strict:
        m.load_state_dict(weights)
    else:
        m.load_state_dict(weights, strict=False)
    return m


def _run(ns: Any, cfg: Cfg, weights: dict[str, torch.Tensor], ids: torch.Tensor, position_ids: Any = None,
         strict: bool = True) -> Any:
    m = _build(ns, cfg, weights, strict)
    return m(ids) if position_ids is None else m(ids, position_ids)


def _parity(expect: Any, cfg: Cfg, weights: dict[str, torch.Tensor], ids: torch.Tensor, position_ids: Any = None,
            what: str = "") -> None:
    expect.hf_parity(lambda s: _run(s, cfg, weights, ids, position_ids), _hf_model(cfg), weights, **TOL,
                     **_hf_inputs(ids, position_ids), name=f"{cfg}(input_ids of shape {tuple(ids.shape)}{what}) logits")


def _shapes(ns: Any, cfg: Cfg) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in ns.Llama(**cfg.kwargs()).state_dict().items()}


@pytest.mark.points(2)
def test_state_dict_names_and_shapes(expect):
    for cfg in (GQA, Cfg(vocab=53, hidden=60, heads=6, kv_heads=3, layers=3, tie=True)):
        expect(lambda s, c=cfg: _shapes(s, c), truth=_expected_keys(cfg),
               name=f"{cfg}.state_dict(): names and shapes (LlamaForCausalLM's; a RoPE buffer"
               " must be registered with persistent=False)")


@pytest.mark.points(3)
def test_logits_match_llama(expect, rng):
    ids = rng.randint(0, GQA.vocab, (2, 9))
    _parity(expect, GQA, _weights(rng, GQA), ids)


@pytest.mark.points(2)
def test_multi_query_and_multi_head(expect, rng):
    for cfg in (Cfg(vocab=50, heads=4, kv_heads=1), Cfg(vocab=50, heads=4, kv_heads=4)):
        ids = rng.randint(0, cfg.vocab, (2, 7))
        _parity(expect, cfg, _weights(rng, cfg), ids)


@pytest.mark.points(2)
def test_non_power_of_two_sizes(expect, rng):
    # head_dim 10 (so each RoPE half is 5 wide), 3 query heads per kv head, vocab 97, I = 100
    for cfg, seq in (
        (Cfg(vocab=97, hidden=60, intermediate=100, heads=6, kv_heads=2), 11),
        (Cfg(vocab=97, hidden=60, intermediate=100, heads=6, kv_heads=3, layers=1), 5),
    ):
        ids = rng.randint(0, cfg.vocab, (3, seq))
        _parity(expect, cfg, _weights(rng, cfg), ids)


def test_length_one(expect, rng):
    cfg = Cfg(vocab=97, hidden=48, heads=6, kv_heads=2)
    w = _weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab, (2, 1))
    _parity(expect, cfg, w, ids)
    _parity(expect, cfg, w, ids, torch.tensor([[4], [11]]), ", position_ids=[[4], [11]]")


@pytest.mark.points(2)
def test_position_ids(expect, rng):
    # A plain offset must reproduce transformers; positions with gaps change the RoPE angles
    # between tokens, so they also catch position_ids that are ignored.
    cfg, seq = GQA, 8
    w = _weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab, (3, seq))
    offset = torch.arange(seq) + 37
    gaps = torch.sort(torch.from_numpy(rng.np.choice(64, seq, replace=False))).values
    position_ids = torch.stack([offset, gaps, torch.arange(seq)])
    _parity(expect, cfg, w, ids, position_ids, ", position_ids=" + str(position_ids.tolist()))


@pytest.mark.points(2)
def test_rms_norm_eps_and_rope_theta(expect, rng):
    # a large eps makes its place in the formula visible; theta 500 must reach the RoPE angles
    cfg = Cfg(vocab=61, hidden=32, heads=4, kv_heads=2, eps=0.05, theta=500.0)
    ids = rng.randint(0, cfg.vocab, (2, 10))
    _parity(expect, cfg, _weights(rng, cfg), ids)


@pytest.mark.points(2)
def test_tied_word_embeddings(expect, rng):
    cfg = Cfg(vocab=53, hidden=48, heads=6, kv_heads=2, tie=True)
    fresh = expect.solution.Llama(**cfg.kwargs()).state_dict()
    check(
        "lm_head.weight" in fresh
        and "model.embed_tokens.weight" in fresh
        and torch.equal(fresh["lm_head.weight"], fresh["model.embed_tokens.weight"]),
        f"{cfg}: a freshly built model's lm_head.weight differs from model.embed_tokens.weight;"
        " with tie_word_embeddings=True they must be one shared Parameter",
    )
    w = _weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab, (2, 8))
    _parity(expect, cfg, w, ids)
    # a tied checkpoint may store the embedding only: loading it must set lm_head too
    partial = {k: v for k, v in w.items() if k != "lm_head.weight"}
    expect(lambda s: _run(s, cfg, partial, ids, strict=False), truth=hf_output(_hf_model(cfg), w, **_hf_inputs(ids)),
           **TOL, name=f"{cfg} after load_state_dict(state dict without lm_head.weight, strict=False):"
           " logits vs LlamaForCausalLM")


def test_future_tokens_do_not_change_the_past(expect, rng):
    cfg, seq = GQA, 9
    w = _weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab, (2, seq))
    expect.causal(lambda s: _build(s, cfg, w), ids, t=4, rng=rng, vocab_size=cfg.vocab,
                  output_shape=(2, seq, cfg.vocab), name=f"{cfg}(input_ids of shape (2, {seq})) logits")


@pytest.mark.hidden
def test_hidden_fresh_sizes_and_positions(expect, rng):
    """A configuration drawn per seed, none of the public ones: 1 to 4 kv heads shared by 1 to
    3 query heads each, an even head_dim of 4 to 14 (RoPE halves of 2 to 7), an intermediate
    size of 20 to 89, 1 to 3 layers, eps and theta off their defaults and a tied or untied
    head; a batch of 1 to 4 and 1 to 12 tokens, each row at its own positions (distinct,
    increasing, below 64, with gaps)."""
    kv = int(rng.np.integers(1, 5))
    heads = kv * int(rng.np.integers(1, 4))
    cfg = Cfg(vocab=int(rng.np.integers(20, 120)), hidden=heads * 2 * int(rng.np.integers(2, 8)),
              intermediate=int(rng.np.integers(20, 90)), layers=int(rng.np.integers(1, 4)), heads=heads,
              kv_heads=kv, eps=float(rng.np.choice([1e-5, 1e-3])), theta=float(rng.np.choice([100.0, 5e5])),
              tie=bool(rng.np.integers(0, 2)))
    batch, seq = int(rng.np.integers(1, 5)), int(rng.np.integers(1, 13))
    w = _weights(rng, cfg)
    ids = rng.randint(0, cfg.vocab, (batch, seq))
    position_ids = torch.stack([torch.sort(torch.from_numpy(rng.np.choice(64, seq, replace=False))).values
                                for _ in range(batch)])
    _parity(expect, cfg, w, ids, position_ids, ", position_ids=" + str(position_ids.tolist()))
