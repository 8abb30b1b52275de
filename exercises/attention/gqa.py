"""Grouped-query attention (GQA) and multi-query attention (MQA), as in Llama.

In grouped-query attention the H query heads share H_kv key/value heads (H_kv divides H):
each key/value head serves a group of n_rep = H / H_kv consecutive query heads. H_kv = 1 is
multi-query attention, H_kv = H is ordinary multi-head attention: all three are the same
class here. The module must compute exactly what transformers' `LlamaAttention` (eager
attention, no biases, no dropout) computes, and its parameters must have the same names and
shapes, so that `state_dict()`s can be copied between the two.

Use only torch (no transformers, and not torch.nn.functional.scaled_dot_product_attention or
torch.nn.MultiheadAttention). Keep everything in this file: do not import other exercises.
Inputs are float32 and outputs are float32.
"""

from __future__ import annotations

import torch  # noqa: F401
from torch import nn


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head `n_rep` times along the head axis.

    x has shape (B, H_kv, L, D); the result has shape (B, H_kv * n_rep, L, D) and its head
    h is x's head h // n_rep. That is, kv head j serves query heads j*n_rep, j*n_rep + 1, ...,
    (j+1)*n_rep - 1: for H_kv = 2, n_rep = 2 the heads come out in the order 0, 0, 1, 1 (not
    0, 1, 0, 1). Same as transformers' `repeat_kv` and torch.repeat_interleave(x, n_rep, dim=1).
    n_rep = 1 returns x unchanged (the same values; a copy is fine).
    """
    raise NotImplementedError


class GroupedQueryAttention(nn.Module):
    """Causal grouped-query self-attention with half-split rotary position embeddings."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int | None = None,
        rope_theta: float = 10000.0,
    ) -> None:
        """Build the four projections; num_heads must be a multiple of num_kv_heads.

        head_dim defaults to hidden_size // num_heads; it may be given explicitly, and then
        num_heads * head_dim need not equal hidden_size. head_dim is even (RoPE needs pairs).

        Parameters, exactly these four `nn.Linear` layers with bias=False (same names, shapes
        and (out_features, in_features) weight layout as LlamaAttention):
            q_proj: hidden_size -> num_heads * head_dim
            k_proj: hidden_size -> num_kv_heads * head_dim
            v_proj: hidden_size -> num_kv_heads * head_dim
            o_proj: num_heads * head_dim -> hidden_size
        so `state_dict()` has exactly the keys q_proj.weight, k_proj.weight, v_proj.weight
        and o_proj.weight. Any cached tensor (e.g. RoPE frequencies) must not appear in the
        state dict: compute it in forward, or register it with `persistent=False`.
        Initialise the weights any way you like (nn.Linear's default is fine): the judge
        loads its own with `load_state_dict`.
        """
        super().__init__()
        raise NotImplementedError

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention over hidden_states (B, L, hidden_size); returns (B, L, hidden_size).

        Steps, in this order:
        1. Project: q = q_proj(x), k = k_proj(x), v = v_proj(x), and split the last axis into
           heads: head h of q is features h*head_dim .. (h+1)*head_dim - 1. Shapes
           (B, num_heads, L, head_dim) for q and (B, num_kv_heads, L, head_dim) for k and v.
        2. RoPE on q and k only (never on v), half-split layout (Llama / GPT-NeoX):
           with D = head_dim, inv_freq[i] = 1 / rope_theta ** (2i / D) for i = 0 .. D/2 - 1,
           the angle of position p is p * inv_freq[i], computed in float32, and feature i is
           rotated together with feature i + D/2 (not with feature i + 1):
               out[..., :D/2] = x1 * cos - x2 * sin,   out[..., D/2:] = x2 * cos + x1 * sin
           where x1 = x[..., :D/2], x2 = x[..., D/2:]. Equivalently
           out = x * cat(cos, cos) + cat(-x2, x1) * cat(sin, sin).
           The position p of token t in batch row b is position_ids[b, t] (an int64 tensor
           (B, L), e.g. with an offset, or with left padding); None means 0, 1, ..., L-1 in
           every row.
        3. Repeat k and v with `repeat_kv` so that each kv head serves its group of query heads.
        4. Scores q @ k^T scaled by 1 / sqrt(head_dim) (head_dim, not hidden_size), shape
           (B, num_heads, L, L). Then, if attention_mask is given, add it: a float tensor of
           shape (B, 1, L, L) (broadcast over heads), 0 where allowed and a large negative
           number (e.g. torch.finfo(torch.float32).min) where masked, or any additive bias;
           it is added to the scaled scores, after the scaling. The causal mask is always
           applied as well, whatever attention_mask is: query t never sees keys after t.
        5. Softmax over the keys, weighted sum of v, merge heads back to
           (B, L, num_heads * head_dim) (head h in features h*head_dim ..), then o_proj.

        Query rows whose every key is masked (e.g. padding tokens under left padding) may
        hold any finite values: they are not checked.
        """
        raise NotImplementedError
