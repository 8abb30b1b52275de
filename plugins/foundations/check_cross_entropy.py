"""Checks for foundations.cross_entropy: parity with F.cross_entropy and with its autograd gradient."""

import pytest
import torch
import torch.nn.functional as F

LOSS_TOL = {"atol": 1e-5, "rtol": 1e-5}
GRAD_TOL = {"atol": 1e-6, "rtol": 1e-5}
F64_TOL = {"atol": 1e-12, "rtol": 1e-10}
REDUCTIONS = ("mean", "sum", "none")


def torch_loss(logits, targets, ignore_index=-100, reduction="mean"):
    """F.cross_entropy with the class dimension moved from last (the exercise's) to 1 (torch's)."""
    x = logits.movedim(-1, 1) if logits.dim() > 1 else logits
    return F.cross_entropy(x, targets, ignore_index=ignore_index, reduction=reduction)


def torch_grad(logits, targets, ignore_index=-100, reduction="mean"):
    """Autograd's d loss / d logits; for "none" it backpropagates ones (the gradient of the sum)."""
    x = logits.detach().clone().requires_grad_(True)
    loss = torch_loss(x, targets, ignore_index, reduction)
    loss.backward(torch.ones_like(loss))
    return x.grad


def targets_with_ignored(rng, shape, num_classes, ignore_index=-100, fraction=0.35):
    """Random targets with about `fraction` of them ignored, at least one ignored and one not."""
    t = rng.randint(0, num_classes, shape)
    t[rng.rand(*shape) < fraction] = ignore_index
    flat = t.view(-1)
    flat[0] = ignore_index
    flat[-1] = (ignore_index + 1) % num_classes  # a counted class, whatever ignore_index is
    return t


def check_loss(expect, logits, targets, what, tol=LOSS_TOL, reductions=REDUCTIONS, **kw):
    for reduction in reductions:
        expect(lambda s, r=reduction: s.cross_entropy(logits, targets, reduction=r, **kw),
               truth=torch_loss(logits, targets, reduction=reduction, **kw), **tol,
               name=f"cross_entropy({what}, reduction={reduction!r})")


def check_grad(expect, logits, targets, what, tol=GRAD_TOL, reductions=REDUCTIONS, **kw):
    for reduction in reductions:
        expect(lambda s, r=reduction: s.cross_entropy_grad(logits, targets, reduction=r, **kw),
               truth=torch_grad(logits, targets, reduction=reduction, **kw), **tol,
               name=f"cross_entropy_grad({what}, reduction={reduction!r})")


@pytest.mark.points(2)
def test_loss_matches_torch(expect, rng):
    # non-power-of-two class counts, and a 3-d input whose class dim torch wants at 1
    for shape in ((7, 11), (2, 5, 13)):
        logits = rng.randn(*shape, scale=3.0)
        targets = rng.randint(0, shape[-1], shape[:-1])
        check_loss(expect, logits, targets, f"logits of shape {shape}")


@pytest.mark.points(2)
def test_ignore_index(expect, rng):
    logits = rng.randn(12, 9, scale=2.0)
    targets = targets_with_ignored(rng, (12,), 9)
    check_loss(expect, logits, targets, "(12, 9) logits, some targets -100")
    # ignore_index may be a real class: that class's positions are then ignored
    logits = rng.randn(3, 4, 6, scale=2.0)
    targets = targets_with_ignored(rng, (3, 4), 6, ignore_index=2)
    check_loss(expect, logits, targets, "(3, 4, 6) logits, ignore_index=2", ignore_index=2)


def test_all_ignored(expect, rng):
    logits = rng.randn(5, 7)
    targets = torch.full((5,), -100)
    # torch: mean is 0/0 = NaN, sum is 0, none is zeros; autograd's gradient is all zeros
    check_loss(expect, logits, targets, "(5, 7) logits, every target -100")
    check_grad(expect, logits, targets, "(5, 7) logits, every target -100", reductions=("mean", "sum"))


def test_single_example(expect, rng):
    logits = rng.randn(1, 7, scale=2.0)
    targets = torch.tensor([6])
    check_loss(expect, logits, targets, "one example, logits (1, 7)")
    check_grad(expect, logits, targets, "one example, logits (1, 7)", reductions=("mean",))
    # no leading dimensions at all: logits (C,) and a 0-d target
    logits = rng.randn(5, scale=2.0)
    targets = torch.tensor(3)
    check_loss(expect, logits, targets, "logits of shape (5,), 0-d target", reductions=("mean", "none"))
    check_grad(expect, logits, targets, "logits of shape (5,), 0-d target", reductions=("mean",))


@pytest.mark.points(2)
def test_large_logits(expect, rng):
    logits = rng.randn(6, 10, scale=5.0) + 1000.0  # exp(1000) overflows float32 (and float64)
    logits[1] -= 2000.0  # a row near -1000
    targets = rng.randint(0, 10, (6,))
    # targets far below their row's maximum: probabilities ~exp(-300) underflow to 0 in float32,
    # yet the loss (~300) is finite
    logits[0, targets[0]] -= 300.0
    logits[3, targets[3]] -= 150.0
    check_loss(expect, logits, targets, "logits near +-1000, some targets 300 below the max")
    check_grad(expect, logits, targets, "logits near +-1000, some targets 300 below the max",
               reductions=("mean",))


def test_float64(expect, rng):
    logits = rng.randn(5, 3, 17, dtype=torch.float64, scale=4.0)
    targets = targets_with_ignored(rng, (5, 3), 17)
    what = "float64 logits (5, 3, 17), some targets -100"
    check_loss(expect, logits, targets, what, tol=F64_TOL, reductions=("mean", "none"))
    check_grad(expect, logits, targets, what, tol=F64_TOL, reductions=("mean",))


@pytest.mark.points(3)
def test_grad_matches_autograd(expect, rng):
    for shape in ((9, 10), (3, 4, 6)):
        logits = rng.randn(*shape, scale=2.0)
        targets = targets_with_ignored(rng, shape[:-1], shape[-1])
        check_grad(expect, logits, targets, f"logits {shape}, some targets -100")


@pytest.mark.hidden
def test_hidden_4d_custom_ignore_index_and_huge_rows(expect, rng):
    """What the public checks do not show: a 4-d input (two leading batch axes), ignore_index=-1
    (neither the default nor a real class), and rows shifted by +-1e4, where exp() overflows
    float32 unless the maximum is subtracted first; loss and gradient for every reduction."""
    logits = rng.randn(2, 3, 4, 11, scale=4.0)
    logits[0, 1] += 1e4
    logits[1, 2] -= 1e4
    targets = targets_with_ignored(rng, (2, 3, 4), 11, ignore_index=-1)
    what = "(2, 3, 4, 11) logits, some rows near +-1e4, ignore_index=-1"
    check_loss(expect, logits, targets, what, ignore_index=-1)
    check_grad(expect, logits, targets, what, ignore_index=-1)
