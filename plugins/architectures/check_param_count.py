"""Checks for architectures.param_count: closed forms against real models and torch's own counters.

Ground truths, all computed in the judge:
- parameter counts: `num_parameters()` of `GPT2LMHeadModel` / `LlamaForCausalLM` built from
  tiny configs, and constants for full-size configs (their HF counts, the published sizes);
- FLOPs: torch.utils.flop_counter.FlopCounterMode over a real forward + backward pass, and the
  closed forms written out independently below;
- training memory: the bytes torch.optim.AdamW / SGD(momentum) actually allocate for their
  state after one step, and the closed form;
- KV cache: the nbytes of the key/value tensors in the `past_key_values` a Llama model returns.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from grader.compare import check, raises

# --- models ---------------------------------------------------------------------------------


@functools.cache
def _gpt2(vocab: int, positions: int, d: int, layers: int, heads: int, tied: bool) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=vocab, n_positions=positions, n_embd=d, n_layer=layers, n_head=heads,
        tie_word_embeddings=tied, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=0, eos_token_id=0, attn_implementation="eager",
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


@functools.cache
def _llama(vocab: int, d: int, inter: int, layers: int, heads: int, kv_heads: int,
           tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=d, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, tie_word_embeddings=tied,
        max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=None,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def _hf_count(model: torch.nn.Module) -> int:
    n = model.num_parameters()
    # num_parameters() and the deduplicated numel sum must agree (tied weights counted once)
    assert n == sum(p.numel() for p in model.parameters())
    return n


def _gpt2_call(vocab: int, positions: int, d: int, layers: int, tied: bool) -> str:
    return f"gpt2_params(vocab_size={vocab}, n_positions={positions}, n_embd={d}, n_layer={layers}, tied={tied})"


def _llama_call(vocab: int, d: int, inter: int, layers: int, heads: int, kv: int, tied: bool) -> str:
    return (f"llama_params(vocab_size={vocab}, hidden_size={d}, intermediate_size={inter}, num_layers={layers},"
            f" num_heads={heads}, num_kv_heads={kv}, tie_word_embeddings={tied})")


# --- independent closed forms (written differently from the reference on purpose) -----------


def _flops(n: int, n_layer: int, n_ctx: int, d: int) -> dict:
    forward_matmuls = 2 * n
    forward_attention = n_layer * (2 * n_ctx * d + 2 * n_ctx * d)  # Q K^T, then probs @ V
    return {"approx": 3 * forward_matmuls, "exact": 3 * (forward_matmuls + forward_attention)}


def _memory(n: int, dtype_bytes: int, optimizer: str) -> dict:
    states = {"adamw": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}[optimizer]
    out = {"weights": n * dtype_bytes, "grads": n * dtype_bytes, "optimizer_states": len(states) * n * 4}
    out["total"] = sum(out.values())
    return out




# --- parameter counts -------------------------------------------------------------------------


def _gpt2_cases(rng) -> list[tuple[int, int, int, int, int]]:
    heads = int(rng.np.integers(1, 4))
    random_case = (int(rng.np.integers(40, 100)), int(rng.np.integers(5, 20)),
                   heads * int(rng.np.integers(3, 9)), int(rng.np.integers(1, 4)), heads)
    return [
        (67, 13, 24, 2, 4),
        (53, 9, 15, 1, 3),  # one layer, odd width
        random_case,
    ]


@pytest.mark.points(3)
def test_gpt2_matches_hf(expect, rng):
    for vocab, positions, d, layers, heads in _gpt2_cases(rng):
        for tied in (True, False):
            expect(lambda s, a=(vocab, positions, d, layers), t=tied: s.gpt2_params(*a, tied=t),
                   truth=_hf_count(_gpt2(vocab, positions, d, layers, heads, tied)),
                   name=f"{_gpt2_call(vocab, positions, d, layers, tied)}"
                   " vs GPT2LMHeadModel(GPT2Config(...)).num_parameters()")


LLAMA_CASES = [
    # vocab, hidden, intermediate, layers, heads, kv_heads, tied
    (61, 24, 40, 2, 4, 4, False),  # multi-head attention (kv heads = heads)
    (61, 24, 40, 2, 4, 2, True),  # grouped-query attention, tied head
    (37, 20, 37, 1, 5, 1, False),  # multi-query attention, one layer, odd sizes
]


@pytest.mark.points(3)
def test_llama_matches_hf(expect, rng):
    heads = int(rng.np.choice([2, 4, 6]))
    kv = int(rng.np.choice([k for k in (1, 2, 3) if heads % k == 0]))
    random_case = (int(rng.np.integers(30, 90)), heads * 2 * int(rng.np.integers(1, 4)),
                   int(rng.np.integers(10, 50)), int(rng.np.integers(1, 3)), heads, kv,
                   bool(rng.np.integers(0, 2)))
    for case in [*LLAMA_CASES, random_case]:
        expect(lambda s, c=case: s.llama_params(*c[:6], tie_word_embeddings=c[6]), truth=_hf_count(_llama(*case)),
               name=f"{_llama_call(*case)} vs LlamaForCausalLM(LlamaConfig(...)).num_parameters()")


# HF's num_parameters() of full-size configurations (computed once on the meta device; the
# GPT-2 and Llama ones are also the published sizes). Constants, so that no check builds them.
FULL_SIZE_GPT2 = [
    # vocab, positions, n_embd, n_layer, tied -> parameters
    ((50257, 1024, 768, 12, True), 124_439_808),  # GPT-2 small
    ((50257, 1024, 1600, 48, True), 1_557_611_200),  # GPT-2 XL
    ((50257, 1024, 1024, 24, False), 406_286_336),  # GPT-2 medium's shape with an untied head
]
FULL_SIZE_LLAMA = [
    ((128256, 4096, 14336, 32, 32, 8, False), 8_030_261_248),  # Llama-3-8B
    ((32000, 4096, 11008, 32, 32, 32, False), 6_738_415_616),  # Llama-2-7B
    ((128256, 2048, 8192, 16, 32, 8, True), 1_235_814_400),  # Llama-3.2-1B
]


def test_full_size_models(expect):
    # Counts in the billions, as exact ints: no model this size can be built to count.
    for (vocab, positions, d, layers, tied), expected in FULL_SIZE_GPT2:
        expect(lambda s, a=(vocab, positions, d, layers), t=tied: s.gpt2_params(*a, tied=t), truth=expected,
               name=f"{_gpt2_call(vocab, positions, d, layers, tied)} (full size)")
    for case, expected in FULL_SIZE_LLAMA:
        expect(lambda s, c=case: s.llama_params(*c[:6], tie_word_embeddings=c[6]), truth=expected,
               name=f"{_llama_call(*case)} (full size)")


# --- FLOPs ------------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_flops_closed_form(expect, rng):
    cases = [
        (85_000_000, 12, 1024, 768),  # GPT-2 small's non-embedding size
        (int(rng.np.integers(1, 10**6)), 1, int(rng.np.integers(1, 100)), int(rng.np.integers(1, 100))),
        (int(rng.np.integers(10**9, 10**11)), int(rng.np.integers(2, 100)), 2048, 4096),
    ]
    for n, layers, ctx, d in cases:
        expect(lambda s, a=(n, layers, ctx, d): s.flops_per_token(*a), truth=_flops(n, layers, ctx, d),
               name=f"flops_per_token(n_params_non_embedding={n}, n_layer={layers}, n_ctx={ctx}, d_model={d})")


def _measured_flops_per_token(model: torch.nn.Module, ids: torch.Tensor) -> int:
    batch, ctx = ids.shape
    counter = FlopCounterMode(display=False)
    with counter:
        model(ids).logits.sum().backward()
    model.zero_grad(set_to_none=True)
    total = counter.get_total_flops()
    assert total % (batch * ctx) == 0
    return total // (batch * ctx)


@pytest.mark.points(2)
def test_exact_flops_match_flop_counter(expect, rng):
    # FlopCounterMode counts 2 FLOPs per multiply-add of every matmul in a real forward +
    # backward pass; N is then the weights that are multiplied per token: every linear layer's
    # weight matrix and the output head (biases, norms and embedding lookups are not matmuls).
    vocab, positions, d, layers, heads = 61, 16, 20, 2, 4
    ctx = int(rng.np.integers(5, positions + 1))
    gpt2 = _gpt2(vocab, positions, d, layers, heads, True)
    n_gpt2 = layers * (3 * d * d + d * d + 4 * d * d + 4 * d * d) + vocab * d
    measured = _measured_flops_per_token(gpt2, rng.randint(0, vocab, (2, ctx)))
    assert measured == _flops(n_gpt2, layers, ctx, d)["exact"]
    got = expect.solution.flops_per_token(n_gpt2, layers, ctx, d)
    check(isinstance(got, dict) and "exact" in got,
          f"flops_per_token must return a dict with keys 'approx' and 'exact', got {got!r}")
    expect.compare(got["exact"], measured, lambda m: m.flops_per_token(n_gpt2, layers, ctx, d)["exact"],
                   name=f"flops_per_token({n_gpt2}, n_layer={layers}, n_ctx={ctx}, d_model={d})['exact'] vs the"
                   " FLOPs per token FlopCounterMode measures in a GPT2LMHeadModel forward + backward pass")
    # Multi-query Llama: grouped k/v heads shrink N, not the attention term (k and v are
    # repeated to all query heads before Q K^T).
    vocab, d, inter, layers, heads, kv = 37, 18, 29, 2, 3, 1
    llama = _llama(vocab, d, inter, layers, heads, kv, False)
    n_llama = layers * (2 * d * d + 2 * d * kv * (d // heads) + 3 * d * inter) + vocab * d
    measured = _measured_flops_per_token(llama, rng.randint(0, vocab, (2, ctx)))
    assert measured == _flops(n_llama, layers, ctx, d)["exact"]
    expect(lambda s: s.flops_per_token(n_llama, layers, ctx, d)["exact"], truth=measured,
           name=f"flops_per_token({n_llama}, n_layer={layers}, n_ctx={ctx}, d_model={d})['exact'] vs"
           " FlopCounterMode on a multi-query LlamaForCausalLM forward + backward pass")


# --- training memory --------------------------------------------------------------------------


@pytest.mark.points(2)
def test_training_memory_closed_form(expect, rng):
    n_small = int(rng.np.integers(1, 10**6))
    for n, dtype_bytes, optimizer in (
        (n_small, 4, "adamw"),
        (n_small, 4, "sgd"),
        (int(rng.np.integers(10**8, 10**10)), 2, "sgd"),  # bf16 weights: states stay float32
        (7_000_000_000, 2, "adamw"),
        (1, 4, "adamw"),
    ):
        expect(lambda s, a=(n, dtype_bytes, optimizer): s.training_memory_bytes(a[0], dtype_bytes=a[1], optimizer=a[2]),
               truth=_memory(n, dtype_bytes, optimizer),
               name=f"training_memory_bytes({n}, dtype_bytes={dtype_bytes}, optimizer={optimizer!r})")
    check(raises(lambda: expect.solution.training_memory_bytes(1000, 4, "lion")),
          "training_memory_bytes(1000, 4, 'lion') must raise ValueError (only 'adamw' and 'sgd' are known)")


def _torch_training_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> dict:
    model.zero_grad(set_to_none=True)
    model(ids).logits.square().mean().backward()
    optimizer.step()
    params = list(model.parameters())  # tied weights appear once
    states = [t for p in params for k, t in optimizer.state[p].items() if k != "step"]
    out = {
        "weights": sum(p.nbytes for p in params),
        "grads": sum(p.grad.nbytes for p in params),
        "optimizer_states": sum(t.nbytes for t in states),
    }
    out["total"] = sum(out.values())
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.points(2)
def test_training_memory_matches_torch_optim(expect, rng):
    # A float32 GPT-2 with a tied head: what AdamW and SGD(momentum) really allocate.
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=45, n_positions=8, n_embd=12, n_layer=1, n_head=3,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                                       eos_token_id=0, attn_implementation="eager"))
    n = sum(p.numel() for p in model.parameters())
    ids = rng.randint(0, 45, (2, 5))
    for optimizer, opt in (
        ("adamw", torch.optim.AdamW(model.parameters(), lr=1e-3)),
        ("sgd", torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)),
    ):
        expect(lambda s, o=optimizer: s.training_memory_bytes(n, dtype_bytes=4, optimizer=o),
               truth=_torch_training_bytes(model, opt, ids),
               name=f"training_memory_bytes({n}, dtype_bytes=4, optimizer={optimizer!r}) vs the bytes of"
               f" a float32 model's parameters, .grad and torch.optim.{type(opt).__name__} state")


# --- KV cache ---------------------------------------------------------------------------------


def _cache_nbytes(cache: object) -> int:
    """Total bytes of the cached keys and values, across transformers' Cache APIs."""
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers >= 4.56: DynamicCache.layers[i].keys / .values
        tensors = [t for layer in layers for t in (layer.keys, layer.values)]
    elif hasattr(cache, "key_cache"):  # older DynamicCache
        tensors = [*cache.key_cache, *cache.value_cache]
    else:  # legacy tuple of (key, value) per layer
        tensors = [t for kv in cache for t in kv]
    return sum(t.nbytes for t in tensors)


