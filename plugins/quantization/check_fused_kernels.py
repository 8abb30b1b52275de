"""Checks for quantization.fused_kernels: softmax and RMSNorm in torch, then as Triton kernels.

The torch versions are judged against torch.softmax and transformers' LlamaRMSNorm (float32
parity, the same weight), and against the stated float32 formula for float16 and bfloat16
inputs (the result cast once to x's dtype: within one rounding of that dtype). The Triton
versions need triton (`needs("triton")`); without CUDA they run in triton's interpreter on CPU
tensors, in float32 and float16. Row lengths are not powers of two, so the padding lanes of
each block and the mask matter: an extra lane reads the next row's first element. Softmax
inputs reach float16's and float32's limits and hold -inf entries; RMSNorm rows range from
RMS 1e-4 (where eps decides) to float16 values whose squares overflow float16. The hidden
checks draw fresh row lengths; the torch one counts without triton.
"""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from grader.checks import zero_tail

# Every tensor a kernel writes here has a byte size that is not 8 modulo 16. A kernel whose
# mask is off by one (a known mistake, run in the judge's own process) writes one element past
# the end of its output; glibc rounds an allocation of b bytes up to leave b % 16 == 8 with no
# room after it, and the stray element would overwrite the next chunk's header. It also reads
# one element past the end of x (and of weight) for the last row: every kernel input here is
# built by zero_tail, so that element is 0 in the judge, as in the solution process (the wire
# puts zeros after what it delivers), and the mistake gives the same output on every run.
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


