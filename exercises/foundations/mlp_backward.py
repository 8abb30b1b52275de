"""A two-layer MLP in numpy, with every gradient written by hand.

You write the forward pass and the backward pass of each layer, then chain them into
the loss and gradients of a small classifier: Linear -> GELU -> Linear -> softmax
cross-entropy. The checks compare your results with torch autograd in float64 and with
finite differences of your own loss.

Conventions (all functions):
- NumPy only. Inputs are `numpy.ndarray`s of dtype float64 (targets: int64); every array
  you return must be a `numpy.ndarray` of dtype float64. float64 inputs are computed in
  float64 throughout (no float32 arrays or constants): results are compared to about 1e-8
  relative. Do not use torch (no autograd), scipy or any other library: the point is to
  derive the gradients yourself.
- Batches are the first axis: `x` has shape (N, in_features), N >= 1.
- Weight layout: `W` has shape (in_features, out_features), so a linear layer computes
  `y = x @ W + b` (this is the TRANSPOSE of torch.nn.Linear's (out, in) `weight`).
  `b` has shape (out_features,).
- A `*_backward(grad_y, ...)` function receives grad_y = dL/dy for some scalar loss L,
  with the same shape as that layer's output y, and returns dL/d(each input), each with
  exactly the shape of that input. Gradients of parameters that are shared by every row
  of the batch (W, b) are summed over the batch: they add up the contributions of all N rows.
- Do not modify your inputs in place.
"""

from __future__ import annotations

import math  # noqa: F401

import numpy as np


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y = x @ W + b.

    x: (N, in_features), W: (in_features, out_features), b: (out_features,).
    Returns y of shape (N, out_features).
    """
    raise NotImplementedError


def linear_backward(
    grad_y: np.ndarray, x: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = x @ W + b, given grad_y = dL/dy of shape (N, out_features).

    Returns the tuple (grad_x, grad_W, grad_b) with the shapes of x (N, in_features),
    W (in_features, out_features) and b (out_features,).
    """
    raise NotImplementedError


def relu_forward(x: np.ndarray) -> np.ndarray:
    """max(x, 0) elementwise; same shape as x."""
    raise NotImplementedError


def relu_backward(grad_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dL/dx for y = relu(x), given grad_y = dL/dy and the INPUT x (not the output).

    The derivative of relu is 1 where x > 0 and 0 where x <= 0: at exactly x == 0 it is 0
    (as in torch). Returns an array of x's shape.
    """
    raise NotImplementedError


def gelu_forward(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (torch.nn.functional.gelu(x, approximate="tanh")):

        gelu(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))

    elementwise; same shape as x. (Not the exact erf form.)
    """
    raise NotImplementedError


def gelu_backward(grad_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dL/dx for y = gelu_forward(x) (the tanh form above), given grad_y = dL/dy and the
    INPUT x. The exact derivative of that formula, not an approximation of it.
    Returns an array of x's shape."""
    raise NotImplementedError


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy over the batch, and its gradient w.r.t. the logits.

    logits: (N, C) float64 scores; targets: (N,) int64 class indices in [0, C).
        loss = mean over rows n of  -log(softmax(logits[n])[targets[n]])
    Must be numerically stable: logits around +-1000 must give a finite, correct loss
    and gradient (subtract each row's maximum before exponentiating).

    Returns (loss, grad_logits): loss a Python float, grad_logits = dLoss/dlogits of
    shape (N, C). Because the loss is a MEAN over N rows, so is its gradient.
    """
    raise NotImplementedError


def mlp_loss_and_grads(
    params: dict[str, np.ndarray], x: np.ndarray, targets: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and gradients of a two-layer MLP classifier.

    params: {"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}; x: (N, D) float64;
    targets: (N,) int64 in [0, C). The model is

        h = x @ W1 + b1;  a = gelu(h)  (tanh form);  logits = a @ W2 + b2
        loss = softmax_cross_entropy(logits, targets)  (mean over the batch)

    Returns (loss, grads): loss a Python float and grads a dict with exactly the keys
    "W1", "b1", "W2", "b2", each dLoss/d(that parameter) with that parameter's shape.
    Do not modify `params`.
    """
    raise NotImplementedError
