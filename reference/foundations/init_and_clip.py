"""Weight initialisers (Xavier, Kaiming, truncated normal) and gradient-norm clipping."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)


def calculate_fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        raise ValueError("fan_in and fan_out need a tensor with at least 2 dimensions")
    # Weights are (out, in, *kernel): every output unit sees in * prod(kernel) inputs.
    receptive_field = math.prod(tensor.shape[2:])
    fan_in = tensor.shape[1] * receptive_field
    fan_out = tensor.shape[0] * receptive_field
    return int(fan_in), int(fan_out)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    if nonlinearity in _LINEAR_FNS:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def xavier_uniform_(
    tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    # U(-bound, bound) has variance bound^2 / 3 = gain^2 * 2 / (fan_in + fan_out).
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def kaiming_normal_(
    tensor: torch.Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(fan)
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def trunc_normal_(
    tensor: torch.Tensor,
    mean: float = 0.0,
    std: float = 1.0,
    a: float = -2.0,
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    # Inverse-CDF sampling: a uniform draw between Phi((a - mean) / std) and Phi((b - mean) / std)
    # mapped through the normal quantile Phi^-1(u) = sqrt(2) * erfinv(2u - 1). float64 keeps the
    # quantile accurate in the tails.
    cdf_a = _normal_cdf((a - mean) / std)
    cdf_b = _normal_cdf((b - mean) / std)
    u = torch.empty(tensor.shape, dtype=torch.float64, device=tensor.device)
    u.uniform_(cdf_a, cdf_b, generator=generator)
    samples = mean + std * math.sqrt(2.0) * torch.erfinv(2.0 * u - 1.0)
    # Only rounding can step outside [a, b]; the clamp moves no real probability mass.
    samples = samples.clamp(a, b)
    with torch.no_grad():
        return tensor.copy_(samples)


def clip_grad_norm_(
    parameters: Iterable[torch.Tensor], max_norm: float, norm_type: float = 2.0
) -> torch.Tensor:
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm_type = float(norm_type)
    if norm_type == math.inf:
        norms = [g.detach().abs().max() for g in grads]
        total_norm = torch.stack(norms).max()
    else:
        norms = [torch.linalg.vector_norm(g.detach(), norm_type) for g in grads]
        # The norm of the per-parameter norms is the norm of all gradients concatenated.
        total_norm = torch.linalg.vector_norm(torch.stack(norms), norm_type)
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef < 1:
        with torch.no_grad():
            for g in grads:
                g.mul_(clip_coef)
    return total_norm
