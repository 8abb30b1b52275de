"""A complete GPT-2 language model, able to load a transformers GPT2LMHeadModel's weights.

`GPT2(...)(input_ids)` must compute exactly the logits that transformers'
`GPT2LMHeadModel` (eager attention, dropout 0, eval mode, float32) computes from the same
weights. Write every part yourself in this file (embeddings, blocks, attention, MLP, head):
use only torch, not transformers, not torch.nn.functional.scaled_dot_product_attention and
not torch.nn.MultiheadAttention, and do not import other exercises. nn.Embedding,
nn.Linear, nn.LayerNorm, nn.ModuleList, torch.softmax and F.gelu are fine.

The model, for input_ids of shape (B, T), T <= n_positions:

    x = wte(input_ids) + wpe(positions)      positions = 0, 1, ..., T-1 (the first token is 0)
    for block in h:                          pre-norm residual blocks:
        x = x + block.attn(block.ln_1(x))
        x = x + block.mlp(block.ln_2(x))
    x = ln_f(x)                              final LayerNorm
    logits = x @ wte.weight.T                tied head, shape (B, T, vocab_size)

- attn: causal multi-head self-attention with n_head heads of head_dim = n_embd // n_head.
  q, k, v = c_attn(x).split(n_embd, dim=-1) in that order (q first); head i uses features
  i*head_dim .. (i+1)*head_dim - 1 of each. scores = q @ k^T / sqrt(head_dim); position t
  attends to positions 0..t only (the later ones get probability 0); softmax over the keys;
  the heads' outputs are concatenated back in head order (B, T, n_embd) and go through c_proj.
- mlp: c_proj(gelu(c_fc(x))) with hidden size 4 * n_embd and the tanh approximation of GELU
  (transformers' "gelu_new"):
      gelu(u) = 0.5 * u * (1 + tanh(sqrt(2 / pi) * (u + 0.044715 * u**3)))
  i.e. F.gelu(u, approximate="tanh"), not the exact erf form.
- Every LayerNorm (ln_1, ln_2, ln_f) has a weight and a bias and eps = layer_norm_epsilon.
- No dropout anywhere. Inputs are int64 ids; outputs are float32.
"""

from __future__ import annotations

import math  # noqa: F401

import torch
import torch.nn.functional as F  # noqa: F401
from torch import nn


class GPT2(nn.Module):
    """GPT-2 decoder-only language model with a head tied to the token embeddings."""

    def __init__(
        self,
        vocab_size: int,
        n_positions: int,
        n_embd: int,
        n_layer: int,
        n_head: int,
        layer_norm_epsilon: float = 1e-5,
    ) -> None:
        """Build the model; n_head divides n_embd. Initialise weights any way you like.

        Parameters, with exactly these names and shapes (`state_dict()` keys, i = 0..n_layer-1),
        every projection an `nn.Linear` with a bias, weights in nn.Linear's
        (out_features, in_features) layout:
            wte.weight                  (vocab_size, n_embd)    nn.Embedding
            wpe.weight                  (n_positions, n_embd)   nn.Embedding
            h.{i}.ln_1.weight, .bias    (n_embd,)               nn.LayerNorm
            h.{i}.attn.c_attn.weight    (3 * n_embd, n_embd)    q, k, v stacked in that order
            h.{i}.attn.c_attn.bias      (3 * n_embd,)
            h.{i}.attn.c_proj.weight    (n_embd, n_embd)
            h.{i}.attn.c_proj.bias      (n_embd,)
            h.{i}.ln_2.weight, .bias    (n_embd,)
            h.{i}.mlp.c_fc.weight       (4 * n_embd, n_embd)
            h.{i}.mlp.c_fc.bias         (4 * n_embd,)
            h.{i}.mlp.c_proj.weight     (n_embd, 4 * n_embd)
            h.{i}.mlp.c_proj.bias       (n_embd,)
            ln_f.weight, ln_f.bias      (n_embd,)
        `h` is an nn.ModuleList of blocks; ln_1, attn, ln_2 and mlp are attributes of each block.
        There is no lm_head parameter: the output layer IS wte.weight (weight tying), so the
        parameter count is that of transformers' tied GPT2LMHeadModel. Nothing else may
        appear in the state dict: compute the causal mask in forward, or register it with
        `register_buffer(..., persistent=False)`.
        """
        super().__init__()
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B, T, vocab_size), float32, for int64 input_ids of shape (B, T).

        1 <= T <= n_positions. Position ids are 0..T-1 for every sequence in the batch.
        logits[b, t] depends only on input_ids[b, :t+1] (causal). The head is
        logits = ln_f(x) @ wte.weight.T: no bias and no separate head weight.
        """
        raise NotImplementedError

    def load_hf_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Copy the weights of a transformers `GPT2LMHeadModel.state_dict()` into this model.

        Key mapping (i = 0..n_layer-1), every other key of `sd` maps to the same name
        without its "transformer." prefix:
            transformer.wte.weight                -> wte.weight
            transformer.wpe.weight                -> wpe.weight
            transformer.h.{i}.ln_1.weight / .bias -> h.{i}.ln_1.weight / .bias   (same for ln_2)
            transformer.h.{i}.attn.c_attn.weight  -> h.{i}.attn.c_attn.weight  TRANSPOSED
            transformer.h.{i}.attn.c_attn.bias    -> h.{i}.attn.c_attn.bias
            transformer.h.{i}.attn.c_proj.weight  -> h.{i}.attn.c_proj.weight  TRANSPOSED
            transformer.h.{i}.mlp.c_fc.weight     -> h.{i}.mlp.c_fc.weight     TRANSPOSED
            transformer.h.{i}.mlp.c_proj.weight   -> h.{i}.mlp.c_proj.weight   TRANSPOSED
            (the .bias of c_proj, c_fc as is)
            transformer.ln_f.weight / .bias       -> ln_f.weight / .bias
            lm_head.weight                        -> ignored (see below)
        transformers stores these four projections as `Conv1D` modules whose weight has shape
        (in_features, out_features) and computes x @ W + b; nn.Linear's weight is the
        transpose, (out_features, in_features). Transpose all four, the square
        attn.c_proj.weight (n_embd, n_embd) included, whose shape gives no hint.
        `lm_head.weight` is the same tensor as `transformer.wte.weight` in a tied model;
        ignore it: the head always uses wte.weight, whatever sd["lm_head.weight"] holds.
        `sd` holds exactly the keys above (the judge sends data, not a module). Returns None;
        afterwards `self.state_dict()` holds the mapped (transposed where stated) tensors.
        """
        raise NotImplementedError
