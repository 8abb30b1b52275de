"""RMSNorm, the tanh-approximate GELU, a GELU MLP and a SwiGLU MLP.

These are the normalisation and feed-forward pieces of modern decoder-only transformers:
RMSNorm and the SwiGLU MLP are Llama's (transformers' `LlamaRMSNorm` and `LlamaMLP`), the
tanh GELU and the GELU MLP are GPT-2's (transformers' "gelu_new" activation). Each module
must compute exactly what its transformers counterpart computes, and its parameters must
have the names and shapes given below, so that `state_dict()`s can be copied between them.

Every module works on the last axis of an input of any shape (..., dim): 2-D (N, dim),
3-D (batch, seq, dim) and so on; `dim` need not be a power of two. Initialise Linear
weights any way you like (nn.Linear's default is fine): the judge loads its own weights
with `load_state_dict`.

Use only basic torch operations (pow, mean, rsqrt, tanh, torch.nn.Linear,
torch.nn.functional.silu and friends). Not allowed: torch.nn.functional.rms_norm,
torch.rms_norm, torch.nn.RMSNorm, torch.nn.functional.gelu, torch.nn.GELU, and
transformers' implementations (LlamaRMSNorm, LlamaMLP, the GELU activations in
transformers.activations). Keep everything in this file: do not import other exercises.
"""

from __future__ import annotations

import math  # noqa: F401

import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square layer normalisation over the last axis, exactly as LlamaRMSNorm."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        """One parameter, `weight`: an nn.Parameter of shape (dim,) initialised to ones.

        No bias and no mean subtraction. `state_dict()` has exactly one key, "weight".
        Keep `eps` (any attribute name) for forward.
        """
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise x (..., dim) by the root mean square of its last axis; same shape as x.

        Steps, in this order (this is LlamaRMSNorm, operation for operation):
        1. input_dtype = x.dtype; h = x converted to torch.float32 (always float32, whatever
           the input dtype: float16 and bfloat16 inputs would otherwise overflow or underflow
           when squared).
        2. variance = mean of h**2 over the last axis (keep that axis, so it broadcasts); no
           mean is subtracted, this is not LayerNorm.
        3. h = h * rsqrt(variance + eps): eps is added INSIDE the square root, so an all-zero
           row gives 0 (not NaN) and rows much smaller than sqrt(eps) are damped.
        4. Cast h back to input_dtype FIRST, and only then multiply by weight:
           return weight * h.to(input_dtype).
        The output dtype is therefore torch's promotion of weight.dtype and x.dtype: the
        input's dtype when the module was converted to it (`.half()`, `.bfloat16()`,
        `.to(dtype)`), and float32 when a float32 weight meets a bfloat16 or float16 input
        (as with LlamaRMSNorm).
        """
        raise NotImplementedError


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation, elementwise; same shape and dtype as x (float32 or float64).

        gelu_tanh(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))

    This is torch.nn.functional.gelu(x, approximate="tanh") and transformers' "gelu_new"
    (GPT-2's activation), not the exact GELU 0.5 * x * (1 + erf(x / sqrt(2))). It must stay
    finite for large |x| (e.g. 1e4): gelu_tanh(x) is x for large positive x and 0 for large
    negative x.

    float64 inputs are computed in float64, constants included: use math.sqrt(2 / math.pi)
    (a Python float), not a float32 tensor, whose rounding (3e-8 relative) is far above the
    float64 tolerance (1e-10 relative).
    """
    raise NotImplementedError


class GeluMLP(nn.Module):
    """The GPT-2 style feed-forward block: fc_out(gelu_tanh(fc_in(x)))."""

    def __init__(self, dim: int, hidden: int) -> None:
        """Two nn.Linear layers, both WITH bias:

            fc_in:  dim -> hidden   (fc_in.weight (hidden, dim), fc_in.bias (hidden,))
            fc_out: hidden -> dim   (fc_out.weight (dim, hidden), fc_out.bias (dim,))

        `state_dict()` has exactly these four keys.
        """
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., dim) -> fc_out(gelu_tanh(fc_in(x))) of shape (..., dim). No dropout."""
        raise NotImplementedError


class SwiGLU(nn.Module):
    """Llama's gated feed-forward block: down_proj(silu(gate_proj(x)) * up_proj(x))."""

    def __init__(self, dim: int, hidden: int) -> None:
        """Three nn.Linear layers, all WITHOUT bias (same names, shapes and
        (out_features, in_features) weight layout as transformers' LlamaMLP):

            gate_proj: dim -> hidden   (gate_proj.weight (hidden, dim))
            up_proj:   dim -> hidden   (up_proj.weight (hidden, dim))
            down_proj: hidden -> dim   (down_proj.weight (dim, hidden))

        `state_dict()` has exactly these three keys.
        """
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., dim) -> down_proj(silu(gate_proj(x)) * up_proj(x)) of shape (..., dim).

        silu(z) = z * sigmoid(z) (torch.nn.functional.silu is allowed). The activation goes
        on the gate_proj branch only; the up_proj branch is multiplied in linearly.
        """
        raise NotImplementedError
