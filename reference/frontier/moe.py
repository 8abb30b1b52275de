"""Mixture of experts as in Mixtral: top-k routing, the load-balancing loss, a sparse MoE block.

Conventions (those of transformers' Mixtral):
- routing: softmax over ALL experts of the router logits, in float32; keep the k largest
  probabilities; renormalise the kept k to sum to 1. Order: descending probability, equal
  probabilities by ascending expert index.
- load-balancing loss (Switch Transformer, eq. 4-6, as `load_balancing_loss_func`):
  num_experts * sum_e f_e * P_e, where f_e = (number of top-k slots that chose expert e) /
  (number of real tokens) and P_e = mean softmax probability of expert e over the real tokens.
  The counts cover all k slots and are NOT divided by k; padding tokens are left out.
- expert e: down_e(silu(gate_e x) * up_e x) (SwiGLU), weights stored fused as Mixtral stores them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["top_k_route", "load_balancing_loss", "SparseMoE"]


def _top_k(probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    # a stable descending sort: equal probabilities keep ascending expert order
    values, ids = torch.sort(probs, dim=-1, descending=True, stable=True)
    return values[..., :k], ids[..., :k]


def top_k_route(router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Route each token to k experts, as Mixtral's router does.

    router_logits: (..., num_experts), any float dtype; 1 <= k <= num_experts.
    Returns (weights, expert_ids), both of shape (..., k):
    - probs = softmax(router_logits.float(), dim=-1) over ALL experts (float32, and stable
      for logits of any magnitude);
    - expert_ids (int64): the k experts of largest probability, in descending order of
      probability; equal probabilities are ordered by ascending expert index (so a row of
      equal logits routes to experts 0, 1, ..., k-1);
    - weights (float32): those k probabilities divided by their sum (each row sums to 1),
      weights[..., j] belonging to expert_ids[..., j].
    """
    probs = torch.softmax(router_logits.float(), dim=-1)
    values, ids = _top_k(probs, k)
    weights = values / values.sum(dim=-1, keepdim=True)
    return weights, ids


def load_balancing_loss(
    router_logits: torch.Tensor,
    num_experts: int,
    k: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The auxiliary load-balancing loss of Switch Transformer / Mixtral (a 0-d float32 tensor).

    router_logits: (num_tokens, num_experts), the router's logits for every token (for several
    layers, concatenate them along dim 0 and repeat the mask once per layer).
    attention_mask: None (every token counts) or a tensor of 0/1 (bool or integer) with
    num_tokens elements, e.g. (batch, seq_len) with batch * seq_len == num_tokens, flattened in
    row-major order to line up with the rows of router_logits; tokens where it is 0 (padding)
    are left out of both means. With T the number of real tokens:
        probs = softmax(router_logits.float(), dim=-1)
        ids   = the top-k experts of each token (as in `top_k_route`)
        f_e   = (number of (token, slot) pairs with ids == e, over real tokens) / T
                (summed over all k slots, NOT divided by k: the f_e sum to k)
        P_e   = (sum over real tokens of probs[:, e]) / T
        loss  = num_experts * sum_e f_e * P_e
    Perfectly balanced routing gives k; everything on one expert gives num_experts * k.
    """
    probs = torch.softmax(router_logits.float(), dim=-1)
    _, ids = _top_k(probs, k)
    if attention_mask is None:
        mask = torch.ones(probs.shape[0], dtype=torch.float32)
    else:
        mask = attention_mask.reshape(-1).to(torch.float32)
    counts = torch.zeros(num_experts, dtype=torch.float32)
    counts.scatter_add_(0, ids.reshape(-1), mask.repeat_interleave(k))
    real = mask.sum()
    tokens_per_expert = counts / real
    prob_per_expert = (probs * mask[:, None]).sum(dim=0) / real
    return num_experts * (tokens_per_expert * prob_per_expert).sum()


class SparseMoE(nn.Module):
    """A sparse mixture-of-experts feed-forward block, parameter for parameter Mixtral's
    `MixtralSparseMoeBlock` (its state dict loads into this module and back).

    SparseMoE(hidden_dim, ffn_dim, num_experts, top_k) holds exactly these parameters,
    float32, under these names (initial values do not matter: they are loaded):
    - `gate.weight`: (num_experts, hidden_dim), the router: router_logits = x @ gate.weight.T
      (no bias), e.g. `self.gate = nn.Linear(hidden_dim, num_experts, bias=False)`;
    - `experts.gate_up_proj`: (num_experts, 2 * ffn_dim, hidden_dim): for expert e, rows
      [:ffn_dim] are its gate projection W1_e and rows [ffn_dim:] its up projection W3_e;
    - `experts.down_proj`: (num_experts, hidden_dim, ffn_dim), its down projection W2_e.
    (`self.experts` may be a bare `nn.Module()` holding the two `nn.Parameter`s.)

    forward(x): x of shape (..., hidden_dim), float32. Returns (out, router_logits):
    - router_logits: (N, num_experts), N = x.numel() // hidden_dim, rows in row-major order of
      the leading axes;
    - each token t is routed with `top_k_route(router_logits, top_k)` to experts ids[t, j]
      with weights w[t, j], and
          out[t] = sum_j w[t, j] * W2_e (silu(W1_e x_t) * (W3_e x_t)),  e = ids[t, j];
      out has the shape of x. Each expert runs only on the tokens routed to it (gather them,
      run the expert once on that batch, scale by their weights, add back into place).
    No jitter noise, no capacity limit, no token dropped.
    """

    def __init__(self, hidden_dim: int, ffn_dim: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        self.hidden_dim, self.ffn_dim = hidden_dim, ffn_dim
        self.num_experts, self.top_k = num_experts, top_k
        self.gate = nn.Linear(hidden_dim, num_experts, bias=False)
        self.experts = nn.Module()
        self.experts.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * ffn_dim, hidden_dim))
        self.experts.down_proj = nn.Parameter(torch.empty(num_experts, hidden_dim, ffn_dim))
        nn.init.normal_(self.experts.gate_up_proj, std=0.02)
        nn.init.normal_(self.experts.down_proj, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = x.reshape(-1, self.hidden_dim)
        router_logits = self.gate(tokens)
        weights, ids = top_k_route(router_logits, self.top_k)
        out = torch.zeros_like(tokens)
        for e in range(self.num_experts):
            token_idx, slot = torch.where(ids == e)
            if token_idx.numel() == 0:
                continue
            h = F.linear(tokens[token_idx], self.experts.gate_up_proj[e])
            gate, up = h[:, : self.ffn_dim], h[:, self.ffn_dim :]
            y = F.linear(F.silu(gate) * up, self.experts.down_proj[e])
            y = y * weights[token_idx, slot, None].to(y.dtype)
            out.index_add_(0, token_idx, y)
        return out.reshape(x.shape), router_logits
