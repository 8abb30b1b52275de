"""A paged KV cache (vLLM's block tables) for continuous batching: a block allocator, the cache
with its per-sequence block tables, and attention over a ragged batch read through the tables."""

from __future__ import annotations

import bisect
import math

import torch


class BlockAllocator:
    """The pool of physical block ids 0 .. num_blocks - 1, every one free at the start.

    `allocate()` hands out the LOWEST free id and raises RuntimeError (a sentence saying the
    pool is exhausted) when none is free; `free(block_id)` puts an allocated id back and
    raises ValueError for an id out of range or already free (a double free). `num_free()`
    is the number of free ids.
    """

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self._free = list(range(num_blocks))  # sorted: the lowest free id is first

    def allocate(self) -> int:
        if not self._free:
            raise RuntimeError(f"out of KV-cache blocks: all {self.num_blocks} blocks are in use; "
                               "free a sequence before allocating more")
        return self._free.pop(0)

    def free(self, block_id: int) -> None:
        if not 0 <= block_id < self.num_blocks:
            raise ValueError(f"block {block_id} does not exist (the pool has blocks 0 .. {self.num_blocks - 1})")
        i = bisect.bisect_left(self._free, block_id)
        if i < len(self._free) and self._free[i] == block_id:
            raise ValueError(f"block {block_id} is already free (double free)")
        bisect.insort(self._free, block_id)

    def num_free(self) -> int:
        return len(self._free)


class PagedKVCache:
    """Keys and values of many sequences in fixed-size physical blocks (see the stub)."""

    def __init__(self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.num_layers = num_layers
        self.num_blocks = num_blocks
        self.block_size = block_size
        shape = (num_layers, num_blocks, block_size, num_kv_heads, head_dim)
        self.key_cache = torch.zeros(shape, dtype=dtype)
        self.value_cache = torch.zeros(shape, dtype=dtype)
        self.allocator = BlockAllocator(num_blocks)
        self.block_tables: dict[int, list[int]] = {}
        self.seq_lens: dict[int, int] = {}

    def _blocks_for(self, length: int) -> int:
        return math.ceil(length / self.block_size)

    def add_sequence(self, seq_id: int) -> None:
        if seq_id in self.block_tables:
            raise ValueError(f"sequence {seq_id} is already in the cache")
        self.block_tables[seq_id] = []
        self.seq_lens[seq_id] = 0

    def reserve(self, seq_ids: list[int], num_tokens: list[int]) -> torch.Tensor:
        if len(seq_ids) != len(num_tokens) or len(set(seq_ids)) != len(seq_ids):
            raise ValueError("seq_ids must be distinct and match num_tokens one to one")
        if any(n < 1 for n in num_tokens):
            raise ValueError(f"every sequence reserves at least one token, got {list(num_tokens)}")
        needed = sum(self._blocks_for(self.seq_lens[s] + n) - len(self.block_tables[s])
                     for s, n in zip(seq_ids, num_tokens))
        # all or nothing: a scheduler that gets this error must find the cache as it was
        if needed > self.allocator.num_free():
            raise RuntimeError(f"out of KV-cache blocks: this step needs {needed} new blocks and only "
                               f"{self.allocator.num_free()} of {self.num_blocks} are free; free a sequence first")
        slots = []
        for seq_id, n in zip(seq_ids, num_tokens):
            table = self.block_tables[seq_id]
            start = self.seq_lens[seq_id]
            while len(table) < self._blocks_for(start + n):
                table.append(self.allocator.allocate())
            for pos in range(start, start + n):
                # position pos lives in logical block pos // block_size, at offset pos % block_size
                slots.append(table[pos // self.block_size] * self.block_size + pos % self.block_size)
            self.seq_lens[seq_id] = start + n
        return torch.tensor(slots, dtype=torch.long)

    def write(self, layer: int, slot_mapping: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        _, _, block_size, heads, dim = self.key_cache.shape
        # a view of the layer's storage with one row per slot: writing into it writes the cache
        self.key_cache[layer].view(-1, heads, dim)[slot_mapping] = k
        self.value_cache[layer].view(-1, heads, dim)[slot_mapping] = v

    def gather(self, layer: int, seq_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        table = torch.tensor(self.block_tables[seq_id], dtype=torch.long)
        n = self.seq_lens[seq_id]
        _, _, _, heads, dim = self.key_cache.shape
        k = self.key_cache[layer, table].reshape(-1, heads, dim)[:n]
        v = self.value_cache[layer, table].reshape(-1, heads, dim)[:n]
        return k.clone(), v.clone()

    def free(self, seq_id: int) -> None:
        for block in self.block_tables.pop(seq_id):
            self.allocator.free(block)
        del self.seq_lens[seq_id]

    def stats(self) -> dict[str, int]:
        bs = self.block_size
        used = sum(len(table) for table in self.block_tables.values())
        wasted = sum(len(table) * bs - self.seq_lens[s] for s, table in self.block_tables.items())
        return {
            "sequences": len(self.block_tables),
            "tokens": sum(self.seq_lens.values()),
            "blocks_used": used,
            "blocks_free": self.allocator.num_free(),
            "wasted_slots": wasted,
        }


def paged_attention(q: torch.Tensor, cache: PagedKVCache, layer: int, seq_ids: list[int],
                    num_tokens: list[int]) -> torch.Tensor:
    heads = q.shape[1]
    kv_heads = cache.key_cache.shape[3]
    group = heads // kv_heads
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = []
    start = 0
    for seq_id, n in zip(seq_ids, num_tokens):
        k, v = cache.gather(layer, seq_id)  # (L, kv_heads, D), the n new tokens included
        length = k.shape[0]
        # query head h reads kv head h // group, as Llama's repeat_kv
        k = k.repeat_interleave(group, dim=1).transpose(0, 1)  # (heads, L, D)
        v = v.repeat_interleave(group, dim=1).transpose(0, 1)
        qs = q[start:start + n].transpose(0, 1)  # (heads, n, D)
        scores = (qs @ k.transpose(1, 2)) * scale  # (heads, n, L)
        # the n queries are the LAST n positions: query i is at position L - n + i
        query_pos = torch.arange(n).unsqueeze(1) + (length - n)
        key_pos = torch.arange(length).unsqueeze(0)
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
        out.append((torch.softmax(scores, dim=-1) @ v).transpose(0, 1))
        start += n
    return torch.cat(out, dim=0)
