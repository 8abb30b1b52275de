"""Checks for foundations.softmax: parity with torch.nn.functional, overflow, numpy inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

TOL = {"atol": 1e-6, "rtol": 1e-5}


@pytest.mark.points(2)
def test_softmax_matches_torch(expect, rng):
    x = rng.randn(4, 7, scale=3.0)
    for dim in (-1, 0, 1):
        expect(lambda s, d=dim: s.softmax(x, dim=d), truth=F.softmax(x, dim=dim), **TOL,
               name=f"softmax(x of shape (4, 7), dim={dim})")


@pytest.mark.points(2)
def test_softmax_near_overflow(expect, rng):
    x = rng.randn(3, 5) * 50 + 1000.0
    x[0, 0] = -1000.0
    expect(lambda s: s.softmax(x), truth=F.softmax(x, dim=-1), **TOL, name="softmax of logits near 1000")


def test_softmax_masked_entries(expect, rng):
    x = rng.randn(2, 6)
    x[:, 1] = float("-inf")
    x[1, 4] = float("-inf")
    expect(lambda s: s.softmax(x), truth=F.softmax(x, dim=-1), **TOL, name="softmax with -inf (masked) entries")


@pytest.mark.points(2)
def test_log_softmax_matches_torch(expect, rng):
    x = rng.randn(5, 9, scale=4.0)
    x[0] = x[0] * 100  # spread rows: tiny probabilities whose log must stay finite
    for dim in (-1, 0):
        expect(lambda s, d=dim: s.log_softmax(x, dim=d), truth=F.log_softmax(x, dim=dim), atol=1e-5, rtol=1e-5,
               name=f"log_softmax(x, dim={dim})")


@pytest.mark.points(2)
def test_logsumexp_matches_torch(expect, rng):
    x = rng.randn(3, 4, 5, scale=2.0)
    x[1, 2] += 500.0
    for dim, keepdim in ((-1, False), (1, True), (0, False)):
        expect(lambda s, d=dim, k=keepdim: s.logsumexp(x, dim=d, keepdim=k),
               truth=torch.logsumexp(x, dim=dim, keepdim=keepdim), atol=1e-5, rtol=1e-6,
               name=f"logsumexp(x, dim={dim}, keepdim={keepdim})")


def test_logsumexp_all_masked_slice(expect, rng):
    x = rng.randn(3, 4)
    x[2] = float("-inf")
    expect(lambda s: s.logsumexp(x, dim=-1), truth=torch.logsumexp(x, dim=-1), atol=1e-6, rtol=1e-6,
           name="logsumexp of a row that is all -inf")


def test_length_one_axis(expect, rng):
    x = rng.randn(3, 1)
    expect(lambda s: s.softmax(x, dim=-1), truth=torch.ones(3, 1), **TOL, name="softmax over an axis of length 1")
    expect(lambda s: s.log_softmax(x, dim=-1), truth=torch.zeros(3, 1), **TOL,
           name="log_softmax over an axis of length 1")


@pytest.mark.points(2)
def test_numpy_inputs_keep_type_and_dtype(expect, rng):
    x = rng.np.standard_normal((6, 3)) * 10  # float64
    x32 = x.astype(np.float32)
    t = torch.from_numpy(x)
    expect(lambda s: s.softmax(x, dim=0), truth=F.softmax(t, dim=0).numpy(), atol=1e-12, rtol=1e-10,
           name="softmax of a float64 numpy array")
    expect(lambda s: s.log_softmax(x32), truth=F.log_softmax(torch.from_numpy(x32), -1).numpy(), **TOL,
           name="log_softmax of a float32 numpy array")
    expect(lambda s: s.logsumexp(x, dim=1), truth=torch.logsumexp(t, dim=1).numpy(), atol=1e-12, rtol=1e-10,
           name="logsumexp of a float64 numpy array")


@pytest.mark.hidden
def test_hidden_fresh_shapes_and_extremes(expect, rng):
    """Shapes and magnitudes the public checks do not use: a 3-d input over its middle axis,
    a length-1 batch, and rows near float32's overflow in both directions."""
    x = rng.randn(2, 13, 3, scale=5.0)
    x[1, :, 2] = x[1, :, 2] * 1e3 - 5e4
    expect(lambda s: s.softmax(x, dim=1), truth=F.softmax(x, dim=1), **TOL, name="softmax(x of shape (2, 13, 3), dim=1)")
    expect(lambda s: s.log_softmax(x, dim=1), truth=F.log_softmax(x, dim=1), atol=1e-5, rtol=1e-5,
           name="log_softmax(x of shape (2, 13, 3), dim=1)")
    y = rng.randn(1, 11, scale=2.0) + 3e38 / 4
    expect(lambda s: s.logsumexp(y, dim=-1), truth=torch.logsumexp(y, dim=-1), atol=1e-5, rtol=1e-6,
           name="logsumexp of one row near 7.5e37")
