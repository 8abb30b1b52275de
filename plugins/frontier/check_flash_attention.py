"""Checks for frontier.flash_attention: tiled attention with an online softmax, backward, Triton.

The ground truth is naive attention computed in the judge in float64: softmax(Q K^T / sqrt(d) +
causal mask) V and the log-sum-exp of the scaled, masked scores; the gradients are torch
autograd's on that naive attention. Sequence lengths are not multiples of the tile (the last
tile is partial), include N = 1 and N_q != N_k, and scores of a few hundred (overflow-prone
without the running max). Memory is measured, not assumed: `probes.largest_allocation`
watches every tensor a torch op creates while the student's forward and backward run (in the
solution's own process) and the check fails on one as large as an (N, N) score slice, or on
as many elements held at once in the tensors the call made (the tiled reference's backward
holds at most 0.54 of that: dq, dk, dv and one tile's working set). The
Triton kernel needs triton (`needs("triton")`); without CUDA it runs in triton's interpreter
on CPU tensors at small sizes with 16-row tiles. The hidden checks draw fresh lengths and head
dims.
"""

from __future__ import annotations

import math

import pytest
import torch

from grader import probes
from grader.compare import fail

# float32 tiles against a float64 truth: each output is a sum of <= 200 products rescaled a few
# times (a few ulps of values of order 1); scores of a few hundred lose |s| * 2**-24 each,
# which exp turns into a relative error of about 3e-5 of p. Every known mistake is off by O(1).
OUT_TOL = {"atol": 1e-4, "rtol": 1e-4}
LSE_TOL = {"atol": 1e-5, "rtol": 1e-5}  # lse is float32: a few ulps of values up to a few hundred
GRAD_TOL = {"atol": 1e-4, "rtol": 1e-4}  # sums over N of float32 products of order 1
# float16 inputs: p is rounded to float16 before p @ v (2**-11 relative), the output once more
HALF_TOL = {"atol": 3e-3, "rtol": 3e-3}
SMALL_TILES = {"block_q": 16, "block_k": 16}  # the interpreter runs one program at a time: keep grids small


def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) of plain attention in float64, differentiable, rounded to q's dtype / float32."""
    s = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return (torch.softmax(s, dim=-1) @ v.double()).to(q.dtype), torch.logsumexp(s, dim=-1).float()


