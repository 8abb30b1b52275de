"""Checks for frontier.sliding_window.

Masks are compared exactly with masks built here from the definition, one (query, key) pair
at a time in plain Python; attention is compared with naive float64 masked attention; and
transformers' Mistral is the ground truth for the window convention: a tiny MistralForCausalLM
with `sliding_window` set must give the same logits as the same weights with the window off
and the student's mask passed as an explicit 4-d attention mask.
"""

from __future__ import annotations

import functools

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from grader.checks import random_state_dict
from grader.rng import Rng

# Attention is float32 against a float64 truth: q.k sums of d <= 16 products of N(0, 1)
# values and a softmax, so the float32 rounding stays below 1e-5.
TOL = {"atol": 1e-5, "rtol": 1e-5}
# Mistral logits through two layers in float32, run twice with masks that block the same
# keys (-inf from masking_utils vs finfo.min here): only reduction order may differ.
LOGITS = {"atol": 1e-4, "rtol": 1e-4}


def truth_mask(n_q: int, window: int, n_sink: int = 0, offset: int = 0) -> torch.Tensor:
    """The definition, pair by pair: key j is visible to query i = offset + r iff j <= i and
    (i - j < window or j < n_sink)."""
    rows = []
    for r in range(n_q):
        i = offset + r
        rows.append([j <= i and (i - j < window or j < n_sink) for j in range(offset + n_q)])
    return torch.tensor(rows, dtype=torch.bool)


def naive_attention(q, k, v, window: int, n_sink: int = 0) -> torch.Tensor:
    n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
    mask = truth_mask(n_q, window, n_sink, offset=n_k - n_q)
    scores = (q.double() @ k.double().transpose(-2, -1)) / d**0.5
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return (weights @ v.double()).float()


# (n_q, window): window 1, window >= n (plain causal), n = 1, sizes not powers of two.
WINDOWS = [(1, 1), (1, 4), (5, 1), (7, 3), (6, 6), (6, 9), (13, 4), (12, 5)]


@pytest.mark.points(2)
def test_sliding_window_mask_values(expect):
    for n, w in WINDOWS:
        expect(lambda s, n=n, w=w: s.sliding_window_mask(n, w), truth=truth_mask(n, w),
               name=f"sliding_window_mask({n}, window={w}) (query i sees keys i-{w}+1 .. i)")


@pytest.mark.points(2)
def test_sliding_window_mask_with_offset(expect):
    for n, w, off in ((1, 4, 9), (1, 3, 1), (3, 4, 6), (4, 2, 5), (2, 20, 7)):
        expect(lambda s, n=n, w=w, off=off: s.sliding_window_mask(n, w, offset=off),
               truth=truth_mask(n, w, offset=off),
               name=f"sliding_window_mask({n}, window={w}, offset={off}) of shape ({n}, {off + n}):"
                    f" the queries are positions {off} .. {off + n - 1}")


@pytest.mark.points(2)
def test_attention_sink_mask_values(expect):
    for n, w, sink, off in ((9, 3, 2, 0), (7, 1, 1, 0), (6, 2, 4, 0), (10, 4, 0, 0), (1, 2, 3, 0),
                            (5, 3, 2, 0), (8, 20, 2, 0), (2, 2, 4, 7), (3, 3, 1, 10), (1, 1, 2, 0)):
        expect(lambda s, n=n, w=w, k=sink, off=off: s.attention_sink_mask(n, w, k, offset=off),
               truth=truth_mask(n, w, sink, offset=off),
               name=f"attention_sink_mask({n}, window={w}, n_sink={sink}, offset={off})"
                    f" (sinks add to the window; never a future key)")


