"""Checks for attention.sdpa: parity with torch.nn.functional.scaled_dot_product_attention.

The ground truth is torch's own function run with the math backend (dropout 0) in the judge.
Every check except test_fully_masked_rows_give_zeros gives each query at least one key.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

TOL = {"atol": 1e-5, "rtol": 1e-4}  # float32; torch's math backend orders the products differently
TOL64 = {"atol": 1e-12, "rtol": 1e-10}


def torch_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """The ground truth: torch's scaled_dot_product_attention, math backend, no dropout."""
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, **kwargs)


def shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    return f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"


def qkv(rng: Any, batch: tuple[int, ...], L: int, S: int, E: int, Ev: int, dtype=torch.float32, scale=1.0):
    return (
        rng.randn(*batch, L, E, dtype=dtype, scale=scale),
        rng.randn(*batch, S, E, dtype=dtype, scale=scale),
        rng.randn(*batch, S, Ev, dtype=dtype),
    )


def bool_mask(rng: Any, shape: tuple[int, ...], p_keep: float = 0.6) -> torch.Tensor:
    """A random boolean mask (True = attend) in which every query row keeps at least one key."""
    mask = rng.rand(*shape) < p_keep
    S = shape[-1]
    always = rng.randint(0, S, (*shape[:-1], 1))  # one guaranteed key per row
    return mask | (torch.arange(S) == always)


def expect_torch(expect, q, k, v, tol=TOL, what: str = "", **kwargs: Any) -> None:
    """The student's scaled_dot_product_attention(q, k, v, **kwargs) must match torch's."""
    expect(lambda s: s.scaled_dot_product_attention(q, k, v, **kwargs), truth=torch_sdpa(q, k, v, **kwargs), **tol,
           name=f"scaled_dot_product_attention({shapes(q, k, v)}{what})")


@pytest.mark.points(2)
def test_matches_torch(expect, rng):
    # L != S, head dims that are not powers of two, Ev != E, with and without batch dims
    for batch, L, S, E, Ev in (((2, 3), 5, 7, 12, 10), ((4,), 6, 6, 9, 5), ((), 5, 3, 7, 4)):
        q, k, v = qkv(rng.child(batch), batch, L, S, E, Ev)
        expect_torch(expect, q, k, v)


def test_custom_scale(expect, rng):
    q, k, v = qkv(rng, (2, 4), 6, 5, 8, 8)
    for scale in (0.3, 1.0, 2.0):
        expect_torch(expect, q, k, v, what=f", scale={scale}", scale=scale)


@pytest.mark.points(2)
def test_boolean_mask(expect, rng):
    B, H, L, S = 2, 3, 5, 11
    q, k, v = qkv(rng, (B, H), L, S, 16, 6)
    for mshape, what in (((L, S), "an (L, S) boolean mask"),
                         ((B, 1, 1, S), "a (B, 1, 1, S) key-padding boolean mask"),
                         ((B, H, L, S), "a (B, H, L, S) boolean mask")):
        mask = bool_mask(rng.child(mshape), mshape)
        expect_torch(expect, q, k, v, what=f", attn_mask={what}, True = attend", attn_mask=mask)


@pytest.mark.points(2)
def test_float_mask(expect, rng):
    B, H, L, S = 2, 2, 6, 9
    q, k, v = qkv(rng, (B, H), L, S, 10, 7)
    # finite biases (ALiBi-like) plus -inf entries that remove keys, never a whole row
    bias = rng.randn(L, S, scale=2.0)
    bias = bias.masked_fill(~bool_mask(rng.child("inf"), (L, S)), float("-inf"))
    expect_torch(expect, q, k, v, what=", additive float attn_mask (L, S) with -inf entries", attn_mask=bias)
    full = rng.randn(B, H, L, S, scale=3.0)
    expect_torch(expect, q, k, v, what=", additive float attn_mask (B, H, L, S), custom scale 0.5",
                 attn_mask=full, scale=0.5)


@pytest.mark.points(2)
def test_causal_top_left(expect, rng):
    # L == S, L < S and L > S: torch aligns the causal triangle at the top-left corner
    for L, S in ((6, 6), (4, 9), (9, 4)):
        q, k, v = qkv(rng.child(L, S), (2, 2), L, S, 12, 6)
        expect_torch(expect, q, k, v, what=f", is_causal=True, L={L}, S={S}", is_causal=True)


