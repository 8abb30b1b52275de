"""Checks for foundations.softmax: parity with torch.nn.functional, overflow, numpy inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grader.compare import assert_close

TOL = {"atol": 1e-6, "rtol": 1e-5}


@pytest.mark.points(2)
def test_softmax_matches_torch(solution, rng, mistakes):
    x = rng.randn(4, 7, scale=3.0)
    for dim in (-1, 0, 1):
        got = solution.softmax(x, dim=dim)
        assert_close(got, F.softmax(x, dim=dim), **TOL, name=f"softmax(x of shape (4, 7), dim={dim})",
                     mistakes=mistakes(lambda m, d=dim: m.softmax(x, dim=d)))


@pytest.mark.points(2)
def test_softmax_near_overflow(solution, rng, mistakes):
    x = rng.randn(3, 5) * 50 + 1000.0
    x[0, 0] = -1000.0
    got = solution.softmax(x)
    assert_close(got, F.softmax(x, dim=-1), **TOL, name="softmax of logits near 1000",
                 mistakes=mistakes(lambda m: m.softmax(x)))


def test_softmax_masked_entries(solution, rng, mistakes):
    x = rng.randn(2, 6)
    x[:, 1] = float("-inf")
    x[1, 4] = float("-inf")
    got = solution.softmax(x)
    assert_close(got, F.softmax(x, dim=-1), **TOL, name="softmax with -inf (masked) entries",
                 mistakes=mistakes(lambda m: m.softmax(x)))


@pytest.mark.points(2)
def test_log_softmax_matches_torch(solution, rng, mistakes):
    x = rng.randn(5, 9, scale=4.0)
    x[0] = x[0] * 100  # spread rows: tiny probabilities whose log must stay finite
    for dim in (-1, 0):
        got = solution.log_softmax(x, dim=dim)
        assert_close(got, F.log_softmax(x, dim=dim), atol=1e-5, rtol=1e-5,
                     name=f"log_softmax(x, dim={dim})", mistakes=mistakes(lambda m, d=dim: m.log_softmax(x, dim=d)))


@pytest.mark.points(2)
def test_logsumexp_matches_torch(solution, rng, mistakes):
    x = rng.randn(3, 4, 5, scale=2.0)
    x[1, 2] += 500.0
    for dim, keepdim in ((-1, False), (1, True), (0, False)):
        got = solution.logsumexp(x, dim=dim, keepdim=keepdim)
        assert_close(got, torch.logsumexp(x, dim=dim, keepdim=keepdim), atol=1e-5, rtol=1e-6,
                     name=f"logsumexp(x, dim={dim}, keepdim={keepdim})",
                     mistakes=mistakes(lambda m, d=dim, k=keepdim: m.logsumexp(x, dim=d, keepdim=k)))


def test_logsumexp_all_masked_slice(solution, rng):
    x = rng.randn(3, 4)
    x[2] = float("-inf")
    got = solution.logsumexp(x, dim=-1)
    assert_close(got, torch.logsumexp(x, dim=-1), atol=1e-6, rtol=1e-6,
                 name="logsumexp of a row that is all -inf")


def test_length_one_axis(solution, rng):
    x = rng.randn(3, 1)
    assert_close(solution.softmax(x, dim=-1), torch.ones(3, 1), **TOL, name="softmax over an axis of length 1")
    assert_close(solution.log_softmax(x, dim=-1), torch.zeros(3, 1), **TOL,
                 name="log_softmax over an axis of length 1")


@pytest.mark.points(2)
def test_numpy_inputs_keep_type_and_dtype(solution, rng, mistakes):
    x = rng.np.standard_normal((6, 3)) * 10  # float64
    x32 = x.astype(np.float32)
    t = torch.from_numpy(x)
    assert_close(solution.softmax(x, dim=0), F.softmax(t, dim=0).numpy(), atol=1e-12, rtol=1e-10,
                 name="softmax of a float64 numpy array", mistakes=mistakes(lambda m: m.softmax(x, dim=0)))
    assert_close(solution.log_softmax(x32), F.log_softmax(torch.from_numpy(x32), -1).numpy(), **TOL,
                 name="log_softmax of a float32 numpy array")
    assert_close(solution.logsumexp(x, dim=1), torch.logsumexp(t, dim=1).numpy(), atol=1e-12, rtol=1e-10,
                 name="logsumexp of a float64 numpy array")
