"""Attention masks: causal, key padding (right and left), combined, and additive.

Conventions shared by every function:
- A boolean mask uses True = "this query MAY attend to this key" and False = "blocked". This is
  the convention of `torch.nn.functional.scaled_dot_product_attention`'s boolean `attn_mask`
  (the opposite of `torch.nn.MultiheadAttention`'s `key_padding_mask`, where True means ignore).
- Boolean masks have dtype `torch.bool`. Axis order is always (..., query, key): entry [i, j]
  says whether query position i may look at key position j.
- `lengths` is a 1-D integer tensor of shape (B,) with 1 <= lengths[b] <= S: the number of real
  (non-pad) tokens in sequence b. Masks built from `lengths` live on `lengths.device`.
- Every returned tensor is a new tensor (not a view of an input) with exactly the stated shape.
"""

from __future__ import annotations

import torch  # noqa: F401


def causal_mask(
    L: int, S: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Causal mask of shape (L, S), dtype torch.bool, on `device` (None means the CPU).

    `S` defaults to `L`. Query i may attend to key j iff j <= i: a token sees itself and every
    earlier token, never a later one. The triangle is TOP-LEFT aligned, exactly like
    `scaled_dot_product_attention(..., is_causal=True)` and `torch.ones(L, S).tril()`: row 0
    always sees key 0 only, whatever S is. So for S > L the keys j > L - 1 are blocked for every
    query, and for S < L the rows i >= S - 1 see all S keys.
    """
    raise NotImplementedError


def padding_mask(lengths: torch.Tensor, S: int) -> torch.Tensor:
    """Key-padding mask for RIGHT-padded sequences: shape (B, S), dtype torch.bool.

    Sequence b holds its real tokens at positions 0 .. lengths[b] - 1 and padding after them, so
    mask[b, j] is True iff j < lengths[b]. A sequence with lengths[b] == S has no padding.
    """
    raise NotImplementedError


def left_padding_mask(lengths: torch.Tensor, S: int) -> torch.Tensor:
    """Key-padding mask for LEFT-padded sequences: shape (B, S), dtype torch.bool.

    Sequence b holds its padding first and its real tokens at the END, at positions
    S - lengths[b] .. S - 1, so mask[b, j] is True iff j >= S - lengths[b].
    """
    raise NotImplementedError


def combined_mask(lengths: torch.Tensor, L: int, causal: bool = True) -> torch.Tensor:
    """Mask for self-attention over a right-padded batch: shape (B, 1, L, L), dtype torch.bool.

    The size-1 axis 1 broadcasts over attention heads, so the result can be passed directly as
    `attn_mask` for queries/keys of shape (B, H, L, D). Entry [b, 0, i, j] is True iff key j is
    a real token (j < lengths[b], right padding as in `padding_mask`) AND, when `causal` is True,
    j <= i (as in `causal_mask`). With `causal=False` only the key padding applies.

    Only KEYS are masked: a padded query row i >= lengths[b] is not blocked as a whole, it keeps
    the real keys the rule allows (at least key 0), so no row is all False. Its output is
    meaningless and is ignored downstream (by the loss), but it stays finite.
    """
    raise NotImplementedError


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn a boolean mask into an additive one (added to the attention scores before softmax).

    Same shape and device as `mask`, floating dtype `dtype`: 0.0 where `mask` is True and
    float("-inf") where it is False. Use -inf itself, not a large finite negative number such
    as -1e9 or torch.finfo(dtype).min.
    """
    raise NotImplementedError
