"""NF4, QLoRA's 4-bit NormalFloat: block-wise absmax, the nearest of 16 codes, packing.

Weights of a trained network are roughly normal. NF4 stores each weight as one of 16 fixed
values, the code book, spaced like the quantiles of N(0, 1) (dense near 0, sparse in the
tails) and scaled to [-1, 1], with an exact 0. A block of `blocksize` weights shares one
float32 absmax: w ~ code_book[code] * absmax. This is the format of bitsandbytes'
`quantize_4bit(w, blocksize=64, quant_type="nf4")` / `dequantize_4bit`, which QLoRA uses:
a correct solution reproduces its bytes and absmax bit for bit.

The code book, float32, ascending (index 0 .. 15), exactly these values (bitsandbytes'
table, QLoRA appendix E):
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0
Index 7 is 0.0.

Nearest code (`nearest_nf4`), for normalised values y (y.float(), clamped to [-1, 1] first):
- The boundaries are the 15 float32 midpoints m[i] = (code[i] + code[i + 1]) / 2, computed
  in float32 from the float32 code book.
- code(y) = the number of midpoints strictly below y, i.e. torch.bucketize(y, m) (right=False).
- Tie-break: a y EXACTLY equal to m[i] takes the LOWER code i (toward -1), as
  bitsandbytes does (measured on bitsandbytes 0.50.2: its CPU quantize_4bit is this
  bucketize). Do not pick the code by argmin |y - code|: the two float32 distances of a
  midpoint round differently and send 6 of the 15 ties up.

Quantise (`quantize_nf4(w, blocksize=64)`):
- x = w.float().reshape(-1): the tensor is flattened in row-major order first, and blocks
  are consecutive runs of `blocksize` elements of the FLAT tensor (a block may span rows);
  the last block holds the n % blocksize leftover elements when there are any.
- absmax[b] = max |x| over block b, float32, one per block (ceil(n / blocksize) of them).
  An all-zero block has absmax 0.0.
- y = clamp(x * (1.0 / absmax_b), -1, 1): multiply by the float32 RECIPROCAL of the block's
  absmax (computed as 1.0 / max(absmax_b, 1e-38), so an all-zero block gives y = 0, code 7).
  x / absmax can differ in the last bit and land on the other side of a midpoint.
- codes = nearest_nf4(y).
- Packing, two codes per byte, the FIRST element of each pair in the HIGH nibble:
      packed[i] = (codes[2i] << 4) | codes[2i + 1]
  (bitsandbytes' order, and quantization.int4_pack's; GPTQ puts the first value low instead.)
  When n is odd, one padding code is appended before packing: 7 (the code of 0.0), so the
  last byte's low nibble is 0x7.
- Returns (packed, absmax): packed uint8 of shape (ceil(n / 2),), 1-D; absmax float32 of
  shape (ceil(n / blocksize),). (bitsandbytes returns the same bytes with shape (ceil(n/2), 1)
  and absmax in its QuantState.)

Dequantise (`dequantize_nf4(packed, absmax, shape, blocksize=64)`): unpack (high nibble
first), keep the first n = prod(shape) codes, and return code_book[code] * absmax[block],
one float32 multiplication per element, reshaped to `shape`: float32.

The error per element is at most half the gap between neighbouring codes times the
block's absmax; on randn(1024, 1024) with blocksize 64 the mean absolute error is about
0.0728. Inputs are never modified in place.
"""

from __future__ import annotations

import torch


def nf4_code_book() -> torch.Tensor:
    """The 16 NF4 values above: float32 of shape (16,), ascending."""
    raise NotImplementedError


def nearest_nf4(y: torch.Tensor) -> torch.Tensor:
    """The index (uint8, 0 .. 15, y's shape) of the nearest NF4 code to each y (clamped to
    [-1, 1]); exactly at a midpoint, the lower index."""
    raise NotImplementedError


def quantize_nf4(w: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4-quantise `w` (any shape, float) block-wise over its flattened elements.

    Returns (packed uint8 (ceil(n / 2),), absmax float32 (ceil(n / blocksize),)).
    """
    raise NotImplementedError


def dequantize_nf4(
    packed: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, ...], blocksize: int = 64
) -> torch.Tensor:
    """code_book[code] * absmax[block] for the first prod(shape) codes: float32 of `shape`."""
    raise NotImplementedError
