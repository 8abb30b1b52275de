"""Checks for quantization.int4_pack: int4 codes, the packed byte layout, unpacking and
dequantising.

Everything is integer or an exactly rounded float32 formula, so codes, bytes and scales are
compared exactly; the dequantised values within one float32 rounding. Known bytes are
written out by hand (the layout: two's complement nibbles, element 2i in the high nibble),
and unpacking is checked on all 256 byte values.
"""

from __future__ import annotations

import pytest
import torch

from grader.compare import check, raises

TOL = {"atol": 1e-6, "rtol": 1e-6}


def packed_by_hand(q: torch.Tensor) -> torch.Tensor:
    """The stated layout, one byte at a time in Python."""
    flat = q.reshape(-1, q.shape[-1]).tolist()
    rows = [[((row[2 * i] & 0xF) << 4) | (row[2 * i + 1] & 0xF) for i in range(len(row) // 2)] for row in flat]
    return torch.tensor(rows, dtype=torch.uint8).reshape(*q.shape[:-1], q.shape[-1] // 2)


def test_known_bytes(expect):
    q = torch.tensor([1, -2, 7, -8, 0, -1, 3, 5], dtype=torch.int8)
    expect(lambda s: s.pack_int4(q), truth=torch.tensor([0x1E, 0x78, 0x0F, 0x35], dtype=torch.uint8),
           name="pack_int4([1, -2, 7, -8, 0, -1, 3, 5]) == [0x1E, 0x78, 0x0F, 0x35] (element 2i high, two's complement)")
    every = torch.arange(256, dtype=torch.int16).to(torch.uint8).reshape(2, 128)
    lo, hi = every.to(torch.int16) & 0xF, every.to(torch.int16) >> 4
    truth = torch.stack([hi, lo], -1).reshape(2, 256)
    truth = torch.where(truth >= 8, truth - 16, truth).to(torch.int8)
    expect(lambda s: s.unpack_int4(every), truth=truth,
           name="unpack_int4(every byte 0 .. 255, shape (2, 128)): int8 (2, 256), high nibble first, sign-extended")


@pytest.mark.points(2)
def test_pack_and_unpack(expect, rng):
    for shape in ((5, 34), (2, 3, 6), (2,), (1, 1, 2)):
        q = rng.randint(-8, 8, shape).to(torch.int8)
        expect(lambda s, q=q: s.pack_int4(q), truth=packed_by_hand(q),
               name=f"pack_int4(int8 codes of shape {shape} in -8 .. 7)")
        expect(lambda s, q=q: s.unpack_int4(s.pack_int4(q)), truth=q,
               name=f"unpack_int4(pack_int4(codes of shape {shape})) gives the codes back")
    wide = rng.randint(-8, 8, (3, 10))  # int64 codes pack the same
    expect(lambda s: s.pack_int4(wide), truth=packed_by_hand(wide), name="pack_int4(int64 codes of shape (3, 10))")
    for bad, why in ((torch.zeros(4, 7, dtype=torch.int8), "an odd last axis (7)"),
                     (torch.tensor([3, 8], dtype=torch.int8), "the code 8 is outside -8 .. 7"),
                     (torch.tensor([-9, 0], dtype=torch.int8), "the code -9 is outside -8 .. 7")):
        check(raises(lambda b=bad: expect.solution.pack_int4(b)), f"pack_int4 must raise ValueError for {why}")


def quantized(expect, ref, w: torch.Tensor, group_size: int, what: str) -> None:
    q, scale = ref.quantize_int4(w, group_size)
    call = f"quantize_int4({what}, group_size={group_size})"
    expect(lambda s: s.quantize_int4(w, group_size)[1], truth=scale,
           name=f"{call}: the scales absmax / 7, float32 of shape {tuple(scale.shape)}")
    expect(lambda s: s.quantize_int4(w, group_size)[0], truth=q,
           name=f"{call}: the int8 codes round(w / scale) in -7 .. 7")
    expect(lambda s: s.dequantize_int4(s.pack_int4(s.quantize_int4(w, group_size)[0]),
                                       s.quantize_int4(w, group_size)[1], group_size),
           truth=ref.dequantize_int4(ref.pack_int4(q), scale, group_size), **TOL,
           name=f"dequantize_int4(pack_int4(codes), scales, {group_size}) after {call}")
    g = w.float().reshape(*w.shape[:-1], -1, group_size)
    err = (ref.dequantize_int4(ref.pack_int4(q), scale, group_size).reshape(g.shape) - g).abs()
    assert bool((err <= scale[..., None] / 2 * (1 + 1e-5) + 1e-6 * g.abs()).all()), "the reference's error bound"


@pytest.mark.points(2)
def test_quantize_groups(expect, reference, rng):
    w = rng.randn(6, 64)
    w[2, 5] = 30.0  # an outlier spoils its own group only
    w[4, 32:] = 0.0  # an all-zero group: scale 0, codes 0
    quantized(expect, reference, w, 32, "w (6, 64): an outlier in row 2, an all-zero group in row 4")
    quantized(expect, reference, rng.randn(3, 5, 24, scale=0.02), 8, "w ~ N(0, 0.02**2) of shape (3, 5, 24)")
    # ties: absmax 7 makes the scale exactly 1.0
    ties = torch.tensor([[7.0, 2.5, 3.5, -2.5, -0.5, 1.5, -6.5, 0.2]])
    quantized(expect, reference, ties, 8, "w with absmax 7 (scale exactly 1.0) and ties 2.5, 3.5, -2.5, -6.5")


def test_dequantize(expect, rng):
    q = rng.randint(-8, 8, (4, 40)).to(torch.int8)
    scale = rng.rand(4, 5) + 0.01
    truth = (q.float().reshape(4, 5, 8) * scale[..., None]).reshape(4, 40)
    packed = packed_by_hand(q)
    expect(lambda s: s.dequantize_int4(packed, scale, 8), truth=truth, **TOL,
           name="dequantize_int4(packed uint8 (4, 20), scales (4, 5), group_size=8): float32 (4, 40)")


@pytest.mark.hidden
def test_hidden_shapes_and_dtypes(expect, reference, rng):
    """bfloat16 and float16 weights, one group per row, groups of 2, a 1-D weight and a
    4-D batch of codes to pack."""
    quantized(expect, reference, rng.randn(4, 20).bfloat16(), 20, "bfloat16 w (4, 20), one group per row")
    quantized(expect, reference, rng.randn(3, 14, scale=5.0).half(), 2, "float16 w (3, 14), groups of 2")
    quantized(expect, reference, rng.randn(36), 12, "a 1-D w of 36 elements")
    q = rng.randint(-8, 8, (2, 3, 1, 18)).to(torch.int8)
    expect(lambda s: s.pack_int4(q), truth=packed_by_hand(q), name="pack_int4(codes of shape (2, 3, 1, 18))")
    expect(lambda s: s.unpack_int4(packed_by_hand(q)), truth=q, name="unpack_int4(bytes of shape (2, 3, 1, 9))")
