"""Checks for foundations.layernorm_backward: F.layer_norm forward and autograd gradients.

Ground truth is torch.nn.functional.layer_norm, differentiated by torch autograd in the
judge, always in float64 (cast to the input dtype for float32 cases) so the reference
values carry no float32 rounding of their own.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grader.compare import check

# float64: the analytic formulas agree with autograd to a few ulps.
TIGHT = {"atol": 1e-10, "rtol": 1e-9}
# float32 with ordinary (unit-scale) inputs.
LOOSE = {"atol": 2e-5, "rtol": 1e-5}
# Sums over many rows (grad_weight, grad_bias) grow with the row count.
LOOSE_SUM = {"atol": 2e-4, "rtol": 1e-5}


def _params(rng: Any, d: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # A weight away from 1 so a grad_x that forgets it shows; a non-zero bias.
    weight = 1.0 + rng.randn(d, dtype=torch.float64, scale=0.5)
    bias = rng.randn(d, dtype=torch.float64)
    return weight.to(dtype), bias.to(dtype)


def _truth(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, gy: torch.Tensor | None,
           eps: float = 1e-5):
    """y, grad_x, grad_weight, grad_bias from F.layer_norm + autograd in float64."""
    xs, ws, bs = (t.detach().to(torch.float64).clone().requires_grad_(True) for t in (x, w, b))
    y = F.layer_norm(xs, (x.shape[-1],), ws, bs, eps)
    if gy is None:  # forward only
        return y.detach().to(x.dtype), None, None, None
    y.backward(gy.to(torch.float64))
    return tuple(t.detach().to(x.dtype) for t in (y, xs.grad, ws.grad, bs.grad))


def _forward(module: Any, x, w, b, eps: float):
    out = module.layernorm_forward(x, w, b, eps)
    check(isinstance(out, (tuple, list)) and len(out) == 2,
          "layernorm_forward must return a tuple (y, cache)")
    return out[0], out[1]


def _backward(module: Any, gy, cache):
    out = module.layernorm_backward(gy, cache)
    check(isinstance(out, (tuple, list)) and len(out) == 3,
          "layernorm_backward must return a tuple (grad_x, grad_weight, grad_bias)")
    return out


def _grads(m: Any, x, w, b, gy, eps: float):
    """What a module's backward returns for its own forward's cache (a known mistake, replayed)."""
    return m.layernorm_backward(gy, m.layernorm_forward(x, w, b, eps)[1])


def _check_all(expect, x, w, b, gy, *, what: str, eps: float = 1e-5,
               tol: dict, tol_sum: dict, forward_only: bool = False) -> None:
    """Compare y and the three gradients of the student's LayerNorm with the ground truth."""
    y_true, *grads_true = _truth(x, w, b, gy, eps)
    y, cache = _forward(expect.solution, x, w, b, eps)
    expect.compare(y, y_true, lambda m: m.layernorm_forward(x, w, b, eps)[0], **tol,
                   name=f"layernorm_forward(...)[0], y for {what}")
    if forward_only:
        return
    got = _backward(expect.solution, gy, cache)
    for i, (label, t) in enumerate((("grad_x", tol), ("grad_weight", tol_sum), ("grad_bias", tol_sum))):
        expect.compare(got[i], grads_true[i], lambda m, i=i: _grads(m, x, w, b, gy, eps)[i], **t,
                       name=f"{label} for {what}")


@pytest.mark.points(2)
def test_forward_matches_f_layer_norm(expect, rng):
    for d in (37, 64):
        x = rng.randn(6, d, dtype=torch.float64, scale=2.0) + 0.5
        w, b = _params(rng, d, torch.float64)
        _check_all(expect, x, w, b, None, what=f"float64 x of shape (6, {d})",
                   tol=TIGHT, tol_sum=TIGHT, forward_only=True)
    # A non-default eps must be used, and used the same way.
    x = rng.randn(5, 19, dtype=torch.float64, scale=0.1)
    w, b = _params(rng, 19, torch.float64)
    _check_all(expect, x, w, b, None, what="float64 x of shape (5, 19), eps=1e-3",
               eps=1e-3, tol=TIGHT, tol_sum=TIGHT, forward_only=True)


@pytest.mark.points(3)
def test_backward_matches_autograd_float64(expect, rng):
    for d in (37, 128):
        x = rng.randn(7, d, dtype=torch.float64, scale=1.5) - 0.3
        w, b = _params(rng, d, torch.float64)
        gy = rng.randn(7, d, dtype=torch.float64)
        _check_all(expect, x, w, b, gy, what=f"float64 x of shape (7, {d})",
                   tol=TIGHT, tol_sum=TIGHT)


