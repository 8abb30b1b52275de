"""Checks for foundations.mlp_backward: hand-written numpy backward passes against float64
torch autograd, and the MLP's gradients against finite differences of the student's own loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grader.compare import check

# Everything is float64: analytic gradients agree with autograd to rounding error.
TOL = {"atol": 1e-10, "rtol": 1e-8}
PARAM_KEYS = ("W1", "b1", "W2", "b2")


def _randn(rng, *shape, scale=1.0):
    return rng.randn(*shape, dtype=torch.float64, scale=scale).numpy()


def _targets(rng, n, c):
    return rng.randint(0, c, (n,)).numpy().astype(np.int64)


def _leaf(a):
    return torch.from_numpy(np.array(a)).requires_grad_(True)


def _items(out, n, what):
    """The student's tuple result, after checking it is a tuple/list of `n` items."""
    check(isinstance(out, (tuple, list)) and len(out) == n,
          f"{what} must return a tuple of {n} items, got {type(out).__name__}"
          + (f" of {len(out)} items" if isinstance(out, (tuple, list)) else ""))
    return out


def _linear_case(expect, rng, n, d_in, d_out):
    x, W, b = _randn(rng, n, d_in), _randn(rng, d_in, d_out), _randn(rng, d_out)
    grad_y = _randn(rng, n, d_out)
    shapes = f"x {x.shape}, W {W.shape}"

    xt, Wt, bt = _leaf(x), _leaf(W), _leaf(b)
    yt = xt @ Wt + bt
    yt.backward(torch.from_numpy(grad_y))

    expect(lambda s: s.linear_forward(x, W, b), truth=yt.detach().numpy(), **TOL, name=f"linear_forward ({shapes})")
    got = _items(expect.solution.linear_backward(grad_y, x, W), 3, "linear_backward")
    for i, (label, leaf) in enumerate((("grad_x", xt), ("grad_W", Wt), ("grad_b", bt))):
        expect.compare(got[i], leaf.grad.numpy(), lambda m, i=i: m.linear_backward(grad_y, x, W)[i], **TOL,
                       name=f"linear_backward {label} ({shapes}), vs autograd")


@pytest.mark.points(2)
def test_linear_matches_autograd(expect, rng):
    _linear_case(expect, rng, n=5, d_in=7, d_out=3)


def test_linear_batch_of_one(expect, rng):
    _linear_case(expect, rng, n=1, d_in=4, d_out=6)


@pytest.mark.points(2)
def test_relu_matches_autograd_including_zero(expect, rng):
    x = _randn(rng, 6, 5)
    # Exact zeros (and a negative zero): relu's derivative there is 0, as in torch.
    x[0, :3] = 0.0
    x[3, 2] = 0.0
    x[4, 4] = -0.0
    grad_y = _randn(rng, 6, 5)
    xt = _leaf(x)
    yt = torch.relu(xt)
    yt.backward(torch.from_numpy(grad_y))

    expect(lambda s: s.relu_forward(x), truth=yt.detach().numpy(), **TOL, name="relu_forward")
    expect(lambda s: s.relu_backward(grad_y, x), truth=xt.grad.numpy(), **TOL,
           name="relu_backward (x has exact zeros), vs autograd")


@pytest.mark.points(2)
def test_gelu_matches_torch_tanh_gelu(expect, rng):
    x = _randn(rng, 4, 9, scale=2.5)
    # Zero, and values where tanh saturates.
    x[0, :5] = [0.0, 8.0, -8.0, 30.0, -30.0]
    grad_y = _randn(rng, 4, 9)
    xt = _leaf(x)
    yt = F.gelu(xt, approximate="tanh")
    yt.backward(torch.from_numpy(grad_y))

    expect(lambda s: s.gelu_forward(x), truth=yt.detach().numpy(), **TOL,
           name='gelu_forward vs F.gelu(x, approximate="tanh")')
    expect(lambda s: s.gelu_backward(grad_y, x), truth=xt.grad.numpy(), **TOL,
           name='gelu_backward vs autograd of F.gelu(x, approximate="tanh")')


def _ce_case(expect, logits, targets, what):
    lt = _leaf(logits)
    loss_t = F.cross_entropy(lt, torch.from_numpy(targets))
    loss_t.backward()
    got = _items(expect.solution.softmax_cross_entropy(logits, targets), 2, "softmax_cross_entropy")
    expect.compare(got[0], loss_t.item(), lambda m: m.softmax_cross_entropy(logits, targets)[0], **TOL,
                   name=f"softmax_cross_entropy loss ({what})")
    expect.compare(got[1], lt.grad.numpy(), lambda m: m.softmax_cross_entropy(logits, targets)[1], **TOL,
                   name=f"softmax_cross_entropy grad_logits ({what}), vs autograd")


@pytest.mark.points(2)
def test_cross_entropy_matches_torch(expect, rng):
    logits = _randn(rng, 6, 5, scale=2.0)
    targets = _targets(rng, 6, 5)
    _ce_case(expect, logits, targets, "6 rows, 5 classes")


