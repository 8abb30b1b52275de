"""The causal language-modelling loss: shift, ignore_index, and the token-level mean.

A causal LM reads tokens x_0 .. x_{T-1} and at every position t outputs logits for the NEXT
token. So the logits at position t are scored against the token at position t + 1:

    logits[:, t]  predicts  labels[:, t + 1]        for t = 0 .. T-2

The logits at the last position (t = T-1) have no next token and are never scored, and
labels[:, 0] is never a target. This is exactly what Hugging Face models compute when you
call `model(input_ids, labels=labels)`: transformers' `ForCausalLMLoss` with
`num_items_in_batch=None` (transformers/loss/loss_utils.py), and this exercise is judged
against that `loss`.

Shapes and dtypes:
- `logits`: floating-point tensor (B, T, V) (float32, float64, bfloat16 or float16), T >= 1.
- `labels` and `input_ids`: int64 (torch.long) tensors (B, T). `labels` are NOT shifted:
  labels[:, t] is the token at position t (usually input_ids[:, t]) or `ignore_index`
  for a position that must not be a target (a prompt token, padding). `ignore_index` may be
  any integer, even a real token id (then that token is never a target).
- The loss is computed in float32: upcast the logits with `logits.float()` before the
  log-softmax, whatever their dtype (as HF does): float64 logits are computed in float32
  too. Every returned loss is float32, also for bfloat16 and float64 logits.
- The losses stay differentiable with respect to `logits` (do not detach them).
- Inputs are never modified in place.

Reduction (the part people get wrong): `causal_lm_loss` is the mean over ALL non-ignored
target positions of the whole batch, i.e.

    sum over (b, t) with labels[b, t+1] != ignore_index of -log softmax(logits[b, t])[labels[b, t+1]]
    -----------------------------------------------------------------------------------------------
                       number of (b, t) with labels[b, t+1] != ignore_index

It is NOT the mean over sequences of each sequence's mean: a sequence with 30 targets
weighs 30 times as much as one with a single target. Ignored positions are not counted in
the denominator. With no target at all (every label ignored, or T == 1) it is 0 / 0 = NaN,
as HF and torch.nn.functional.cross_entropy return.

You may use torch.nn.functional.cross_entropy (or log_softmax): this exercise is about the
shift and the reduction, not about the log-softmax itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401


def shift_labels(
    input_ids: torch.Tensor,
    pad_token_id: int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Targets aligned with the logits: out[:, t] is the target of logits[:, t].

    Returns a new int64 tensor of shape (B, T) with
        out[:, t]   = input_ids[:, t + 1]   for t = 0 .. T-2
        out[:, T-1] = ignore_index          (nothing follows the last token)
    and then every entry whose TARGET token input_ids[:, t + 1] equals `pad_token_id`
    replaced by `ignore_index` (padding is never predicted, on the left or on the right).
    `pad_token_id=None` masks nothing. No wrap-around: the last position never gets
    input_ids[:, 0].

    This is HF's `shift_labels` (the `shift_labels=` argument of `ForCausalLMLoss`): scoring
    logits[:, t] against out[:, t] at EVERY position t gives the same loss as
    `causal_lm_loss(logits, labels)` with labels = input_ids where padding is `ignore_index`.
    `input_ids` may itself already contain `ignore_index` entries; they are shifted as is.
    """
    raise NotImplementedError


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    """The causal-LM loss of `logits` (B, T, V) against unshifted `labels` (B, T).

    Scores logits[:, :-1] against labels[:, 1:] (float32, upcast first) and returns a 0-d
    float32 tensor: the mean over every non-ignored target position in the batch (one
    denominator for the whole batch, not a mean of per-sequence means). NaN when no target
    is counted. Equals `model(input_ids, labels=labels).loss` of a Hugging Face causal LM.
    """
    raise NotImplementedError


def causal_lm_loss_per_sequence(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    """One loss per sequence: a float32 tensor of shape (B,).

    out[b] is the mean over sequence b's OWN non-ignored targets (labels[b, 1:] that are not
    `ignore_index`) of -log softmax(logits[b, t])[labels[b, t+1]], with the same shift and
    float32 upcast as `causal_lm_loss`. A sequence with no counted target gets NaN (0 / 0),
    exactly what `causal_lm_loss` returns for that sequence alone: out[b] equals
    causal_lm_loss(logits[b:b+1], labels[b:b+1]).
    """
    raise NotImplementedError
