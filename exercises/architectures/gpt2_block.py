"""One pre-norm GPT-2 transformer block, loadable from transformers' GPT2Block weights.

    x = x + attn(ln_1(x))      causal multi-head self-attention
    x = x + mlp(ln_2(x))       Linear -> GELU (tanh approximation) -> Linear

The block must compute exactly what transformers' `GPT2Block` computes (GPT2Config defaults:
eager attention, dropout 0, `activation_function="gelu_new"`, attention scaled by
1 / sqrt(head_dim), causal self-attention), for float32 inputs of shape (B, T, n_embd).

The one difference is the layout of the projection weights. Hugging Face's GPT-2 uses
`transformers.pytorch_utils.Conv1D`, which computes `x @ weight + bias` with `weight` of shape
(in_features, out_features). This module uses `torch.nn.Linear`, which computes
`x @ weight.T + bias` with `weight` of shape (out_features, in_features): the transpose.
`load_hf_state_dict` converts one to the other.

Use only torch (no transformers, and not torch.nn.functional.scaled_dot_product_attention or
torch.nn.MultiheadAttention). Keep everything in this file: do not import other exercises.
Dropout is not part of this exercise: there is none.
"""

from __future__ import annotations

import math  # noqa: F401

import torch  # noqa: F401
from torch import nn


class GPT2Block(nn.Module):
    """Pre-norm GPT-2 block: causal self-attention and an MLP, each inside a residual branch."""

    def __init__(self, n_embd: int, n_head: int, layer_norm_epsilon: float = 1e-5) -> None:
        """Build the submodules; n_head divides n_embd and head_dim = n_embd // n_head.

        n_embd need not be a power of two (e.g. n_embd=48, n_head=3 gives head_dim 16).

        Submodules, with exactly these names (the same names as transformers' GPT2Block):
            ln_1      nn.LayerNorm(n_embd, eps=layer_norm_epsilon)
            attn      a submodule (any nn.Module) holding
                attn.c_attn   nn.Linear(n_embd, 3 * n_embd)   fused query, key, value projection
                attn.c_proj   nn.Linear(n_embd, n_embd)       output projection
            ln_2      nn.LayerNorm(n_embd, eps=layer_norm_epsilon)
            mlp       a submodule (any nn.Module) holding
                mlp.c_fc      nn.Linear(n_embd, 4 * n_embd)
                mlp.c_proj    nn.Linear(4 * n_embd, n_embd)
        all with biases, so `state_dict()` has exactly these 12 keys and shapes
        (nn.Linear's (out_features, in_features) weight layout):
            ln_1.weight (n_embd,)               ln_1.bias (n_embd,)
            attn.c_attn.weight (3*n_embd, n_embd)   attn.c_attn.bias (3*n_embd,)
            attn.c_proj.weight (n_embd, n_embd)     attn.c_proj.bias (n_embd,)
            ln_2.weight (n_embd,)               ln_2.bias (n_embd,)
            mlp.c_fc.weight (4*n_embd, n_embd)      mlp.c_fc.bias (4*n_embd,)
            mlp.c_proj.weight (n_embd, 4*n_embd)    mlp.c_proj.bias (n_embd,)
        No other parameters or persistent buffers: a cached causal mask, if you keep one,
        must be registered with `persistent=False` (or built in forward).
        Initialise the weights any way you like (the PyTorch defaults are fine): the judge
        loads its own with `load_hf_state_dict`.
        """
        super().__init__()
        raise NotImplementedError

    def load_hf_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy the weights of a transformers GPT2Block into this module, in place.

        `state_dict` is `hf_block.state_dict()` of a transformers GPT2Block with the same
        n_embd: a dict from the names above to float32 tensors, where the four projection
        weights are in Conv1D layout (in_features, out_features):
            attn.c_attn.weight (n_embd, 3*n_embd)   attn.c_proj.weight (n_embd, n_embd)
            mlp.c_fc.weight (n_embd, 4*n_embd)      mlp.c_proj.weight (4*n_embd, n_embd)
        Each of these four must be transposed into the matching nn.Linear weight, including
        attn.c_proj.weight, which is square, so nothing fails if you forget it: it is just
        wrong. The biases (attn.c_attn.bias, attn.c_proj.bias, mlp.c_fc.bias,
        mlp.c_proj.bias) and the LayerNorm parameters (ln_1.weight, ln_1.bias, ln_2.weight,
        ln_2.bias) are copied as they are.
        Older transformers versions also store the causal-mask buffers under the exact keys
        "attn.bias" and "attn.masked_bias": if present, ignore those two keys (and only
        those: "attn.c_attn.bias" and "attn.c_proj.bias" are real weights that must be
        loaded). Returns None; afterwards `self.state_dict()["attn.c_attn.weight"]` equals
        `state_dict["attn.c_attn.weight"].T`, and so on.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on x of shape (B, T, n_embd), float32; returns (B, T, n_embd), float32.

        Pre-norm residual branches, in this order:
            x = x + attn(ln_1(x))
            x = x + mlp(ln_2(x))
        (the residual adds the un-normalised x; there is no LayerNorm after the addition).

        attn(h), for h of shape (B, T, n_embd), with D = head_dim = n_embd // n_head:
        1. qkv = c_attn(h), shape (B, T, 3*n_embd); q, k, v are its three consecutive
           n_embd-wide slices in that order: q = qkv[..., :n_embd],
           k = qkv[..., n_embd:2*n_embd], v = qkv[..., 2*n_embd:].
        2. Split each into heads: head j of q is features j*D .. (j+1)*D - 1 of q (same for
           k and v), giving shapes (B, n_head, T, D).
        3. scores = q @ k^T / sqrt(D) (head_dim, not n_embd), shape (B, n_head, T, T);
           causal: query t attends only to keys 0..t (mask the future keys with -inf before
           the softmax).
        4. Softmax over the keys, weighted sum of v, merge heads back to (B, T, n_embd)
           (head j in features j*D ..), then c_proj.

        mlp(h) = c_proj(gelu(c_fc(h))) with the tanh approximation of GELU
            gelu(u) = 0.5 * u * (1 + tanh(sqrt(2 / pi) * (u + 0.044715 * u**3)))
        (GPT-2's "gelu_new"; torch.nn.functional.gelu(u, approximate="tanh")), not the exact
        erf form that torch.nn.functional.gelu uses by default.

        Every sequence in the batch is processed independently; T = 1 is allowed.
        """
        raise NotImplementedError
