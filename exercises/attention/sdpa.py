"""Scaled dot-product attention, exactly as torch.nn.functional.scaled_dot_product_attention.

    attention(q, k, v) = softmax(q @ k^T * scale + bias, over the keys) @ v

You reimplement the math of `torch.nn.functional.scaled_dot_product_attention` with dropout 0
(its "math" backend). That function, its private variants and nn.MultiheadAttention are
forbidden; build it from matmul, masking and softmax yourself (torch.softmax is allowed).

Shapes (all inputs are torch tensors on the same device, same floating dtype):
- q: (..., L, E)   L queries of head dimension E
- k: (..., S, E)   S keys of the same head dimension E
- v: (..., S, Ev)  S values of head dimension Ev (Ev may differ from E)
- "..." are any number (zero or more) of batch dimensions, e.g. (batch, heads); k and v
  have the same batch dimensions as q (or dimensions that broadcast against them).
- returns: (..., L, Ev), same dtype as q.
L, S, E and Ev can be any positive sizes, not only powers of two; L = 1 (one query, as when
decoding token by token) and L != S (L < S and L > S) must work.

Conventions:
- scale: the attention logits are (q @ k^T) * scale with scale = 1 / sqrt(E) by default
  (E = q.size(-1), the query/key head dimension, NOT the value dimension Ev). A `scale`
  argument that is not None replaces the default as it is (it is not square-rooted).
- attn_mask (optional), broadcastable to the logits' shape (..., L, S), one of:
  * a boolean tensor where True means the key TAKES PART in attention for that query and
    False means it is masked out (logit set to -inf). This is the OPPOSITE of
    nn.MultiheadAttention's `key_padding_mask`, where True means "ignore this key".
  * a floating tensor (same dtype as q) ADDED to the already scaled logits:
    softmax(q @ k^T * scale + attn_mask). The mask is not multiplied by `scale`.
    Entries of -inf remove a key; finite entries are biases (e.g. ALiBi).
  A mask of shape (L, S) applies to every batch and head; (B, 1, 1, S) is a per-sequence
  key padding mask; (B, H, L, S) is fully general.
- is_causal=True: query i may attend to key j only when j <= i (a lower-triangular mask
  whose diagonal is kept), aligned at the TOP-LEFT corner even when L != S, exactly like
  torch.ones(L, S, dtype=torch.bool).tril(). So with L = 1 and is_causal=True the single
  query sees only key 0; with L > S the queries i >= S see every key. Passing both
  is_causal=True and an attn_mask is an error in torch and is never checked.
- softmax over the KEY axis (the last one): each query's weights sum to 1.
- Numerically stable: logits of several hundred (large activations, or scale=10) must give
  finite, correct results in float32; float64 inputs are computed in float64.
- A query row whose keys are ALL masked out (a boolean mask row all False, or a float mask
  row all -inf) has no valid distribution; torch 2.x returns a row of ZEROS for it (not NaN),
  and so must you. One check tests this; every other check gives each query at least one key.
- The result must be differentiable with torch autograd with respect to q, k and v (use
  torch operations, no numpy, no in-place changes of the inputs); gradients are compared
  with torch's.
- Do not modify the inputs.
"""

from __future__ import annotations

import math  # noqa: F401

import torch


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q @ k^T * scale + mask) @ v over the keys; returns only the output (..., L, Ev).

    q (..., L, E), k (..., S, E), v (..., S, Ev). `attn_mask`: None, a boolean tensor
    (True = attend) or a float tensor added to the scaled logits, broadcastable to
    (..., L, S). `is_causal`: keep key j for query i iff j <= i (top-left aligned).
    `scale`: None means 1 / sqrt(E). Fully masked query rows give zeros.
    """
    raise NotImplementedError
