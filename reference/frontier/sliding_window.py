"""Sliding-window and attention-sink masks (Mistral, StreamingLLM), and attention under them.

Conventions shared by every function here:

- Positions: query row r is the token at absolute position i = offset + r, key column j is
  the token at absolute position j (keys 0 .. offset + n_q - 1: the `offset` cached keys,
  then the queries' own keys). offset = 0 is the usual square (n_q, n_q) prefill mask;
  offset > 0 is a block of new queries after `offset` cached tokens (a decode step has n_q = 1).
- True means "may attend". Masks are torch.bool of shape (n_q, offset + n_q).
- A window of W counts the query's own position (Mistral's convention, as
  transformers.masking_utils.sliding_window_overlay: `kv_idx > q_idx - W`): query i sees the
  W keys i-W+1 .. i (fewer near the start). W = 1 sees only itself; W >= i + 1 is plain causal.
- Sinks (StreamingLLM): the first n_sink keys 0 .. n_sink-1 are visible to every query IN
  ADDITION to its window (the window is not shrunk by the sinks), but never from the future:
  query i sees sink j only if j <= i.
"""

from __future__ import annotations

import torch


def sliding_window_mask(n_q: int, window: int, offset: int = 0) -> torch.Tensor:
    """Causal sliding-window mask, torch.bool of shape (n_q, offset + n_q).

    Entry (r, j) is True iff j <= i and j > i - window, with i = offset + r: query i sees
    the keys max(0, i-window+1) .. i. `window` >= 1, `offset` >= 0, `n_q` >= 1.
    """
    i = offset + torch.arange(n_q)[:, None]  # absolute query positions, as a column
    j = torch.arange(offset + n_q)[None, :]  # absolute key positions, as a row
    return (j <= i) & (j > i - window)  # causal AND within the last `window` positions


def attention_sink_mask(n_q: int, window: int, n_sink: int, offset: int = 0) -> torch.Tensor:
    """Sliding window plus attention sinks, torch.bool of shape (n_q, offset + n_q).

    Entry (r, j) is True iff j <= i and (j > i - window or j < n_sink), with i = offset + r:
    the sliding_window_mask entries, plus the first n_sink keys, never a future one.
    n_sink = 0 gives sliding_window_mask. `window` >= 1, `n_sink` >= 0.
    """
    i = offset + torch.arange(n_q)[:, None]
    j = torch.arange(offset + n_q)[None, :]
    sink = j < n_sink
    return (j <= i) & ((j > i - window) | sink)  # sinks add to the window, never the future


def sliding_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, n_sink: int = 0
) -> torch.Tensor:
    """Attention under attention_sink_mask, in float32.

    q: (..., n_q, d); k, v: (..., n_k, d) with n_k >= n_q and the same leading dims. The
    queries are the LAST n_q positions (offset = n_k - n_q: the keys before them are cached),
    so the mask is attention_sink_mask(n_q, window, n_sink, offset=n_k - n_q).
    Returns softmax(q @ k^T / sqrt(d) with blocked scores removed) @ v, shape (..., n_q, d),
    float32: blocked keys get exactly zero weight. Every row has at least its own key, so
    the output is always finite.
    """
    n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
    mask = attention_sink_mask(n_q, window, n_sink, offset=n_k - n_q).to(q.device)
    scores = q.float() @ k.float().transpose(-2, -1) / d**0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v.float()
