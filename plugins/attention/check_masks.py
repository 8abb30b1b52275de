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

from grader.compare import fail

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
def test_causal_mask_matches_tril(expect):
    for args in ((1,), (7,), (1, 5), (3, 8), (6, 4)):
        expect(lambda s, a=args: s.causal_mask(*a), truth=torch.ones(args[0], args[-1], dtype=torch.bool).tril(),
               name=f"causal_mask({', '.join(map(str, args))}) (True = may attend, top-left aligned)")
    expect(lambda s: s.causal_mask(5, device=torch.device("cpu")), truth=torch.ones(5, 5, dtype=torch.bool).tril(),
           name="causal_mask(5, device=cpu)")


@pytest.mark.points(2)
def test_causal_mask_matches_sdpa_is_causal(expect, rng):
    # torch's is_causal is the ground truth for the alignment when S != L.
    for L, S in ((6, 6), (3, 7), (1, 4), (9, 5)):
        q, k, v = qkv(rng.child(L, S), 2, 3, L, S)
        expect(lambda s, q=q, k=k, v=v, L=L, S=S: sdpa(q, k, v, s.causal_mask(L, S)),
               truth=sdpa(q, k, v, is_causal=True), **TOL,
               name=f"scaled_dot_product_attention with causal_mask({L}, {S}) vs is_causal=True")


@pytest.mark.points(2)
def test_future_tokens_do_not_leak(expect, rng):
    L, D = 9, 8
    q, k, v = qkv(rng, 2, 2, L, L, D)

    def attention(m):
        """Attention under m's causal mask, as a function of the keys and values side by side."""
        mask = m.causal_mask(L)
        return lambda kv: sdpa(q, kv[..., :D], kv[..., D:], mask)

    # Replace the keys/values of every position from t on: outputs before t must not move.
    for t in range(1, L):
        expect.causal(attention, torch.cat([k, v], dim=-1), t=t, rng=rng, dim=2, scale=5.0, **SAME,
                      name=f"attention with causal_mask({L}), whose inputs are the keys/values"
                           " (the future must be invisible)")
    # Change token t itself: query t must see it (a token attends to itself).
    mask = expect.solution.causal_mask(L)
    out = sdpa(q, k, v, mask)
    for t in range(L):
        k3, v3 = k.clone(), v.clone()
        k3[:, :, t] += 3.0
        v3[:, :, t] += 3.0
        moved = float((sdpa(q, k3, v3, mask)[:, :, t] - out[:, :, t]).abs().max())
        if not moved > 1e-3:
            fail(f"causal_mask({L}): the output at position {t} did not change when the key/value at position {t}"
                 f" changed; query {t} must attend to itself (j <= i, diagonal included)",
                 mask, expect.mistakes(lambda m: m.causal_mask(L)))


@pytest.mark.points(2)
def test_padding_mask_values(expect, rng):
    for B, S in ((5, 7), (4, 13), (2, 1)):
        lengths = lengths_with_edges(rng, B, S)
        expect(lambda s, lengths=lengths, S=S: s.padding_mask(lengths, S), truth=right_valid(lengths, S),
               name=f"padding_mask(lengths={lengths.tolist()}, S={S}) (True = real token)")


@pytest.mark.points(2)
def test_padding_is_invisible_in_attention(expect, rng):
    B, H, L, S = 4, 2, 5, 11
    lengths = lengths_with_edges(rng, B, S)
    q, k, v = qkv(rng, B, H, L, S)

    def attention(m, k=k, v=v):
        return sdpa(q, k, v, m.padding_mask(lengths, S)[:, None, None, :])

    out = attention(expect.solution)
    for b in range(B):
        n = int(lengths[b])
        expect.compare(out[b], sdpa(q[b], k[b, :, :n], v[b, :, :n]), lambda m, b=b: attention(m)[b], **TOL,
                       name=f"attention of sequence {b} (length {n} of {S}, right-padded) with padding_mask "
                            f"vs the same sequence without its padding")
    # Replace every pad token's key/value: nothing may move.
    pad = ~right_valid(lengths, S)[:, None, :, None]
    k2 = torch.where(pad, rng.randn(B, H, S, 8, scale=5.0), k)
    v2 = torch.where(pad, rng.randn(B, H, S, 8, scale=5.0), v)
    expect.compare(attention(expect.solution, k2, v2), out, lambda m: attention(m, k2, v2), **SAME,
                   name="attention outputs after changing the keys/values at padded positions")


@pytest.mark.points(2)
def test_left_padding_mask(expect, rng):
    for B, S in ((5, 7), (3, 1)):
        lengths = lengths_with_edges(rng, B, S)
        expect(lambda s, lengths=lengths, S=S: s.left_padding_mask(lengths, S),
               truth=torch.arange(S)[None, :] >= S - lengths[:, None],
               name=f"left_padding_mask(lengths={lengths.tolist()}, S={S}) (real tokens at the end)")
    B, H, L, S = 4, 2, 3, 10
    lengths = lengths_with_edges(rng, B, S)
    q, k, v = qkv(rng, B, H, L, S)

    def attention(m):
        return sdpa(q, k, v, m.left_padding_mask(lengths, S)[:, None, None, :])

    out = attention(expect.solution)
    for b in range(B):
        n = int(lengths[b])
        expect.compare(out[b], sdpa(q[b], k[b, :, S - n:], v[b, :, S - n:]), lambda m, b=b: attention(m)[b], **TOL,
                       name=f"attention of sequence {b} (length {n} of {S}, left-padded) with left_padding_mask "
                            f"vs the same sequence without its padding")