@pytest.mark.points(2)
def test_kv_cache_matches_hf_llama(expect, rng):
    for (vocab, d, inter, layers, heads, kv), dtype, batch, seq in (
        ((61, 24, 40, 2, 4, 2), torch.float32, 2, 7),  # grouped-query
        ((37, 18, 29, 1, 3, 1), torch.bfloat16, 3, 5),  # multi-query, one layer, bf16
        ((61, 24, 40, 2, 4, 4), torch.float32, 1, int(rng.np.integers(1, 12))),  # MHA, maybe 1 token
    ):
        model = _llama(vocab, d, inter, layers, heads, kv, False)
        ids = rng.randint(0, vocab, (batch, seq))
        with torch.no_grad():
            out = model.to(dtype)(ids, use_cache=True)
        model.to(torch.float32)
        expected = _cache_nbytes(out.past_key_values)
        head_dim, dtype_bytes = d // heads, torch.finfo(dtype).bits // 8
        expect(lambda s, a=(batch, seq, layers, kv, head_dim, dtype_bytes): s.kv_cache_bytes(*a), truth=expected,
               name=f"kv_cache_bytes(batch={batch}, seq_len={seq}, n_layer={layers}, num_kv_heads={kv},"
               f" head_dim={head_dim}, dtype_bytes={dtype_bytes}) vs the bytes of the past_key_values"
               f" of a {dtype} LlamaForCausalLM")


