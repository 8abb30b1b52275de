"""Checks for attention.rope: parity with transformers' Llama rotary embedding (half-split
layout), a float64 complex-multiplication formula (interleaved layout), and the
relative-position property of RoPE."""

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.llama.modeling_llama import rotate_half as hf_rotate_half

from grader.compare import assert_close, check

# The docstring's float32 recipe reproduces Hugging Face bit for bit, but equally valid ways
# (inv_freq in float64 then cast, exp/log, angles in float64) round the angle differently:
# measured up to 6e-5 on cos/sin below position 600 and 3e-4 near position 4000.
TABLE_TOL = {"atol": 2e-4, "rtol": 0.0}
LARGE_TABLE_TOL = {"atol": 1e-3, "rtol": 0.0}
# rotations multiply that by |x| (randn, up to ~4) twice
ROT_TOL = {"atol": 1e-3, "rtol": 0.0}
LARGE_ROT_TOL = {"atol": 5e-3, "rtol": 0.0}
# rotating with given tables involves no angle rounding: only a multiply-add
APPLY_TOL = {"atol": 1e-5, "rtol": 1e-5}


def hf_rope(head_dim: int, base: float) -> LlamaRotaryEmbedding:
    """transformers' Llama rotary embedding for heads of size `head_dim` (default rope type)."""
    config = LlamaConfig(
        hidden_size=4 * head_dim, num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim,
        max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": base},
    )
    return LlamaRotaryEmbedding(config=config)


