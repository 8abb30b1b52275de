"""Checks for quantization.llm_int8: row-wise absmax int8 codes, the outlier columns, the exact
int32 accumulation, and the LLM.int8() matmul with its outlier decomposition.

Ground truth: the formulas of bitsandbytes' `int8_vectorwise_quant` (codes = round(a * (127 /
absmax)), the outlier columns are those with any |x| >= threshold), `int8_linear_matmul` (int32
sums) and `int8_mm_dequant` (acc * row_stats * col_stats / 127**2), written out here in plain
torch so that every check but one runs without bitsandbytes; that one
(`test_bitsandbytes_parity`) compares with bitsandbytes' own functions when it is installed.

Codes are compared exactly on inputs built so that a * 127 / absmax lies at least 0.15 away
from any rounding boundary: there every order of the float operations rounds to the same code.
The float results are compared with the same computation within float32 rounding, and against
the float32 matmul within the quantisation error bound stated in the stub.
"""

from __future__ import annotations

import pytest
import torch

# float32: the results differ from the reference's only by the order of a few float32 operations
TOL = {"atol": 1e-5, "rtol": 1e-5}


# --- the ground truth, written out (bitsandbytes' formulas) ----------------------------------

def quantize_rowwise(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = a.float()
    absmax = a.abs().amax(dim=-1)
    inv = torch.where(absmax > 0, 127.0 / absmax, torch.zeros_like(absmax))
    return torch.round(a * inv[:, None]).to(torch.int8), absmax


def outliers(x: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    return torch.nonzero((x.float().abs() >= threshold).any(dim=0)).flatten()


def int32_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.long() @ b.long().t()).to(torch.int32)


def llm_int8(x: torch.Tensor, weight: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    x, weight = x.float(), weight.float()
    cols = outliers(x, threshold)
    regular = x.clone()
    regular[:, cols] = 0.0
    xq, sx = quantize_rowwise(regular)
    wq, sw = quantize_rowwise(weight)
    acc = int32_matmul(xq, wq).double()
    return (x[:, cols].double() @ weight[:, cols].double().t()
            + acc * sx[:, None].double() * sw[None, :].double() / 127**2).float()


def error_bound(x: torch.Tensor, weight: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    """Per output, the most the int8 part can differ from the float32 matmul: every value is at
    most half a step from its code, so |x w - x' w'| <= |x| sw/2 + |w| sx/2 + sx sw/4 per
    regular column, plus float32 rounding of the sums."""
    x, weight = x.float(), weight.float()
    cols = outliers(x, threshold)
    regular = x.clone()
    regular[:, cols] = 0.0
    in_int8 = torch.ones(x.shape[1])
    in_int8[cols] = 0.0
    sx = regular.abs().amax(-1) / 127
    sw = weight.abs().amax(-1) / 127
    bound = (regular.abs().sum(-1)[:, None] * sw[None, :] / 2
             + sx[:, None] * (weight.abs() * in_int8).sum(-1)[None, :] / 2
             + in_int8.sum() * sx[:, None] * sw[None, :] / 4)
    return bound + 1e-5 * (x.abs() @ weight.abs().t()) + 1e-6


def grid_rows(rng, rows: int, cols: int, absmax: torch.Tensor) -> torch.Tensor:
    """Rows whose absmax is exactly `absmax[r]` (planted once, as +-absmax) and whose values sit
    0.15 or more away from every rounding boundary of a * 127 / absmax."""
    codes = rng.randint(-126, 127, (rows, cols)).float()
    frac = (rng.rand(rows, cols) - 0.5) * 0.7
    a = (codes + frac) * absmax[:, None] / 127
    where = rng.randint(0, cols, (rows,))
    sign = torch.where(rng.rand(rows) < 0.5, -1.0, 1.0)
    a[torch.arange(rows), where] = sign * absmax
    return a


def activations(rng, m: int, k: int, outlier_cols: list[int], regular_max: float = 5.5) -> torch.Tensor:
    """x (m, k) on the grid below the threshold, then the given columns made outlier columns:
    one value in [6, 80] (sign random) per such column, the column's other values small."""
    x = grid_rows(rng, m, k, 1.0 + (regular_max - 1.0) * rng.rand(m))
    for j in outlier_cols:
        x[:, j] = rng.randn(m, scale=0.3)
        x[int(rng.randint(0, m, (1,))), j] = float(6.0 + 74.0 * rng.rand(1)) * (1 if rng.rand(1) < 0.5 else -1)
    return x


def weights(rng, n: int, k: int) -> torch.Tensor:
    return grid_rows(rng, n, k, 0.05 + 0.5 * rng.rand(n))


# --- checks ----------------------------------------------------------------------------------

@pytest.mark.points(2)
def test_quantize_rowwise(expect, rng):
    a = grid_rows(rng, 7, 45, torch.tensor([0.01, 0.3, 1.0, 2.5, 7.0, 40.0, 1000.0]))
    a[3] = 0.0  # a row of zeros: absmax 0, codes 0
    codes, absmax = quantize_rowwise(a)
    expect(lambda s: s.quantize_rowwise(a)[0], truth=codes,
           name="quantize_rowwise(a (7, 45), row absmaxes 0.01 .. 1000, row 3 all zeros): the int8 codes "
                "round(a * (127 / absmax))")
    expect(lambda s: s.quantize_rowwise(a)[1], truth=absmax,
           name="quantize_rowwise(a (7, 45)): the float32 row absmax (0 for the zero row)")
    # ties: absmax 127 makes the codes the values themselves, so x.5 is a tie in any formula
    ties = torch.tensor([[127.0, 2.5, 3.5, -2.5, 0.5, -0.5, 1.5, 126.5, -126.5, 5.5]])
    expect(lambda s: s.quantize_rowwise(ties)[0], truth=quantize_rowwise(ties)[0],
           name="quantize_rowwise([[127, 2.5, 3.5, -2.5, 0.5, -0.5, 1.5, 126.5, -126.5, 5.5]]): ties round "
                "to even (torch.round), codes [127, 2, 4, -2, 0, 0, 2, 126, -126, 6]")
    half = grid_rows(rng, 4, 19, torch.tensor([0.5, 3.0, 6.0, 60.0])).half()
    expect(lambda s: s.quantize_rowwise(half), truth=quantize_rowwise(half),
           name="quantize_rowwise(float16 a (4, 19)): codes and a float32 absmax")


def test_outlier_columns(expect, rng):
    x = rng.randn(9, 33, scale=1.5).clamp(-5.5, 5.5)
    x[2, 4] = 6.0  # exactly the threshold: an outlier (>=)
    x[7, 17] = -6.0  # |x| counts
    x[5, 20] = 5.999  # just below: not an outlier
    x[0, 31] = 40.0
    x[8, 0] = -100.0
    expect(lambda s: s.outlier_columns(x), truth=outliers(x),
           name="outlier_columns(x (9, 33)) with 6.0 at column 4, -6.0 at 17, 5.999 at 20, 40 at 31, -100 at 0: "
                "the int64 indices [0, 4, 17, 31]")
    expect(lambda s: s.outlier_columns(x, 3.0), truth=outliers(x, 3.0),
           name="outlier_columns(x (9, 33), threshold=3.0)")
    calm = rng.randn(5, 12).clamp(-5.0, 5.0)
    expect(lambda s: s.outlier_columns(calm), truth=torch.zeros(0, dtype=torch.int64),
           name="outlier_columns(x (5, 12) with every |x| <= 5): an empty int64 tensor of shape (0,)")
    loud = rng.randn(3, 7) + 10.0
    expect(lambda s: s.outlier_columns(loud), truth=torch.arange(7),
           name="outlier_columns(x (3, 7) with every value near 10): every column, arange(7)")
    one = torch.tensor([[0.5, -7.0, 6.5, 2.0, -6.0]]).half()
    expect(lambda s: s.outlier_columns(one), truth=torch.tensor([1, 2, 4]),
           name="outlier_columns(float16 x of one row [0.5, -7, 6.5, 2, -6]): [1, 2, 4]")


def test_int32_accumulation(expect, rng):
    a = rng.randint(-127, 128, (5, 37)).to(torch.int8)
    b = rng.randint(-127, 128, (11, 37)).to(torch.int8)
    expect(lambda s: s.int8_matmul_int32(a, b), truth=int32_matmul(a, b),
           name="int8_matmul_int32(x_codes (5, 37), w_codes (11, 37)): int32 (5, 11)")
    # sums of ~2**24.6: int8 wraps around, float32 rounds to even numbers
    big_a = rng.randint(100, 128, (4, 2050)).to(torch.int8)
    big_b = rng.randint(100, 128, (9, 2050)).to(torch.int8)
    big_b[1] = -big_b[1]
    expect(lambda s: s.int8_matmul_int32(big_a, big_b), truth=int32_matmul(big_a, big_b),
           name="int8_matmul_int32(codes of 100..127, K = 2050): the exact sums, about 2.6e7 (above 2**24, where "
                "float32 stops holding every integer)")


@pytest.mark.points(3)
def test_llm_int8_matmul(expect, rng):
    cases = [
        ("no outlier column", activations(rng, 5, 24, []), weights(rng, 7, 24)),
        ("outlier columns 3, 10 and 38", activations(rng, 6, 45, [3, 10, 38]), weights(rng, 13, 45)),
        ("every column an outlier", activations(rng, 4, 9, list(range(9))), weights(rng, 3, 9)),
        ("one row (M = 1), outlier columns 0 and 16", activations(rng, 1, 17, [0, 16]), weights(rng, 5, 17)),
    ]
    for what, x, w in cases:
        expect(lambda s, x=x, w=w: s.llm_int8_matmul(x, w), truth=llm_int8(x, w), **TOL,
               name=f"llm_int8_matmul(x {tuple(x.shape)}, weight {tuple(w.shape)}), {what}")
    x, w = cases[2][1], cases[2][2]
    expect(lambda s: s.llm_int8_matmul(x, w), truth=x @ w.t(), **TOL,
           name="llm_int8_matmul with every column an outlier: the float32 matmul x @ weight.T")
    x = activations(rng, 3, 30, [7, 8])
    w = weights(rng, 6, 30)
    expect(lambda s: s.llm_int8_matmul(x, w, threshold=2.0), truth=llm_int8(x, w, 2.0), **TOL,
           name="llm_int8_matmul(x (3, 30), weight (6, 30), threshold=2.0)")
    xh, wh = activations(rng, 5, 21, [2]).half(), weights(rng, 4, 21).half()
    expect(lambda s: s.llm_int8_matmul(xh, wh), truth=llm_int8(xh, wh), **TOL,
           name="llm_int8_matmul(float16 x (5, 21), float16 weight (4, 21)): computed in and returned as float32")


@pytest.mark.points(2)
def test_error_against_float32_matmul(expect, rng):
    """Random activations with three huge feature columns (values 30..80): quantised with the
    rest, they would set every row's scale and wipe out the ordinary values; decomposed, the
    error stays within the bound of the regular part alone."""
    x = rng.randn(16, 96)
    for j in (5, 50, 91):
        x[:, j] = (30.0 + 50.0 * rng.rand(16)) * torch.sign(rng.randn(16))
    w = rng.randn(24, 96, scale=0.1)
    exact = x @ w.t()
    bound = error_bound(x, w)
    call = lambda s: s.llm_int8_matmul(x, w)  # noqa: E731
    got = call(expect.solution)
    expect.compare(got.shape, exact.shape, call=lambda s: call(s).shape,
                   name="llm_int8_matmul(x (16, 96), weight (24, 96)).shape")
    err = (got - exact).abs()
    worst = int((err - bound).argmax())
    m, n = divmod(worst, exact.shape[1])
    if not bool((err <= bound).all()):
        from grader.compare import fail
        fail(f"llm_int8_matmul(x (16, 96) with huge columns 5, 50, 91, weight (24, 96)): {int((err > bound).sum())} "
             f"of {err.numel()} outputs differ from the float32 matmul by more than the int8 error bound; worst at "
             f"({m}, {n}): |got - x @ weight.T| = {float(err[m, n]):.4g}, bound {float(bound[m, n]):.4g}. "
             "The huge columns must be multiplied in float (outlier decomposition), the rest quantised per row.",
             got, expect.mistakes(call))


@pytest.mark.needs("bitsandbytes")
def test_bitsandbytes_parity(expect, rng):
    """bitsandbytes' own int8_vectorwise_quant, int8_linear_matmul and int8_mm_dequant (CPU).
    bitsandbytes takes each row's absmax over the values below the threshold, outlier columns
    included; here the outlier columns' other values are small, so that is the same absmax."""
    import bitsandbytes.functional as bnbf

    w = weights(rng, 10, 40)
    w_codes, w_stats, _ = bnbf.int8_vectorwise_quant(w.clone())
    expect(lambda s: s.quantize_rowwise(w), truth=(w_codes, w_stats),
           name="quantize_rowwise(weight (10, 40)) vs bitsandbytes.functional.int8_vectorwise_quant(weight)")
    x = activations(rng, 6, 40, [1, 22, 39])
    x[:, [1, 22, 39]] = x[:, [1, 22, 39]].clamp(-0.9, 0.9) + 8.0 * (x[:, [1, 22, 39]].abs() >= 6.0)
    x_codes, x_stats, cols = bnbf.int8_vectorwise_quant(x.clone(), threshold=6.0)
    expect(lambda s: s.outlier_columns(x), truth=cols.to(torch.int64),
           name="outlier_columns(x (6, 40)) vs the outlier columns of bitsandbytes' int8_vectorwise_quant(x, "
                "threshold=6.0)")
    acc = bnbf.int8_linear_matmul(x_codes, w_codes)
    expect(lambda s: s.int8_matmul_int32(x_codes, w_codes), truth=acc,
           name="int8_matmul_int32 vs bitsandbytes.functional.int8_linear_matmul")
    regular = torch.ops.bitsandbytes.int8_mm_dequant.default(acc, x_stats, w_stats, dtype=torch.float32)
    truth = regular + x[:, cols] @ w[:, cols].t()
    # int8_mm_dequant multiplies by 6.200124e-05, 1.8e-5 (relative) above 1 / 127**2: 2e-5 of
    # the int8 part's size, which the float part may cancel
    expect(lambda s: s.llm_int8_matmul(x, w), truth=truth, atol=1e-5 + 2e-5 * float(regular.abs().max()), rtol=1e-5,
           name="llm_int8_matmul(x (6, 40), weight (10, 40)) vs bitsandbytes' int8_mm_dequant(int8_linear_matmul("
                "...)) + the float32 product of the outlier columns")


@pytest.mark.hidden
@pytest.mark.points(2)
def test_hidden_other_cases(expect, rng):
    """A single output feature, bfloat16 inputs, a threshold of 4.0 met exactly, a row made only of outliers (its int8 part is 0),
    a row of zeros, outliers in the first and last columns, and the exact int32 sums at K = 3001."""
    x = activations(rng, 3, 130, [0, 64, 129])
    w = weights(rng, 1, 130)
    expect(lambda s: s.llm_int8_matmul(x, w), truth=llm_int8(x, w), **TOL,
           name="llm_int8_matmul(x (3, 130), weight (1, 130)), outliers in columns 0, 64, 129")
    xb = activations(rng, 5, 26, [4, 25])
    xb[1] = 0.0
    xb[3, :] = 0.0
    xb[3, [4, 25]] = torch.tensor([9.0, -12.0])
    xb = xb.bfloat16()
    wb = weights(rng, 11, 26).bfloat16()
    expect(lambda s: s.llm_int8_matmul(xb, wb), truth=llm_int8(xb, wb), **TOL,
           name="llm_int8_matmul(bfloat16 x (5, 26): row 1 zeros, row 3 only outliers; bfloat16 weight (11, 26))")
    expect(lambda s: s.quantize_rowwise(xb), truth=quantize_rowwise(xb),
           name="quantize_rowwise(bfloat16 x (5, 26) with a row of zeros)")
    x5 = activations(rng, 7, 50, [2, 3, 11, 30, 47], regular_max=3.5)
    x5[6, 20] = -4.0  # exactly the threshold: column 20 is an outlier too
    w5 = weights(rng, 9, 50)
    expect(lambda s: s.outlier_columns(x5, 4.0), truth=outliers(x5, 4.0),
           name="outlier_columns(x (7, 50), threshold=4.0)")
    expect(lambda s: s.llm_int8_matmul(x5, w5, 4.0), truth=llm_int8(x5, w5, 4.0), **TOL,
           name="llm_int8_matmul(x (7, 50), weight (9, 50), threshold=4.0)")
    a = rng.randint(110, 128, (3, 3001)).to(torch.int8)
    b = -rng.randint(110, 128, (5, 3001)).to(torch.int8)
    expect(lambda s: s.int8_matmul_int32(a, b), truth=int32_matmul(a, b),
           name="int8_matmul_int32(codes of magnitude 110..127, K = 3001): exact sums near -4.4e7")
