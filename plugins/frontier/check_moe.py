"""Checks for frontier.moe: Mixtral's top-k routing, load-balancing loss and sparse MoE block.

Routing is compared with softmax + torch.topk + renormalisation (and with a hand-built answer
where probabilities tie), the loss with transformers' `load_balancing_loss_func` (padding
included), and the block with transformers' `MixtralSparseMoeBlock` holding the same weights.
Dispatch is checked twice: an expert that overflows must not leak into tokens it was never
routed to, and one forward's matrix-product FLOPs must be those of the routed tokens alone.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import MixtralConfig
from transformers.models.mixtral.modeling_mixtral import (
    MixtralSparseMoeBlock,
    load_balancing_loss_func,
)

from grader import probes
from grader.compare import fail

# float32 throughout: softmax and a division (weights), sums of at most a few hundred terms
# (loss), matmuls of width <= 64 summed in another order (block): all within a few ulps.
TOL = {"atol": 1e-6, "rtol": 1e-5}
BLOCK_TOL = {"atol": 1e-5, "rtol": 1e-5}


def _route_truth(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax over all experts, torch.topk, renormalise: Mixtral's router (inputs without ties)."""
    probs = F.softmax(logits.float(), dim=-1)
    values, ids = torch.topk(probs, k, dim=-1)
    return values / values.sum(dim=-1, keepdim=True), ids


def _route_parity(expect: Any, logits: torch.Tensor, k: int, what: str = "") -> None:
    weights, ids = _route_truth(logits, k)
    name = f"top_k_route(logits of shape {tuple(logits.shape)}{what}, k={k})"
    expect(lambda s: s.top_k_route(logits, k)[1], truth=ids, name=f"{name}: expert_ids")
    expect(lambda s: s.top_k_route(logits, k)[0], truth=weights, **TOL, name=f"{name}: weights")


def _loss_parity(expect: Any, logits: torch.Tensor, e: int, k: int, mask: torch.Tensor | None, what: str) -> None:
    truth = load_balancing_loss_func((logits,), e, k, mask)
    expect(lambda s: s.load_balancing_loss(logits, e, k, mask), truth=truth, **TOL,
           name=f"load_balancing_loss(logits of shape {tuple(logits.shape)}, num_experts={e}, k={k}{what})"
                " vs transformers' load_balancing_loss_func")


def _config(h: int, f: int, e: int, k: int) -> MixtralConfig:
    return MixtralConfig(
        hidden_size=h, intermediate_size=f, num_local_experts=e, num_experts_per_tok=k, hidden_act="silu",
        # the attention sizes are unused by the MoE block
        num_attention_heads=1, num_key_value_heads=1, head_dim=2, num_hidden_layers=1, vocab_size=16,
        attn_implementation="eager",
    )


def _moe_weights(rng: Any, h: int, f: int, e: int) -> dict[str, torch.Tensor]:
    # the router scaled so that logits are O(1) (routing not near-one-hot: weights matter);
    # the gate half scaled so silu is far from linear
    gate_up = torch.cat([rng.randn(e, f, h, scale=1.5 * h**-0.5), rng.randn(e, f, h, scale=h**-0.5)], dim=1)
    return {
        "gate.weight": rng.randn(e, h, scale=h**-0.5),
        "experts.gate_up_proj": gate_up,
        "experts.down_proj": rng.randn(e, h, f, scale=f**-0.5),
    }


def _moe(ns: Any, sizes: tuple[int, int, int, int], w: dict[str, torch.Tensor], x: torch.Tensor) -> Any:
    m = ns.SparseMoE(*sizes)
    m.load_state_dict(w)
    return m(x)


def _block_parity(expect: Any, rng: Any, sizes: tuple[int, int, int, int], shape: tuple[int, int]) -> None:
    h, f, e, k = sizes
    w = _moe_weights(rng, h, f, e)
    x = rng.randn(*shape, h)
    name = f"SparseMoE{sizes}(x of shape {tuple(x.shape)})"
    expect.hf_parity(lambda m: _moe(m, sizes, w, x)[0], MixtralSparseMoeBlock(_config(*sizes)), w, x, **BLOCK_TOL,
                     name=f"{name}: out")
    expect(lambda m: _moe(m, sizes, w, x)[1], truth=F.linear(x.reshape(-1, h), w["gate.weight"]), **BLOCK_TOL,
           name=f"{name}: router_logits (N, num_experts)")


