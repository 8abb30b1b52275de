"""Numerically stable softmax, log-softmax and logsumexp for torch tensors and numpy arrays."""

from __future__ import annotations

import numpy as np
import torch


def _max_and_shift(x, dim):
    """The maximum along `dim` (kept as a size-1 axis; -inf and inf become 0) and x minus it."""
    if isinstance(x, torch.Tensor):
        m = x.amax(dim=dim, keepdim=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    else:
        m = np.max(x, axis=dim, keepdims=True)
        m = np.where(np.isfinite(m), m, np.zeros_like(m))
    return m, x - m


def _sum(x, dim):
    if isinstance(x, torch.Tensor):
        return x.sum(dim=dim, keepdim=True)
    return np.sum(x, axis=dim, keepdims=True)


def _exp(x):
    return torch.exp(x) if isinstance(x, torch.Tensor) else np.exp(x)


def _log(x):
    return torch.log(x) if isinstance(x, torch.Tensor) else np.log(x)


def softmax(x, dim=-1):
    _, z = _max_and_shift(x, dim)
    e = _exp(z)
    return e / _sum(e, dim)


def log_softmax(x, dim=-1):
    _, z = _max_and_shift(x, dim)
    return z - _log(_sum(_exp(z), dim))


def logsumexp(x, dim=-1, keepdim=False):
    m, z = _max_and_shift(x, dim)
    out = m + _log(_sum(_exp(z), dim))
    if keepdim:
        return out
    return out.squeeze(dim) if isinstance(out, torch.Tensor) else np.squeeze(out, axis=dim)