def hf_cos_sin(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's (L, head_dim) cos and sin tables for one sequence at `positions`."""
    dummy = torch.zeros(1, dtype=torch.float32)  # only its dtype and device are read
    cos, sin = hf_rope(head_dim, base)(dummy, positions[None, :])
    return cos[0], sin[0]


def hf_apply(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """apply_rotary_pos_emb on (B, H, L, D) q and k with (L, D) tables (given a batch axis)."""
    return apply_rotary_pos_emb(q, k, cos[None], sin[None], unsqueeze_dim=1)


def interleaved_truth(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """GPT-J / RoFormer RoPE in float64: pairs (2i, 2i+1) as complex numbers times exp(1j*angle)."""
    d = x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # (L, D/2)
    z = torch.view_as_complex(x.to(torch.float64).reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rotated = z * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)


def random_positions(rng, length: int, high: int) -> torch.Tensor:
    """Distinct, unsorted int64 positions in [0, high): packed or shuffled tokens, not just arange."""
    return torch.from_numpy(rng.np.choice(high, size=length, replace=False)).to(torch.int64)


@pytest.mark.points(1)
def test_frequencies_match_llama(expect):
    for head_dim, base in ((64, 10000.0), (24, 10000.0), (6, 500000.0), (128, 1e6)):
        expect(lambda s, d=head_dim, b=base: s.rope_frequencies(d, b), truth=hf_rope(head_dim, base).inv_freq,
               atol=0.0, rtol=1e-5, name=f"rope_frequencies(head_dim={head_dim}, base={base:g})")


@pytest.mark.points(2)
def test_cos_sin_match_llama(expect, rng):
    cases = (
        ("positions 0..L-1", torch.arange(9), 64, 10000.0),
        ("unsorted positions", random_positions(rng, 11, 600), 24, 10000.0),
        ("base 500000", random_positions(rng, 7, 600), 32, 500000.0),
        ("base 100", torch.arange(5), 10, 100.0),
    )
    for what, pos, head_dim, base in cases:
        expect(lambda s, p=pos, d=head_dim, b=base: s.rope_cos_sin(p, d, b), truth=hf_cos_sin(pos, head_dim, base),
               **TABLE_TOL, name=f"rope_cos_sin({what}, head_dim={head_dim}, base={base:g}) as (cos, sin)")


@pytest.mark.points(1)
def test_rotate_half_matches_llama(expect, rng):
    for shape in ((2, 3, 5, 8), (1, 2, 1, 24)):
        x = rng.randn(*shape)
        expect(lambda s, x=x: s.rotate_half(x), truth=hf_rotate_half(x), atol=0.0, rtol=0.0,
               name=f"rotate_half(x of shape {shape})")


@pytest.mark.points(2)
def test_apply_rope_matches_llama(expect, rng):
    for (b, h, length, head_dim), base in (((2, 4, 7, 64), 10000.0), ((1, 3, 5, 24), 500000.0)):
        q = rng.randn(b, h, length, head_dim)
        k = rng.randn(b, h, length, head_dim)
        pos = random_positions(rng, length, 512)
        cos, sin = hf_cos_sin(pos, head_dim, base)
        q_hf, k_hf = hf_apply(q, k, cos, sin)
        # rotation alone, from Hugging Face's own tables
        expect(lambda s, q=q, c=cos, sn=sin: s.apply_rope(q, c, sn), truth=q_hf, **APPLY_TOL,
               name=f"apply_rope(q of shape {tuple(q.shape)}, Llama's cos, sin)")
        # end to end: the student's tables into the student's rotation
        for which, x, expected in (("q", q, q_hf), ("k", k, k_hf)):
            expect(lambda s, x=x, p=pos, d=head_dim, bs=base: s.apply_rope(x, *s.rope_cos_sin(p, d, bs)),
                   truth=expected, **ROT_TOL,
                   name=f"apply_rope({which} of shape {tuple(x.shape)}, *rope_cos_sin(positions, "
                        f"{head_dim}, base={base:g}))")


@pytest.mark.points(2)
def test_interleaved_matches_complex_formula(expect, rng):
    for (b, h, length, head_dim), base in (((2, 3, 6, 32), 10000.0), ((1, 2, 9, 24), 1e6), ((1, 1, 4, 6), 50.0)):
        x = rng.randn(b, h, length, head_dim)
        pos = random_positions(rng, length, 512)
        expect(lambda s, x=x, p=pos, bs=base: s.apply_rope_interleaved(x, p, bs),
               truth=interleaved_truth(x, pos, base), **ROT_TOL,
               name=f"apply_rope_interleaved(x of shape {tuple(x.shape)}, positions, base={base:g})")


@pytest.mark.points(2)
def test_scores_depend_only_on_relative_position(expect, rng):
    """<rope(q, m), rope(k, n)> is unchanged when m and n are shifted by the same offset."""
    head_dim, length, shift = 24, 6, 700
    q = rng.randn(1, 2, length, head_dim)
    k = rng.randn(1, 2, length, head_dim)
    pos_q = random_positions(rng, length, 300)
    pos_k = random_positions(rng, length, 300)
    layouts = {
        "half-split (apply_rope)": lambda m, x, p: m.apply_rope(x, *m.rope_cos_sin(p, head_dim)),
        "interleaved (apply_rope_interleaved)": lambda m, x, p: m.apply_rope_interleaved(x, p),
    }
    unrotated = q @ k.transpose(-1, -2)
    for layout, rope in layouts.items():
        def scores(m, rope=rope, shift=0):
            return rope(m, q, pos_q + shift) @ rope(m, k, pos_k + shift).transpose(-1, -2)

        unshifted = scores(expect.solution)
        # float32 angles near position 1000 are rounded differently before and after the shift:
        # measured up to 1.3e-4 on scores of size ~5 for the reference
        assert_close(scores(expect.solution, shift=shift), unshifted, atol=2e-3, rtol=0.0,
                     name=f"{layout}: q.k scores with every position shifted by {shift}, vs unshifted",
                     mistakes=expect.mistakes(lambda m, scores=scores: scores(m, shift=shift)))
        check(bool((unshifted - unrotated).abs().max() > 0.1),
              f"{layout}: q.k scores at different positions equal the scores without RoPE; "
              "the vectors are not being rotated")


@pytest.mark.points(1)
def test_position_zero_is_identity_length_one(expect, rng):
    head_dim = 24
    x = rng.randn(2, 3, 1, head_dim)
    zero = torch.zeros(1, dtype=torch.int64)
    cos, sin = expect(lambda s: s.rope_cos_sin(zero, head_dim), truth=(torch.ones(1, head_dim), torch.zeros(1, head_dim)),
                      atol=1e-7, rtol=0.0,
                      name="rope_cos_sin(positions=[0], 24) as (cos, sin): position 0 means no rotation")
    expect(lambda s: s.apply_rope(x, cos, sin), truth=x, atol=1e-7, rtol=0.0,
           name="apply_rope(x of length 1, cos and sin of position 0) (must return x)")
    expect(lambda s: s.apply_rope_interleaved(x, zero), truth=x, atol=1e-7, rtol=0.0,
           name="apply_rope_interleaved(x of length 1, positions=[0]) (must return x)")


@pytest.mark.points(1)
def test_large_positions(expect, rng):
    head_dim, base = 24, 10000.0  # a head size that is not a power of two
    pos = 3000 + random_positions(rng, 8, 1100)  # positions in [3000, 4100)
    x = rng.randn(1, 2, 8, head_dim)
    cos, sin = hf_cos_sin(pos, head_dim, base)
    expect(lambda s: s.rope_cos_sin(pos, head_dim, base), truth=(cos, sin), **LARGE_TABLE_TOL,
           name="rope_cos_sin(positions in [3000, 4100), head_dim=24) as (cos, sin)")
    expected, _ = hf_apply(x, x, cos, sin)
    expect(lambda s: s.apply_rope(x, *s.rope_cos_sin(pos, head_dim, base)), truth=expected, **LARGE_ROT_TOL,
           name="apply_rope(x, *rope_cos_sin(positions in [3000, 4100), 24))")
    expect(lambda s: s.apply_rope_interleaved(x, pos, base), truth=interleaved_truth(x, pos, base), **LARGE_ROT_TOL,
           name="apply_rope_interleaved(x, positions in [3000, 4100))")


@pytest.mark.hidden
def test_hidden_odd_pair_counts_and_repeated_positions(expect, rng):
    """Sizes the public checks do not use: head_dim 10 (an odd number of pairs, 5) at an
    unusual base, with repeated positions (packed sequences) and an input of one head,
    rotate_half on inputs that are not 4-d, and head_dim 2 (a single pair, where both
    layouts coincide)."""
    head_dim, base = 10, 321.0
    expect(lambda s: s.rope_frequencies(head_dim, base), truth=hf_rope(head_dim, base).inv_freq, atol=0.0, rtol=1e-5,
           name=f"rope_frequencies(head_dim={head_dim}, base={base:g})")
    pos = rng.randint(0, 40, (7,))  # repeats are likely, and allowed
    x = rng.randn(3, 1, 7, head_dim)
    cos, sin = hf_cos_sin(pos, head_dim, base)
    expect(lambda s: s.apply_rope(x, *s.rope_cos_sin(pos, head_dim, base)), truth=hf_apply(x, x, cos, sin)[0],
           **ROT_TOL, name=f"apply_rope(x of shape (3, 1, 7, 10), *rope_cos_sin(positions {pos.tolist()}, 10, base=321))")
    for shape in ((4, 10), (2, 1, 3, 1, 6)):
        y = rng.randn(*shape)
        expect(lambda s, y=y: s.rotate_half(y), truth=hf_rotate_half(y), atol=0.0, rtol=0.0,
               name=f"rotate_half(x of shape {shape})")
    pair = rng.randn(2, 2, 5, 2)
    pos2 = random_positions(rng, 5, 100)
    expect(lambda s: s.apply_rope_interleaved(pair, pos2, base), truth=interleaved_truth(pair, pos2, base), **ROT_TOL,
           name="apply_rope_interleaved(x of shape (2, 2, 5, 2), positions, base=321): one pair per head")