def naive_out(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    return naive(q, k, v, causal)[0]


def qkv(rng, batch: tuple[int, ...], n_q: int, n_k: int, d: int, scale: float = 1.0, dtype=torch.float32):
    return (rng.randn(*batch, n_q, d, scale=scale).to(dtype), rng.randn(*batch, n_k, d, scale=scale).to(dtype),
            rng.randn(*batch, n_k, d).to(dtype))


def describe(q: torch.Tensor, k: torch.Tensor, causal: bool, **tiles: int) -> str:
    extra = "".join(f", {n}={t}" for n, t in tiles.items())
    return f"q {tuple(q.shape)}, k and v {tuple(k.shape)}, causal={causal}{extra}"


def expect_forward(expect, fn: str, q, k, v, causal: bool, tol=OUT_TOL, **tiles: int) -> None:
    out, lse = naive(q, k, v, causal)
    what = f"{fn}({describe(q, k, causal, **tiles)})"
    expect(lambda s: getattr(s, fn)(q, k, v, causal, **tiles)[0], truth=out, **tol,
           name=f"{what}: out, against softmax(q k^T / sqrt(d)) v")
    expect(lambda s: getattr(s, fn)(q, k, v, causal, **tiles)[1], truth=lse, **LSE_TOL,
           name=f"{what}: lse, the natural log of the sum of exp of the scaled, masked scores (m + log l)")


def expect_backward(expect, rng, q, k, v, causal: bool, **tiles: int) -> None:
    dout = rng.randn(*q.shape)
    leaves = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    s = (leaves[0] @ leaves[1].transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    (torch.softmax(s, dim=-1) @ leaves[2]).backward(dout.double())
    out, lse = naive(q, k, v, causal)
    for i, name in enumerate(("dq", "dk", "dv")):
        expect(lambda m, i=i: m.flash_attention_backward(q, k, v, out, lse, dout, causal, **tiles)[i],
               truth=leaves[i].grad.float(), **GRAD_TOL,
               name=f"flash_attention_backward({describe(q, k, causal, **tiles)}, out, lse, dout): {name}, "
                    "against autograd on naive attention")


@pytest.mark.points(2)
def test_forward_matches_naive_attention(expect, rng):
    # N not a multiple of the tile, N = 1, N_q != N_k, a head dim that is not a power of two
    for batch, n_q, n_k, d in (((2, 3), 100, 100, 24), ((1, 2), 1, 1, 16), ((2, 2), 37, 150, 32), ((3,), 64, 64, 8)):
        q, k, v = qkv(rng.child(n_q, n_k), batch, n_q, n_k, d)
        expect_forward(expect, "flash_attention_forward", q, k, v, False)
    q, k, v = qkv(rng, (1, 2), 45, 70, 16)
    expect_forward(expect, "flash_attention_forward", q, k, v, False, block_q=16, block_k=32)


@pytest.mark.points(2)
def test_forward_causal_and_large_scores(expect, rng):
    for batch, n, d in (((2, 2), 100, 24), ((1, 3), 1, 16), ((1, 2), 130, 16)):
        q, k, v = qkv(rng.child(n), batch, n, n, d)
        expect_forward(expect, "flash_attention_forward", q, k, v, True)
    q, k, v = qkv(rng, (1, 2), 50, 50, 16)
    expect_forward(expect, "flash_attention_forward", q, k, v, True, block_q=16, block_k=8)
    # scores of a few hundred: exp overflows float32 unless each tile subtracts the running max,
    # and the max grows from tile to tile (q and k drawn large, keys sorted by growing norm)
    q, k, v = qkv(rng, (1, 2), 90, 90, 16, scale=6.0)
    k = k * torch.linspace(0.2, 1.0, 90)[:, None]
    expect_forward(expect, "flash_attention_forward", q, k, v, False)
    expect_forward(expect, "flash_attention_forward", q, k, v, True)


@pytest.mark.points(2)
def test_backward_matches_autograd(expect, rng):
    for batch, n_q, n_k, d, causal in (((2, 2), 100, 100, 24, False), ((1, 2), 100, 100, 16, True),
                                       ((1, 2), 1, 1, 16, True), ((2, 1), 37, 70, 20, False)):
        q, k, v = qkv(rng.child(n_q, n_k, causal), batch, n_q, n_k, d)
        expect_backward(expect, rng.child("dout", n_q, causal), q, k, v, causal)
    q, k, v = qkv(rng, (1, 2), 50, 50, 16)
    expect_backward(expect, rng.child("tiles"), q, k, v, True, block_q=32, block_k=16)


def test_autograd_function(expect, rng):
    for n, causal in ((70, False), (70, True), (1, False)):
        q, k, v = qkv(rng.child(n, causal), (2, 2), n, n, 16)
        expect.gradients(lambda m: m.flash_attention, [q, k, v, causal], truth=naive_out, **GRAD_TOL,
                         grad_output=rng.child("dout", n, causal).randn(2, 2, n, 16),
                         name=f"flash_attention(q, k, v of shape (2, 2, {n}, 16), causal={causal}).backward(dout)")


@pytest.mark.points(2)
def test_memory_is_linear_in_n(expect, rng):
    n, d = 512, 32
    limit = n * n  # one (batch, head) slice of the score matrix
    q, k, v = qkv(rng, (1, 2), n, n, d)
    out, lse = naive(q, k, v, True)
    dout = rng.randn(1, 2, n, d)
    tiles = {"block_q": 64, "block_k": 64}
    for fn, args in (("flash_attention_forward", [q, k, v, False]), ("flash_attention_forward", [q, k, v, True]),
                     ("flash_attention_backward", [q, k, v, out, lse, dout, True])):
        seen = probes.largest_allocation(getattr(expect.solution, fn), args, tiles)
        if seen["numel"] >= limit or seen["peak_numel"] >= limit:
            def call(m, fn=fn, args=args):
                again = probes.largest_allocation(getattr(m, fn), args, tiles)
                return again["numel"] >= limit or again["peak_numel"] >= limit

            what = (f"allocated a tensor of {seen['numel']} elements ({seen['op']} made one of shape "
                    f"{tuple(seen['shape'])})" if seen["numel"] >= limit else
                    f"held {seen['peak_numel']} elements at once in tensors it made, though none was as large "
                    "(pieces of the scores kept alive together count as the whole)")
            fail(f"{fn}(q, k, v of shape (1, 2, {n}, {d}), causal={args[-1]}, block_q=64, block_k=64) {what}; "
                 f"one (N, N) score slice has {limit}: never allocate a tensor as large as the score matrix, "
                 "nor keep that much at once; keep tiles of block_q x block_k (a tile here holds 2 * 64 * 64 "
                 "elements), drop each when its key tile is done and carry m, l and acc from one key tile to the "
                 "next", True, expect.mistakes(call))


@pytest.mark.needs("triton")
@pytest.mark.points(2)
def test_triton_forward(expect, rng):
    for batch, n_q, n_k, d, causal in (((1, 2), 1, 1, 16, False), ((1, 2), 37, 37, 24, False),
                                       ((2, 1), 45, 45, 16, True), ((1, 2), 20, 50, 32, False)):
        q, k, v = qkv(rng.child(n_q, n_k, causal), batch, n_q, n_k, d)
        expect_forward(expect, "flash_attention_forward_triton", q, k, v, causal, **SMALL_TILES)
    q, k, v = qkv(rng, (1, 2), 40, 40, 16, dtype=torch.float16)
    expect_forward(expect, "flash_attention_forward_triton", q, k, v, True, tol=HALF_TOL, **SMALL_TILES)


@pytest.mark.hidden
def test_hidden_fresh_shapes(expect, rng):
    """A fresh odd length from 65 to 199 and head dim from 9 to 40, causal and not, on 4-D
    inputs: the forward, the backward at other tiles, and the autograd Function."""
    n = 2 * int(rng.randint(32, 100, ())) + 1
    d = int(rng.randint(9, 41, ()))
    for causal in (False, True):
        q, k, v = qkv(rng.child("fwd", causal), (2, 3), n, n, d, scale=2.0)
        expect_forward(expect, "flash_attention_forward", q, k, v, causal)
        expect_backward(expect, rng.child("bwd", causal), q, k, v, causal, block_q=32, block_k=48)
    q, k, v = qkv(rng.child("cross"), (3,), n // 3, n, d)
    expect_forward(expect, "flash_attention_forward", q, k, v, False, block_q=16, block_k=16)
    expect.gradients(lambda m: m.flash_attention, [q, k, v, False], truth=naive_out, **GRAD_TOL,
                     name=f"flash_attention(q ({n // 3}, {d}), k and v ({n}, {d})).backward()")


@pytest.mark.hidden
@pytest.mark.needs("triton")
def test_hidden_triton_fresh_shapes(expect, rng):
    """Fresh lengths from 33 to 79 (3 to 5 key tiles of 16, the last partial) and head dims
    that are not powers of two, causal and not."""
    n = 2 * int(rng.randint(16, 40, ())) + 1
    d = int(rng.randint(9, 40, ()))
    for causal in (False, True):
        q, k, v = qkv(rng.child(causal), (2, 1), n, n, d, scale=2.0)
        expect_forward(expect, "flash_attention_forward_triton", q, k, v, causal, **SMALL_TILES)
