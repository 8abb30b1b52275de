"""A two-layer MLP (Linear -> GELU(tanh) -> Linear -> softmax cross-entropy) in numpy,
with hand-written backward passes. Weights are (in_features, out_features): y = x @ W + b."""

from __future__ import annotations

import math

import numpy as np

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


def linear_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x @ W + b


def linear_backward(
    grad_y: np.ndarray, x: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grad_x = grad_y @ W.T
    # W and b are shared by every row, so their gradients add up the rows' contributions.
    grad_W = x.T @ grad_y
    grad_b = grad_y.sum(axis=0)
    return grad_x, grad_W, grad_b


def relu_forward(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def relu_backward(grad_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    # Derivative 0 at exactly x == 0, as torch defines it.
    return grad_y * (x > 0)


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(_SQRT_2_OVER_PI * (x + _GELU_K * x**3))


def gelu_forward(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _gelu_tanh(x))


def gelu_backward(grad_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    t = _gelu_tanh(x)
    d_inner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_K * x**2)
    # Product rule on 0.5 * x * (1 + t): d/dx of x, plus x times d/dx of tanh(inner).
    return grad_y * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * d_inner)


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = -log_probs[rows, targets].mean()
    grad = np.exp(log_probs)
    grad[rows, targets] -= 1.0
    return float(loss), grad / n


def mlp_loss_and_grads(
    params: dict[str, np.ndarray], x: np.ndarray, targets: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h = linear_forward(x, W1, b1)
    a = gelu_forward(h)
    logits = linear_forward(a, W2, b2)
    loss, grad_logits = softmax_cross_entropy(logits, targets)

    grad_a, grad_W2, grad_b2 = linear_backward(grad_logits, a, W2)
    grad_h = gelu_backward(grad_a, h)
    _, grad_W1, grad_b1 = linear_backward(grad_h, x, W1)
    return loss, {"W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}
