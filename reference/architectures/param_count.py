"""Closed forms for parameter counts, training FLOPs, training memory and KV-cache size."""

from __future__ import annotations

# Optimizer state tensors per parameter: AdamW keeps exp_avg and exp_avg_sq, SGD a momentum buffer.
_STATES_PER_PARAM = {"adamw": 2, "sgd": 1}
_STATE_BYTES = 4  # optimizer states are float32 whatever the weights' dtype


def gpt2_params(
    vocab_size: int,
    n_positions: int,
    n_embd: int,
    n_layer: int,
    tied: bool = True,
) -> int:
    d = n_embd
    embeddings = vocab_size * d + n_positions * d  # wte + wpe
    layernorm = d + d  # weight and bias
    attention = (d * 3 * d + 3 * d) + (d * d + d)  # c_attn (fused q, k, v) + c_proj, with biases
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)  # c_fc + c_proj, with biases
    block = 2 * layernorm + attention + mlp  # ln_1, ln_2, attn, mlp
    total = embeddings + n_layer * block + layernorm  # + ln_f
    if not tied:
        total += vocab_size * d  # a separate lm_head.weight (no bias)
    return total


def llama_params(
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    tie_word_embeddings: bool = False,
) -> int:
    d = hidden_size
    head_dim = d // num_heads
    kv_dim = num_kv_heads * head_dim
    attention = d * d + d * kv_dim + d * kv_dim + d * d  # q_proj, k_proj, v_proj, o_proj
    mlp = 3 * d * intermediate_size  # gate_proj, up_proj, down_proj
    norms = 2 * d  # input_layernorm, post_attention_layernorm (RMSNorm: weight only)
    total = vocab_size * d + num_layers * (attention + mlp + norms) + d  # + final norm
    if not tie_word_embeddings:
        total += vocab_size * d  # a separate lm_head.weight
    return total


def flops_per_token(n_params_non_embedding: int, n_layer: int, n_ctx: int, d_model: int) -> dict:
    approx = 6 * n_params_non_embedding  # forward 2N + backward 4N
    attention = 12 * n_layer * n_ctx * d_model  # (QK^T + AV) 4*n_ctx*d per layer, times 3
    return {"approx": approx, "exact": approx + attention}


def training_memory_bytes(n_params: int, dtype_bytes: int = 4, optimizer: str = "adamw") -> dict:
    if optimizer not in _STATES_PER_PARAM:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {sorted(_STATES_PER_PARAM)}")
    weights = n_params * dtype_bytes
    grads = n_params * dtype_bytes
    optimizer_states = n_params * _STATES_PER_PARAM[optimizer] * _STATE_BYTES
    return {
        "weights": weights,
        "grads": grads,
        "optimizer_states": optimizer_states,
        "total": weights + grads + optimizer_states,
    }


def kv_cache_bytes(
    batch: int,
    seq_len: int,
    n_layer: int,
    num_kv_heads: int,
    head_dim: int,
    dtype_bytes: int,
) -> int:
    per_token_per_layer = 2 * num_kv_heads * head_dim  # one key and one value vector per kv head
    return batch * seq_len * n_layer * per_token_per_layer * dtype_bytes
