"""Checks for quantization.fused_kernels: softmax and RMSNorm in torch, then as Triton kernels.

The torch versions are judged against torch.softmax and transformers' LlamaRMSNorm (float32
parity, the same weight), and against the stated float32 formula for float16 and bfloat16
inputs (the result cast once to x's dtype: within one rounding of that dtype). The Triton
versions need triton (`needs("triton")`); without CUDA they run in triton's interpreter on CPU
tensors, in float32 and float16. Row lengths are not powers of two, so the padding lanes of
each block and the mask matter: an extra lane reads the next row's first element.
"""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

# float32: a sum of n exps or squares in another order differs by a few ulps. float16 and
# bfloat16: the float32 result is rounded once to the dtype (half an ulp, at most one ulp
# apart from the truth's own rounding), so the tolerance is one ulp of the dtype.
TOL = {torch.float32: {"atol": 1e-6, "rtol": 1e-5}, torch.float16: {"atol": 1e-3, "rtol": 2 ** -10},
       torch.bfloat16: {"atol": 1e-2, "rtol": 2 ** -7}}


def softmax_truth(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x.double(), dim=-1).to(x.dtype)


def rmsnorm_truth(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    z = x.double()
    return (z / torch.sqrt((z * z).mean(-1, keepdim=True) + eps) * weight.double()).to(x.dtype)


def cases(rng, dtypes):
    """(what, x) for shapes with row lengths that are not powers of two, and a row of length 1."""
    for dtype in dtypes:
        for shape in ((4, 37), (3, 1), (2, 3, 20), (1, 130)):
            yield f"x {dtype} of shape {shape}", rng.randn(*shape, scale=2.0).to(dtype)


@pytest.mark.points(2)
def test_softmax_torch(expect, rng):
    for what, x in cases(rng, (torch.float32, torch.float16, torch.bfloat16)):
        expect(lambda s, x=x: s.softmax(x), truth=softmax_truth(x), **TOL[x.dtype],
               name=f"softmax({what}): the last axis, in float32, returned in x's dtype")
    big = rng.randn(3, 11) * 50 + 1000.0
    big[1] = rng.randn(11) * 3 - 1e4
    expect(lambda s: s.softmax(big), truth=softmax_truth(big), **TOL[torch.float32],
           name="softmax(rows of values near 1000 and near -1e4): subtract the row's max before exp")


@pytest.mark.points(2)
def test_rmsnorm_torch_matches_llama(expect, rng):
    for n, eps in ((37, 1e-6), (1, 1e-5), (64, 1e-6)):
        x, weight = rng.randn(3, n, scale=2.0), 1 + 0.1 * rng.randn(n)
        norm = LlamaRMSNorm(n, eps=eps)
        norm.weight.data.copy_(weight)
        with torch.no_grad():
            truth = norm(x)
        expect(lambda s, x=x, w=weight, e=eps: s.rmsnorm(x, w, e), truth=truth, **TOL[torch.float32],
               name=f"rmsnorm(x of shape (3, {n}), weight, eps={eps}) against transformers' LlamaRMSNorm")
    small = rng.randn(2, 16, scale=1e-3)
    weight = torch.ones(16)
    expect(lambda s: s.rmsnorm(small, weight, 1e-6), truth=rmsnorm_truth(small, weight, 1e-6), **TOL[torch.float32],
           name="rmsnorm(x of size about 1e-3, weight=1, eps=1e-6): eps inside the square root")


def test_rmsnorm_torch_low_precision(expect, rng):
    for dtype in (torch.float16, torch.bfloat16):
        x, weight = rng.randn(4, 37, scale=3.0).to(dtype), (1 + 0.1 * rng.randn(37)).to(dtype)
        expect(lambda s, x=x, w=weight: s.rmsnorm(x, w, 1e-6), truth=rmsnorm_truth(x, weight, 1e-6), **TOL[dtype],
               name=f"rmsnorm(x {dtype} of shape (4, 37), weight {dtype}): in float32, returned in x's dtype")


@pytest.mark.needs("triton")
@pytest.mark.points(2)
def test_softmax_triton(expect, rng):
    for what, x in cases(rng, (torch.float32, torch.float16)):
        expect(lambda s, x=x: s.softmax_triton(x), truth=softmax_truth(x), **TOL[x.dtype],
               name=f"softmax_triton({what}): one program per row, BLOCK the next power of two")
    big = rng.randn(4, 24) * 50 + 1000.0
    expect(lambda s: s.softmax_triton(big), truth=softmax_truth(big), **TOL[torch.float32],
           name="softmax_triton(rows of values near 1000): subtract the row's max before exp")


@pytest.mark.needs("triton")
@pytest.mark.points(2)
def test_rmsnorm_triton(expect, rng):
    for what, x in cases(rng, (torch.float32, torch.float16)):
        weight = (1 + 0.1 * rng.randn(x.shape[-1])).to(x.dtype)
        expect(lambda s, x=x, w=weight: s.rmsnorm_triton(x, w, 1e-6), truth=rmsnorm_truth(x, weight, 1e-6),
               **TOL[x.dtype], name=f"rmsnorm_triton({what}, weight, eps=1e-6): the mean over n, not over BLOCK")


@pytest.mark.hidden
@pytest.mark.needs("triton")
def test_hidden_fresh_shapes(expect, rng):
    # Longer rows (one block of 512 lanes for 300 elements), many rows, and a 4-D input.
    for shape in ((17, 300), (2, 2, 3, 45)):
        x = rng.randn(*shape, scale=4.0)
        weight = 1 + 0.2 * rng.randn(shape[-1])
        expect(lambda s, x=x: s.softmax_triton(x), truth=softmax_truth(x), **TOL[torch.float32],
               name=f"softmax_triton(x of shape {shape})")
        expect(lambda s, x=x, w=weight: s.rmsnorm_triton(x, w, 1e-5), truth=rmsnorm_truth(x, weight, 1e-5),
               **TOL[torch.float32], name=f"rmsnorm_triton(x of shape {shape}, eps=1e-5)")
        expect(lambda s, x=x: s.softmax(x.to(torch.bfloat16)), truth=softmax_truth(x.to(torch.bfloat16)),
               **TOL[torch.bfloat16], name=f"softmax(x bfloat16 of shape {shape})")