def test_single_query(expect, rng):
    # one query against many keys, as in token-by-token decoding
    B, H, S = 3, 2, 13
    q, k, v = qkv(rng, (B, H), 1, S, 20, 5)
    expect_torch(expect, q, k, v, what=", L=1")
    padding = bool_mask(rng.child("pad"), (B, 1, 1, S), p_keep=0.7)
    expect_torch(expect, q, k, v, what=", L=1, (B, 1, 1, S) boolean mask", attn_mask=padding)
    expect_torch(expect, q, k, v, what=", L=1, is_causal=True (top-left: sees only key 0)", is_causal=True)


@pytest.mark.points(2)
def test_large_logits(expect, rng):
    # logits of several hundred: exp() overflows float32 unless the row maximum is subtracted
    q, k, v = qkv(rng, (2, 3), 7, 8, 16, 6, scale=3.0)
    expect_torch(expect, q, k, v, what=", |q|,|k| ~ 3, scale=10", scale=10.0)
    q, k, v = qkv(rng.child("big"), (2,), 5, 6, 24, 4, scale=30.0)
    mask = bool_mask(rng.child("mask"), (5, 6))
    expect_torch(expect, q, k, v, what=", |q|,|k| ~ 30, boolean mask", attn_mask=mask)


def test_float64(expect, rng):
    q, k, v = qkv(rng, (2, 3), 7, 10, 9, 5, dtype=torch.float64)
    expect_torch(expect, q, k, v, tol=TOL64, what=", float64")
    expect_torch(expect, q, k, v, tol=TOL64, what=", float64, is_causal=True", is_causal=True)
    bias = rng.randn(7, 10, dtype=torch.float64)
    bias = bias.masked_fill(~bool_mask(rng.child("inf"), (7, 10)), float("-inf"))
    expect_torch(expect, q, k, v, tol=TOL64, what=", float64, additive -inf float mask", attn_mask=bias)


def test_fully_masked_rows_give_zeros(expect, rng):
    B, L, S = 2, 5, 6
    q, k, v = qkv(rng, (B,), L, S, 8, 3)
    mask = bool_mask(rng.child("mask"), (B, L, S))
    mask[0, 1] = False  # query 1 of sequence 0 may attend to nothing
    mask[1, 4] = False
    expect_torch(expect, q, k, v, what=", boolean mask with rows all False (expected: zero rows)", attn_mask=mask)
    bias = torch.zeros(L, S).masked_fill(~mask[0], float("-inf"))
    expect_torch(expect, q, k, v, what=", float mask with a row all -inf (expected: zero rows)", attn_mask=bias)


def test_gradients_match_torch(expect, rng):
    B, H, L, S = 2, 2, 4, 6
    q, k, v = qkv(rng, (B, H), L, S, 6, 5)
    mask = bool_mask(rng.child("mask"), (B, 1, L, S))
    grad_out = rng.randn(B, H, L, 5)
    expect.gradients(lambda s: s.scaled_dot_product_attention, [q, k, v, mask], grad_output=grad_out,
                     truth=lambda q, k, v, mask: torch_sdpa(q, k, v, attn_mask=mask), **TOL,
                     name=f"scaled_dot_product_attention(q, k, v, attn_mask) with {shapes(q, k, v)}, boolean mask"
                          " (input 0 = q, 1 = k, 2 = v; autograd reaches them only through torch operations:"
                          " no .detach(), no numpy)")


@pytest.mark.hidden
def test_hidden_odd_layouts(expect, rng):
    """Layouts the public checks do not use: three leading batch axes with a head dimension
    of 1, a boolean mask of lower rank than q that broadcasts over the leading axes (with a
    custom scale), and a single key (S = 1) under is_causal with L > S."""
    q, k, v = qkv(rng, (2, 1, 3), 5, 7, 1, 3)
    expect_torch(expect, q, k, v, what=", head dimension E=1")
    mask = bool_mask(rng.child("mask"), (3, 5, 7))
    expect_torch(expect, q, k, v, what=", a (3, 5, 7) boolean mask broadcast over the leading (2, 1), scale=0.7",
                 attn_mask=mask, scale=0.7)
    q, k, v = qkv(rng.child("one key"), (4,), 6, 1, 11, 2)
    expect_torch(expect, q, k, v, what=", a single key (S=1), is_causal=True: every query sees key 0",
                 is_causal=True)