def llama_rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm holding `weight`, in weight's dtype, applied to x."""
    norm = LlamaRMSNorm(weight.shape[0], eps=eps).to(weight.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        return norm(x)


def cases(rng, dtypes):
    """(what, x) for shapes with row lengths that are not powers of two, and a row of length 1."""
    for dtype in dtypes:
        for shape in ((5, 37), (3, 1), (2, 3, 20), (1, 131)):
            yield f"x {dtype} of shape {shape}", zero_tail(rng.randn(*shape, scale=2.0).to(dtype))


@pytest.mark.points(2)
def test_softmax_torch(expect, rng):
    for what, x in cases(rng, (torch.float32, torch.float16, torch.bfloat16)):
        expect(lambda s, x=x: s.softmax(x), truth=softmax_truth(x), **TOL[x.dtype],
               name=f"softmax({what}): the last axis, in float32, returned in x's dtype")
    big = rng.randn(3, 11) * 50 + 1000.0
    big[1] = rng.randn(11) * 3 - 1e4
    expect(lambda s: s.softmax(big), truth=softmax_truth(big), **TOL[torch.float32],
           name="softmax(rows of values near 1000 and near -1e4): subtract the row's max before exp")
    # near the top of float16's range (65504): exp of any of these overflows even in float32
    half = (6e4 + rng.randn(2, 9, scale=100.0)).to(torch.float16)
    expect(lambda s: s.softmax(half), truth=softmax_truth(half), **TOL[torch.float16],
           name="softmax(x float16 of values near 6e4, the top of float16's range)")


@pytest.mark.points(2)
def test_rmsnorm_torch_matches_llama(expect, rng):
    for n, eps in ((37, 1e-6), (1, 1e-5), (64, 1e-6)):
        x, weight = rng.randn(3, n, scale=2.0), 1 + 0.1 * rng.randn(n)
        expect(lambda s, x=x, w=weight, e=eps: s.rmsnorm(x, w, e), truth=llama_rmsnorm(x, weight, eps),
               **TOL[torch.float32],
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
    # float16 values whose squares overflow float16 (|x| > 256): only float32 arithmetic survives
    x, weight = rng.randn(3, 24, scale=400.0).to(torch.float16), (1 + 0.1 * rng.randn(24)).to(torch.float16)
    expect(lambda s: s.rmsnorm(x, weight, 1e-6), truth=rmsnorm_truth(x, weight, 1e-6), **TOL[torch.float16],
           name="rmsnorm(x float16 with |x| in the hundreds, weight float16): x * x overflows float16, not float32")
    # parity with LlamaRMSNorm itself in bfloat16 (the module and x in bfloat16): Llama rounds
    # h to bfloat16 before multiplying by the weight, one extra rounding: two ulps allowed
    x, weight = rng.randn(5, 48, scale=2.0).to(torch.bfloat16), (1 + 0.1 * rng.randn(48)).to(torch.bfloat16)
    expect(lambda s: s.rmsnorm(x, weight, 1e-6), truth=llama_rmsnorm(x, weight, 1e-6), atol=1e-2, rtol=2 ** -6,
           name="rmsnorm(x bfloat16 of shape (5, 48), weight bfloat16) against LlamaRMSNorm(48).to(bfloat16)")


@pytest.mark.needs("triton")
@pytest.mark.points(2)
def test_softmax_triton(expect, rng):
    for what, x in cases(rng, (torch.float32, torch.float16)):
        expect(lambda s, x=x: s.softmax_triton(x), truth=softmax_truth(x), **TOL[x.dtype],
               name=f"softmax_triton({what}): one program per row, BLOCK the next power of two")
    big = zero_tail(rng.randn(4, 24) * 50 + 1000.0)
    expect(lambda s: s.softmax_triton(big), truth=softmax_truth(big), **TOL[torch.float32],
           name="softmax_triton(rows of values near 1000): subtract the row's max before exp")


@pytest.mark.needs("triton")
@pytest.mark.points(2)
def test_rmsnorm_triton(expect, rng):
    for what, x in cases(rng, (torch.float32, torch.float16)):
        weight = zero_tail((1 + 0.1 * rng.randn(x.shape[-1])).to(x.dtype))
        expect(lambda s, x=x, w=weight: s.rmsnorm_triton(x, w, 1e-6), truth=rmsnorm_truth(x, weight, 1e-6),
               **TOL[x.dtype], name=f"rmsnorm_triton({what}, weight, eps=1e-6): the mean over n, not over BLOCK")


@pytest.mark.hidden
def test_hidden_torch_fresh_shapes(expect, rng):
    """Sizes drawn afresh (an odd row length from 3 to 201) on a 4-D input and a non-contiguous
    view; softmax rows holding some -inf entries (masked positions: probability 0) and values
    near float32's limit; RMSNorm rows of RMS from 1e-4 to 1e3 with eps=1e-5."""
    n = 2 * int(rng.randint(1, 101, ())) + 1
    x = rng.randn(2, 3, 2, n, scale=4.0)
    x[0, 1, 0, :: 3] = float("-inf")
    x[1, 0, 1, 1:] = float("-inf")
    x[1, 2, 0] = x[1, 2, 0] * 1e36 + 3e37
    for what, t in ((f"x of shape {tuple(x.shape)} with -inf entries and values near 1e38", x),
                    (f"a non-contiguous view of shape (5, {n})", rng.randn(n, 5, scale=3.0).t()),
                    (f"x bfloat16 of shape (3, {n})", rng.randn(3, n, scale=3.0).to(torch.bfloat16))):
        expect(lambda s, t=t: s.softmax(t), truth=softmax_truth(t), **TOL[t.dtype], name=f"softmax({what})")
    scales = 10 ** (7 * rng.rand(2, 3, 2, 1) - 4)
    x = rng.randn(2, 3, 2, n) * scales
    weight = 1 + 0.2 * rng.randn(n)
    expect(lambda s: s.rmsnorm(x, weight, 1e-5), truth=llama_rmsnorm(x, weight, 1e-5), **TOL[torch.float32],
           name=f"rmsnorm(x of shape {tuple(x.shape)}, rows of RMS 1e-4 to 1e3, eps=1e-5) against LlamaRMSNorm")
    xt = rng.randn(n, 6, scale=2.0).t()
    expect(lambda s: s.rmsnorm(xt, weight, 1e-6), truth=llama_rmsnorm(xt, weight, 1e-6), **TOL[torch.float32],
           name=f"rmsnorm(a non-contiguous view of shape (6, {n}), weight, eps=1e-6) against LlamaRMSNorm")


@pytest.mark.hidden
@pytest.mark.needs("triton")
def test_hidden_triton_fresh_shapes(expect, rng):
    """Longer rows drawn afresh (201 to 599: one block of 256, 512 or 1024 lanes), many rows,
    a 4-D input, a non-contiguous view, and the overflow-prone and -inf rows of the torch checks."""
    n = int(rng.randint(201, 600, ()))
    n += 1 - n % 2  # odd: never a power of two
    for shape in ((17, n), (2, 2, 3, 45)):
        x = zero_tail(rng.randn(*shape, scale=4.0))
        weight = zero_tail(1 + 0.2 * rng.randn(shape[-1]))
        expect(lambda s, x=x: s.softmax_triton(x), truth=softmax_truth(x), **TOL[torch.float32],
               name=f"softmax_triton(x of shape {shape})")
        expect(lambda s, x=x, w=weight: s.rmsnorm_triton(x, w, 1e-5), truth=rmsnorm_truth(x, weight, 1e-5),
               **TOL[torch.float32], name=f"rmsnorm_triton(x of shape {shape}, eps=1e-5)")
    x = rng.randn(3, 7, scale=3.0) + 1e3
    x[1, ::2] = float("-inf")
    x = zero_tail(x)
    expect(lambda s: s.softmax_triton(x), truth=softmax_truth(x), **TOL[torch.float32],
           name="softmax_triton(rows of values near 1000, one with -inf entries)")
    xt = rng.randn(29, 5, scale=2.0).to(torch.float16).t()
    weight = (1 + 0.2 * rng.randn(29)).to(torch.float16)
    expect(lambda s: s.softmax_triton(xt), truth=softmax_truth(xt), **TOL[torch.float16],
           name="softmax_triton(a non-contiguous float16 view of shape (5, 29))")
    expect(lambda s: s.rmsnorm_triton(xt, weight, 1e-6), truth=rmsnorm_truth(xt, weight, 1e-6), **TOL[torch.float16],
           name="rmsnorm_triton(a non-contiguous float16 view of shape (5, 29), weight float16)")