def _shapes(state_dict: Any) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


# --- checks ------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_top_k_route_matches_torch_topk(expect, rng):
    _route_parity(expect, rng.randn(7, 8, scale=2.0), 2)
    _route_parity(expect, rng.randn(2, 5, 6), 3)
    # k=1: every weight is 1; k=num_experts: all experts, sorted
    _route_parity(expect, rng.randn(5, 6), 1)
    _route_parity(expect, rng.randn(4, 5), 5)


def test_top_k_route_ties_and_large_logits(expect, rng):
    # ties: equal probabilities go by ascending expert index
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0],
                           [1.0, 2.0, 2.0, 0.5, 2.0],
                           [3.0, -1.0, 3.0, 3.0, -1.0],
                           [-2.0, 5.0, -2.0, -2.0, -2.0]])
    ids = torch.tensor([[0, 1, 2], [1, 2, 4], [0, 2, 3], [1, 0, 2]])
    weights = torch.tensor([[1 / 3] * 3, [1 / 3] * 3, [1 / 3] * 3, [0.0, 0.0, 0.0]])
    weights[3] = _route_truth(logits[3:], 3)[0][0]
    expect(lambda s: s.top_k_route(logits, 3)[1], truth=ids,
           name="top_k_route(logits with tied values, k=3): expert_ids (ties by ascending expert index)")
    expect(lambda s: s.top_k_route(logits, 3)[0], truth=weights, **TOL,
           name="top_k_route(logits with tied values, k=3): weights")
    # logits near +-1e4 (spread O(1) within a row): exp overflows float32 unless the softmax
    # subtracts the row's max; the spread keeps the top probabilities from underflowing to ties
    big = rng.randn(6, 7, scale=2.0) + torch.tensor([1e4, -1e4, 1e4, -1e4, 5e3, -5e3])[:, None]
    _route_parity(expect, big, 2, ", logits near +-1e4")


@pytest.mark.points(2)
def test_load_balancing_loss_matches_transformers(expect, rng):
    _loss_parity(expect, rng.randn(20, 8, scale=2.0), 8, 2, None, "")
    _loss_parity(expect, rng.randn(13, 5), 5, 1, None, "")
    _loss_parity(expect, rng.randn(9, 6, scale=2.0), 6, 3, None, "")
    # all tokens to one expert: the loss is num_experts * k
    skewed = rng.randn(10, 4, scale=0.1)
    skewed[:, 2] += 20.0
    skewed[:, 0] += 10.0
    _loss_parity(expect, skewed, 4, 2, None, ", every token on experts 2 and 0")


@pytest.mark.points(2)
def test_load_balancing_loss_leaves_padding_out(expect, rng):
    # right padding, left padding, and a sequence of one real token; the padded rows'
    # logits are large, so counting them changes the loss a lot
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 1]])
    logits = rng.randn(3 * 7, 6)
    logits[mask.reshape(-1) == 0, 1] += 8.0
    _loss_parity(expect, logits, 6, 2, mask, ", attention_mask (3, 7) with padding")
    _loss_parity(expect, logits, 6, 2, mask.bool(), ", a bool attention_mask")
    _loss_parity(expect, logits, 6, 2, torch.ones(3, 7, dtype=torch.long), ", attention_mask all ones")


def test_state_dict_names_and_shapes(expect):
    expect(lambda m: _shapes(m.SparseMoE(24, 40, 5, 2).state_dict()),
           truth=_shapes(MixtralSparseMoeBlock(_config(24, 40, 5, 2)).state_dict()),
           name="SparseMoE(24, 40, 5, 2).state_dict(): names and shapes (must be MixtralSparseMoeBlock's)")


