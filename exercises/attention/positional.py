"""Absolute position encodings: the fixed sinusoidal table of "Attention Is All You Need"
(Vaswani et al., 2017) and a learned position embedding (as in GPT-2 and BERT).

Attention by itself is blind to order: permuting the tokens permutes its outputs. Absolute
encodings fix that by adding a vector that depends only on the position to each token's
embedding, before the first layer.

Conventions:
- Positions are counted from 0: the first token of a sequence is at position 0.
- Sinusoidal table, INTERLEAVED layout (not the half-split "all sins, then all coss" layout):
  for position `pos` and frequency index i = 0, 1, 2, ...

      PE[pos, 2i]     = sin(pos / base ** (2i / dim))
      PE[pos, 2i + 1] = cos(pos / base ** (2i / dim))

  so columns 2i and 2i+1 form a (sin, cos) pair with the same frequency, the exponent is
  2i / dim (the even column index divided by dim, for BOTH columns of the pair), and row 0
  is [0, 1, 0, 1, ...]. When `dim` is odd the last column (index dim - 1, even) is a sin
  column with exponent (dim - 1) / dim and has no cos partner.
- Precision: compute the angles pos / base ** (2i / dim) and their sin/cos in float64, then
  cast the table to float32. A float32 angle is already off by ~5e-4 at position 10000
  (the spacing of float32 numbers near 10000 is ~1e-3); the checks require every entry to be
  within 1e-6 of the exact value, at positions up to 10000.
- Offsets (incremental decoding): a chunk of L tokens whose first token is at absolute
  position `offset` gets rows offset, offset + 1, ..., offset + L - 1 of the table, so
  encoding a sequence in chunks gives the same result as encoding it at once.
- Inputs `x` have shape (B, L, dim) (batch, sequence, features). Functions return new
  tensors; they never modify `x` in place.
"""

from __future__ import annotations

import torch
from torch import nn


def sinusoidal_encoding(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The sinusoidal table for positions 0 .. num_positions - 1.

    Returns a float32 torch.Tensor of shape (num_positions, dim) with
    PE[pos, 2i] = sin(pos / base ** (2i / dim)) and PE[pos, 2i + 1] = cos(pos / base ** (2i / dim))
    (interleaved sin/cos; for odd `dim` the last column is a sin). Angles and sin/cos are
    computed in float64 and the result is cast to float32. `num_positions` >= 1, `dim` >= 1.
    """
    raise NotImplementedError


def add_sinusoidal(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """x + the sinusoidal table rows for positions offset .. offset + L - 1.

    `x` has shape (B, L, dim); the same rows are added to every batch element. The table is
    the one `sinusoidal_encoding` returns (float32), converted to x's dtype before the
    addition, so the result has x's shape and dtype (float64 inputs are computed in float64:
    the float32 table converted to float64, then added). `offset` >= 0 is the absolute
    position of x[:, 0] (for incremental decoding); there is no upper limit on positions.
    """
    raise NotImplementedError


class LearnedPositionalEmbedding(nn.Module):
    """A trainable table of `max_positions` position vectors, added to the input.

    Parameters: exactly one, `weight`, an `nn.Parameter` of shape (max_positions, dim), float32,
    registered directly on this module (so `state_dict()` has the single key "weight"),
    initialised from N(0, 0.02**2) (mean 0, standard deviation 0.02, as GPT-2 does; e.g.
    torch.nn.init.normal_(w, mean=0.0, std=0.02)) using torch's global random generator.
    """

    def __init__(self, max_positions: int, dim: int):
        """Create `weight` as described above (and keep `max_positions` for the range check)."""
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x + weight[offset : offset + L] for `x` of shape (B, L, dim).

        Row offset + t of `weight` is added to x[:, t] for every batch element; the result has
        x's shape (and gradients flow into `weight`). Raises ValueError, with a message that
        names the positions asked for and `max_positions`, when offset < 0 or
        offset + L > max_positions (never silently truncate, wrap or broadcast).
        """
        raise NotImplementedError
