"""A pre-norm GPT-2 block with nn.Linear projections, loadable from transformers' GPT2Block.

x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)), with causal multi-head self-attention and a
tanh-GELU MLP. Hugging Face's Conv1D stores weights as (in, out), nn.Linear as (out, in):
`load_hf_state_dict` transposes the four projection weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Conv1D weights, stored (in_features, out_features): transpose them for nn.Linear.
_CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Causal-mask buffers that older transformers versions keep in the state dict: not weights.
_HF_BUFFERS = ("attn.bias", "attn.masked_bias")

# The exercise's API; the classes and functions below it are this solution's own helpers.
__all__ = ["GPT2Block"]


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_embd = n_embd
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = h.shape
        q, k, v = self.c_attn(h).split(self.n_embd, dim=2)
        # (B, T, C) -> (B, H, T, D): head j owns features j*D .. (j+1)*D - 1
        q = q.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2)

        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale  # (B, H, T, T)
        future = torch.ones(seq, seq, dtype=torch.bool, device=h.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
        probs = scores.softmax(dim=-1)

        out = torch.matmul(probs, v).transpose(1, 2).reshape(batch, seq, self.n_embd)
        return self.c_proj(out)


class MLP(nn.Module):
    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # GPT-2's "gelu_new" is the tanh approximation, not the exact erf GELU
        return self.c_proj(F.gelu(self.c_fc(h), approximate="tanh"))


class GPT2Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, layer_norm_epsilon: float = 1e-5) -> None:
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError("n_head must divide n_embd")
        self.ln_1 = nn.LayerNorm(n_embd, eps=layer_norm_epsilon)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, eps=layer_norm_epsilon)
        self.mlp = MLP(n_embd)

    @torch.no_grad()
    def load_hf_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        for name, value in state_dict.items():
            if name in _HF_BUFFERS:
                continue
            if name in _CONV1D_WEIGHTS:
                value = value.t()
            params[name].copy_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x