def test_kv_cache_full_size(expect, rng):
    # Llama-3-8B (32 layers, 8 kv heads of 128) at 8192 tokens in bf16 is exactly 1 GiB per sequence.
    batch = int(rng.np.integers(1, 64))
    expect(lambda s: s.kv_cache_bytes(batch, 8192, 32, 8, 128, 2), truth=batch * 2**30,
           name=f"kv_cache_bytes(batch={batch}, seq_len=8192, n_layer=32, num_kv_heads=8, head_dim=128,"
           " dtype_bytes=2) (Llama-3-8B, bf16: 1 GiB per sequence)")


@pytest.mark.hidden
def test_hidden_zero_layers_fresh_llama_float64_cache(expect, rng):
    """Edge cases and sizes the public checks do not show: a GPT-2 with no blocks at all
    (embeddings and ln_f only) and a one-position context; a Llama configuration drawn per
    seed (1 to 3 kv heads shared by 1 to 3 query heads each, an even head_dim of 2 to 10, 1
    to 3 layers, a tied or untied head); and that Llama's KV cache in float64, 8 bytes per
    value where the public checks use 4 and 2."""
    vocab, d = int(rng.np.integers(11, 90)), int(rng.np.integers(3, 30))
    for tied in (True, False):
        expect(lambda s, t=tied: s.gpt2_params(vocab, 1, d, 0, tied=t),
               truth=_hf_count(_gpt2(vocab, 1, d, 0, 1, tied)),
               name=f"{_gpt2_call(vocab, 1, d, 0, tied)} (no blocks)"
               " vs GPT2LMHeadModel(GPT2Config(...)).num_parameters()")
    kv = int(rng.np.integers(1, 4))
    heads, head_dim = kv * int(rng.np.integers(1, 4)), 2 * int(rng.np.integers(1, 6))
    case = (int(rng.np.integers(11, 90)), heads * head_dim, int(rng.np.integers(7, 60)), int(rng.np.integers(1, 4)),
            heads, kv, bool(rng.np.integers(0, 2)))
    model = _llama(*case)
    expect(lambda s: s.llama_params(*case[:6], tie_word_embeddings=case[6]), truth=_hf_count(model),
           name=f"{_llama_call(*case)} vs LlamaForCausalLM(LlamaConfig(...)).num_parameters()")
    batch, seq, layers = int(rng.np.integers(1, 4)), int(rng.np.integers(1, 10)), case[3]
    with torch.no_grad():
        out = model.to(torch.float64)(rng.randint(0, case[0], (batch, seq)), use_cache=True)
    model.to(torch.float32)
    expect(lambda s: s.kv_cache_bytes(batch, seq, layers, kv, head_dim, 8), truth=_cache_nbytes(out.past_key_values),
           name=f"kv_cache_bytes(batch={batch}, seq_len={seq}, n_layer={layers}, num_kv_heads={kv},"
           f" head_dim={head_dim}, dtype_bytes=8) vs the bytes of the past_key_values of a float64 LlamaForCausalLM")
