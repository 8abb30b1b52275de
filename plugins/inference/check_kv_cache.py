"""Checks for inference.kv_cache: the cache against transformers' DynamicCache, attention over a
cache against full causal attention, and greedy decoding against `model.generate` and a full
recompute.

The models are tiny GPT2LMHeadModel and LlamaForCausalLM (grouped-query attention) built from
configs with random weights (eager attention, float32, no EOS so every row gets exactly N tokens).
The judge runs its own copy for the truth; the student's copy is built with the same config and
weights in the solution's process (a model is not data, so it cannot cross), and its `forward`
is wrapped in a `unittest.mock.Mock(wraps=...)` that records every call: the judge reads the
input lengths from it, so a full recompute, which gives the right tokens, does not pass as a
cache. Prompts are drawn until every greedy choice of the truth wins by at least MARGIN, so
float rounding (cache against recompute: about 1e-5) can never flip a token.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from grader import probes
from grader.checks import TinyLM
from grader.compare import check

# float32 logits of spread ~2: a cached step and a full recompute differ by ~1e-5 (matmul shapes)
TOL = {"atol": 1e-4, "rtol": 1e-4}
ATTN_TOL = {"atol": 1e-5, "rtol": 1e-5}
MARGIN = 1e-3  # a greedy choice closer than this to the runner-up is redrawn: rounding is ~1e-5
PAD = 0

def gpt2(vocab: int = 97, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0) -> TinyLM:
    kwargs = {"vocab_size": vocab, "n_positions": 64, "n_embd": hidden, "n_layer": layers, "n_head": heads,
              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    return _spec("gpt2", kwargs, seed)


def llama(vocab: int = 89, hidden: int = 32, layers: int = 2, heads: int = 4, kv_heads: int = 2,
          seed: int = 0) -> TinyLM:
    kwargs = {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 2 * hidden + 8,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "max_position_embeddings": 64, "attention_dropout": 0.0}
    return _spec("llama", kwargs, seed)


def _spec(kind: str, kwargs: dict[str, Any], seed: int) -> TinyLM:
    # initializer_range 0.3 spreads the logits (the default 0.02 makes them nearly flat); no BOS/EOS
    # ids, so generate never stops early and never warns about ids outside the vocabulary
    kwargs.update(initializer_range=0.3, bos_token_id=None, eos_token_id=None, pad_token_id=PAD,
                  attn_implementation="eager")
    return TinyLM.of(kind, seed, **kwargs)



def input_lengths(calls: Any) -> list[int | None]:
    """The length of `input_ids` (keyword or first positional argument) of every recorded call."""
    lengths = []
    for call in calls:
        args, kwargs = call[0], call[1]
        ids = kwargs.get("input_ids", args[0] if args else None)
        lengths.append(int(ids.shape[-1]) if isinstance(ids, torch.Tensor) else None)
    return lengths


@dataclass
class Case:
    spec: TinyLM
    ids: torch.Tensor
    mask: torch.Tensor | None
    n: int
    truth: tuple[torch.Tensor, torch.Tensor] | None = None  # generate's (sequences, logits)

    def __str__(self) -> str:
        b, p = self.ids.shape
        if self.mask is None:
            pad = "attention_mask=None"
        else:
            pad = "left padding " + str((self.mask == 0).sum(1).tolist()) + " per row"
        return f"generate_with_cache({self.spec}, input_ids ({b}, {p}), {pad}, max_new_tokens={self.n})"


def hf_generate(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' greedy generate: the sequences and the stacked raw logits of every step."""
    mask = torch.ones_like(case.ids) if case.mask is None else case.mask
    with torch.no_grad():
        out = case.spec.build().generate(input_ids=case.ids, attention_mask=mask, max_new_tokens=case.n,
                                              do_sample=False, output_logits=True, return_dict_in_generate=True,
                                              pad_token_id=PAD)
    return out.sequences, torch.stack(out.logits, dim=1).float()