@pytest.mark.points(2)
def test_attention_matches_naive(expect, rng):
    for B, H, n_q, n_k, d, w, sink in ((2, 3, 9, 9, 8, 3, 0), (1, 2, 7, 7, 16, 2, 2),
                                       (2, 1, 1, 11, 8, 4, 1), (1, 2, 3, 10, 8, 5, 2),
                                       (1, 1, 1, 1, 4, 1, 0), (2, 2, 6, 6, 8, 10, 3)):
        r = rng.child(n_q, n_k, w, sink)
        q, k, v = r.randn(B, H, n_q, d), r.randn(B, H, n_k, d), r.randn(B, H, n_k, d)
        expect(lambda s, q=q, k=k, v=v, w=w, sink=sink: s.sliding_window_attention(q, k, v, w, n_sink=sink),
               truth=naive_attention(q, k, v, w, sink), **TOL,
               name=f"sliding_window_attention(q of shape {tuple(q.shape)}, k and v of {tuple(k.shape)},"
                    f" window={w}, n_sink={sink})")


def test_attention_large_scores_stay_finite(expect, rng):
    # Scores near 1e4: a softmax without the max subtracted overflows; blocked keys stay blocked.
    q, k, v = rng.randn(1, 2, 8, 8, scale=30.0), rng.randn(1, 2, 8, 8, scale=30.0), rng.randn(1, 2, 8, 8)
    expect(lambda s: s.sliding_window_attention(q, k, v, 3, n_sink=1), truth=naive_attention(q, k, v, 3, 1),
           **TOL, name="sliding_window_attention with scores up to ~1e4 (window=3, n_sink=1)")


@functools.cache
def mistral_pair(seed: int, window: int) -> tuple[MistralForCausalLM, MistralForCausalLM]:
    """Two tiny Mistral models with the same random weights: one with `sliding_window=window`,
    one with the window off (plain causal unless given an explicit 4-d mask)."""
    def build(sw):
        config = MistralConfig(
            vocab_size=37, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=sw,
            max_position_embeddings=64, attention_dropout=0.0, attn_implementation="eager",
        )
        return MistralForCausalLM(config).eval()

    windowed, plain = build(window), build(None)
    sd = random_state_dict(Rng(seed), windowed, lambda name, shape: 0.2)
    windowed.load_state_dict(sd)
    plain.load_state_dict(sd)
    return windowed, plain


def additive(mask: torch.Tensor) -> torch.Tensor:
    """(n_q, n_k) bool -> (1, 1, n_q, n_k) float32 additive mask as Mistral adds it (finfo.min)."""
    return torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)[None, None]


@pytest.mark.points(3)
def test_mistral_sliding_window_parity(expect, rng):
    for n, w in ((11, 4), (9, 1), (7, 3)):
        windowed, plain = mistral_pair(1234 + w, w)
        ids = rng.child(n, w).randint(0, 37, (1, n))
        with torch.no_grad():
            truth = windowed(ids).logits
            assert not torch.allclose(truth, plain(ids).logits, **LOGITS), "the window must matter here"

        def logits(s, ids=ids, plain=plain, n=n, w=w):
            with torch.no_grad():
                return plain(ids, attention_mask=additive(s.sliding_window_mask(n, w))).logits

        expect(logits, truth=truth, **LOGITS,
               name=f"logits of a 2-layer MistralForCausalLM(sliding_window={w}) on {n} tokens vs the same"
                    f" weights with sliding_window=None and sliding_window_mask({n}, {w}) as its attention mask")


@pytest.mark.hidden
def test_hidden_fresh_sizes(expect, rng):
    """Larger odd sizes, a cached block with sinks wider than the window, and attention of
    a decode step far past the window."""
    expect(lambda s: s.sliding_window_mask(31, 7, offset=2), truth=truth_mask(31, 7, offset=2),
           name="sliding_window_mask(31, window=7, offset=2)")
    expect(lambda s: s.attention_sink_mask(5, 2, 6, offset=17), truth=truth_mask(5, 2, 6, offset=17),
           name="attention_sink_mask(5, window=2, n_sink=6, offset=17)")
    q, k, v = rng.randn(3, 1, 1, 12), rng.randn(3, 1, 23, 12), rng.randn(3, 1, 23, 12)
    expect(lambda s: s.sliding_window_attention(q, k, v, 5, n_sink=3), truth=naive_attention(q, k, v, 5, 3),
           **TOL, name="sliding_window_attention(one query after 22 cached keys, window=5, n_sink=3)")
