"""Back-of-the-envelope sizes of a language model: parameters, FLOPs, memory, KV cache.

Every function is a closed form: plain Python integer arithmetic on its arguments. Do not build
a model to count (no torch, no transformers): the checks also ask for full-size models (GPT-2,
an 8B Llama) that would not fit in memory. Every count is returned as a Python `int` (not a
float, not a numpy integer); use `//` where you divide. Keep everything in this file.

Conventions shared by all functions:
- A "parameter" is one scalar weight. A weight shared between two modules (tied input and
  output embeddings) is one set of parameters, counted once, as `model.parameters()` does.
- Buffers that are not parameters (GPT-2's causal-mask `attn.bias`, RoPE frequencies) are not
  counted.
- Bytes: `dtype_bytes` is the size of one element, 4 for float32, 2 for bfloat16/float16.
"""

from __future__ import annotations


def gpt2_params(
    vocab_size: int,
    n_positions: int,
    n_embd: int,
    n_layer: int,
    tied: bool = True,
) -> int:
    """Number of parameters of transformers' `GPT2LMHeadModel(GPT2Config(...))`.

    With d = n_embd, the model has:
    - token embeddings `wte` (vocab_size, d) and learned position embeddings `wpe`
      (n_positions, d);
    - per layer (n_layer of them):
      - two LayerNorms, `ln_1` and `ln_2`, each with a weight (gain) and a bias of size d;
      - attention: `c_attn`, one fused projection d -> 3d (queries, keys, values) with a bias,
        and `c_proj`, d -> d with a bias;
      - MLP: `c_fc`, d -> 4d with a bias, and `c_proj`, 4d -> d with a bias;
    - a final LayerNorm `ln_f` (weight and bias);
    - the output head `lm_head`, d -> vocab_size, with no bias. If `tied` is True it IS the
      token embedding matrix (the same parameters, counted once); if False it is a separate
      (vocab_size, d) matrix.
    The number of attention heads does not change the count. Returns an int.
    """
    raise NotImplementedError


def llama_params(
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    tie_word_embeddings: bool = False,
) -> int:
    """Number of parameters of transformers' `LlamaForCausalLM(LlamaConfig(...))`.

    With d = hidden_size, head_dim = hidden_size // num_heads (hidden_size is a multiple of
    num_heads, and num_heads of num_kv_heads), the model has, and none of its linear layers
    has a bias:
    - token embeddings `embed_tokens` (vocab_size, d); no position embeddings (RoPE has no
      parameters);
    - per layer (num_layers of them):
      - attention: `q_proj` d -> num_heads * head_dim (= d), `k_proj` and `v_proj` each
        d -> num_kv_heads * head_dim (grouped-query attention: fewer key/value heads), and
        `o_proj` num_heads * head_dim -> d;
      - SwiGLU MLP: `gate_proj` and `up_proj` d -> intermediate_size, `down_proj`
        intermediate_size -> d;
      - two RMSNorms, `input_layernorm` and `post_attention_layernorm`, each with a weight of
        size d and no bias;
    - a final RMSNorm `norm` (weight of size d);
    - the output head `lm_head` d -> vocab_size, no bias: counted separately when
      `tie_word_embeddings` is False, shared with (so not added to) `embed_tokens` when True.
    Returns an int.
    """
    raise NotImplementedError


def flops_per_token(n_params_non_embedding: int, n_layer: int, n_ctx: int, d_model: int) -> dict:
    """Training FLOPs (forward + backward) per token of a decoder-only transformer.

    N = n_params_non_embedding is given to you: the number of parameters that take part in a
    matrix multiply for every token (not the embedding lookups, which are not multiplies).
    A multiply-add counts as 2 FLOPs. Returns a dict with exactly two int entries:
    - "approx": the 6N rule, 6 * N. The forward pass costs 2N per token (each parameter is
      used in one multiply-add) and the backward pass costs twice the forward (gradients with
      respect to both the activations and the weights), so 2N + 4N.
    - "exact": 6 * N + 12 * n_layer * n_ctx * d_model, which adds attention over the context:
      in the forward pass each layer computes, for every token, its scores against all n_ctx
      keys (Q K^T: 2 * n_ctx * d_model FLOPs) and the attention-weighted sum of the n_ctx
      values (2 * n_ctx * d_model FLOPs), so 4 * n_layer * n_ctx * d_model forward, times 3
      for forward + backward. n_ctx is the full context length: no discount for the causal
      mask (the masked half of the score matrix is still computed). This is the formula of
      the PaLM paper's model-FLOPs utilisation (Chowdhery et al., 2022, appendix B); Kaplan et
      al. (2020) write the forward pass as 2N + 2 * n_layer * n_ctx * d_attn, counting only
      the Q K^T term.
    """
    raise NotImplementedError


def training_memory_bytes(n_params: int, dtype_bytes: int = 4, optimizer: str = "adamw") -> dict:
    """Memory for training a model with n_params parameters, in bytes (activations excluded).

    Returns a dict with exactly these four int entries:
    - "weights": the parameters, n_params elements of dtype_bytes each;
    - "grads": one gradient per parameter, in the same dtype as the weights;
    - "optimizer_states": the optimizer's per-parameter state, ALWAYS float32 (4 bytes per
      element) whatever dtype_bytes is: optimizer "adamw" keeps 2 states per parameter (first
      and second moment estimates, exp_avg and exp_avg_sq), optimizer "sgd" (SGD with
      momentum) keeps 1 (the momentum buffer). Scalars such as Adam's step count are ignored.
    - "total": the sum of the three above.
    Mixed precision is not considered: there is no float32 master copy of bf16 weights. Any
    other `optimizer` string raises ValueError.
    """
    raise NotImplementedError


def kv_cache_bytes(
    batch: int,
    seq_len: int,
    n_layer: int,
    num_kv_heads: int,
    head_dim: int,
    dtype_bytes: int,
) -> int:
    """Bytes of the key/value cache after `seq_len` tokens of `batch` sequences.

    Every layer caches, for every sequence and every position, one key AND one value vector
    per key/value head (num_kv_heads of them; equal to the number of attention heads without
    grouped-query attention), each head_dim elements of dtype_bytes bytes. This is the total
    size of the `past_key_values` tensors a Hugging Face model returns. Returns an int.
    """
    raise NotImplementedError
