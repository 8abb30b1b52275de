"""Checks for frontier.rope_scaling: parity with transformers' rope types "linear", "dynamic"
and "yarn" (the init functions of `transformers.modeling_rope_utils` and the tables of
`LlamaRotaryEmbedding`, dynamic update included), and the properties each method is built on:
linear interpolation maps position p * factor onto p, dynamic NTK leaves short sequences alone
and interpolates its slowest pair by exactly the scale, YaRN keeps the fast pairs and
interpolates the slow ones."""

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

# Every float32 recipe that follows the docstrings reproduces transformers bit for bit
# (measured: 0 for linear and dynamic, 1.2e-7 relative for YaRN, whose blend transformers
# writes as 1 - (1 - ramp)); a valid variant (float64 then cast, new_base ** -e) moves each
# inverse frequency by a few float32 ulps, far inside 1e-5, while every known mistake moves
# some frequency by 1% or more.
FREQ_TOL = {"atol": 0.0, "rtol": 1e-5}
# cos/sin: that 1e-5 relative on a frequency times a position below 2100 is at most 2e-5 of
# angle, plus float32 rounding of angles up to ~2000 (1.2e-4, measured 3e-4 near 4000 in
# attention.rope): 1e-3 absolute; at positions up to ~6000 (the interpolation property) 2e-3
TABLE_TOL = {"atol": 1e-3, "rtol": 0.0}
FAR_TABLE_TOL = {"atol": 2e-3, "rtol": 0.0}


def llama_config(head_dim: int, max_position_embeddings: int, rope_parameters: dict) -> LlamaConfig:
    """A tiny LlamaConfig that only carries the rotary settings (no weights are built)."""
    return LlamaConfig(
        hidden_size=4 * head_dim, num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim,
        max_position_embeddings=max_position_embeddings, rope_parameters=dict(rope_parameters),
    )


def hf_linear(head_dim: int, base: float, factor: float) -> torch.Tensor:
    config = llama_config(head_dim, 512, {"rope_type": "linear", "rope_theta": base, "factor": factor})
    return ROPE_INIT_FUNCTIONS["linear"](config)[0]


def hf_dynamic(head_dim: int, base: float, factor: float, max_pos: int, seq_len: int) -> torch.Tensor:
    config = llama_config(head_dim, max_pos, {"rope_type": "dynamic", "rope_theta": base, "factor": factor})
    return ROPE_INIT_FUNCTIONS["dynamic"](config, seq_len=seq_len)[0]


def yarn_parameters(base: float, factor: float, original: int, beta_fast: float = 32.0, beta_slow: float = 1.0,
                    truncate: bool = True) -> dict:
    return {"rope_type": "yarn", "rope_theta": base, "factor": factor, "original_max_position_embeddings": original,
            "beta_fast": beta_fast, "beta_slow": beta_slow, "truncate": truncate}


def hf_yarn(head_dim: int, base: float, factor: float, original: int, **options) -> tuple[torch.Tensor, float]:
    # max_position_embeddings = original: transformers then does not warn about an implicit factor
    config = llama_config(head_dim, original, yarn_parameters(base, factor, original, **options))
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](config)
    return inv_freq, float(attention_factor)


