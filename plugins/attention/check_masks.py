"""Checks for attention.masks.

Values are compared exactly with masks built here from first principles (torch.tril, arange
comparisons), and behaviour is checked by feeding the student's masks to
torch.nn.functional.scaled_dot_product_attention in the judge: future tokens and padding must
not change the outputs they are supposed to be hidden from.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grader.compare import assert_close, assert_equal, check

# Blocked positions get exactly zero weight, so outputs must not move at all; this only
# absorbs a different reduction order if the kernel changes paths between two calls.
SAME = {"atol": 1e-6, "rtol": 0.0}
TOL = {"atol": 1e-5, "rtol": 1e-5}


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None, is_causal: bool = False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


def qkv(rng, B: int, H: int, L: int, S: int, D: int = 8):
    return rng.randn(B, H, L, D), rng.randn(B, H, S, D), rng.randn(B, H, S, D)


def right_valid(lengths: torch.Tensor, S: int) -> torch.Tensor:
    return torch.arange(S)[None, :] < lengths[:, None]


def lengths_with_edges(rng, B: int, S: int) -> torch.Tensor:
    """Random lengths in [1, S], with a full-length and a length-1 sequence among them."""
    lengths = rng.randint(1, S + 1, (B,))
    lengths[0], lengths[-1] = S, 1
    return lengths


@pytest.mark.points(2)
def test_causal_mask_matches_tril(solution, mistakes):
    for L, S in ((1, None), (7, None), (1, 5), (3, 8), (6, 4)):
        got = solution.causal_mask(L, S) if S is not None else solution.causal_mask(L)
        expected = torch.ones(L, S if S is not None else L, dtype=torch.bool).tril()
        call = f"causal_mask({L}, {S})" if S is not None else f"causal_mask({L})"
        assert_equal(got, expected, name=f"{call} (True = may attend, top-left aligned)",
                     mistakes=mistakes(lambda m, L=L, S=S: m.causal_mask(L, S)))
    got = solution.causal_mask(5, device=torch.device("cpu"))
    assert_equal(got, torch.ones(5, 5, dtype=torch.bool).tril(), name="causal_mask(5, device=cpu)")


@pytest.mark.points(2)
def test_causal_mask_matches_sdpa_is_causal(solution, rng, mistakes):
    # torch's is_causal is the ground truth for the alignment when S != L.
    for L, S in ((6, 6), (3, 7), (1, 4), (9, 5)):
        q, k, v = qkv(rng.child(L, S), 2, 3, L, S)
        got = sdpa(q, k, v, solution.causal_mask(L, S))
        assert_close(got, sdpa(q, k, v, is_causal=True), **TOL,
                     name=f"scaled_dot_product_attention with causal_mask({L}, {S}) vs is_causal=True",
                     mistakes=mistakes(lambda m, q=q, k=k, v=v, L=L, S=S: sdpa(q, k, v, m.causal_mask(L, S))))


@pytest.mark.points(2)
def test_future_tokens_do_not_leak(solution, rng):
    L = 9
    mask = solution.causal_mask(L)
    q, k, v = qkv(rng, 2, 2, L, L)
    out = sdpa(q, k, v, mask)
    for t in range(L):
        # Replace every token after t: outputs at positions 0..t must not move.
        k2, v2 = k.clone(), v.clone()
        k2[:, :, t + 1:] = rng.randn(2, 2, L - t - 1, 8, scale=5.0)
        v2[:, :, t + 1:] = rng.randn(2, 2, L - t - 1, 8, scale=5.0)
        assert_close(sdpa(q, k2, v2, mask)[:, :, :t + 1], out[:, :, :t + 1], **SAME,
                     name=f"outputs at positions 0..{t} after changing the keys/values of positions "
                          f"{t + 1}..{L - 1} (the future must be invisible)")
        # Change token t itself: query t must see it (a token attends to itself).
        k3, v3 = k.clone(), v.clone()
        k3[:, :, t] += 3.0
        v3[:, :, t] += 3.0
        moved = float((sdpa(q, k3, v3, mask)[:, :, t] - out[:, :, t]).abs().max())
        check(moved > 1e-3, f"causal_mask({L}): the output at position {t} did not change when the key/value "
                            f"at position {t} changed; query {t} must attend to itself (j <= i, diagonal included)")


@pytest.mark.points(2)
def test_padding_mask_values(solution, rng, mistakes):
    for B, S in ((5, 7), (4, 13), (2, 1)):
        lengths = lengths_with_edges(rng, B, S)
        got = solution.padding_mask(lengths, S)
        assert_equal(got, right_valid(lengths, S),
                     name=f"padding_mask(lengths={lengths.tolist()}, S={S}) (True = real token)",
                     mistakes=mistakes(lambda m, lengths=lengths, S=S: m.padding_mask(lengths, S)))


@pytest.mark.points(2)
def test_padding_is_invisible_in_attention(solution, rng, mistakes):
    B, H, L, S = 4, 2, 5, 11
    lengths = lengths_with_edges(rng, B, S)
    mask = solution.padding_mask(lengths, S)
    q, k, v = qkv(rng, B, H, L, S)
    out = sdpa(q, k, v, mask[:, None, None, :])
    for b in range(B):
        n = int(lengths[b])
        assert_close(out[b], sdpa(q[b], k[b, :, :n], v[b, :, :n]), **TOL,
                     name=f"attention of sequence {b} (length {n} of {S}, right-padded) with padding_mask "
                          f"vs the same sequence without its padding",
                     mistakes=mistakes(lambda m, b=b: sdpa(q, k, v, m.padding_mask(lengths, S)[:, None, None, :])[b]))
    # Replace every pad token's key/value: nothing may move.
    pad = ~right_valid(lengths, S)[:, None, :, None]
    k2 = torch.where(pad, rng.randn(B, H, S, 8, scale=5.0), k)
    v2 = torch.where(pad, rng.randn(B, H, S, 8, scale=5.0), v)
    assert_close(sdpa(q, k2, v2, mask[:, None, None, :]), out, **SAME,
                 name="attention outputs after changing the keys/values at padded positions")


@pytest.mark.points(2)
def test_left_padding_mask(solution, rng, mistakes):
    for B, S in ((5, 7), (3, 1)):
        lengths = lengths_with_edges(rng, B, S)
        expected = torch.arange(S)[None, :] >= S - lengths[:, None]
        assert_equal(solution.left_padding_mask(lengths, S), expected,
                     name=f"left_padding_mask(lengths={lengths.tolist()}, S={S}) (real tokens at the end)",
                     mistakes=mistakes(lambda m, lengths=lengths, S=S: m.left_padding_mask(lengths, S)))
    B, H, L, S = 4, 2, 3, 10
    lengths = lengths_with_edges(rng, B, S)
    mask = solution.left_padding_mask(lengths, S)
    q, k, v = qkv(rng, B, H, L, S)
    out = sdpa(q, k, v, mask[:, None, None, :])
    for b in range(B):
        n = int(lengths[b])
        assert_close(out[b], sdpa(q[b], k[b, :, S - n:], v[b, :, S - n:]), **TOL,
                     name=f"attention of sequence {b} (length {n} of {S}, left-padded) with left_padding_mask "
                          f"vs the same sequence without its padding")


@pytest.mark.points(2)
def test_combined_mask_values(solution, rng, mistakes):
    for B, L in ((4, 7), (2, 1), (3, 12)):
        lengths = lengths_with_edges(rng, B, L)
        for causal in (True, False):
            expected = right_valid(lengths, L)[:, None, None, :].expand(B, 1, L, L)
            if causal:
                expected = expected & torch.ones(L, L, dtype=torch.bool).tril()
            assert_equal(solution.combined_mask(lengths, L, causal=causal), expected.contiguous(),
                         name=f"combined_mask(lengths={lengths.tolist()}, L={L}, causal={causal}) "
                              f"of shape (B, 1, L, L)",
                         mistakes=mistakes(lambda m, lengths=lengths, L=L, c=causal: m.combined_mask(lengths, L, c)))


@pytest.mark.points(2)
def test_combined_mask_equals_unpadded_attention(solution, rng, mistakes):
    B, H, L = 4, 3, 9
    lengths = lengths_with_edges(rng, B, L)
    q, k, v = qkv(rng, B, H, L, L)
    for causal in (True, False):
        mask = solution.combined_mask(lengths, L, causal=causal)
        out = sdpa(q, k, v, mask)
        check(bool(torch.isfinite(out).all()),
              f"attention with combined_mask(causal={causal}) gave non-finite outputs: no row may be all False")
        for b in range(B):
            n = int(lengths[b])
            expected = sdpa(q[b, :, :n], k[b, :, :n], v[b, :, :n], is_causal=causal)
            assert_close(out[b, :, :n], expected, **TOL,
                         name=f"attention of sequence {b} (length {n} of {L}) with combined_mask(causal={causal}) "
                              f"vs the unpadded sequence with is_causal={causal}",
                         mistakes=mistakes(lambda m, b=b, n=n, c=causal:
                                           sdpa(q, k, v, m.combined_mask(lengths, L, c))[b, :, :n]))
        # The padded query rows are not blocked: they attend like any other row.
        full = right_valid(lengths, L)[:, None, None, :]
        if causal:
            full = full & torch.ones(L, L, dtype=torch.bool).tril()
        assert_close(out, sdpa(q, k, v, full), **TOL,
                     name=f"attention with combined_mask(causal={causal}) at every position, padded queries "
                          f"included (only keys are masked)",
                     mistakes=mistakes(lambda m, c=causal: sdpa(q, k, v, m.combined_mask(lengths, L, c))))


@pytest.mark.points(2)
def test_to_additive_values(solution, rng, mistakes):
    mask = rng.rand(3, 5, 7) < 0.5
    mask[0, 0] = True
    mask[1, 1] = False
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        expected = torch.zeros(3, 5, 7, dtype=dtype).masked_fill(~mask, float("-inf"))
        assert_equal(solution.to_additive(mask, dtype), expected,
                     name=f"to_additive(mask, {dtype}) (0.0 where True, -inf where False)",
                     mistakes=mistakes(lambda m, d=dtype: m.to_additive(mask, d)))
    assert_equal(solution.to_additive(mask), torch.zeros(3, 5, 7).masked_fill(~mask, float("-inf")),
                 name="to_additive(mask) with the default dtype float32")


def test_to_additive_matches_boolean_in_sdpa(solution, rng, mistakes):
    B, H, L = 3, 2, 6
    lengths = lengths_with_edges(rng, B, L)
    mask = right_valid(lengths, L)[:, None, None, :] & torch.ones(L, L, dtype=torch.bool).tril()
    q, k, v = qkv(rng, B, H, L, L)
    got = sdpa(q, k, v, solution.to_additive(mask, torch.float32))
    assert_close(got, sdpa(q, k, v, mask), **TOL,
                 name="attention with to_additive(mask) vs with the boolean mask itself",
                 mistakes=mistakes(lambda m: sdpa(q, k, v, m.to_additive(mask, torch.float32))))
