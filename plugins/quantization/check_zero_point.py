"""Checks for quantization.zero_point: affine group-wise codes, scales and zero points.

The formula is pinned operation by operation in float32 (min and max widened to hold 0,
scale = (hi - lo) / (2**bits - 1), zero_point = round(-lo / scale), codes =
clamp(round(x / scale) + zero_point)): every step is exactly rounded, so codes, scales and
zero points are compared exactly. Dequantised values are compared within one float32
rounding, and the error bound |dequantised - x| <= scale / 2 is checked as a property.
"""

from __future__ import annotations

import pytest
import torch

from grader.compare import check, raises

TOL = {"atol": 1e-6, "rtol": 1e-6}


def bounded(x: torch.Tensor, codes, scale, zero_point, group_size: int) -> bool:
    """Whether (codes - zero_point) * scale is within scale / 2 (and a float32 rounding) of x."""
    x = x.float()
    g = x.reshape(*x.shape[:-1], -1, group_size)
    c = codes.float().reshape(g.shape)
    err = ((c - zero_point.float()[..., None]) * scale[..., None] - g).abs()
    return bool((err <= scale[..., None] / 2 * (1 + 1e-5) + 1e-6 * g.abs()).all())


def affine(expect, ref, x: torch.Tensor, bits: int, group_size: int, what: str) -> None:
    codes, scale, zp = ref.quantize_affine(x, bits, group_size)
    call = f"quantize_affine({what}, bits={bits}, group_size={group_size})"
    expect(lambda s: s.quantize_affine(x, bits, group_size)[1], truth=scale,
           name=f"{call}: the scales (hi - lo) / (2**bits - 1), float32 of shape {tuple(scale.shape)}")
    expect(lambda s: s.quantize_affine(x, bits, group_size)[2], truth=zp,
           name=f"{call}: the zero points round(-lo / scale), uint8 of shape {tuple(zp.shape)}")
    expect(lambda s: s.quantize_affine(x, bits, group_size)[0], truth=codes,
           name=f"{call}: the uint8 codes clamp(round(x / scale) + zero_point, 0, 2**bits - 1)")
    expect(lambda s: bounded(x, *s.quantize_affine(x, bits, group_size), group_size), truth=True,
           name=f"{call}: |(codes - zero_point) * scale - x| <= scale / 2 everywhere")
    expect(lambda s: s.dequantize_affine(*s.quantize_affine(x, bits, group_size), group_size),
           truth=ref.dequantize_affine(codes, scale, zp, group_size), **TOL,
           name=f"dequantize_affine(*{call}, group_size={group_size})")


@pytest.mark.points(2)
def test_uint8_groups(expect, reference, rng):
    affine(expect, reference, rng.randn(6, 96, scale=2.0), 8, 32, "x ~ N(0, 4) of shape (6, 96)")
    x = rng.randn(4, 40)
    x[:, :20] = x[:, :20].abs() + 0.5  # group 0 of each row only positive: lo widened to 0
    x[:, 20:] = -x[:, 20:].abs() - 3.0  # group 1 only negative: hi widened to 0
    affine(expect, reference, x, 8, 20, "x of shape (4, 40): first group positive, second negative")


@pytest.mark.points(2)
def test_uint4_groups(expect, reference, rng):
    affine(expect, reference, rng.randn(3, 5, 48), 4, 16, "x ~ N(0, 1) of shape (3, 5, 48)")
    relu = rng.randn(7, 24, scale=3.0).clamp(min=0)  # after a ReLU: the zero point is 0
    affine(expect, reference, relu, 4, 8, "relu(x) of shape (7, 24)")
    skew = rng.rand(2, 30) * 10 - 1  # mostly positive, a few negatives: a small zero point
    affine(expect, reference, skew, 4, 10, "x uniform in [-1, 9] of shape (2, 30)")


def test_constant_and_zero_groups(expect, reference, rng):
    x = torch.cat([torch.full((1, 8), 5.0), torch.full((1, 8), -2.0), torch.zeros(1, 8),
                   rng.randn(1, 8)], dim=1)
    for bits in (8, 4):
        affine(expect, reference, x, bits, 8, "x (1, 32): groups all 5.0, all -2.0, all 0.0 (scale 1.0), random")
    # ties: lo = -3.5, hi = 11.5 make the scale exactly 1.0, so -lo / scale = 3.5 and x / scale = x
    ties = torch.tensor([[-3.5, 11.5, 0.5, 1.5, 2.5, -2.5, -0.5, 6.5], [-2.5, 12.5, 0.5, 1.5, 2.5, -1.5, 7.5, 3.0]])
    affine(expect, reference, ties, 4, 8, "rows with scale exactly 1.0 and zero points 3.5 and 2.5 before rounding")


def test_group_sizes(expect, reference, rng):
    x = rng.randn(5, 36, scale=0.1) + 0.05
    affine(expect, reference, x, 8, 36, "x of shape (5, 36), one group per row")
    affine(expect, reference, x, 4, 1, "x of shape (5, 36), groups of one element")
    affine(expect, reference, x, 4, 12, "x of shape (5, 36), groups of 12")
    for bits, gs, why in ((8, 7, "36 is not a multiple of 7"), (9, 12, "bits must be 1 .. 8")):
        check(raises(lambda b=bits, g=gs: expect.solution.quantize_affine(x, b, g)),
              f"quantize_affine(x of shape (5, 36), bits={bits}, group_size={gs}) must raise ValueError ({why})")


def test_dequantize(expect, rng):
    codes = rng.randint(0, 16, (3, 24)).to(torch.uint8)
    scale = rng.rand(3, 3) + 0.01
    zp = rng.randint(0, 16, (3, 3)).to(torch.uint8)
    g = codes.float().reshape(3, 3, 8)
    truth = ((g - zp.float()[..., None]) * scale[..., None]).reshape(3, 24)
    expect(lambda s: s.dequantize_affine(codes, scale, zp, 8), truth=truth, **TOL,
           name="dequantize_affine(uint8 codes (3, 24) in 0 .. 15, scales (3, 3), zero points (3, 3), group_size=8)")


@pytest.mark.hidden
def test_hidden_bits_dtypes_and_offsets(expect, reference, rng):
    """2- and 3-bit codes, float16 and bfloat16 inputs, values far from 0 (100 +- 1: the
    range widened to hold 0 makes the scale large), a 1-D x and a 4-D batch."""
    affine(expect, reference, rng.randn(4, 30, scale=2.0), 2, 6, "x of shape (4, 30)")
    affine(expect, reference, rng.randn(3, 21), 3, 7, "x of shape (3, 21)")
    affine(expect, reference, rng.randn(8, 64, scale=3.0).half(), 8, 16, "float16 x of shape (8, 64)")
    affine(expect, reference, rng.randn(5, 20).bfloat16(), 4, 5, "bfloat16 x of shape (5, 20)")
    affine(expect, reference, rng.randn(2, 50) + 100.0, 8, 25, "x ~ 100 +- 1 of shape (2, 50)")
    affine(expect, reference, rng.randn(45), 4, 9, "a 1-D x of 45 elements")
    affine(expect, reference, rng.randn(2, 3, 2, 12, dtype=torch.float64), 4, 4, "float64 x of shape (2, 3, 2, 12)")