def hf_tables(config: LlamaConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, head_dim) cos and sin of a fresh LlamaRotaryEmbedding for one sequence at `positions`
    (a fresh module: the dynamic type only ever grows its cached length)."""
    dummy = torch.zeros(1, dtype=torch.float32)  # only its dtype and device are read
    cos, sin = LlamaRotaryEmbedding(config=config)(dummy, positions[None, :])
    return cos[0], sin[0]


def default_inv_freq(head_dim: int, base: float) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def random_positions(rng, length: int, high: int) -> torch.Tensor:
    """Distinct, unsorted int64 positions in [0, high)."""
    return torch.from_numpy(rng.np.choice(high, size=length, replace=False)).to(torch.int64)


@pytest.mark.points(1)
def test_linear_matches_transformers(expect):
    for head_dim, base, factor in ((64, 10000.0, 4.0), (24, 10000.0, 2.5), (6, 500000.0, 8.0), (40, 1e6, 1.0)):
        expect(lambda s, d=head_dim, b=base, f=factor: s.linear_inv_freq(d, b, f), truth=hf_linear(head_dim, base, factor),
               **FREQ_TOL, name=f"linear_inv_freq(head_dim={head_dim}, base={base:g}, factor={factor:g})")


@pytest.mark.points(2)
def test_dynamic_ntk_matches_transformers(expect):
    """seq_len below, at and above the trained context (max_position_embeddings = 512), and
    seq_len = 1, where the scale applied by mistake would be negative."""
    for head_dim, base, factor, seq_len in (
        (64, 10000.0, 2.0, 400), (64, 10000.0, 2.0, 512), (64, 10000.0, 2.0, 513),
        (24, 10000.0, 2.5, 1500), (32, 500000.0, 4.0, 3000), (24, 10000.0, 2.5, 1),
    ):
        expect(lambda s, d=head_dim, b=base, f=factor, n=seq_len: s.dynamic_ntk_inv_freq(d, b, f, 512, n),
               truth=hf_dynamic(head_dim, base, factor, 512, seq_len), **FREQ_TOL,
               name=f"dynamic_ntk_inv_freq(head_dim={head_dim}, base={base:g}, factor={factor:g}, "
                    f"max_position_embeddings=512, seq_len={seq_len})")


@pytest.mark.points(2)
def test_dynamic_ntk_properties(expect):
    """Short sequences keep the trained frequencies; beyond the context, the fastest pair is
    unchanged and the slowest is divided by exactly the scale factor * seq_len / max - (factor - 1)."""
    head_dim, base, factor, max_pos = 40, 10000.0, 3.0, 256
    trained = default_inv_freq(head_dim, base)
    for seq_len in (200, 256, 1):
        expect(lambda s, n=seq_len: s.dynamic_ntk_inv_freq(head_dim, base, factor, max_pos, n), truth=trained,
               **FREQ_TOL, name=f"dynamic_ntk_inv_freq(40, 10000, factor=3, max_position_embeddings=256, "
                                f"seq_len={seq_len}) (at most the trained context: the unscaled frequencies)")
    seq_len = 1000
    scale = factor * seq_len / max_pos - (factor - 1)
    expect(lambda s: s.dynamic_ntk_inv_freq(head_dim, base, factor, max_pos, seq_len)[[0, -1]],
           truth=torch.stack([trained[0], trained[-1] / scale]), **FREQ_TOL,
           name=f"dynamic_ntk_inv_freq(40, 10000, factor=3, max_position_embeddings=256, seq_len=1000)[[0, -1]]: "
                f"the fastest pair unchanged, the slowest divided by the scale {scale:g} "
                "(new_base = base * scale ** (D / (D - 2)))")


@pytest.mark.points(2)
def test_yarn_matches_transformers(expect):
    for head_dim, base, factor, original, options in (
        (64, 10000.0, 4.0, 256, {}),
        (64, 10000.0, 2.5, 512, {}),
        (48, 500000.0, 8.0, 1024, {"beta_fast": 16.0, "beta_slow": 2.0}),
        (64, 10000.0, 4.0, 256, {"truncate": False}),
        (24, 10000.0, 1.0, 128, {}),
    ):
        shown = "".join(f", {k}={v}" for k, v in options.items())
        expect(lambda s, d=head_dim, b=base, f=factor, o=original, kw=options: s.yarn_inv_freq(d, b, f, o, **kw),
               truth=hf_yarn(head_dim, base, factor, original, **options), **FREQ_TOL,
               name=f"yarn_inv_freq(head_dim={head_dim}, base={base:g}, factor={factor:g}, "
                    f"original_max_position_embeddings={original}{shown}) as (inv_freq, attention_factor)")


@pytest.mark.points(2)
def test_yarn_keeps_fast_pairs_interpolates_slow(expect):
    """Pairs at or below the correction range's low end keep the trained frequency; pairs at or
    above its high end are interpolated (divided by the factor); and the attention factor is
    0.1 ln(factor) + 1."""
    head_dim, base, factor, original = 64, 10000.0, 8.0, 512
    low = math.floor(head_dim * math.log(original / (32 * 2 * math.pi)) / (2 * math.log(base)))
    high = math.ceil(head_dim * math.log(original / (1 * 2 * math.pi)) / (2 * math.log(base)))
    trained = default_inv_freq(head_dim, base)
    call = f"yarn_inv_freq(64, 10000, factor=8, original_max_position_embeddings={original})"
    expect(lambda s: s.yarn_inv_freq(head_dim, base, factor, original)[0][: low + 1], truth=trained[: low + 1],
           **FREQ_TOL, name=f"{call}[0][:{low + 1}]: the fast pairs 0..{low} keep their trained frequency")
    expect(lambda s: s.yarn_inv_freq(head_dim, base, factor, original)[0][high:], truth=trained[high:] / factor,
           **FREQ_TOL, name=f"{call}[0][{high}:]: the slow pairs {high}..31 are divided by the factor")
    expect(lambda s: s.yarn_inv_freq(head_dim, base, factor, original)[1], truth=0.1 * math.log(factor) + 1.0,
           **FREQ_TOL, name=f"{call}[1]: the attention factor 0.1 * ln(8) + 1")


@pytest.mark.points(2)
def test_tables_match_llama_rotary_embedding(expect, rng):
    """End to end: the student's frequencies and tables against LlamaRotaryEmbedding's cos and
    sin (YaRN's attention scaling included; dynamic with seq_len = largest position + 1)."""
    head_dim = 24  # not a power of two
    pos = random_positions(rng, 9, 2000)
    seq_len = int(pos.max()) + 1
    cases = (
        ("linear", {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.5}, 512,
         lambda s: s.rope_cos_sin(s.linear_inv_freq(head_dim, 10000.0, 2.5), pos)),
        ("dynamic", {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.5}, 512,
         lambda s: s.rope_cos_sin(s.dynamic_ntk_inv_freq(head_dim, 10000.0, 2.5, 512, seq_len), pos)),
        ("yarn", yarn_parameters(10000.0, 4.0, 512), 512,
         lambda s: s.rope_cos_sin(*_yarn_with_positions(s.yarn_inv_freq(head_dim, 10000.0, 4.0, 512), pos))),
    )
    for rope_type, parameters, max_pos, call in cases:
        expect(call, truth=hf_tables(llama_config(head_dim, max_pos, parameters), pos), **TABLE_TOL,
               name=f"rope_cos_sin for rope_type {rope_type!r} (head_dim=24, factor {parameters['factor']:g}, "
                    f"trained context 512, positions up to {seq_len - 1}) as (cos, sin)")


def _yarn_with_positions(yarn: tuple[torch.Tensor, float], positions: torch.Tensor):
    """(inv_freq, positions, attention_factor): rope_cos_sin's arguments from yarn_inv_freq's result."""
    inv_freq, attention_factor = yarn
    return inv_freq, positions, attention_factor


@pytest.mark.points(1)
def test_linear_interpolation_maps_p_times_factor_to_p(expect, rng):
    head_dim, base, factor = 24, 10000.0, 2.5
    pos = 2 * random_positions(rng, 8, 1200)  # even, so that pos * 2.5 is a whole position
    far = pos * 5 // 2
    expect(lambda s: s.rope_cos_sin(s.linear_inv_freq(head_dim, base, factor), far),
           truth=hf_tables(llama_config(head_dim, 512, {"rope_type": "default", "rope_theta": base}), pos),
           **FAR_TABLE_TOL,
           name="rope_cos_sin(linear_inv_freq(24, 10000, factor=2.5), positions * 2.5) vs the unscaled tables "
                "at positions (interpolation divides positions by the factor)")


@pytest.mark.points(1)
def test_position_zero_and_length_one(expect):
    head_dim = 24
    zero = torch.zeros(1, dtype=torch.int64)
    inv_freq, attention_factor = hf_yarn(head_dim, 10000.0, 4.0, 256)
    expect(lambda s: s.rope_cos_sin(inv_freq, zero, attention_factor),
           truth=(torch.full((1, head_dim), attention_factor), torch.zeros(1, head_dim)), atol=1e-7, rtol=0.0,
           name=f"rope_cos_sin(YaRN's inv_freq, positions=[0], attention_factor={attention_factor:.6g}) as (cos, sin): "
                "no rotation, both scaled by the attention factor")
    one = torch.tensor([7], dtype=torch.int64)
    expect(lambda s: s.rope_cos_sin(s.dynamic_ntk_inv_freq(head_dim, 10000.0, 2.0, 4, 8), one),
           truth=hf_tables(llama_config(head_dim, 4, {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}), one),
           **TABLE_TOL, name="rope_cos_sin(dynamic_ntk_inv_freq(24, 10000, 2, max_position_embeddings=4, seq_len=8), "
                             "positions=[7]) (one token beyond a tiny context)")


@pytest.mark.hidden
def test_hidden_fresh_configurations(expect, rng):
    """Sizes and settings the public checks do not use: head_dim 40 at base 5e5 with factor 3.7,
    YaRN with a correction range reaching pair 0 (tiny original context) and an untruncated
    range with non-default betas, dynamic NTK far beyond the context, repeated positions."""
    head_dim, base, factor = 40, 500000.0, 3.7
    expect(lambda s: s.linear_inv_freq(head_dim, base, factor), truth=hf_linear(head_dim, base, factor), **FREQ_TOL,
           name="linear_inv_freq(40, 500000, factor=3.7)")
    expect(lambda s: s.dynamic_ntk_inv_freq(head_dim, base, factor, 300, 5000),
           truth=hf_dynamic(head_dim, base, factor, 300, 5000), **FREQ_TOL,
           name="dynamic_ntk_inv_freq(40, 500000, factor=3.7, max_position_embeddings=300, seq_len=5000)")
    for original, options in ((64, {}), (700, {"beta_fast": 24.0, "beta_slow": 1.5, "truncate": False})):
        expect(lambda s, o=original, kw=options: s.yarn_inv_freq(head_dim, base, factor, o, **kw),
               truth=hf_yarn(head_dim, base, factor, original, **options), **FREQ_TOL,
               name=f"yarn_inv_freq(40, 500000, factor=3.7, original_max_position_embeddings={original}, {options})")
    pos = rng.randint(0, 1500, (6,))  # repeats allowed
    config = llama_config(head_dim, 700, yarn_parameters(base, factor, 700, beta_fast=24.0, beta_slow=1.5, truncate=False))
    expect(lambda s: s.rope_cos_sin(*_yarn_with_positions(
               s.yarn_inv_freq(head_dim, base, factor, 700, beta_fast=24.0, beta_slow=1.5, truncate=False), pos)),
           truth=hf_tables(config, pos), **TABLE_TOL,
           name=f"rope_cos_sin(yarn_inv_freq(40, 500000, 3.7, 700, 24, 1.5, truncate=False), positions {pos.tolist()})")
