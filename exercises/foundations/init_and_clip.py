"""Weight initialisers (Xavier, Kaiming, truncated normal) and gradient-norm clipping.

Implement them yourself, with the same conventions as torch.nn.init and
torch.nn.utils.clip_grad_norm_ (which you may NOT call here, nor scipy).

Fans. A weight has shape (out_features, in_features) for a linear layer and
(out_channels, in_channels, *kernel_size) for a convolution: dim 0 is the OUTPUT side,
dim 1 the INPUT side (the transpose of the x @ W convention). With
receptive_field = product of the sizes of dims 2, 3, ... (1 for a 2-D tensor):
    fan_in  = tensor.shape[1] * receptive_field
    fan_out = tensor.shape[0] * receptive_field
A (256, 512) weight has fan_in 512 and fan_out 256; a (64, 32, 3, 3) conv weight has
fan_in 32 * 9 = 288 and fan_out 64 * 9 = 576. Fewer than 2 dimensions raises ValueError.

Gains (calculate_gain):
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "sigmoid"   -> 1
    "tanh"                          -> 5 / 3
    "relu"                          -> sqrt(2)
    "leaky_relu"                    -> sqrt(2 / (1 + negative_slope**2)), where negative_slope
                                       is `param`, or 0.01 when `param` is None
    "selu"                          -> 3 / 4
    anything else                   -> ValueError

Initialisers:
- fill the given tensor IN PLACE and return that same tensor object, keeping its shape,
  dtype and device;
- work on tensors that require grad (an nn.Parameter): fill them under torch.no_grad();
- draw every random number from `generator` (pass it as `generator=` to Tensor.uniform_,
  Tensor.normal_, torch.rand, ...), so that a seeded torch.Generator gives reproducible
  values; `generator=None` uses torch's global generator.

clip_grad_norm_ scales gradients in place (see its docstring) and returns the total norm.

Dtypes: float32 and float64 tensors are both used. Work in the tensor's own dtype: float64
inputs are computed in float64 (random numbers drawn in float64, norms and gradients
computed in float64), float32 ones in float32.
"""

from __future__ import annotations

import math  # noqa: F401
from collections.abc import Iterable

import torch


def calculate_fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as Python ints.

    fan_in = shape[1] * prod(shape[2:]), fan_out = shape[0] * prod(shape[2:]).
    Raises ValueError when `tensor` has fewer than 2 dimensions.
    """
    raise NotImplementedError


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for `nonlinearity`, as a Python float (table in the module docstring).

    For "leaky_relu", `param` is the negative slope (0.01 when None); it is ignored otherwise.
    """
    raise NotImplementedError


def xavier_uniform_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill `tensor` (at least 2-D) in place with U(-bound, bound) and return it.

    bound = gain * sqrt(6 / (fan_in + fan_out)), so the variance is
    gain**2 * 2 / (fan_in + fan_out) (Glorot & Bengio, 2010).
    """
    raise NotImplementedError


def kaiming_normal_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill `tensor` (at least 2-D) in place with N(0, std**2) and return it (He et al., 2015).

    std = calculate_gain(nonlinearity, a) / sqrt(fan), where fan is fan_in when
    mode == "fan_in" (preserves the forward activations' variance) and fan_out when
    mode == "fan_out" (preserves the backward gradients' variance); any other mode raises
    ValueError. `a` is the negative slope of the leaky ReLU that follows: with the defaults
    (a=0, "leaky_relu") the gain is sqrt(2); for nonlinearity="relu" `a` is ignored.
    """
    raise NotImplementedError


def trunc_normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill `tensor` (any shape) in place with a truncated normal and return it.

    The distribution is N(mean, std**2) CONDITIONED on lying in [a, b]: its density is the
    normal density restricted to [a, b] and rescaled to integrate to 1. `a` and `b` are
    absolute values, not numbers of standard deviations (with mean=0, std=0.02 the defaults
    truncate nowhere in practice). No value ever lies outside [a, b] (in the tensor's dtype),
    and no probability mass piles up at a or b: clamping normal draws into [a, b] is NOT a
    truncated normal. Inverse-CDF sampling or rejection sampling both work; assume
    a < b and that [a, b] holds at least 1% of the normal's probability mass.
    """
    raise NotImplementedError


def clip_grad_norm_(
    parameters: Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0
) -> torch.Tensor:
    """Clip the gradients of `parameters` in place by their total norm; return the total norm.

    `parameters` is a list (or any iterable, e.g. model.parameters(): iterate it once) of
    tensors; those whose `.grad` is None are skipped. All gradients share one dtype.

    total_norm is the `norm_type`-norm of all gradients concatenated into one vector, which
    equals the norm of the vector of per-gradient norms:
        norm_type = p (finite, > 0): (sum over every gradient element of |g|**p) ** (1 / p)
        norm_type = math.inf:        max over every gradient element of |g|
    Then clip_coef = max_norm / (total_norm + 1e-6), and ONLY when clip_coef < 1 every
    gradient is multiplied in place by clip_coef (never scaled up). Parameter values are
    never changed.

    Returns total_norm (measured BEFORE clipping) as a 0-d tensor of the gradients' dtype;
    torch.tensor(0.0) when no parameter has a gradient. This is torch.nn.utils.clip_grad_norm_.
    """
    raise NotImplementedError
