"""FlashAttention: tiled attention with an online softmax, its backward pass, and a Triton kernel.

Naive attention builds the (N_q, N_k) score matrix S = Q K^T / sqrt(d), its softmax P, then
P V: memory grows with N**2. FlashAttention walks over tiles of queries and keys, keeps for
each query row a running maximum m, a running sum l of exp(s - m) and a running output
accumulator, and rescales both by exp(m_old - m_new) whenever the maximum grows (the online
softmax). It saves only the output and one number per row, the log-sum-exp, from which the
backward pass recomputes the probabilities tile by tile.

Shapes and conventions (every function):
- q has shape (..., N_q, d), k and v have shape (..., N_k, d): any leading dims (batch,
  heads), the same for all three; N_q, N_k >= 1 and d >= 1, any sizes (not powers of two,
  not multiples of the tile). Inputs are float32 on the CPU (the Triton function: float32 or
  float16, any device; on a GPU also bfloat16). Inputs are never modified.
- scale = 1 / sqrt(d); the scores are s[i, j] = scale * (q[i] . k[j]).
- causal=True: query i sees keys j <= i only (s[i, j] = -inf for j > i). Causal attention
  requires N_q == N_k (the checks never call it otherwise; raising ValueError is fine).
  Every query row then sees at least one key (key 0), so nothing is ever fully masked.
- The output is out[i] = sum_j P[i, j] v[j] with P = softmax over j of the masked scores,
  shape (..., N_q, d), in q's dtype.
- lse[i] = log(sum_j exp(s[i, j])) over the row's visible keys: natural log (not log2), of
  the SCALED, MASKED scores, float32, shape (..., N_q). (FlashAttention's stored m + log(l).)
- block_q and block_k are the tile sizes (rows of queries, rows of keys per tile); the last
  tile of each axis is partial when N is not a multiple of the tile. The results must not
  depend on them (up to float rounding).

Memory, checked: while flash_attention_forward or flash_attention_backward runs, every
tensor that a torch op creates (views excepted) is watched. Never allocate a tensor as large
as the (N_q, N_k) score matrix of one (batch, head) slice: a tensor of N_q * N_k elements
or more fails the check. Tiles of shape (..., block_q, block_k) are fine: the check calls
with batch * heads = 2, N_q = N_k = 512, d = 32 and block_q = block_k = 64, so a tile holds
2 * 64 * 64 elements, the inputs' size is 2 * 512 * 32, and one score slice 512 * 512. A
causal mask built as an (N, N) tensor fails too: mask each tile with index comparisons.
Nor hold that many elements at once in the tensors the call creates: tiles kept alive
together (a list of every tile's scores or probabilities) count together. Your outputs
(out and lse; dq, dk and dv) and the working set of a tile or two are well within it: a
tiled backward holds about half of one score slice at its peak.

Forbidden: torch's scaled_dot_product_attention (and multi_head_attention, flex_attention),
softmax, log_softmax and logsumexp: write the exponentials yourself.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pip install "llm-grader[quant]"
    triton = tl = None


def flash_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                            block_q: int = 64, block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse): attention of q over k, v, tile by tile with an online softmax.

    For each tile of block_q query rows: m = -inf, l = 0, acc = 0 (float32, per row); for each
    tile of block_k keys (causal: only the tiles holding a key j <= some row of the query
    tile): s = scale * q_tile @ k_tile^T, masked; m_new = max(m, rowmax(s));
    alpha = exp(m - m_new); p = exp(s - m_new); l = alpha * l + rowsum(p);
    acc = alpha * acc + p @ v_tile; m = m_new. Then out_tile = acc / l, lse_tile = m + log(l).
    out has q's shape and dtype; lse is float32 of shape q.shape[:-1].
    """
    raise NotImplementedError


def flash_attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                             lse: torch.Tensor, dout: torch.Tensor, causal: bool = False,
                             block_q: int = 64, block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv): the gradients of sum(out * dout) with respect to q, k and v.

    out and lse are what flash_attention_forward returned for the same q, k, v and causal
    (the checks pass the exact attention output and log-sum-exp, computed in float64 and
    rounded to float32); dout has out's shape. Recompute the probabilities of each tile from
    the saved lse: p = exp(s - lse[:, None]) (s scaled and masked as in the forward), never
    storing P whole. With delta = rowsum(dout * out) (shape (..., N_q)):
    dv += p^T @ dout_tile;  dp = dout_tile @ v_tile^T;  ds = p * (dp - delta[:, None]);
    dq += scale * ds @ k_tile;  dk += scale * ds^T @ q_tile.
    dq, dk, dv have the shapes and dtypes of q, k, v.
    """
    raise NotImplementedError


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """out only, differentiable: a torch.autograd.Function whose forward calls
    flash_attention_forward (default tiles) and saves q, k, v, out and lse, and whose backward
    calls flash_attention_backward. Gradients reach q, k and v (causal gets none)."""
    raise NotImplementedError


def flash_attention_forward_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                           block_q: int = 64, block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) as flash_attention_forward, computed by your own Triton kernel.

    - View the inputs as (batch * heads, N, d), contiguous; allocate out (q's dtype) and lse
      (float32, (batch * heads, N_q)) on q's device; launch a grid of
      (cdiv(N_q, block_q), batch * heads) programs, one per tile of query rows of one head;
      return out of q's shape and lse of shape q.shape[:-1].
    - block_q and block_k are powers of two >= 16 (tl.dot needs 16 or more); pad d to a power
      of two >= 16 (a tl.constexpr) and mask the padding lanes (load them as 0).
    - In the kernel, the online softmax of flash_attention_forward in float32: scores of keys
      past N_k (the last, partial key tile) and, causal, of keys j > i are -inf before the
      max. Query rows past N_q are computed but never stored. p is cast to v's dtype for
      the second tl.dot; the accumulator stays float32.
    - On a machine without CUDA the grader runs your kernel in triton's interpreter on CPU
      tensors (TRITON_INTERPRET=1, set for you), in float32, with block_q = block_k = 16 and
      small N. On a GPU the performance check calls it with bf16 (4, 16, 4096, 64) tensors,
      causal and not, at the default tiles. Without triton installed the Triton checks are
      skipped and the others still count.
    """
    raise NotImplementedError


# Define your kernel here, inside `if triton is not None:` so this file imports without triton:
#
# if triton is not None:
#
#     @triton.jit
#     def _flash_forward_kernel(q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, n_q, n_k, scale, ...):
#         ...
