"""LayerNorm over the last dimension: the forward pass and a hand-written backward pass.

Shapes and dtypes:
- `x` has any shape `(*, D)`: zero or more leading dimensions (batch, sequence, ...), then
  the normalised dimension D (D >= 1). `weight` and `bias` have shape `(D,)`.
- `x`, `weight`, `bias` and `grad_y` all have the same floating dtype, float32 or float64.
  Every tensor you return has that dtype too (float32 in, float32 out; float64 in, float64
  out). You may compute internally in a higher precision, but cast the results back.
  float64 inputs are computed in float64 (never through float32): float64 results are
  compared to about 1e-9 relative, float32 ones to about 1e-5.

The forward convention (what torch.nn.functional.layer_norm computes), per row along the
last dimension:

    mean = sum_i x_i / D
    var  = sum_i (x_i - mean)^2 / D            # BIASED: divide by D, not D - 1
    rstd = 1 / sqrt(var + eps)                  # eps INSIDE the square root
    xhat = (x - mean) * rstd
    y    = xhat * weight + bias

Compute the variance from the centred values, mean((x - mean)^2): the shortcut
E[x^2] - E[x]^2 cancels catastrophically when the mean is large compared with the spread
(rows around 1e4 in float32 must still normalise correctly).

The backward pass receives only `grad_y` (dL/dy, same shape as `x`) and the `cache` your
forward returned, and returns the gradients of L with respect to `x`, `weight` and `bias`.
Compute them analytically with tensor operations: do NOT use torch.autograd in any form
(no `requires_grad`, `.backward()`, `torch.autograd.grad`, `torch.func`).

The cache is passed between your two functions as plain data (it may be copied on the
way): make it a tuple of tensors (plain Python numbers are allowed too), nothing else.
"""

from __future__ import annotations

import torch  # noqa: F401


def layernorm_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, tuple]:
    """Normalise `x` over its last dimension, then scale by `weight` and shift by `bias`.

    Args:
        x: tensor of shape (*, D), float32 or float64.
        weight: tensor of shape (D,), same dtype as `x`.
        bias: tensor of shape (D,), same dtype as `x`.
        eps: added to the biased variance inside the square root.

    Returns:
        `(y, cache)`: `y` has the shape and dtype of `x` and equals
        `F.layer_norm(x, (D,), weight, bias, eps)`; `cache` is a tuple of tensors (and/or
        numbers) of your choice holding everything `layernorm_backward` needs.
        With D == 1 every row equals its own mean, so `y` is exactly `bias`.
    """
    raise NotImplementedError


def layernorm_backward(
    grad_y: torch.Tensor, cache: tuple
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the loss with respect to `x`, `weight` and `bias`, without autograd.

    Args:
        grad_y: dL/dy, same shape and dtype as the forward's `x`.
        cache: exactly what `layernorm_forward` returned as its second item.

    Returns:
        `(grad_x, grad_weight, grad_bias)`, a tuple of three tensors in the dtype of `grad_y`:
        - `grad_x` has the shape of `x`. It accounts for `mean` and `var` depending on every
          element of the row (with D == 1 it is exactly 0).
        - `grad_weight` and `grad_bias` have shape (D,): the per-element gradients summed
          over ALL leading dimensions (batch, sequence, ...), as autograd would accumulate
          them for a weight shared by every row.
    """
    raise NotImplementedError
