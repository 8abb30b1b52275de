"""Stable softmax, log-softmax and logsumexp.

Every function takes either a `torch.Tensor` or a `numpy.ndarray` of floating point
values and returns the same type, with the same dtype, computed along axis `dim`
(negative values count from the end, as in torch).

Conventions:
- Numerically stable: subtract the maximum along `dim` before exponentiating, so inputs
  near the float overflow limit (|x| around 1000 in float32) give finite, correct results.
- A slice that contains -inf entries (masked positions) gets probability 0 for them; a
  slice whose entries are all -inf gives logsumexp -inf (as torch.logsumexp does).
- float64 inputs are computed in float64 throughout (never through float32): float64
  results are compared to about 1e-10 relative, and one float32 rounding is ~6e-8.
- Use only elementwise operations and reductions (exp, log, max, sum, subtraction);
  do not call torch.softmax, torch.log_softmax, torch.logsumexp or scipy.
"""

from __future__ import annotations

import numpy as np  # noqa: F401
import torch  # noqa: F401


def softmax(x, dim=-1):
    """exp(x_i) / sum_j exp(x_j) along `dim`; same shape, type and dtype as `x`."""
    raise NotImplementedError


def log_softmax(x, dim=-1):
    """log(softmax(x)) along `dim`, computed as x - logsumexp(x) so it never takes log(0)."""
    raise NotImplementedError


def logsumexp(x, dim=-1, keepdim=False):
    """log(sum_j exp(x_j)) along `dim`; that axis is removed unless `keepdim` is True."""
    raise NotImplementedError
