"""Incremental decoding with a KV cache.

A causal LM that generates token by token would, without a cache, run the whole sequence
through the model again for every new token, recomputing the keys and values of every earlier
position, which are the same each time: a token's key and value depend only on the tokens up
to it. A KV cache keeps each layer's keys and values; each step then feeds only the NEWEST
token, computes its query, key and value, appends the key and value to the cache and attends
over everything cached. The outputs are the same as a full recompute, up to float rounding.

Three parts:

1. `KVCache`: the cache itself, for your own attention layers: per layer, keys and values of
   shape (B, H, T, D), grown along the sequence axis T. It behaves as transformers'
   `DynamicCache.update` (the judge compares them).
2. `cached_attention`: attention of the queries of the LAST Tq positions over all Tk cached
   keys, with the causal mask shifted accordingly (prefill, one token, or a chunk of tokens).
3. `generate_with_cache`: greedy decoding of a Hugging Face causal LM (GPT2LMHeadModel,
   LlamaForCausalLM, ...) through the model's own cache, with LEFT-padded batches. It must give
   the same tokens and logits as a full recompute and as
   `model.generate(input_ids, attention_mask=..., max_new_tokens=N, do_sample=False)`, and the
   judge records how you call the model: a full recompute does not pass as a cache.

Everything is float32 on the CPU. Inputs are never modified in place.
"""

from __future__ import annotations

from typing import Any

import torch


class KVCache:
    """Keys and values of every layer seen so far, for incremental decoding.

    A new cache holds nothing. `update(layer_idx, keys, values)` appends the new positions of
    one layer and returns that layer's whole history, exactly as
    `transformers.DynamicCache().update(keys, values, layer_idx)` does.
    """

    def __init__(self) -> None:
        raise NotImplementedError

    def update(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append `keys` and `values` (each (B, H, T_new, D), T_new >= 1) to layer `layer_idx`.

        Layers are independent: `layer_idx` is any non-negative int, layers may be first
        updated in any order, and a layer's history never mixes with another's. The new
        positions go AFTER the cached ones, along the sequence axis (dim 2).

        Returns (all_keys, all_values) of that layer, each (B, H, T_past + T_new, D):
        the cached positions first, then the new ones, values unchanged (concatenation, no
        arithmetic). The first update of a layer returns tensors equal to `keys` and `values`.
        The arguments must not be modified.
        """
        raise NotImplementedError

    def seq_length(self, layer_idx: int = 0) -> int:
        """The number of positions cached for `layer_idx` (a Python int; 0 for a layer never
        updated), as `DynamicCache.get_seq_length(layer_idx)`."""
        raise NotImplementedError


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of the last Tq positions over all Tk cached positions.

    Shapes: `q` (B, H, Tq, D); `k` and `v` (B, H, Tk, D), the cache AFTER its update (so it
    already holds the new positions), with 1 <= Tq <= Tk. All float32.

    Query i (0-based) is the token at absolute position Tk - Tq + i; key j is at position j.
    Query i attends to keys j <= Tk - Tq + i: the causal mask is aligned to the BOTTOM-RIGHT
    corner of the (Tq, Tk) score matrix. (torch.tril(torch.ones(Tq, Tk)) and
    F.scaled_dot_product_attention(..., is_causal=True) align it to the top-left, which is only
    right when Tq == Tk.) Tq == 1 (one new token) attends to everything; Tq == Tk is a prefill.

    out = softmax(q @ k^T / sqrt(D) with masked scores set to -inf, over the keys) @ v, shape
    (B, H, Tq, D), float32. It equals rows Tk-Tq .. Tk-1 of plain causal attention over the whole
    sequence of Tk positions. No dropout, no padding mask (every key is a real token).
    """
    raise NotImplementedError


def generate_with_cache(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding of a Hugging Face causal LM, feeding one new token per step through its cache.

    Arguments:
    - `model`: a transformers causal LM (GPT2LMHeadModel, LlamaForCausalLM, ...) in eval mode,
      float32, eager attention. `model(...)` returns an output with `.logits` (B, T_in, V) and
      `.cache`, the model's cache (a transformers `DynamicCache`) after the call.
    - `input_ids`: int64 (B, P), P >= 1, LEFT-padded: a row's padding (any token id) comes
      before its real tokens, so the last column is a real token in every row and every row has
      at least one real token.
    - `attention_mask`: int64 (B, P), 1 for a real token and 0 for padding; None means all ones.
    - `max_new_tokens` N >= 1: every row gets exactly N new tokens. The end-of-sequence token is
      not special here: no early stopping.

    Returns (sequences, logits):
    - `sequences`: int64 (B, P + N), `input_ids` (padding included) followed by the N generated
      tokens, as `model.generate` returns for a decoder-only model.
    - `logits`: float32 (B, N, V); logits[:, i] are the logits of the LAST position of the
      call that chose token i (the raw model logits, before any processing), as
      `torch.stack(model.generate(..., output_logits=True, return_dict_in_generate=True).logits, 1)`.
    Greedy: token i = logits[:, i].argmax(-1) (torch.argmax; the first index on ties).

    How the model must be called (the judge records it): exactly N calls, with keyword
    arguments `input_ids`, `attention_mask`, `position_ids`, `cache` and `use_cache=True`:
    - call 1 feeds the whole prompt: input_ids (B, P), attention_mask (B, P), cache=None;
    - call i >= 2 feeds ONLY the token chosen by call i-1, shape (B, 1), with `cache=` the
      cache returned by call i-1 (`out.cache`), the attention mask of ALL tokens so far,
      (B, P + i - 1) (the prompt's mask followed by a column of ones per generated token: the
      model needs the padding of the cached keys too), and position_ids (B, 1).
    No call is made after the last token is chosen. (`cache=` is the argument's name in
    transformers 5; `past_key_values=` is its deprecated alias there and its name in 4.x.)

    Position ids, as `model.generate` computes them (state them in your code, the model does
    not infer them from the mask): for the prompt, position_ids = attention_mask.cumsum(-1) - 1,
    with 0 at padded positions (masked, so their value does not matter); each generated token
    is at its row's previous position + 1. A row with 3 pads and 4 real tokens has positions
    0 0 0 0 1 2 3 and its first generated token is at position 4; without padding, positions
    are simply 0 .. P-1, then P, P+1, ...

    Run without gradients (torch.no_grad()). `model.generate` may not be used here.
    """
    raise NotImplementedError