def recompute(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding with no cache: the whole sequence through the model at every step."""
    model = case.spec.build()
    seq = case.ids
    mask = torch.ones_like(seq) if case.mask is None else case.mask
    steps = []
    for _ in range(case.n):
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        with torch.no_grad():
            logits = model(input_ids=seq, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1].float()
        steps.append(logits)
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return seq, torch.stack(steps, dim=1)


def draw_case(rng: Any, spec: TinyLM, pads: list[int], prompt_len: int, n: int, with_mask: bool = True) -> Case:
    """Prompts with the given left padding per row, redrawn until every greedy step of the truth
    is decided by at least MARGIN (so float rounding cannot flip a token)."""
    vocab = spec.kwargs["vocab_size"]
    for _ in range(50):
        ids = rng.randint(1, vocab, (len(pads), prompt_len))
        mask = torch.ones_like(ids)
        for b, p in enumerate(pads):
            ids[b, :p] = PAD
            mask[b, :p] = 0
        case = Case(spec, ids, mask if with_mask else None, n)
        case.truth = hf_generate(case)
        top2 = case.truth[1].topk(2, dim=-1).values
        if bool(((top2[..., 0] - top2[..., 1]) > MARGIN).all()):
            return case
    raise AssertionError(f"no prompt for {spec} with every greedy margin above {MARGIN} in 50 draws")


def decode(module: Any, case: Case) -> dict[str, Any]:
    """The student's (or a known mistake's) decoding of `case`, and the lengths it fed the model.

    One program in the solution's process (a model is not data, so it cannot cross): build the
    model from the config, load the judge's weights, wrap its forward in
    `unittest.mock.Mock(wraps=forward)` (Mock's positional arguments: spec, side_effect,
    return_value, wraps), call generate_with_cache and read the Mock's calls.
    """
    program = [
        ["import", "transformers"],                                              # 0
        ["import", "unittest.mock"],                                             # 1
        ["getattr", 0, case.spec.config_class],                             # 2
        ["method", 2, "from_dict", [["val", case.spec.kwargs]]],                 # 3 the config
        ["getattr", 0, "AutoModelForCausalLM"],                                  # 4
        ["method", 4, "from_config", [["reg", 3]]],                              # 5 the model
        ["method", 5, "load_state_dict", [["val", case.spec.build().state_dict()]]],
        ["method", 5, "eval", []],
        ["getattr", 5, "forward"],                                               # 8
        ["getattr", 1, "DEFAULT"],                                               # 9
        ["method", 1, "Mock", [["val", None], ["val", None], ["reg", 9], ["reg", 8]]],  # 10
        ["method", 5, "__setattr__", [["val", "forward"], ["reg", 10]]],
        ["call", "generate_with_cache", [["reg", 5], ["val", case.ids], ["val", case.mask], ["val", case.n]]],  # 12
        ["getattr", 10, "call_args_list"],                                       # 13
    ]
    out, calls = probes.run_program(module, program, [12, 13])
    check(isinstance(out, (tuple, list)) and len(out) == 2,
          f"{case} must return a tuple (sequences, logits), got {type(out).__name__}")
    return {"sequences": out[0], "logits": out[1], "lengths": input_lengths(calls)}


def expect_decoding(expect: Any, case: Case, *, lengths: bool = False) -> None:
    """sequences equal generate's exactly, logits within TOL of generate's and of a full
    recompute's; with `lengths`, the model called on the prompt and then on one token per step."""

    def run(m: Any, key: str, c: Case = case) -> Any:
        return decode(m, c)[key]

    got = decode(expect.solution, case)
    sequences, logits = case.truth if case.truth is not None else hf_generate(case)
    expect.compare(got["sequences"], sequences, functools.partial(run, key="sequences"),
                   name=f"{case}: sequences (B, P + N) vs model.generate(do_sample=False)")
    expect.compare(got["logits"], logits, functools.partial(run, key="logits"), **TOL,
                   name=f"{case}: logits (B, N, V) vs model.generate(output_logits=True)")
    expect.compare(got["logits"], recompute(case)[1], functools.partial(run, key="logits"), **TOL,
                   name=f"{case}: logits (B, N, V) vs a full recompute without cache")
    if lengths:
        p = case.ids.shape[1]
        expect.compare(got["lengths"], [p] + [1] * (case.n - 1), functools.partial(run, key="lengths"),
                       name=f"{case}: the lengths of input_ids in your calls to the model (the prompt, then one"
                            " new token per call with the cache; exactly max_new_tokens calls)")


# --- part 1: the cache and attention over it ---------------------------------------------


def cache_steps(rng: Any, batch: int, heads: int, dim: int, plan: list[tuple[int, int]]) -> list[Any]:
    """(layer, keys, values) per update; `plan` lists (layer, number of new positions)."""
    return [(layer, rng.randn(batch, heads, t, dim), rng.randn(batch, heads, t, dim)) for layer, t in plan]


