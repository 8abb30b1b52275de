"""Multi-head attention, with one fused q/k/v projection or three separate ones.

Implement `MultiHeadAttention` so that, given the same weights, it returns exactly what
`torch.nn.MultiheadAttention(embed_dim, num_heads, bias=bias, dropout=0.0, batch_first=True)`
returns with `average_attn_weights=True`. The checks build your module, load weights into
it with `load_state_dict` (strict), and compare with that torch module holding the same
weights. You may not use torch.nn.MultiheadAttention,
torch.nn.functional.multi_head_attention_forward or
torch.nn.functional.scaled_dot_product_attention; nn.Linear, torch.nn.functional.linear,
softmax, matmul, reshape and the like are all fine.

Parameters (exactly these names, as `state_dict()` lists them; nothing else is registered,
no buffers). E = embed_dim, all Linear layers in PyTorch's (out_features, in_features)
weight layout, y = x @ W.T + b:
- fused=True:
    in_proj.weight  (3E, E)   rows [0, E) project the query, [E, 2E) the key, [2E, 3E)
                              the value: the layout of nn.MultiheadAttention's in_proj_weight
    in_proj.bias    (3E,)     same q, k, v order
    out_proj.weight (E, E)
    out_proj.bias   (E,)
- fused=False:
    q_proj.weight, k_proj.weight, v_proj.weight, out_proj.weight   each (E, E)
    q_proj.bias,   k_proj.bias,   v_proj.bias,   out_proj.bias     each (E,)
- bias=False: none of the `.bias` entries exist (the Linear layers have bias=False).

Computation, with H = num_heads and head dimension d = E // H (E is divisible by H; E need
not be a power of two, e.g. E=36 with H=3):
1. q = query projected with the query weights, k = key with the key weights, v = value with
   the value weights. With fused=True the key and value are projected with their own row
   blocks of in_proj even when query, key and value are different tensors (cross-attention).
2. Split the last axis into H heads of d consecutive features each: feature h*d + j is
   feature j of head h. (B, L, E) -> (B, H, L, d), and likewise for k and v.
3. scores = q @ k^T / sqrt(d)  (per head, shape (B, H, L, S); the scale uses the head
   dimension d, not E).
4. attn_mask, if given, is applied to every batch element and head; key_padding_mask, if
   given, to every query position and head: a masked score becomes -inf; a float attn_mask
   is added to the scores.
5. weights = softmax over the key axis S; out = weights @ v, heads merged back to (B, L, E)
   in the order of step 2, then out_proj.

No dropout. Inputs are float32. A query row whose keys are all masked gives NaN in
nn.MultiheadAttention; the checks never build one.
"""

from __future__ import annotations

import math  # noqa: F401

import torch
import torch.nn.functional as F  # noqa: F401
from torch import nn


class MultiHeadAttention(nn.Module):
    """Multi-head attention on batch-first tensors; see the module docstring for the weights."""

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, fused: bool = True) -> None:
        """Create the projections.

        embed_dim: E, the model width (input and output feature size).
        num_heads: H; E must be divisible by H (raise ValueError otherwise).
        bias: whether every projection (in_proj / q,k,v_proj, and out_proj) has a bias.
        fused: True -> one `in_proj = nn.Linear(E, 3E)` holding q, k, v in that order;
            False -> separate `q_proj`, `k_proj`, `v_proj = nn.Linear(E, E)`.
            Both have `out_proj = nn.Linear(E, E)`.
        """
        super().__init__()
        raise NotImplementedError

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from `query` to `key`/`value`.

        query: (B, L, E) float32; key and value: (B, S, E) (S may differ from L; for
            self-attention all three are the same tensor, for cross-attention they are not).
        key_padding_mask: None or (B, S) bool. True means IGNORE that key (a padding token)
            for every query of that batch element: nn.MultiheadAttention's convention, the
            opposite of F.scaled_dot_product_attention's boolean mask.
        attn_mask: None or (L, S), shared by all batch elements and heads. Either bool, where
            True means the query may NOT attend to that key (nn.MultiheadAttention's
            convention; a causal mask is True above the diagonal), or float, which is added
            to the scaled scores (use -inf to forbid). It may be combined with
            key_padding_mask.
        need_weights: note the default is False here (nn.MultiheadAttention's is True).

        Returns (output, attn_weights):
            output: (B, L, E), after out_proj.
            attn_weights: None if need_weights is False; otherwise (B, L, S), the softmax
                weights AVERAGED (mean) over the H heads, as nn.MultiheadAttention returns
                with average_attn_weights=True. Each row sums to 1; masked keys get 0.
        """
        raise NotImplementedError
