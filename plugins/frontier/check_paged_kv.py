"""Checks for frontier.paged_kv: the block allocator, the block tables and slot mapping, the
memory accounting against its closed form, and continuous batching of a Hugging Face Llama
through the paged cache against the model's own forward over each whole sequence.

The bookkeeping (block ids, slots, stats) is judged exactly against `Plan`, a few lines of the
closed form written here: a sequence of length L holds ceil(L / block_size) blocks, taken
lowest free id first, sequence by sequence in the batch's order; blocks_used = sum
ceil(len_i / bs) and wasted_slots = blocks_used * bs - sum len_i.

The serving loop (`serve`) is the judge's: a tiny LlamaForCausalLM (grouped-query attention,
RoPE, random weights, eager, float32) run layer by layer over packed batches in which
sequences join (a prefill, whole or in chunks), decode one token per step and leave, the
student's `PagedKVCache` holding every key and value and the student's `paged_attention`
attending over it. Each step's logits for the new tokens must equal those of the model's
forward over each sequence's tokens so far (a dense recompute). Tokens are teacher-forced
(drawn in advance), so no argmax can flip on rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from grader.checks import TinyLM, one_torch_thread
from grader.compare import check
from grader.errors import SolutionError, SolutionFailure

# attention over a gathered cache vs over dense tensors: the same float32 products, summed in
# another order at most (~1e-7 on outputs of size ~1)
ATTN_TOL = {"atol": 1e-5, "rtol": 1e-5}
# a packed paged step vs the model's full forward: other matmul shapes through 2-3 layers; the
# reference differs by under 1e-7 on logits of size ~0.4 (measured), the smallest known mistake
# (the packed offset) by 1.3e-3: 1e-4 is 1000x the rounding and 10x under any mistake
LOGIT_TOL = {"atol": 1e-4, "rtol": 1e-4}


def outcome(call: Any) -> Any:
    """What `call()` gave, or ("raises", exception type name): for calls that may raise."""
    try:
        return call()
    except SolutionError as e:
        if e.not_implemented:
            raise
        return ("raises", e.exc_type)
    except (SolutionFailure, NotImplementedError):
        raise
    except Exception as e:  # a known mistake or the reference in the judge: the real exception
        return ("raises", type(e).__name__)


# --- the closed form -------------------------------------------------------------------------


class Plan:
    """The paged cache's bookkeeping in closed form: the truth for block ids, slots and stats."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        self.free_ids = set(range(num_blocks))
        self.block_tables: dict[int, list[int]] = {}
        self.seq_lens: dict[int, int] = {}

    def add_sequence(self, seq_id: int) -> None:
        if seq_id in self.block_tables:
            raise ValueError("already in the cache")
        self.block_tables[seq_id], self.seq_lens[seq_id] = [], 0

    def reserve(self, seq_ids: list[int], num_tokens: list[int]) -> torch.Tensor:
        bs = self.block_size
        need = sum(math.ceil((self.seq_lens[s] + n) / bs) - len(self.block_tables[s]) for s, n in zip(seq_ids, num_tokens))
        if need > len(self.free_ids):
            raise RuntimeError("out of blocks")
        slots = []
        for s, n in zip(seq_ids, num_tokens):
            table, start = self.block_tables[s], self.seq_lens[s]
            while len(table) < math.ceil((start + n) / bs):
                table.append(min(self.free_ids))
                self.free_ids.remove(table[-1])
            slots += [table[p // bs] * bs + p % bs for p in range(start, start + n)]
            self.seq_lens[s] = start + n
        return torch.tensor(slots, dtype=torch.long)

    def free(self, seq_id: int) -> None:
        self.free_ids.update(self.block_tables.pop(seq_id))
        del self.seq_lens[seq_id]

    def stats(self) -> dict[str, int]:
        lens, bs = list(self.seq_lens.values()), self.block_size
        blocks = sum(math.ceil(n / bs) for n in lens)
        return {"sequences": len(lens), "tokens": sum(lens), "blocks_used": blocks,
                "blocks_free": self.num_blocks - blocks, "wasted_slots": blocks * bs - sum(lens)}


def describe(event: tuple[Any, ...]) -> str:
    if event[0] == "reserve":
        return f"reserve({list(event[1])}, {list(event[2])})"
    return f"{'add_sequence' if event[0] == 'add' else 'free'}({event[1]})"


def run_events(cache: Any, events: list[tuple[Any, ...]], observe: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Apply the events ("add", id) / ("reserve", ids, counts) / ("free", id) and observe, after
    each, what `observe` names: "slot_mapping" (what a reserve returned), "block_tables" (with
    seq_lens), "stats". What add_sequence gave (None, or ("raises", type)) is always recorded,
    and so is a reserve that raises. Keyed by "after #i <event>", so a failure names the event."""
    out = {}
    for i, event in enumerate(events):
        row: dict[str, Any] = {}
        if event[0] == "add":
            row["add_sequence"] = outcome(lambda e=event: cache.add_sequence(e[1]))
        elif event[0] == "free":
            cache.free(event[1])
        else:
            slots = outcome(lambda e=event: cache.reserve(list(e[1]), list(e[2])))
            # a refused reserve is always observed; the slots themselves where asked for
            row["reserve"] = slots if "slot_mapping" in observe or isinstance(slots, tuple) else "done"
        if "block_tables" in observe:
            row["block_tables"] = {k: list(v) for k, v in sorted(dict(cache.block_tables).items())}
            row["seq_lens"] = dict(sorted(dict(cache.seq_lens).items()))
        if "stats" in observe:
            row["stats"] = dict(cache.stats())
        out[f"after #{i} {describe(event)}"] = row
    return out


def expect_events(expect: Any, num_blocks: int, block_size: int, events: list[tuple[Any, ...]],
                  observe: tuple[str, ...], what: str) -> None:
    shape = (2, num_blocks, block_size, 1, 2)
    expect(lambda s: run_events(s.PagedKVCache(*shape), events, observe),
           truth=run_events(Plan(num_blocks, block_size), events, observe),
           name=f"PagedKVCache(num_layers=2, num_blocks={num_blocks}, block_size={block_size}, num_kv_heads=1,"
                f" head_dim=2), {what}: {' / '.join(observe)} after each of {', '.join(map(describe, events))}")


# --- the allocator ---------------------------------------------------------------------------


def allocator_story(module: Any) -> list[Any]:
    pool = module.BlockAllocator(5)
    got: list[Any] = [[pool.allocate() for _ in range(4)], pool.num_free()]
    pool.free(2)
    pool.free(0)
    got += [pool.num_free(), [pool.allocate() for _ in range(3)], pool.num_free()]
    got.append(outcome(pool.allocate))
    got.append(outcome(lambda: pool.free(7)))
    pool.free(1)
    got.append(outcome(lambda: pool.free(1)))
    got += [pool.num_free(), pool.allocate()]
    return got


def test_allocator_hands_out_the_lowest_free_id(expect):
    truth = [[0, 1, 2, 3], 1, 3, [0, 2, 4], 0, ("raises", "RuntimeError"), ("raises", "ValueError"),
             ("raises", "ValueError"), 1, 1]
    expect(allocator_story, truth=truth,
           name="BlockAllocator(5): allocate x4, num_free, free(2), free(0), num_free, allocate x3 (lowest free id"
                " first: 0, 2, then the unused 4), num_free, allocate with none free (RuntimeError), free(7) (no such"
                " block: ValueError), free(1), free(1) again (double free: ValueError), num_free, allocate")


# --- block tables, slots and stats -----------------------------------------------------------


@pytest.mark.points(2)
def test_block_tables_and_slot_mapping(expect):
    # block size 3; sequence 11 fills exactly one block and its next token opens a second at the
    # boundary; batches list sequences in another order than they joined; 13 reuses 10's blocks
    events = [("add", 10), ("add", 11), ("reserve", [10], [4]), ("reserve", [11], [3]),
              ("reserve", [11, 10], [1, 1]), ("add", 12), ("reserve", [12, 10, 11], [1, 2, 1]), ("free", 10),
              ("add", 13), ("reserve", [13, 11, 12], [5, 1, 1]), ("free", 11), ("reserve", [12, 13], [2, 1])]
    expect_events(expect, 12, 3, events, ("slot_mapping", "block_tables"), "sequences joining and leaving")


@pytest.mark.points(2)
def test_stats_match_the_closed_form(expect):
    # block size 4: an empty sequence (0 blocks, 0 waste), lengths 1, 4 and 8 (exact blocks: no
    # waste), 5 and 9 (3 wasted slots each), and frees in between
    events = [("add", 0), ("add", 1), ("add", 2), ("reserve", [1], [4]), ("reserve", [2, 1], [1, 4]),
              ("reserve", [2], [4]), ("add", 3), ("free", 1), ("reserve", [3, 2], [9, 3]), ("free", 0),
              ("free", 2)]
    expect_events(expect, 8, 4, events, ("stats",), "blocks used and wasted slots")


def test_stats_with_block_sizes_one_and_larger_than_any_sequence(expect):
    events = [("add", 5), ("add", 6), ("reserve", [5], [3]), ("reserve", [6, 5], [2, 1]), ("free", 5),
              ("reserve", [6], [1])]
    expect_events(expect, 6, 1, events, ("stats", "block_tables"), "block_size=1 (never any waste)")
    expect_events(expect, 3, 16, events, ("stats", "block_tables"), "block_size=16 (one block each)")


def test_out_of_blocks_raises_and_changes_nothing(expect):
    # 4 blocks of 2: sequence 1 takes 3, then a step needing 2 new blocks (one for each
    # sequence) finds 1 free: RuntimeError and nothing changed, nor for 9 tokens (5 blocks of 4);
    # after free(1) the pool serves again, the last step needing exactly the 3 blocks left;
    # adding 2 again while it holds a block is a ValueError that must not reset it
    events = [("add", 1), ("add", 2), ("reserve", [1], [6]), ("reserve", [2, 1], [1, 1]),
              ("reserve", [2], [9]), ("free", 1), ("reserve", [2], [2]), ("add", 2), ("add", 1),
              ("reserve", [1, 2], [3, 2])]
    expect_events(expect, 4, 2, events, ("block_tables", "stats"), "running out of blocks (and adding a sequence twice)")


# --- storage: write and gather ---------------------------------------------------------------


@dataclass
class Storage:
    """What a cache must hold after a plan of reserves and writes: the dense keys and values
    of every sequence, and the physical storage, written through the Plan's slots."""

    layers: int
    num_blocks: int
    block_size: int
    heads: int
    dim: int
    plan: Plan = field(init=False)

    def __post_init__(self) -> None:
        self.plan = Plan(self.num_blocks, self.block_size)
        self.key_cache = torch.zeros(self.layers, self.num_blocks, self.block_size, self.heads, self.dim)
        self.value_cache = torch.zeros_like(self.key_cache)
        self.dense: dict[int, list[list[torch.Tensor]]] = {}

    def run(self, events: list[tuple[Any, ...]], kv: list[torch.Tensor]) -> None:
        written = 0
        for event in events:
            if event[0] == "add":
                self.plan.add_sequence(event[1])
                self.dense[event[1]] = [[] for _ in range(self.layers)]
            elif event[0] == "free":
                self.plan.free(event[1])
                del self.dense[event[1]]
            else:
                slots = self.plan.reserve(event[1], event[2])
                for layer in range(self.layers):
                    k, v = kv[written], kv[written + 1]
                    written += 2
                    self.key_cache[layer].view(-1, self.heads, self.dim)[slots] = k
                    self.value_cache[layer].view(-1, self.heads, self.dim)[slots] = v
                    start = 0
                    for s, n in zip(event[1], event[2]):
                        self.dense[s][layer].append(torch.stack([k[start:start + n], v[start:start + n]]))
                        start += n

    def gathered(self) -> dict[str, Any]:
        empty = torch.zeros(2, 0, self.heads, self.dim)
        return {f"gather(layer {layer}, seq {s})": tuple(torch.cat(parts[layer] or [empty], dim=1))
                for s, parts in sorted(self.dense.items()) for layer in range(self.layers)}


def write_and_gather(module: Any, shape: tuple[int, ...], events: list[tuple[Any, ...]],
                     kv: list[torch.Tensor]) -> dict[str, Any]:
    cache = module.PagedKVCache(*shape)
    written = 0
    live: list[int] = []
    for event in events:
        if event[0] == "add":
            cache.add_sequence(event[1])
            live.append(event[1])
        elif event[0] == "free":
            cache.free(event[1])
            live.remove(event[1])
        else:
            slots = cache.reserve(list(event[1]), list(event[2]))
            for layer in range(shape[0]):
                cache.write(layer, slots, kv[written], kv[written + 1])
                written += 2
    out: dict[str, Any] = {f"gather(layer {layer}, seq {s})": tuple(cache.gather(layer, s))
                           for s in sorted(live) for layer in range(shape[0])}
    out["key_cache"], out["value_cache"] = cache.key_cache, cache.value_cache
    return out


def expect_storage(expect: Any, rng: Any, shape: tuple[int, ...], events: list[tuple[Any, ...]], what: str) -> None:
    layers, num_blocks, block_size, heads, dim = shape
    kv = [rng.randn(sum(e[2]), heads, dim) for e in events if e[0] == "reserve" for _ in range(2 * layers)]
    truth = Storage(*shape)
    truth.run(events, kv)
    want = {**truth.gathered(), "key_cache": truth.key_cache, "value_cache": truth.value_cache}
    expect(lambda s: write_and_gather(s, shape, events, kv), truth=want,
           name=f"PagedKVCache{shape}, {what}: reserve and write every layer's new keys and values for each of"
                f" {', '.join(map(describe, events))}; then gather(layer, seq) of every live sequence (the dense"
                " keys and values in position order) and the physical key_cache and value_cache")


@pytest.mark.points(2)
def test_write_then_gather_returns_the_dense_sequence(expect, rng):
    # block size 4, 2 layers: sequence 7 reuses the blocks of 5, whose stale keys stay in the slots
    # past 7's length; 8 was added and never written (length 0)
    events = [("add", 5), ("add", 6), ("reserve", [5], [6]), ("reserve", [6, 5], [3, 1]), ("free", 5),
              ("add", 7), ("add", 8), ("reserve", [7], [5]), ("reserve", [6, 7], [1, 1])]
    expect_storage(expect, rng, (2, 6, 4, 2, 3), events, "a sequence leaving and another reusing its blocks")


# --- attention over the paged cache ----------------------------------------------------------


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q (n, H, D) the last n positions of k, v (L, Hkv, D): causal GQA attention, (n, H, D)."""
    n, heads, _ = q.shape
    length, kv_heads, _ = k.shape
    group = heads // kv_heads
    k, v = (x.repeat_interleave(group, dim=1).transpose(0, 1) for x in (k, v))
    allowed = torch.ones(n, length, dtype=torch.bool).tril(diagonal=length - n)
    return F.scaled_dot_product_attention(q.transpose(0, 1), k, v, attn_mask=allowed).transpose(0, 1)


def attend(module: Any, shape: tuple[int, ...], prefill: list[tuple[Any, ...]], kv: list[torch.Tensor],
           batch: list[tuple[int, int]], q: torch.Tensor, new_kv: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fill the cache with `prefill` events and their keys, then one step: reserve the batch,
    write its new keys and values, and run paged_attention for each layer."""
    cache = module.PagedKVCache(*shape)
    written = 0
    for event in prefill:
        if event[0] == "add":
            cache.add_sequence(event[1])
        else:
            slots = cache.reserve(list(event[1]), list(event[2]))
            for layer in range(shape[0]):
                cache.write(layer, slots, kv[written], kv[written + 1])
                written += 2
    seq_ids, num_tokens = [s for s, _ in batch], [n for _, n in batch]
    slots = cache.reserve(seq_ids, num_tokens)
    out = []
    for layer in range(shape[0]):
        cache.write(layer, slots, new_kv[2 * layer], new_kv[2 * layer + 1])
        out.append(module.paged_attention(q[layer], cache, layer, seq_ids, num_tokens))
    return out


@pytest.mark.points(2)
def test_paged_attention_matches_dense_attention(expect, rng):
    # 6 query heads over 2 kv heads, block size 4; one packed step holding a chunk of 3 prefill
    # tokens of sequence 3 (2 already cached), a decode token of 1, the whole 4-token prompt of
    # 4 (exactly one block) and the first token of 2 (it attends to itself only)
    layers, num_blocks, block_size, kv_heads, dim, heads = 2, 10, 4, 2, 5, 6
    shape = (layers, num_blocks, block_size, kv_heads, dim)
    prefill = [("add", 1), ("add", 2), ("add", 3), ("add", 4), ("reserve", [1, 3], [7, 2])]
    batch = [(3, 3), (1, 1), (4, 4), (2, 1)]
    kv = [rng.randn(9, kv_heads, dim) for _ in range(2 * layers)]
    t = sum(n for _, n in batch)
    new_kv = [rng.randn(t, kv_heads, dim) for _ in range(2 * layers)]
    q = rng.randn(layers, t, heads, dim, scale=1.5)
    cached = {1: slice(0, 7), 3: slice(7, 9)}  # the prefill's rows of kv: reserve([1, 3], [7, 2])
    truth = []
    for layer in range(layers):
        keys, values = kv[2 * layer], kv[2 * layer + 1]
        rows, start = [], 0
        for s, n in batch:
            before = cached.get(s, slice(0, 0))
            k = torch.cat([keys[before], new_kv[2 * layer][start:start + n]])
            v = torch.cat([values[before], new_kv[2 * layer + 1][start:start + n]])
            rows.append(dense_attention(q[layer, start:start + n], k, v))
            start += n
        truth.append(torch.cat(rows))
    expect(lambda s: attend(s, shape, prefill, kv, batch, q, new_kv), truth=truth, **ATTN_TOL,
           name=f"paged_attention(q ({t}, {heads}, {dim}), cache with {kv_heads} kv heads and block_size {block_size},"
                f" layer, seq_ids {[s for s, _ in batch]}, num_tokens {[n for _, n in batch]}) for both layers, after"
                " reserve and write of the step (sequence 3 had 2 cached tokens, 1 had 7, 4 and 2 none)")


# --- continuous batching of a Llama through the paged cache ----------------------------------


def llama(layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 8, seed: int = 0) -> TinyLM:
    return TinyLM.of("llama", seed, vocab_size=61, hidden_size=heads * head_dim, intermediate_size=48,
                     num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                     head_dim=head_dim, max_position_embeddings=64, attention_dropout=0.0,
                     bos_token_id=None, eos_token_id=None, pad_token_id=None, attn_implementation="eager")


class Step(NamedTuple):
    """One step of a schedule. A named tuple, not a dataclass: the students' edition keys the
    recorded outputs of known mistakes by what a call closes over, and a named tuple is keyed
    by its fields alone, wherever the check module was imported from."""

    batch: list[tuple[int, int]]  # (seq_id, new tokens), in the batch's row order
    join: tuple[int, ...] | list[int] = ()  # added before the step
    leave: tuple[int, ...] | list[int] = ()  # freed before the step

    def __str__(self) -> str:
        parts = ([f"free {self.leave}"] if self.leave else []) + ([f"add {self.join}"] if self.join else [])
        return "; ".join(parts + [f"batch {self.batch}"])


@torch.no_grad()
def serve(module: Any, spec: TinyLM, num_blocks: int, block_size: int, steps: list[Step],
          tokens: dict[int, torch.Tensor]) -> list[torch.Tensor]:
    """Run the schedule through `module`'s paged cache and attention: each step's logits for
    its new tokens, packed in the batch's order, (sum of new tokens, vocab)."""
    model = spec.build()
    cfg = model.config
    cache = module.PagedKVCache(cfg.num_hidden_layers, num_blocks, block_size, cfg.num_key_value_heads, cfg.head_dim)
    lens = {}
    out = []
    for step in steps:
        for s in step.leave:
            cache.free(s)
        for s in step.join:
            cache.add_sequence(s)
            lens[s] = 0
        seq_ids, num_tokens = [s for s, _ in step.batch], [n for _, n in step.batch]
        ids = torch.cat([tokens[s][lens[s]:lens[s] + n] for s, n in step.batch])
        positions = torch.cat([torch.arange(lens[s], lens[s] + n) for s, n in step.batch])
        for s, n in step.batch:
            lens[s] += n
        slots = cache.reserve(seq_ids, num_tokens)
        h = model.model.embed_tokens(ids)[None]
        cos, sin = model.model.rotary_emb(h, positions[None])
        t = ids.shape[0]
        for i, layer in enumerate(model.model.layers):
            att, x = layer.self_attn, layer.input_layernorm(h)
            q, k, v = (proj(x).view(1, t, -1, cfg.head_dim).transpose(1, 2) for proj in (att.q_proj, att.k_proj, att.v_proj))
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            cache.write(i, slots, k[0].transpose(0, 1).contiguous(), v[0].transpose(0, 1).contiguous())
            o = module.paged_attention(q[0].transpose(0, 1).contiguous(), cache, i, seq_ids, num_tokens)
            check(isinstance(o, torch.Tensor) and tuple(o.shape) == (t, cfg.num_attention_heads, cfg.head_dim),
                  f"paged_attention must return a tensor of shape {(t, cfg.num_attention_heads, cfg.head_dim)}"
                  f" (packed like q), got {getattr(o, 'shape', type(o).__name__)}")
            h = h + att.o_proj(o.reshape(1, t, -1))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        out.append(model.lm_head(model.model.norm(h))[0])
    return out


@torch.no_grad()
def recompute(spec: TinyLM, steps: list[Step], tokens: dict[int, torch.Tensor]) -> list[torch.Tensor]:
    """The truth: the model's own forward over each sequence's tokens so far, every step."""
    model = spec.build()
    lens = dict.fromkeys(tokens, 0)
    out = []
    for step in steps:
        rows = []
        for s, n in step.batch:
            lens[s] += n
            rows.append(model(input_ids=tokens[s][None, :lens[s]]).logits[0, -n:])
        out.append(torch.cat(rows))
    return out


def expect_serving(expect: Any, rng: Any, spec: TinyLM, num_blocks: int, block_size: int, steps: list[Step],
                   what: str) -> None:
    totals: dict[int, int] = {}
    for step in steps:
        for s, n in step.batch:
            totals[s] = totals.get(s, 0) + n
    vocab = spec.kwargs["vocab_size"]
    tokens = {s: rng.randint(0, vocab, (n,)) for s, n in sorted(totals.items())}
    # a tiny model: on one torch thread in both processes (more threads only wait on each other)
    with one_torch_thread(expect.solution):
        expect(lambda m: serve(m, spec, num_blocks, block_size, steps, tokens), truth=recompute(spec, steps, tokens),
               **LOGIT_TOL,
                   name=f"continuous batching of a {what} (block_size {block_size}, {num_blocks} blocks) through"
                    f" PagedKVCache and paged_attention, steps #0 to #{len(steps) - 1}: {' | '.join(map(str, steps))}: item"
                    " [i] is step #i's logits of its new tokens (batch order), vs the model's forward over each whole"
                    " sequence so far")


PUBLIC_SCHEDULE = [
    Step([(0, 5)], join=[0]),                          # a prefill of 5 (blocks of 3: one full, one partial)
    Step([(1, 3), (0, 1)], join=[1]),                  # a new prefill first, then a decode token
    Step([(0, 1), (1, 1)]),                            # 1 crosses into its second block
    Step([(0, 1), (2, 1), (1, 1)], join=[2]),          # a one-token prompt in the middle of the batch
    Step([(2, 1), (1, 1)], leave=[0]),                 # 0 leaves: its blocks go back to the pool
    Step([(3, 4), (1, 1), (2, 1)], join=[3]),          # 3 reuses 0's blocks; its prompt comes in chunks
    Step([(3, 3), (2, 1), (1, 1)]),
    Step([(2, 1), (3, 1)], leave=[1]),
    Step([(4, 2), (3, 1), (2, 1)], join=[4]),
]


@pytest.mark.points(3)
def test_continuous_batching_matches_a_dense_recompute(expect, rng):
    spec = llama()
    expect_serving(expect, rng, spec, 10, 3, PUBLIC_SCHEDULE,
                   "Llama (2 layers, 4 query heads sharing 2 kv heads of 8)")


def random_schedule(rng: Any, sequences: int, max_batch: int) -> list[Step]:
    """Sequences join when there is room, their prompt in one or two chunks, decode a few
    tokens, and leave; every step's batch in a shuffled order."""
    g = rng.np
    chunks = {}
    for s in range(sequences):
        prompt = int(g.integers(1, 8))
        cut = int(g.integers(1, prompt + 1))
        chunks[s] = [c for c in (cut, prompt - cut) if c] + [1] * int(g.integers(1, 5))
    waiting, active, steps = list(range(sequences)), [], []
    while waiting or active:
        leave = [s for s in active if not chunks[s]]
        active = [s for s in active if chunks[s]]
        join = []
        while waiting and len(active) < max_batch and (not active or g.random() < 0.6):
            join.append(waiting.pop(0))
            active.append(join[-1])
        if not active:
            break
        order = [active[i] for i in g.permutation(len(active))]
        steps.append(Step([(s, chunks[s].pop(0)) for s in order], join=join, leave=leave))
    return steps


def peak_blocks(steps: list[Step], block_size: int) -> int:
    lens: dict[int, int] = {}
    peak = 0
    for step in steps:
        for s in step.leave:
            del lens[s]
        for s, n in step.batch:
            lens[s] = lens.get(s, 0) + n
        peak = max(peak, sum(math.ceil(n / block_size) for n in lens.values()))
    return peak


@pytest.mark.hidden
def test_hidden_fresh_schedule_and_model(expect, rng):
    """A multi-query Llama of 3 layers (one kv head for 3 query heads of 6), a block size and a
    schedule drawn per seed (joins, chunked prompts, leaves, shuffled batches), with just enough
    blocks for its peak; and the bookkeeping of the same schedule against the closed form."""
    block_size = int(rng.np.integers(2, 6))
    steps = random_schedule(rng, 6, 4)
    num_blocks = peak_blocks(steps, block_size)
    spec = llama(layers=3, heads=3, kv_heads=1, head_dim=6, seed=int(rng.np.integers(1, 1 << 30)))
    expect_serving(expect, rng, spec, num_blocks, block_size, steps, "multi-query Llama (3 layers)")
    events: list[tuple[Any, ...]] = []
    for step in steps:
        events += [("free", s) for s in step.leave] + [("add", s) for s in step.join]
        events.append(("reserve", [s for s, _ in step.batch], [n for _, n in step.batch]))
    expect_events(expect, num_blocks, block_size, events, ("slot_mapping", "block_tables", "stats"),
                  "a random schedule")
