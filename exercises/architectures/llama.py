"""A Llama-style decoder-only language model, written from scratch in this one file.

Implement `Llama`, an nn.Module whose parameters have EXACTLY the names and shapes of
transformers' `LlamaForCausalLM` state dict, so that `model.load_state_dict(hf.state_dict())`
works as is and gives the same logits (float32, to about 1e-4). Write every piece yourself,
in this file: do not import other exercises' modules.

Parameter names and shapes (H = hidden_size, I = intermediate_size, V = vocab_size,
n_h = num_attention_heads, n_kv = num_key_value_heads, D = H // n_h the head dimension;
every Linear is `nn.Linear(in, out, bias=False)`, so its weight is (out, in)):

    model.embed_tokens.weight                         (V, H)        nn.Embedding
    model.layers.{i}.self_attn.q_proj.weight          (n_h * D, H)
    model.layers.{i}.self_attn.k_proj.weight          (n_kv * D, H)
    model.layers.{i}.self_attn.v_proj.weight          (n_kv * D, H)
    model.layers.{i}.self_attn.o_proj.weight          (H, n_h * D)
    model.layers.{i}.mlp.gate_proj.weight             (I, H)
    model.layers.{i}.mlp.up_proj.weight               (I, H)
    model.layers.{i}.mlp.down_proj.weight             (H, I)
    model.layers.{i}.input_layernorm.weight           (H,)          RMSNorm, initialised to ones
    model.layers.{i}.post_attention_layernorm.weight  (H,)          RMSNorm, initialised to ones
    model.norm.weight                                 (H,)          final RMSNorm
    lm_head.weight                                    (V, H)

for i in 0 .. num_hidden_layers - 1, and nothing else in `state_dict()`: no biases, and any
buffer you keep (a RoPE cos/sin or inverse-frequency cache) must be registered with
`persistent=False`. With `tie_word_embeddings=True`, `lm_head.weight` must BE the same
Parameter object as `model.embed_tokens.weight` (as in transformers): `state_dict()` still
lists both names, and loading a state dict that holds only `model.embed_tokens.weight`
(`strict=False`) sets the output projection too.

The computation (all in float32; x is the residual stream, (B, T, H)):

    x = embed_tokens(input_ids)
    for each layer:                                  # pre-norm: the residual is never normalised
        x = x + self_attn(input_layernorm(x))
        x = x + mlp(post_attention_layernorm(x))
    logits = lm_head(norm(x))                        # (B, T, V)

- RMSNorm(x) = weight * (x / sqrt(mean(x ** 2 over the last axis) + eps)), eps = rms_norm_eps
  inside the square root; no mean subtraction and no bias.
- mlp (SwiGLU): down_proj(silu(gate_proj(x)) * up_proj(x)); silu(z) = z * sigmoid(z).
- self_attn: q, k, v = q_proj(x), k_proj(x), v_proj(x), split into heads so that head h owns
  features h*D .. (h+1)*D - 1: q is (B, n_h, T, D), k and v are (B, n_kv, T, D).
  RoPE is applied to q and k (never to v), then k and v are shared by groups of query heads:
  query head h uses kv head h // (n_h // n_kv) (consecutive query heads share a kv head).
  scores = q @ k^T / sqrt(D); causal mask: query t sees keys 0..t only (future scores set to
  -inf before the softmax); softmax over keys; @ v; heads merged back to (B, T, n_h * D) in
  head order; o_proj.
- RoPE, half-split layout (the Llama / transformers layout, not the interleaved one):
  inv_freq[i] = 1 / rope_theta ** (2i / D) for i in 0 .. D/2 - 1;
  angle[b, t, i] = position_ids[b, t] * inv_freq[i] (in float32);
  cos, sin = cos(cat(angle, angle)), sin(cat(angle, angle)), each (B, T, D), the same for every
  head; rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2]);
  rope(x) = x * cos + rotate_half(x) * sin, i.e. feature i is rotated with feature i + D/2.
- position_ids only change the RoPE angles; the attention mask is always the plain causal
  one over the T given tokens (no packing, no padding, no KV cache).

Do not use torch.nn.functional.scaled_dot_product_attention, torch.nn.functional.rms_norm,
torch.nn.RMSNorm, or transformers' Llama classes and helpers: write them with basic
operations (matmul, softmax, mean, rsqrt, cat, ...).
"""

from __future__ import annotations

import torch
from torch import nn  # noqa: F401


class Llama(nn.Module):
    """Llama decoder-only LM with LlamaForCausalLM's parameter names (see the module docstring).

    Args:
        vocab_size: V, rows of the embedding and of lm_head; need not be a power of two.
        hidden_size: H; divisible by num_attention_heads. head_dim D = H // num_attention_heads,
            which may be any even number (e.g. 10), not only a power of two.
        intermediate_size: I, the SwiGLU hidden width.
        num_hidden_layers: number of decoder layers.
        num_attention_heads: n_h query heads.
        num_key_value_heads: n_kv key/value heads, dividing n_h (1 = multi-query attention,
            n_h = ordinary multi-head attention).
        rms_norm_eps: eps inside the square root of every RMSNorm.
        rope_theta: the RoPE base.
        tie_word_embeddings: if True, lm_head.weight is the same Parameter as
            model.embed_tokens.weight.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        intermediate_size: int,
        num_hidden_layers: int,
        num_attention_heads: int,
        num_key_value_heads: int,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 10000.0,
        tie_word_embeddings: bool = False,
    ) -> None:
        super().__init__()
        raise NotImplementedError

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits for every position.

        Args:
            input_ids: (B, T) int64 token ids, T >= 1.
            position_ids: (B, T) int64 positions used for RoPE, or None for 0 .. T-1 in every
                row. They may start anywhere (e.g. 37, 38, ...): they change the rotation
                angles only, never the causal mask.

        Returns:
            (B, T, vocab_size) float32 logits (no softmax); logits[:, t] depends only on
            tokens 0..t.
        """
        raise NotImplementedError
