"""Cross-entropy loss from logits, and its gradient with respect to the logits.

Shapes and dtypes:
- `logits` is a floating-point torch tensor (float32 or float64) of shape (..., C): the
  class dimension is the LAST one (unlike torch.nn.functional.cross_entropy, which wants
  it at dim 1). Any number of leading dimensions is allowed, including none: a single
  example of shape (C,) with a 0-d target.
- `targets` is an int64 (torch.long) tensor of shape (...), the logits' shape without its
  last dimension. Each entry is a class index in [0, C) or equal to `ignore_index`.
- Every returned tensor has the dtype of `logits`. float64 logits are computed in float64
  throughout, constants included (never through a float32 tensor): float64 results are
  compared to about 1e-10 relative, and one float32 rounding is ~6e-8.

The loss at one position is -log(softmax(logits)[target]) = logsumexp(logits) - logits[target].
Positions whose target equals `ignore_index` are ignored: their loss is 0 and they get no
gradient. `ignore_index` may be any integer, even a valid class index (then that class is
ignored).

Reductions, matching torch.nn.functional.cross_entropy (no class weights, no smoothing):
- "none": the per-position losses, shape (...); ignored positions are 0.
- "sum":  a 0-d tensor, the sum of the per-position losses (0 when all are ignored).
- "mean": a 0-d tensor, the sum divided by the number of NON-ignored positions. When every
  position is ignored (or there are none) this is 0 / 0 = NaN, exactly as torch returns.
Any other `reduction` raises ValueError.

Numerics: compute log-probabilities as (x - max) - log(sum(exp(x - max))) along the class
dimension, so logits near 1000 (float32) and targets far below the maximum give finite,
correct losses. Never take log(softmax(x)).

Use elementwise operations, reductions, indexing and gather only: do not call
F.cross_entropy, F.nll_loss, F.log_softmax, F.softmax, torch.log_softmax, torch.softmax,
or autograd (`backward`, `torch.autograd`) in this module.
"""

from __future__ import annotations

import torch


def cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of `logits` (..., C) against integer `targets` (...).

    Returns a 0-d tensor for "mean" and "sum", and a tensor of shape (...) for "none",
    with the dtype of `logits`. "mean" divides by the number of non-ignored positions and
    is NaN when that number is 0; ignored positions contribute 0 to every reduction.
    """
    raise NotImplementedError


def cross_entropy_grad(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """d loss / d logits, computed analytically; same shape (..., C) and dtype as `logits`.

    For a non-ignored position the gradient of its own loss is softmax(logits) - one_hot(target)
    along the last dimension; ignored positions' rows are exactly 0.
    - "sum":  those rows as they are.
    - "mean": those rows divided by the number of non-ignored positions. When every position
      is ignored the gradient is all zeros (what autograd gives for torch's NaN loss).
    - "none": the loss is not a scalar; return the gradient of the SUM of the per-position
      losses, i.e. each row is the gradient of that position's own loss (the same as "sum";
      what autograd gives when backpropagating a gradient of ones).
    Any other `reduction` raises ValueError. Must be finite for logits near 1000.
    """
    raise NotImplementedError
