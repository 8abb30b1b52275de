"""Checks for quantization.int4_matmul: the group-wise int4 quantiser and its packing, the
dequantiser, the torch matmul and the Triton kernel.

Ground truth is the format of the stub's docstring written out here (scales = absmax / 7,
4-bit two's complement codes, the even element in the high nibble as bitsandbytes packs) and,
for the matmuls, dequantise-then-matmul in float32. Codes are compared exactly on weights built
so that w / scale lies at least 0.15 away from any rounding boundary, so every order of the
float operations gives the same code; scales within one float32 rounding (absmax / 7 and
absmax * (1 / 7) may differ in the last bit); dequantised weights exactly (one float32 product
each). The Triton checks run the kernel in triton's interpreter on CPU when there is no GPU
(compiled, on CUDA tensors, when there is one),
with K and N that are not multiples of any power-of-two block size above 8, and with inputs
that are views into larger buffers, so a mask that lets one column too many through reads
values that change the result (and never memory outside the buffer).
"""

from __future__ import annotations

import pytest
import torch

# --- the ground truth, written out ------------------------------------------------------------


def quantize(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = weight.float()
    n, k = w.shape
    groups = w.reshape(n, k // group_size, group_size)
    scales = groups.abs().amax(-1) / 7.0
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(groups / safe[..., None]).clamp(-8, 7).to(torch.int32).reshape(n, k)
    nib = q & 0xF
    return ((nib[:, 0::2] << 4) | nib[:, 1::2]).to(torch.uint8), scales


def unpack(packed: torch.Tensor) -> torch.Tensor:
    p = packed.to(torch.int32)
    nib = torch.stack([p >> 4, p & 0xF], -1).reshape(p.shape[0], -1)
    return torch.where(nib >= 8, nib - 16, nib)


def dequantize(packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    return unpack(packed).float() * scales.float().repeat_interleave(group_size, dim=1)


def matmul(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    return (x.double() @ dequantize(packed, scales, group_size).double().t()).to(x.dtype)


def tolerance(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> dict[str, float]:
    """float32: the rounding of a float32 sum of K products; float16/bfloat16: each weight
    rounded once to x's dtype (2**-11 or 2**-8 of each |product|) and the result rounded once."""
    w = dequantize(packed, scales, group_size)
    size = float((x.float().abs() @ w.abs().t()).max()) + 1e-30
    if x.dtype == torch.float32:
        return {"atol": 2e-6 * size, "rtol": 1e-5}
    u = 2.0**-11 if x.dtype == torch.float16 else 2.0**-8
    return {"atol": u * size, "rtol": 2 * u}


def grid_weight(rng, n: int, k: int, group_size: int) -> torch.Tensor:
    """A weight whose groups have absmax exactly 7 * scale (planted once per group) and whose
    values sit 0.15 or more from every rounding boundary of w / scale."""
    g = k // group_size
    scale = 0.002 + 0.1 * rng.rand(n, g)
    q = rng.randint(-7, 8, (n, g, group_size)).float()
    frac = (rng.rand(n, g, group_size) - 0.5) * 0.7
    frac[q.abs() == 7] = 0.0
    w = (q + frac) * scale[..., None]
    where = rng.randint(0, group_size, (n, g))
    sign = torch.where(rng.rand(n, g) < 0.5, -1.0, 1.0)
    w.scatter_(2, where[..., None], (sign * 7 * scale)[..., None])
    return w.reshape(n, k)


def random_format(rng, n: int, k: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed bytes of every value 0..255 (so every code -8..7 appears) and positive scales."""
    packed = rng.randint(0, 256, (n, k // 2)).to(torch.uint8)
    scales = 0.005 + 0.05 * rng.rand(n, k // group_size)
    return packed, scales


# the Triton checks run compiled on a GPU when there is one, else in the interpreter on CPU
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def in_buffer(t: torch.Tensor, fill: float | int) -> torch.Tensor:
    """`t` as a view into a buffer (on DEVICE) two rows and three columns larger, the rest set to
    `fill`: built on the device itself, since copying a view there would make it contiguous."""
    buf = torch.full((t.shape[0] + 2, t.shape[1] + 3), fill, dtype=t.dtype, device=DEVICE)
    buf[: t.shape[0], : t.shape[1]] = t
    return buf[: t.shape[0], : t.shape[1]]


# --- checks ----------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_quantize_int4(expect, rng):
    row = torch.tensor([[7.0, 2.5, -1.5, 0.5, -7.0, 3.5, 0.0, -0.5]])
    expect(lambda s: s.quantize_int4(row, 8)[0], truth=torch.tensor([[0x72, 0xE0, 0x94, 0x00]], dtype=torch.uint8),
           name="quantize_int4([[7, 2.5, -1.5, 0.5, -7, 3.5, 0, -0.5]], group_size=8): packed [[0x72, 0xE0, 0x94, "
                "0x00]] (scale 1; codes 7, 2, -2, 0, -7, 4, 0, 0: ties to even, -2 is 0xE, even element high)")
    expect(lambda s: s.quantize_int4(row, 8)[1], truth=torch.ones(1, 1), atol=0.0, rtol=1e-6,
           name="quantize_int4(that row, group_size=8): scales [[1.0]] (absmax 7 / 7)")
    for n, k, gs in ((13, 96, 32), (5, 40, 40), (3, 12, 2)):
        w = grid_weight(rng, n, k, gs)
        w[0, :gs] = 0.0  # a group of zeros: scale 0, codes 0
        packed, scales = quantize(w, gs)
        expect(lambda s, w=w, gs=gs: s.quantize_int4(w, gs)[0], truth=packed,
               name=f"quantize_int4(weight ({n}, {k}), group_size={gs}), its first group all zeros: the packed "
                    f"uint8 ({n}, {k // 2})")
        expect(lambda s, w=w, gs=gs: s.quantize_int4(w, gs)[1], truth=scales, atol=0.0, rtol=1e-6,
               name=f"quantize_int4(weight ({n}, {k}), group_size={gs}): the float32 scales ({n}, {k // gs}), "
                    "absmax / 7 (0 for the zero group)")
    half = grid_weight(rng, 6, 64, 16).half()
    expect(lambda s: s.quantize_int4(half, 16)[0], truth=quantize(half, 16)[0],
           name="quantize_int4(float16 weight (6, 64), group_size=16): packed")


def test_dequantize_int4(expect, rng):
    for n, k, gs in ((7, 48, 16), (3, 10, 2), (1, 64, 64)):
        packed, scales = random_format(rng, n, k, gs)
        expect(lambda s, p=packed, sc=scales, gs=gs: s.dequantize_int4(p, sc, gs), truth=dequantize(packed, scales, gs),
               name=f"dequantize_int4(packed ({n}, {k // 2}) of every byte value, scales ({n}, {k // gs}), "
                    f"group_size={gs}): float32 ({n}, {k}), exact (one float32 product per value)")
    row = torch.tensor([[0x7F, 0x80, 0x08, 0xF1]], dtype=torch.uint8)
    expect(lambda s: s.dequantize_int4(row, torch.tensor([[1.0, 0.5]]), 4),
           truth=torch.tensor([[7.0, -1.0, -8.0, 0.0, 0.0, -4.0, -0.5, 0.5]]),
           name="dequantize_int4([[0x7F, 0x80, 0x08, 0xF1]], scales [[1, 0.5]], group_size=4): "
                "[[7, -1, -8, 0, 0, -4, -0.5, 0.5]] (high nibble first, 8..15 are -8..-1)")
    packed, scales = random_format(rng, 5, 24, 8)
    half = scales.half()
    expect(lambda s: s.dequantize_int4(packed, half, 8), truth=dequantize(packed, half, 8),
           name="dequantize_int4(packed (5, 12), float16 scales (5, 3), group_size=8): float32 (5, 24)")


def test_round_trip_error(expect, rng):
    """Random weights: every dequantised value is within half a step (scale / 2) of the original."""
    from grader.compare import fail

    w = rng.randn(24, 120, scale=0.05)
    w[3, :24] *= 40.0  # one group of large values: its own scale, nobody else's
    call = lambda s: s.dequantize_int4(*s.quantize_int4(w, 24), 24)  # noqa: E731
    got = call(expect.solution)
    expect.compare(tuple(got.shape), (24, 120), lambda s: tuple(call(s).shape),
                   name="dequantize_int4(*quantize_int4(weight (24, 120), 24), 24).shape")
    step = (w.reshape(24, 5, 24).abs().amax(-1) / 7).repeat_interleave(24, dim=1)
    err = (got - w).abs()
    bad = err > step / 2 * (1 + 1e-5) + 1e-9
    if bool(bad.any()):
        n, k = divmod(int((err - step / 2).argmax()), 120)
        fail(f"dequantize_int4(*quantize_int4(weight (24, 120) ~ N(0, 0.05**2), one group 40x larger, 24), 24): "
             f"{int(bad.sum())} of {w.numel()} values are more than half a step (scale / 2) from the original; worst "
             f"at ({n}, {k}): original {float(w[n, k]):.5g}, round trip {float(got[n, k]):.5g}, step "
             f"{float(step[n, k]):.4g}. Each group has its own scale absmax / 7 and each code rounds to nearest.",
             got, expect.mistakes(call))


@pytest.mark.points(2)
def test_int4_matmul(expect, rng):
    for m, n, k, gs, dtype in ((5, 11, 96, 32, torch.float32), (1, 9, 40, 8, torch.float32),
                               (4, 1, 64, 64, torch.float32), (6, 10, 48, 16, torch.float16),
                               (3, 7, 32, 8, torch.bfloat16)):
        packed, scales = random_format(rng, n, k, gs)
        x = rng.randn(m, k).to(dtype)
        expect(lambda s, x=x, p=packed, sc=scales, gs=gs: s.int4_matmul(x, p, sc, gs),
               truth=matmul(x, packed, scales, gs), **tolerance(x, packed, scales, gs),
               name=f"int4_matmul(x ({m}, {k}) {str(dtype)[6:]}, packed ({n}, {k // 2}), scales ({n}, {k // gs}), "
                    f"group_size={gs}) vs x @ dequantised weight.T, in x's dtype")


TRITON_CASES = (  # (M, N, K, group_size, dtype): N and K are not multiples of 16 or above
    (5, 70, 200, 8, torch.float32),
    (1, 40, 96, 32, torch.float32),
    (17, 33, 120, 24, torch.float32),
    (3, 21, 72, 24, torch.float16),
)


@pytest.mark.needs("triton")
@pytest.mark.points(3)
def test_int4_matmul_triton(expect, rng):
    for m, n, k, gs, dtype in TRITON_CASES:
        packed, scales = random_format(rng, n, k, gs)
        x = in_buffer(rng.randn(m, k).to(dtype), 1.0)
        packed, scales = in_buffer(packed, 0x77), in_buffer(scales, 1.0)
        expect(lambda s, x=x, p=packed, sc=scales, gs=gs: s.int4_matmul_triton(x, p, sc, gs).cpu(),
               truth=matmul(x.cpu(), packed.cpu(), scales.cpu(), gs),
               **tolerance(x.cpu(), packed.cpu(), scales.cpu(), gs),
               name=f"int4_matmul_triton(x ({m}, {k}) {str(dtype)[6:]}, packed ({n}, {k // 2}), scales "
                    f"({n}, {k // gs}), group_size={gs}) vs x @ dequantised weight.T")


@pytest.mark.hidden
def test_hidden_torch_cases(expect, rng):
    """Groups of 4, float16 scales, a strided (transposed) x, a group of zeros, ties, bfloat16 weights."""
    packed, scales = random_format(rng, 5, 36, 4)
    scales = scales.half()
    x = rng.randn(36, 3).t()
    expect(lambda s: s.int4_matmul(x, packed, scales, 4), truth=matmul(x, packed, scales, 4),
           **tolerance(x, packed, scales, 4),
           name="int4_matmul(x (3, 36) a transposed view, packed (5, 18), float16 scales (5, 9), group_size=4)")
    w = grid_weight(rng, 4, 28, 4)
    w[2, 8:12] = 0.0
    w[1, :4] = torch.tensor([3.5, -7.0, 0.5, -2.5])
    wb = w.bfloat16()
    expect(lambda s: s.quantize_int4(wb, 4)[0], truth=quantize(wb, 4)[0],
           name="quantize_int4(bfloat16 weight (4, 28), group_size=4, a group of zeros, a group [3.5, -7, 0.5, -2.5])")


@pytest.mark.hidden
@pytest.mark.needs("triton")
def test_hidden_triton_cases(expect, rng):
    """Exactly one block of 16 rows, groups of 8 over K = 136, N = 65, float16 scales, a strided x,
    and float16 activations with M = 2."""
    packed, scales = random_format(rng, 65, 136, 8)
    packed, scales = in_buffer(packed, 0x77), in_buffer(scales.half(), 1.0)
    x = rng.randn(137, 16).to(DEVICE)[:136].t()  # x[m, 136] is still inside the buffer
    expect(lambda s: s.int4_matmul_triton(x, packed, scales, 8).cpu(),
           truth=matmul(x.cpu(), packed.cpu(), scales.cpu(), 8), **tolerance(x.cpu(), packed.cpu(), scales.cpu(), 8),
           name="int4_matmul_triton(x (16, 136) a transposed view, packed (65, 68), float16 scales (65, 17), "
                "group_size=8)")
    packed, scales = random_format(rng, 19, 56, 56)
    packed, scales = in_buffer(packed, 0x77), in_buffer(scales, 1.0)
    x = in_buffer(rng.randn(2, 56).half(), 1.0)
    expect(lambda s: s.int4_matmul_triton(x, packed, scales, 56).cpu(),
           truth=matmul(x.cpu(), packed.cpu(), scales.cpu(), 56),
           **tolerance(x.cpu(), packed.cpu(), scales.cpu(), 56),
           name="int4_matmul_triton(float16 x (2, 56), packed (19, 28), scales (19, 1), group_size=56)")