def run_cache(cache: Any, steps: list[Any], lengths_of: tuple[int, ...]) -> list[Any]:
    """Every update's (keys, values) and, after each, the cached lengths of `lengths_of` layers."""
    out = []
    for layer, k, v in steps:
        keys, values = cache.update(layer, k, v)
        out.append((keys, values, [cache.seq_length(i) for i in lengths_of]))
    return out


class _Dynamic:
    """DynamicCache behind KVCache's interface: the truth."""

    def __init__(self) -> None:
        self.cache = DynamicCache()

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(k, v, layer)

    def seq_length(self, layer: int) -> int:
        return self.cache.get_seq_length(layer)


def expect_cache(expect: Any, steps: list[Any], lengths_of: tuple[int, ...], what: str) -> None:
    expect(lambda s: run_cache(s.KVCache(), steps, lengths_of), truth=run_cache(_Dynamic(), steps, lengths_of),
           name=f"KVCache().update(layer, keys, values) for {what}: every returned (keys, values) and"
                f" seq_length(layer) for layers {list(lengths_of)} after each update, vs DynamicCache")


@pytest.mark.points(2)
def test_cache_matches_dynamic_cache(expect, rng):
    # a prefill of 5 positions in two layers, then one token at a time, each layer in turn
    plan = [(0, 5), (1, 5), (0, 1), (1, 1), (0, 1), (1, 1)]
    expect_cache(expect, cache_steps(rng, 2, 3, 4, plan), (0, 1, 2),
                 f"a 2-layer model, keys (2, 3, T, 4): updates (layer, T_new) {plan}")


def test_cache_edge_cases(expect, rng):
    # a one-token prefill, a chunk after single tokens, and layers first updated out of order
    plan = [(2, 1), (0, 1), (2, 1), (0, 3), (1, 2), (2, 4)]
    expect_cache(expect, cache_steps(rng, 1, 2, 6, plan), (0, 1, 2, 3),
                 f"keys (1, 2, T, 6): updates (layer, T_new) {plan}, layer 3 never updated")


def attention_truth(q_full: torch.Tensor, k: torch.Tensor, v: torch.Tensor, t_q: int) -> torch.Tensor:
    """The last t_q rows of plain causal attention over the whole sequence."""
    return F.scaled_dot_product_attention(q_full, k, v, is_causal=True)[..., -t_q:, :]


@pytest.mark.points(2)
def test_cached_attention_matches_full_attention(expect, rng):
    q_full, k, v = (rng.randn(2, 3, 7, 5, scale=1.5) for _ in range(3))
    for t_q in (1, 3, 7):  # one new token, a chunk of 3 after 4 cached positions, a prefill
        q = q_full[..., -t_q:, :].clone()
        expect(lambda s, q=q: s.cached_attention(q, k, v), truth=attention_truth(q_full, k, v, t_q), **ATTN_TOL,
               name=f"cached_attention(q (2, 3, {t_q}, 5), k and v (2, 3, 7, 5)): the last {t_q} rows of causal"
                    " attention over 7 positions")


def own_model_steps(module: Any, weights: list[dict[str, torch.Tensor]], x: torch.Tensor, chunks: list[int],
                    heads: int) -> torch.Tensor:
    """A stack of attention-only residual layers run over `x` chunk by chunk, through `module`'s
    KVCache and cached_attention; the outputs of every position, (B, T, E)."""
    cache = module.KVCache()
    b, _, e = x.shape
    d = e // heads
    outputs, start = [], 0
    for t in chunks:
        h = x[:, start:start + t]
        for layer, w in enumerate(weights):
            q, k, v = ((h @ w[name]).view(b, t, heads, d).transpose(1, 2) for name in ("q", "k", "v"))
            keys, values = cache.update(layer, k, v)
            att = module.cached_attention(q, keys, values)
            h = h + att.transpose(1, 2).reshape(b, t, e) @ w["o"]
        outputs.append(h)
        start += t
    return torch.cat(outputs, dim=1)


def full_model(weights: list[dict[str, torch.Tensor]], x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, e = x.shape
    d = e // heads
    h = x
    for w in weights:
        q, k, v = ((h @ w[name]).view(b, t, heads, d).transpose(1, 2) for name in ("q", "k", "v"))
        h = h + F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, e) @ w["o"]
    return h