def test_cross_entropy_large_logits(expect, rng):
    logits = _randn(rng, 4, 7, scale=3.0) + 1000.0
    logits[1] -= 2000.0  # a row around -1000
    logits[2, 3] += 800.0  # one dominant class: the others' probabilities underflow
    targets = np.array([0, 6, 3, 5], dtype=np.int64)
    _ce_case(expect, logits, targets, "logits around +-1000")


def _params(rng, d, h, c):
    return {"W1": _randn(rng, d, h, scale=0.7), "b1": _randn(rng, h, scale=0.3),
            "W2": _randn(rng, h, c, scale=0.7), "b2": _randn(rng, c, scale=0.3)}


def _torch_mlp(params, x, targets):
    """The same model in torch: loss and autograd gradients, as numpy."""
    leaves = {k: _leaf(v) for k, v in params.items()}
    h = torch.from_numpy(x) @ leaves["W1"] + leaves["b1"]
    logits = F.gelu(h, approximate="tanh") @ leaves["W2"] + leaves["b2"]
    loss = F.cross_entropy(logits, torch.from_numpy(targets))
    loss.backward()
    return loss.item(), {k: leaves[k].grad.numpy() for k in PARAM_KEYS}


def _grads_dict(got):
    loss, grads = _items(got, 2, "mlp_loss_and_grads")
    check(isinstance(grads, dict), f"mlp_loss_and_grads must return (loss, dict), got a "
          f"{type(grads).__name__} as the second item")
    check(set(grads) == set(PARAM_KEYS), f"the grads dict must have exactly the keys "
          f"{list(PARAM_KEYS)}, got {sorted(map(str, grads))}")
    return loss, grads


def _mlp_case(expect, rng, n, d, h, c):
    params, x, targets = _params(rng, d, h, c), _randn(rng, n, d), _targets(rng, n, c)
    want_loss, want = _torch_mlp(params, x, targets)
    loss, grads = _grads_dict(expect.solution.mlp_loss_and_grads(params, x, targets))
    sizes = f"N={n}, D={d}, H={h}, C={c}"
    expect.compare(loss, want_loss, lambda m: m.mlp_loss_and_grads(params, x, targets)[0], **TOL,
                   name=f"mlp_loss_and_grads loss ({sizes})")
    for k in PARAM_KEYS:
        expect.compare(grads[k], want[k], lambda m, k=k: m.mlp_loss_and_grads(params, x, targets)[1][k], **TOL,
                       name=f"mlp_loss_and_grads grads[{k!r}] ({sizes}), vs autograd")


@pytest.mark.points(3)
def test_mlp_matches_autograd(expect, rng):
    _mlp_case(expect, rng, n=6, d=5, h=7, c=3)


def test_mlp_batch_of_one(expect, rng):
    _mlp_case(expect, rng, n=1, d=3, h=5, c=4)


def _slope(grad, v):
    """The directional derivative sum(grad * v) that an analytic gradient claims."""
    return float(np.sum(np.asarray(grad) * v))


@pytest.mark.points(2)
def test_mlp_gradients_match_finite_differences(expect, rng):
    # gradcheck's fast mode: for each parameter, a random direction v; the central difference
    # of the student's own loss along v must equal sum(grads[k] * v).
    n, d, h, c = 4, 3, 5, 3
    params, x, targets = _params(rng, d, h, c), _randn(rng, n, d), _targets(rng, n, c)
    solution = expect.solution
    _, grads = _grads_dict(solution.mlp_loss_and_grads(params, x, targets))
    eps = 1e-6
    for k in PARAM_KEYS:
        v = _randn(rng, *params[k].shape)
        losses = []
        for sign in (1.0, -1.0):
            shifted = dict(params, **{k: params[k] + sign * eps * v})
            loss, _ = _grads_dict(solution.mlp_loss_and_grads(shifted, x, targets))
            losses.append(float(loss))
        numeric = (losses[0] - losses[1]) / (2 * eps)
        check(np.shape(grads[k]) == params[k].shape,
              f"grads[{k!r}] has shape {np.shape(grads[k])}, expected {params[k].shape}")
        # Central differences in float64: error ~ eps**2 + 1e-16 / eps, far below 1e-7.
        expect.compare(_slope(grads[k], v), numeric,
                       lambda m, k=k, v=v: _slope(m.mlp_loss_and_grads(params, x, targets)[1][k], v),
                       atol=1e-7, rtol=1e-6, name=f"sum(grads[{k!r}] * v) vs the finite-difference slope of your"
                                                  f" own loss along a random direction v in {k}")


@pytest.mark.hidden
def test_hidden_size_one_layers(expect, rng):
    """Sizes of one where the public checks use several: a linear layer with one input and one
    output feature, and an MLP over 11 examples with one input feature, one hidden unit and
    two classes. Axis slips a wider case hides (a sum or squeeze over the wrong axis, a
    transpose) change shapes or values here."""
    _linear_case(expect, rng, n=3, d_in=1, d_out=1)
    _mlp_case(expect, rng, n=11, d=1, h=1, c=2)
