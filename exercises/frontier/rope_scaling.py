"""RoPE context extension: run a rotary model past the context it was trained on.

A RoPE model trained on sequences of at most L positions has never seen the angles that
positions beyond L produce. Three ways to stretch its rotary frequencies, as Hugging Face
transformers implements them (`transformers.modeling_rope_utils`, the `rope_type`s "linear",
"dynamic" and "yarn" of `config.rope_parameters`):

- LINEAR position interpolation (Chen et al. 2023, kaiokendev): divide every position by
  `factor`, which is dividing every inverse frequency by `factor`.
- DYNAMIC NTK-aware scaling (bloc97, emozilla): leave the frequencies alone while the sequence
  fits the original context, and beyond it raise the base so that the slowest rotations
  stretch over the longer sequence while the fastest barely change.
- YaRN (Peng et al. 2023): keep the fast (high-frequency) pairs as they are, interpolate the
  slow (low-frequency) pairs by `factor`, blend linearly in between, and scale cos and sin by
  an attention factor to keep the softmax's temperature.

Conventions (all functions):
- `head_dim` (written D) is even and at least 4; there are D/2 rotated pairs i = 0 .. D/2 - 1
  (the half-split layout of attention.rope: column j pairs with column j + D/2). The unscaled
  inverse frequencies are, in float32 exactly as in attention.rope,
      default_inv_freq(D, base) = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
  with `base` a Python float (inv_freq[0] = 1 is the fastest pair, inv_freq[D/2 - 1] the slowest).
- Every `*_inv_freq` function returns a float32 tensor of shape (D/2,). Scalars (the factor,
  a new base, the YaRN correction range and attention factor) are computed with Python floats
  (float64) and the `math` module; only the final per-pair arithmetic is in float32 tensors.
- `factor` is a float >= 1 (not necessarily an integer: 2.5 is allowed); factor 1 means no scaling.
- `positions` is a 1-D int64 tensor of shape (L,), the absolute position of each token counted
  from 0; positions need not be sorted.

Use only basic tensor operations and `math`; do not call transformers' RoPE functions.
"""

from __future__ import annotations

import math  # noqa: F401

import torch  # noqa: F401


def linear_inv_freq(head_dim: int, base: float, factor: float) -> torch.Tensor:
    """Position interpolation: float32 tensor (head_dim // 2,), default_inv_freq(head_dim, base) / factor.

    The angle of position p becomes p * inv_freq / factor = (p / factor) * inv_freq: the
    positions are DIVIDED by the factor (squeezed into the trained range), never multiplied.
    The transformers rope_type "linear" with this `factor`.
    """
    raise NotImplementedError


def dynamic_ntk_inv_freq(
    head_dim: int, base: float, factor: float, max_position_embeddings: int, seq_len: int
) -> torch.Tensor:
    """Dynamic NTK-aware scaling: float32 tensor (head_dim // 2,).

    `max_position_embeddings` is the context the model was trained on; `seq_len` is the length
    of the sequence being processed now (in a forward pass, the largest position + 1).
    - If seq_len <= max_position_embeddings: the unscaled default_inv_freq(head_dim, base),
      whatever the factor (short sequences keep the trained frequencies exactly).
    - Otherwise, with Python floats,
          new_base = base * (factor * seq_len / max_position_embeddings - (factor - 1)) ** (head_dim / (head_dim - 2))
      and the result is default_inv_freq(head_dim, new_base). Note the exponent D / (D - 2),
      which makes the slowest pair's angle at position seq_len shrink as if positions were
      interpolated, while the fastest pair (inv_freq[0] = 1) does not change.
    The transformers rope_type "dynamic" with this `factor` and `max_position_embeddings`.
    """
    raise NotImplementedError


def yarn_inv_freq(
    head_dim: int,
    base: float,
    factor: float,
    original_max_position_embeddings: int,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    truncate: bool = True,
) -> tuple[torch.Tensor, float]:
    """YaRN: returns (inv_freq, attention_factor), a float32 tensor (head_dim // 2,) and a Python float.

    With D = head_dim, L = original_max_position_embeddings, and all scalars Python floats:
    1. The correction range, in units of the pair index. The pair whose wavelength fits r
       times into L has the (fractional) index
           correction_dim(r) = D * math.log(L / (r * 2 * math.pi)) / (2 * math.log(base))
       low = correction_dim(beta_fast), high = correction_dim(beta_slow) (low < high: fast
       pairs rotate many times within L and have small indices).
       If truncate: low = math.floor(low), high = math.ceil(high) (otherwise keep the fractions).
       Then clamp: low = max(low, 0), high = min(high, D - 1) (D - 1, as transformers does).
       If low == high (after these steps), use high = high + 0.001 to avoid dividing by zero.
    2. The ramp, over the pair indices i = 0, 1, ..., D/2 - 1 (counted from 0):
           ramp = clamp((torch.arange(D // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    3. extrapolation = default_inv_freq(D, base) (the trained frequencies),
       interpolation = extrapolation / factor (position interpolation), and
           inv_freq = interpolation * ramp + extrapolation * (1 - ramp)
       so pairs with i <= low (high frequency) keep their trained frequency and pairs with
       i >= high (low frequency) are divided by the factor.
    4. attention_factor = 0.1 * math.log(factor) + 1.0 if factor > 1, else 1.0 (the YaRN
       paper's mscale; cos and sin are multiplied by it, see rope_cos_sin).
    The transformers rope_type "yarn" with this `factor`, `original_max_position_embeddings`,
    `beta_fast`, `beta_slow` and `truncate` (and no `attention_factor`, `mscale`, `mscale_all_dim`).
    """
    raise NotImplementedError


def rope_cos_sin(
    inv_freq: torch.Tensor, positions: torch.Tensor, attention_factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """HALF-SPLIT cos and sin tables for `positions` (1-D int64, shape (L,)) and any `inv_freq` (float32, (D/2,)).

    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]     # (L, D/2), in float32
    emb = cat([angles, angles], dim=-1)                                  # (L, D): column j and j + D/2 share an angle
    Returns (emb.cos() * attention_factor, emb.sin() * attention_factor), each float32 of shape
    (L, D): the tables transformers' `LlamaRotaryEmbedding` returns for one sequence (it
    multiplies both by its `attention_scaling`, which is YaRN's attention factor and 1.0 for
    the other types). They plug into attention.rope's apply_rope unchanged.
    """
    raise NotImplementedError