def combined_truth(lengths: torch.Tensor, L: int, causal: bool) -> torch.Tensor:
    """(B, 1, L, L): key j is a real token and, when causal, j <= i."""
    expected = right_valid(lengths, L)[:, None, None, :].expand(len(lengths), 1, L, L)
    if causal:
        expected = expected & torch.ones(L, L, dtype=torch.bool).tril()
    return expected.contiguous()


@pytest.mark.points(2)
def test_combined_mask_values(expect, rng):
    for B, L in ((4, 7), (2, 1), (3, 12)):
        lengths = lengths_with_edges(rng, B, L)
        for causal in (True, False):
            expect(lambda s, lengths=lengths, L=L, c=causal: s.combined_mask(lengths, L, causal=c),
                   truth=combined_truth(lengths, L, causal),
                   name=f"combined_mask(lengths={lengths.tolist()}, L={L}, causal={causal}) of shape (B, 1, L, L)")


@pytest.mark.points(2)
def test_combined_mask_equals_unpadded_attention(expect, rng):
    B, H, L = 4, 3, 9
    lengths = lengths_with_edges(rng, B, L)
    q, k, v = qkv(rng, B, H, L, L)
    for causal in (True, False):
        def attention(m, c=causal):
            return sdpa(q, k, v, m.combined_mask(lengths, L, causal=c))

        out = attention(expect.solution)
        if not bool(torch.isfinite(out).all()):
            fail(f"attention with combined_mask(causal={causal}) gave non-finite outputs: no row may be all False",
                 out, expect.mistakes(attention))
        for b in range(B):
            n = int(lengths[b])
            expect.compare(out[b, :, :n], sdpa(q[b, :, :n], k[b, :, :n], v[b, :, :n], is_causal=causal),
                           lambda m, b=b, n=n: attention(m)[b, :, :n], **TOL,
                           name=f"attention of sequence {b} (length {n} of {L}) with combined_mask(causal={causal}) "
                                f"vs the unpadded sequence with is_causal={causal}")
        # The padded query rows are not blocked: they attend like any other row.
        expect.compare(out, sdpa(q, k, v, combined_truth(lengths, L, causal)), attention, **TOL,
                       name=f"attention with combined_mask(causal={causal}) at every position, padded queries "
                            f"included (only keys are masked)")


@pytest.mark.points(2)
def test_to_additive_values(expect, rng):
    mask = rng.rand(3, 5, 7) < 0.5
    mask[0, 0] = True
    mask[1, 1] = False
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        expect(lambda s, d=dtype: s.to_additive(mask, d),
               truth=torch.zeros(3, 5, 7, dtype=dtype).masked_fill(~mask, float("-inf")),
               name=f"to_additive(mask, {dtype}) (0.0 where True, -inf where False)")
    expect(lambda s: s.to_additive(mask), truth=torch.zeros(3, 5, 7).masked_fill(~mask, float("-inf")),
           name="to_additive(mask) with the default dtype float32")


def test_to_additive_matches_boolean_in_sdpa(expect, rng):
    B, H, L = 3, 2, 6
    lengths = lengths_with_edges(rng, B, L)
    mask = right_valid(lengths, L)[:, None, None, :] & torch.ones(L, L, dtype=torch.bool).tril()
    q, k, v = qkv(rng, B, H, L, L)
    expect(lambda s: sdpa(q, k, v, s.to_additive(mask, torch.float32)), truth=sdpa(q, k, v, mask), **TOL,
           name="attention with to_additive(mask) vs with the boolean mask itself")


@pytest.mark.hidden
def test_hidden_int32_lengths_and_odd_sizes(expect, rng):
    """What the public checks do not show: lengths as an int32 tensor (as a tokenizer's
    attention_mask.sum(-1) may give), a larger odd S with random lengths for every mask
    built from them, a causal mask much wider than tall, and to_additive of a 4-d combined
    mask in float16."""
    B, S = 6, 29
    lengths = lengths_with_edges(rng, B, S).to(torch.int32)
    shown = f"lengths={lengths.tolist()} as int32"
    expect(lambda s: s.padding_mask(lengths, S), truth=right_valid(lengths, S),
           name=f"padding_mask({shown}, S={S})")
    expect(lambda s: s.left_padding_mask(lengths, S), truth=torch.arange(S)[None, :] >= S - lengths[:, None],
           name=f"left_padding_mask({shown}, S={S})")
    combined = combined_truth(lengths, S, True)
    expect(lambda s: s.combined_mask(lengths, S), truth=combined, name=f"combined_mask({shown}, L={S})")
    expect(lambda s: s.causal_mask(3, 17), truth=torch.ones(3, 17, dtype=torch.bool).tril(),
           name="causal_mask(3, 17)")
    expect(lambda s: s.to_additive(combined, torch.float16),
           truth=torch.zeros(B, 1, S, S, dtype=torch.float16).masked_fill(~combined, float("-inf")),
           name=f"to_additive(the (B, 1, L, L) combined mask for {shown}, torch.float16)")