@pytest.mark.points(2)
def test_decoding_own_layers_with_the_cache(expect, rng):
    # two attention layers (so each must keep its own keys), fed as a prefill of 4, one token, a
    # chunk of 3 (as a speculative step would) and two single tokens: equal to one full pass
    heads, e, chunks = 3, 12, [4, 1, 3, 1, 1]
    weights = [{n: rng.randn(e, e, scale=e ** -0.5) for n in ("q", "k", "v", "o")} for _ in range(2)]
    x = rng.randn(2, sum(chunks), e)
    expect(lambda s: own_model_steps(s, weights, x, chunks, heads), truth=full_model(weights, x, heads),
           **ATTN_TOL, name=f"two attention layers (3 heads of 4) decoded in chunks {chunks} through KVCache.update"
                            " and cached_attention vs one causal pass over all 10 positions")


# --- part 2: greedy decoding of a Hugging Face model through its cache ---------------------


@pytest.mark.points(3)
def test_gpt2_left_padded_batch_matches_generate(expect, rng):
    # rows of 7, 4 and 2 real tokens: positions must start at 0 after each row's padding
    expect_decoding(expect, draw_case(rng, gpt2(), pads=[0, 3, 5], prompt_len=7, n=6))


@pytest.mark.points(3)
def test_llama_gqa_left_padded_batch_matches_generate(expect, rng):
    # 4 query heads sharing 2 kv heads; RoPE makes every position id count
    expect_decoding(expect, draw_case(rng, llama(), pads=[2, 0, 4, 1], prompt_len=6, n=7))


@pytest.mark.points(2)
def test_the_cache_is_used(expect, rng):
    expect_decoding(expect, draw_case(rng, llama(vocab=73, seed=1), pads=[0, 2], prompt_len=5, n=5), lengths=True)


def test_prompt_of_length_one(expect, rng):
    # P = 1 and no attention mask: the prefill is one token; positions 0, 1, 2, ...
    expect_decoding(expect, draw_case(rng, gpt2(), pads=[0, 0, 0], prompt_len=1, n=5, with_mask=False),
                    lengths=True)
    expect_decoding(expect, draw_case(rng, llama(), pads=[0, 0], prompt_len=1, n=4))


def test_one_new_token_and_batch_of_one(expect, rng):
    # max_new_tokens = 1 is the prefill alone; a batch of one row with no padding
    expect_decoding(expect, draw_case(rng, llama(), pads=[3, 0, 5], prompt_len=6, n=1), lengths=True)
    expect_decoding(expect, draw_case(rng, gpt2(), pads=[0], prompt_len=8, n=5))


@pytest.mark.hidden
def test_hidden_fresh_models_and_batches(expect, rng):
    """Models, shapes and plans the public checks do not use: a multi-query Llama (one kv head
    for 3 query heads, head_dim 12, 3 layers) and a GPT-2 of 3 layers with 6 heads, with weights
    and batches drawn per seed (a row of a single real token among them); and KVCache and
    cached_attention on fresh sizes, with chunks of several tokens."""
    seed = int(rng.np.integers(1, 1 << 30))
    for spec in (llama(vocab=113, hidden=36, layers=3, heads=3, kv_heads=1, seed=seed),
                 gpt2(vocab=71, hidden=48, layers=3, heads=6, seed=seed + 1)):
        prompt_len = int(rng.np.integers(3, 9))
        pads = [int(p) for p in rng.np.integers(0, prompt_len, int(rng.np.integers(2, 5)))]
        pads[int(rng.np.integers(len(pads)))] = prompt_len - 1  # one row with a single real token
        expect_decoding(expect, draw_case(rng, spec, pads=pads, prompt_len=prompt_len,
                                          n=int(rng.np.integers(2, 8))), lengths=True)
    plan = [(1, 3), (0, 3), (1, 2), (0, 2), (1, 1), (0, 1)]
    expect_cache(expect, cache_steps(rng, 3, 2, 7, plan), (0, 1), f"keys (3, 2, T, 7): updates {plan}")
    t_k = int(rng.np.integers(5, 12))
    q_full, k, v = (rng.randn(1, 2, t_k, 6, scale=2.0) for _ in range(3))
    t_q = int(rng.np.integers(2, t_k))
    expect(lambda s: s.cached_attention(q_full[..., -t_q:, :].clone(), k, v),
           truth=attention_truth(q_full, k, v, t_q), **ATTN_TOL,
           name=f"cached_attention(q (1, 2, {t_q}, 6), k and v (1, 2, {t_k}, 6))")