@pytest.mark.points(3)
def test_sparse_moe_matches_mixtral_block(expect, rng):
    _block_parity(expect, rng, (32, 64, 4, 2), (2, 5))
    _block_parity(expect, rng, (24, 40, 8, 2), (3, 7))
    # one token: most experts get nothing
    _block_parity(expect, rng, (20, 36, 6, 2), (1, 1))
    _block_parity(expect, rng, (20, 36, 5, 1), (2, 3))


def test_experts_see_only_their_tokens(expect, rng):
    """Expert 3's down projection is 1e38, so its output overflows to inf on any token; the
    router never picks it (a constant feature x[..., 0] = 1 gives it a logit 100 below the
    others, so its probability, about 1e-44, is never in the top 2). Mixtral's block never
    runs it, and neither does a sparse dispatch; running every expert on every token and
    multiplying by a zero (or 1e-44) weight gives inf or NaN."""
    h, f, e, k = 20, 36, 4, 2
    w = _moe_weights(rng, h, f, e)
    w["gate.weight"][3] = 0.0
    w["gate.weight"][3, 0] = -100.0
    w["gate.weight"][:3, 0] = 0.0
    w["experts.down_proj"][3] = 1e38
    x = rng.randn(2, 6, h)
    x[..., 0] = 1.0
    expect.hf_parity(lambda m: _moe(m, (h, f, e, k), w, x)[0], MixtralSparseMoeBlock(_config(h, f, e, k)), w, x,
                     **BLOCK_TOL,
                     name=f"SparseMoE{(h, f, e, k)}(x of shape {tuple(x.shape)}) whose expert 3 overflows to inf but"
                          " is routed no token: out (an expert must run only on the tokens routed to it)")


def test_experts_compute_only_their_tokens(expect, rng):
    """The matrix products of one forward, counted where the solution runs
    (`probes.matmul_flops`, torch's FlopCounterMode, 2 FLOPs per multiply-add): the router,
    2·N·h·E, and for each token its k experts' gate_up and down projections, 6·h·f each. An
    expert run on every token, even with only its routed rows kept, costs E/k times as much
    (3.9x the routed count here); the bound, 1.5x, leaves room for a second router call."""
    h, f, e, k = 16, 32, 8, 2
    w = _moe_weights(rng, h, f, e)
    x = rng.randn(3, 10, h)
    n = x.numel() // h
    routed = 2 * n * h * e + n * k * 6 * h * f
    bound = 1.5 * routed

    def flops(ns: Any) -> int:
        m = ns.SparseMoE(h, f, e, k)
        m.load_state_dict(w)
        return probes.matmul_flops(m, [x])["flops"]

    seen = flops(expect.solution)
    if seen > bound:
        fail(f"SparseMoE{(h, f, e, k)}(x of shape {tuple(x.shape)}) did {seen} FLOPs of matrix products; "
             f"routing each of the {n} tokens to its {k} experts takes {routed} (the router 2*N*h*E plus 6*h*f per "
             f"token and chosen expert), and at most {bound:.0f} pass: each expert must run only on the tokens "
             "routed to it, never on all N and then keep the routed rows",
             True, expect.mistakes(lambda m: flops(m) > bound))


@pytest.mark.hidden
def test_hidden_fresh_sizes(expect, rng):
    """Odd sizes the public checks do not use, drawn afresh: a block with 3 to 9 experts and
    k from 1 to 3, routing with k = num_experts - 1, and the loss with a random padding mask
    (every row keeps at least one real token)."""
    e = int(rng.randint(3, 10, ()))
    k = int(rng.randint(1, min(e, 4), ()))
    h, f = 2 * int(rng.randint(4, 16, ())) + 1, 2 * int(rng.randint(8, 30, ())) + 1
    _block_parity(expect, rng, (h, f, e, k), (3, int(rng.randint(2, 9, ()))))
    _route_parity(expect, rng.randn(3, 4, e, scale=2.0), e - 1)
    b, length = 4, int(rng.randint(3, 12, ()))
    mask = (rng.rand(b, length) < 0.6).long()
    mask[:, -1] = 1
    _loss_parity(expect, rng.randn(b * length, e, scale=2.0), e, k, mask, f", a random attention_mask ({b}, {length})")
