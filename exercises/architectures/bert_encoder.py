"""One BERT encoder layer (bidirectional, post-norm), as transformers' `BertLayer`.

A BERT layer is two residual sublayers, each followed by a LayerNorm ("post-norm", the
original Transformer/BERT arrangement, not the pre-norm of GPT-2 and Llama):

    h   = LayerNorm_1(x + Dense_o(SelfAttention(x)))
    out = LayerNorm_2(h + Dense_2(GELU(Dense_1(h))))

The self-attention is bidirectional: every token attends to every real (non-padding) token,
before and after it. There is no causal mask.

The module must compute exactly what transformers' `BertLayer` (eager attention, dropout 0,
`hidden_act="gelu"`, an encoder: `is_decoder=False`) computes in float32, and its parameters
must have the same names and shapes, so that `state_dict()`s can be copied between the two.

Use only torch (not transformers; and not torch.nn.functional.scaled_dot_product_attention,
torch.nn.MultiheadAttention or torch.nn.TransformerEncoderLayer). torch.nn.Linear,
torch.nn.LayerNorm, torch.softmax and torch.nn.functional.gelu are fine. Keep everything in
this file: do not import other exercises. Inputs are float32 and outputs are float32.
"""

from __future__ import annotations

import math  # noqa: F401

import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401
from torch import nn


class BertLayer(nn.Module):
    """A bidirectional post-norm transformer encoder layer with BERT's parameter names."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        """Build the layer; hidden_size is a multiple of num_heads, head_dim = hidden_size // num_heads.

        Parameters: exactly these `nn.Linear` layers (all WITH bias, weight layout
        (out_features, in_features)) and `nn.LayerNorm`s (elementwise affine, eps =
        layer_norm_eps; BERT uses 1e-12, not torch's default 1e-5), nested under these names
        so that `state_dict()` has exactly the keys of transformers' BertLayer:

            attention.self.query          Linear  hidden_size -> hidden_size
            attention.self.key            Linear  hidden_size -> hidden_size
            attention.self.value          Linear  hidden_size -> hidden_size
            attention.output.dense        Linear  hidden_size -> hidden_size
            attention.output.LayerNorm    LayerNorm(hidden_size)  (after the attention sublayer)
            intermediate.dense            Linear  hidden_size -> intermediate_size
            output.dense                  Linear  intermediate_size -> hidden_size
            output.LayerNorm              LayerNorm(hidden_size)  (after the MLP sublayer)

        i.e. keys attention.self.query.weight, attention.self.query.bias, ...,
        output.LayerNorm.weight, output.LayerNorm.bias (16 in all). Nest small nn.Modules to
        get these dotted names (an attribute may be called `self` on a submodule:
        `self.attention.self = ...`). No other parameters or persistent buffers. Initialise
        the weights any way you like: the judge loads its own with `load_state_dict`.
        """
        super().__init__()
        raise NotImplementedError

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply the layer to hidden_states (B, T, hidden_size); returns (B, T, hidden_size).

        attention_mask: None (every token is real) or a (B, T) tensor, int64 or bool, with
        1/True = real token and 0/False = padding. Padding may be anywhere in a row; every row
        has at least one real token. Turn it into an additive mask yourself: 0 for real keys
        and a large negative number (torch.finfo(torch.float32).min, or -inf) for padding keys,
        broadcast to (B, 1, 1, T) over heads and queries, so that padding KEYS get exactly zero
        attention weight. Queries are not masked: a padding position still gets an output (it
        attends to the real tokens), but outputs at padding positions are not checked.

        Steps, in this order (x = hidden_states):
        1. q, k, v = attention.self.query(x), .key(x), .value(x); split the last axis into
           heads, head h being features h*head_dim .. (h+1)*head_dim - 1:
           (B, T, H) -> (B, T, num_heads, head_dim) -> (B, num_heads, T, head_dim).
        2. scores = q @ k^T / sqrt(head_dim), shape (B, num_heads, T, T); add the additive
           padding mask (if any) after the scaling. No causal mask.
        3. Softmax over the keys (the last axis), weights @ v, merge heads back to
           (B, T, hidden_size) (transpose to (B, T, num_heads, head_dim) first).
        4. h = attention.output.LayerNorm(x + attention.output.dense(attended)).
        5. out = output.LayerNorm(h + output.dense(gelu(intermediate.dense(h)))), where gelu
           is the exact, erf-based GELU: 0.5 * z * (1 + erf(z / sqrt(2))) (BERT's "gelu",
           torch.nn.functional.gelu with its default approximate="none"; not the tanh form).
        No dropout.
        """
        raise NotImplementedError
