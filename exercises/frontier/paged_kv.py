"""A paged KV cache (vLLM's block tables) for continuous batching.

A dense KV cache gives every sequence one contiguous tensor sized for its longest possible
length, so a server holding many sequences of unknown lengths wastes most of its memory.
A paged cache cuts the storage into fixed-size physical blocks of `block_size` token slots,
gives each sequence a block table (its logical block j lives in physical block
`table[j]`), and hands blocks out one at a time as the sequence grows. Sequences join and
leave a running batch at any step (continuous batching); a sequence that leaves gives its
blocks back, and the next one to need a block reuses them. The only memory wasted is the
unused tail of each sequence's last block.

Conventions used throughout:

- Token position p of a sequence lives in logical block p // block_size, at offset
  p % block_size inside it. Its flat *slot* index is
  `table[p // block_size] * block_size + p % block_size`: the row of
  `key_cache[layer].view(num_blocks * block_size, num_kv_heads, head_dim)` that holds it.
- Blocks are always allocated lowest free id first (the allocator below), and a sequence
  holds exactly ceil(length / block_size) blocks (none while its length is 0).
- One step of a batch is: `reserve` the new tokens' slots once (this is where blocks are
  allocated and lengths grow), then for every layer `write` that layer's new keys and
  values into those slots and run `paged_attention` for the new queries.
- A batch is *packed*: the new tokens of `seq_ids[0]` (num_tokens[0] of them, in position
  order), then those of `seq_ids[1]`, and so on, one row per token; a prefill (or a chunk
  of one) and single decode tokens can share a batch. Row order is always the order of
  `seq_ids` given to the call, whatever order the sequences joined the cache in.
- Everything is float32 on the CPU unless a `dtype` is given; slot indices are int64.
"""

from __future__ import annotations

import torch


class BlockAllocator:
    """The pool of physical block ids 0 .. num_blocks - 1, all free at the start.

    - `allocate()` returns the LOWEST free id and marks it used. When no block is free it
      raises RuntimeError with a sentence saying that the cache is out of blocks.
    - `free(block_id)` returns a used id to the pool (it is then the first to be handed out
      again if it is the lowest free id). It raises ValueError for an id outside
      0 .. num_blocks - 1 or an id that is already free (a double free).
    - `num_free()` is the number of free ids.

    `num_blocks` < 1 raises ValueError.
    """

    def __init__(self, num_blocks: int) -> None:
        raise NotImplementedError

    def allocate(self) -> int:
        raise NotImplementedError

    def free(self, block_id: int) -> None:
        raise NotImplementedError

    def num_free(self) -> int:
        raise NotImplementedError


class PagedKVCache:
    """Keys and values of many sequences, stored in fixed-size physical blocks.

    Public attributes (the checks read them):

    - `key_cache`, `value_cache`: tensors of shape
      (num_layers, num_blocks, block_size, num_kv_heads, head_dim) in `dtype`, filled with
      zeros at construction. Slot (block b, offset o) of layer l is `key_cache[l, b, o]`.
      Nothing is ever cleared: a freed block keeps its old contents until overwritten.
    - `block_size`: the number of token slots in a block.
    - `block_tables`: dict seq_id -> list of physical block ids, logical block order, for
      every sequence in the cache (an added sequence with no tokens has []).
    - `seq_lens`: dict seq_id -> number of tokens reserved so far.

    Use a `BlockAllocator(num_blocks)` for the ids (lowest free first).
    """

    def __init__(self, num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32) -> None:
        raise NotImplementedError

    def add_sequence(self, seq_id: int) -> None:
        """Start an empty sequence (length 0, no blocks). ValueError if `seq_id` is already
        in the cache. A seq_id that was freed may be added again: it starts empty."""
        raise NotImplementedError

    def reserve(self, seq_ids: list[int], num_tokens: list[int]) -> torch.Tensor:
        """Make room for `num_tokens[i]` new tokens at the end of sequence `seq_ids[i]`.

        Returns the slot mapping: an int64 tensor of shape (sum(num_tokens),), the flat slot
        index of every new token in packed order (all of seq_ids[0]'s new positions in
        order, then seq_ids[1]'s, ...). The length of each sequence grows by its
        num_tokens[i], once per step (not once per layer).

        New blocks are allocated as needed, sequence by sequence in the order of `seq_ids`,
        and within a sequence in logical-block order, each taking the lowest free id.

        All or nothing: if the step needs more new blocks than are free, raise RuntimeError
        (a sentence saying the cache is out of blocks) BEFORE changing anything: the block
        tables, lengths and free pool are exactly as they were before the call.
        ValueError if seq_ids repeat an id, if the two lists differ in length, or if some
        num_tokens[i] < 1; KeyError for a seq_id not in the cache.
        """
        raise NotImplementedError

    def write(self, layer: int, slot_mapping: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the new keys and values of layer `layer`: k and v are
        (len(slot_mapping), num_kv_heads, head_dim), row i going to slot slot_mapping[i]
        (as returned by `reserve`) of `key_cache[layer]` / `value_cache[layer]`. Returns None;
        `k` and `v` themselves are not modified."""
        raise NotImplementedError

    def gather(self, layer: int, seq_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of sequence `seq_id` at layer `layer`, in position order:
        two new tensors (not views of the cache) of shape (seq_lens[seq_id], num_kv_heads,
        head_dim), read through the block table. Exactly seq_lens[seq_id] rows: the unused
        slots at the end of the last block are not part of the sequence. A sequence of
        length 0 gives (0, num_kv_heads, head_dim)."""
        raise NotImplementedError

    def free(self, seq_id: int) -> None:
        """Remove the sequence: every one of its blocks goes back to the allocator and its
        block table and length are deleted (it no longer appears in `block_tables`,
        `seq_lens` or the stats). KeyError for a seq_id not in the cache."""
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Memory accounting, a dict of five ints:

        - "sequences": the number of sequences in the cache;
        - "tokens": the sum of their lengths, sum_i len_i;
        - "blocks_used": the blocks the sequences hold, sum_i ceil(len_i / block_size);
        - "blocks_free": the allocator's free blocks (num_blocks - blocks_used);
        - "wasted_slots": internal fragmentation, the allocated slots holding no token,
          blocks_used * block_size - tokens (a sequence whose length is a multiple of
          block_size wastes nothing; free blocks are not waste, they are available).
        """
        raise NotImplementedError


def paged_attention(q: torch.Tensor, cache: PagedKVCache, layer: int, seq_ids: list[int],
                    num_tokens: list[int]) -> torch.Tensor:
    """Causal attention of a packed batch of new queries over each sequence's cached keys.

    q: (sum(num_tokens), num_heads, head_dim), packed as the batch (rows of seq_ids[0]'s
    num_tokens[0] new tokens first, and so on). Call it after `reserve` and
    `write(layer, ...)` for this step, so each sequence's keys and values (read through
    the cache, e.g. with `cache.gather(layer, seq_id)`) include its new tokens: for a
    sequence of length L (after the reserve) with n new tokens, query i (0 <= i < n) is
    at position L - n + i and attends to keys at positions 0 .. L - n + i inclusive.

    Grouped-query attention as Llama: num_heads is a multiple of the cache's
    num_kv_heads, and query head h reads kv head h // (num_heads // num_kv_heads).
    Scores are scaled by 1 / sqrt(head_dim); softmax over the keys, then the weighted sum
    of the values. Returns (sum(num_tokens), num_heads, head_dim), packed like q, in q's dtype.
    """
    raise NotImplementedError