@pytest.mark.points(2)
def test_3d_batch_seq_hidden(expect, rng):
    # (batch, seq, hidden): grad_weight/grad_bias sum over batch AND seq.
    x = rng.randn(3, 5, 48, dtype=torch.float64)
    w, b = _params(rng, 48, torch.float64)
    gy = rng.randn(3, 5, 48, dtype=torch.float64)
    _check_all(expect, x, w, b, gy, what="float64 x of shape (3, 5, 48)",
               tol=TIGHT, tol_sum=TIGHT)


@pytest.mark.points(2)
def test_float32_keeps_dtype(expect, rng):
    for shape in ((16, 33), (2, 9, 40)):
        x = rng.randn(*shape, scale=3.0) + 1.0
        w, b = _params(rng, shape[-1], torch.float32)
        gy = rng.randn(*shape)
        _check_all(expect, x, w, b, gy, what=f"float32 x of shape {shape}",
                   tol=LOOSE, tol_sum=LOOSE_SUM)


def test_normalized_size_one(expect, rng):
    # D == 1: every row is its own mean, so y == bias and grad_x == 0 (autograd agrees).
    for dtype in (torch.float64, torch.float32):
        x = rng.randn(4, 3, 1, dtype=dtype, scale=5.0)
        w, b = _params(rng, 1, dtype)
        gy = rng.randn(4, 3, 1, dtype=dtype)
        # Each dtype its own tolerance: y == bias and grad_x == 0 hold exactly for the usual
        # formulas, but a float32 result one rounding away must still pass.
        tol = TIGHT if dtype == torch.float64 else LOOSE
        _check_all(expect, x, w, b, gy, what=f"{dtype} x of shape (4, 3, 1) (D = 1)",
                   tol=tol, tol_sum=tol)


@pytest.mark.points(2)
def test_large_mean_inputs(expect, rng):
    # Rows around 1e4 with unit spread, float32: E[x^2] ~ 1e8 has rounding error ~ 8, so
    # var = E[x^2] - E[x]^2 is garbage (often negative); mean((x - mean)^2) stays accurate.
    # The tolerance allows for the float32 rounding of the mean itself (torch's own
    # float32 layer_norm is off by ~4e-3 here).
    x = (1e4 + rng.randn(8, 96, dtype=torch.float64)).to(torch.float32)
    w, b = _params(rng, 96, torch.float32)
    gy = rng.randn(8, 96)
    _check_all(expect, x, w, b, gy, what="float32 rows of mean 1e4 and std 1",
               tol={"atol": 2e-2, "rtol": 1e-2}, tol_sum={"atol": 5e-2, "rtol": 1e-2})


@pytest.mark.points(2)
def test_eps_with_tiny_variance(expect, rng):
    # Variances of 1e-6 .. 1e-4 are comparable to eps, so where eps goes changes the answer.
    d = 24
    scales = torch.tensor([1e-3, 3e-3, 1e-2, 1e-3], dtype=torch.float64).unsqueeze(-1)
    x = rng.randn(4, d, dtype=torch.float64) * scales + 2.0
    w, b = _params(rng, d, torch.float64)
    gy = rng.randn(4, d, dtype=torch.float64)
    for eps in (1e-5, 1e-4):
        _check_all(expect, x, w, b, gy, what=f"rows with std 1e-3..1e-2, eps={eps:g}",
                   eps=eps, tol={"atol": 1e-9, "rtol": 1e-8}, tol_sum={"atol": 1e-9, "rtol": 1e-8})


@pytest.mark.hidden
def test_hidden_4d_input_with_a_constant_row(expect, rng):
    """A layout the public checks do not use: a 4-d input (2, 3, 4, 29), so grad_weight and
    grad_bias sum over three leading axes, with one row constant: its variance is exactly 0,
    y there is the bias and only eps keeps rstd (about 316) finite."""
    x = rng.randn(2, 3, 4, 29, dtype=torch.float64, scale=2.0) - 1.0
    x[1, 2, 3] = 3.0
    w, b = _params(rng, 29, torch.float64)
    gy = rng.randn(2, 3, 4, 29, dtype=torch.float64)
    _check_all(expect, x, w, b, gy, what="float64 x of shape (2, 3, 4, 29) with one constant row",
               tol=TIGHT, tol_sum=TIGHT)
