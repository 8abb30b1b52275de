"""Checks for quantization.absmax_int8: symmetric absmax int8 codes per tensor and per row.

The formula is pinned operation by operation (float32 x / (absmax / 127), torch.round,
clamp), and float32 division and torch.round are exactly rounded, so the codes are compared
exactly: a correct solution gets the reference's codes bit for bit (the curriculum's
allowance of +-1 on 0.2% of the codes is for formulas that divide differently, which the
docstring rules out). Scales are compared exactly too (one division); dequantised values
within one float32 rounding. The error bound |dequantize(codes, scale) - x| <= scale / 2
is checked as a property, with one ulp of slack.
"""

from __future__ import annotations

import pytest
import torch

TOL = {"atol": 1e-6, "rtol": 1e-6}


def bounded(x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> bool:
    """Whether codes * scale is within half a step (and one float32 rounding) of x everywhere."""
    x = x.float()
    err = (codes.float() * scale - x).abs()
    return bool((err <= scale / 2 * (1 + 1e-6) + 1e-6 * x.abs()).all())


def per_tensor(expect, ref, x: torch.Tensor, what: str) -> None:
    codes, scale = ref.quantize_per_tensor(x)
    expect(lambda s: s.quantize_per_tensor(x)[1], truth=scale,
           name=f"quantize_per_tensor({what}): the scale, absmax / 127 (float32, 0-dimensional)")
    expect(lambda s: s.quantize_per_tensor(x)[0], truth=codes,
           name=f"quantize_per_tensor({what}): the int8 codes, torch.round(x / scale)")
    expect(lambda s: bounded(x, *s.quantize_per_tensor(x)), truth=True,
           name=f"quantize_per_tensor({what}): |codes * scale - x| <= scale / 2 everywhere")


def per_row(expect, ref, x: torch.Tensor, what: str) -> None:
    codes, scale = ref.quantize_per_row(x)
    expect(lambda s: s.quantize_per_row(x)[1], truth=scale,
           name=f"quantize_per_row({what}): the scales, each row's absmax / 127, float32 of shape "
                f"{tuple(scale.shape)}")
    expect(lambda s: s.quantize_per_row(x)[0], truth=codes,
           name=f"quantize_per_row({what}): the int8 codes, torch.round(x / scale) row by row")
    expect(lambda s: bounded(x, *s.quantize_per_row(x)), truth=True,
           name=f"quantize_per_row({what}): |codes * scale - x| <= scale / 2 everywhere")


@pytest.mark.points(2)
def test_per_tensor(expect, reference, rng):
    per_tensor(expect, reference, rng.randn(37, 53, scale=3.0), "x ~ N(0, 9) of shape (37, 53)")
    x = rng.randn(129, scale=0.01)
    x[17] = -4.0  # the absmax is a negative outlier: it maps to -127
    per_tensor(expect, reference, x, "x of shape (129,), small values and one outlier -4.0")


@pytest.mark.points(2)
def test_per_row(expect, reference, rng):
    x = rng.randn(6, 45, scale=2.0)
    x[1] *= 0.001  # a row of small values keeps its precision with its own scale
    x[3, 44] = 250.0  # an outlier affects its own row only
    per_row(expect, reference, x, "x of shape (6, 45): row 1 tiny, an outlier 250.0 in row 3")
    per_row(expect, reference, rng.randn(3, 5, 19), "x of shape (3, 5, 19): a batch of 15 rows")


def test_round_half_to_even(expect, reference, rng):
    # absmax 127 makes the scale exactly 1.0, so x / scale is x: every .5 is a tie
    x = torch.tensor([[127.0, 2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.5, 126.5, -126.5, 0.49999997, 2.7]])
    per_tensor(expect, reference, x, "absmax 127 (scale exactly 1.0), ties 2.5, 3.5, -2.5, 0.5, 126.5")
    per_row(expect, reference, torch.cat([x, -x * 2]), "rows with absmax 127 and 254, ties at every .5 step")


def test_zeros(expect, reference, rng):
    x = rng.randn(4, 11)
    x[2] = 0.0
    per_row(expect, reference, x, "x of shape (4, 11) with row 2 all zero (scale 0, codes 0, no NaN)")
    z = torch.zeros(3, 7)
    per_tensor(expect, reference, z, "an all-zero tensor (3, 7): scale 0, codes 0")
    expect(lambda s: s.dequantize(*s.quantize_per_row(x)), truth=reference.dequantize(*reference.quantize_per_row(x)), **TOL,
           name="dequantize(*quantize_per_row(x with an all-zero row)): 0 on that row, never NaN")


def test_dequantize(expect, reference, rng):
    codes = rng.randint(-127, 128, (5, 9)).to(torch.int8)
    scale = rng.rand(5, 1) + 0.01
    expect(lambda s: s.dequantize(codes, scale), truth=codes.float() * scale, **TOL,
           name="dequantize(int8 codes (5, 9), scales (5, 1)): codes.float() * scale")
    x = rng.randn(8, 31, scale=5.0)
    expect(lambda s: s.dequantize(*s.quantize_per_tensor(x)), truth=reference.dequantize(*reference.quantize_per_tensor(x)),
           **TOL, name="dequantize(*quantize_per_tensor(x (8, 31))): float32")


@pytest.mark.hidden
def test_hidden_dtypes_and_shapes(expect, reference, rng):
    """float16, bfloat16 and float64 inputs (computed in float32), a single element, a 1-D
    row, rows of length 1 and values near 1e30."""
    per_tensor(expect, reference, rng.randn(17, 3, scale=4.0).half(), "float16 x of shape (17, 3)")
    per_row(expect, reference, rng.randn(5, 23, scale=4.0).bfloat16(), "bfloat16 x of shape (5, 23)")
    per_row(expect, reference, rng.randn(2, 3, 13, dtype=torch.float64), "float64 x of shape (2, 3, 13)")
    per_tensor(expect, reference, torch.tensor([-0.75]), "x = [-0.75] (one element: code -127)")
    per_row(expect, reference, rng.randn(61), "a 1-D x of 61 elements (one row, scale of shape (1,))")
    per_row(expect, reference, rng.randn(7, 1), "x of shape (7, 1): rows of one element, each code +-127")
    big = rng.randn(3, 10) * 1e30
    big[1] = 0.0
    per_row(expect, reference, big, "x ~ 1e30 of shape (3, 10), row 1 all zero")
