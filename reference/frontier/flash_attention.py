"""FlashAttention: tiled attention with an online softmax, its backward pass, and a Triton kernel."""

from __future__ import annotations

import math

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pip install "llm-grader[quant]"
    triton = tl = None


def _check(q: torch.Tensor, k: torch.Tensor, causal: bool) -> None:
    if causal and q.shape[-2] != k.shape[-2]:
        raise ValueError(f"causal attention needs as many queries as keys, got {q.shape[-2]} and {k.shape[-2]}")


def flash_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                            block_q: int = 64, block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    _check(q, k, causal)
    n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(d)
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    lse = torch.empty(q.shape[:-1], dtype=torch.float32)
    for i0 in range(0, n_q, block_q):
        i1 = min(i0 + block_q, n_q)
        qi = q[..., i0:i1, :].float() * scale
        m = torch.full(qi.shape[:-1], float("-inf"))
        row_sum = torch.zeros(qi.shape[:-1])
        acc = torch.zeros(*qi.shape[:-1], v.shape[-1])
        for j0 in range(0, min(i1, n_k) if causal else n_k, block_k):
            j1 = min(j0 + block_k, n_k)
            s = qi @ k[..., j0:j1, :].float().transpose(-1, -2)
            if causal:
                rows, cols = torch.arange(i0, i1)[:, None], torch.arange(j0, j1)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1))
            alpha = torch.exp(m - m_new)
            p = torch.exp(s - m_new[..., None])
            row_sum = row_sum * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ v[..., j0:j1, :].float()
            m = m_new
        out[..., i0:i1, :] = acc / row_sum[..., None]
        lse[..., i0:i1] = m + torch.log(row_sum)
    return out, lse


def flash_attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                             lse: torch.Tensor, dout: torch.Tensor, causal: bool = False,
                             block_q: int = 64, block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check(q, k, causal)
    n_q, n_k, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(d)
    delta = (dout.float() * out.float()).sum(dim=-1)  # rowsum(dP * P) = rowsum(dO * O)
    dq, dk, dv = torch.zeros(q.shape), torch.zeros(k.shape), torch.zeros(v.shape)
    for i0 in range(0, n_q, block_q):
        i1 = min(i0 + block_q, n_q)
        qi, doi = q[..., i0:i1, :].float(), dout[..., i0:i1, :].float()
        for j0 in range(0, min(i1, n_k) if causal else n_k, block_k):
            j1 = min(j0 + block_k, n_k)
            kj, vj = k[..., j0:j1, :].float(), v[..., j0:j1, :].float()
            s = (qi @ kj.transpose(-1, -2)) * scale
            if causal:
                rows, cols = torch.arange(i0, i1)[:, None], torch.arange(j0, j1)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            p = torch.exp(s - lse[..., i0:i1, None])
            dv[..., j0:j1, :] += p.transpose(-1, -2) @ doi
            ds = p * (doi @ vj.transpose(-1, -2) - delta[..., i0:i1, None])
            dq[..., i0:i1, :] += (ds @ kj) * scale
            dk[..., j0:j1, :] += (ds.transpose(-1, -2) @ qi) * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
        out, lse = flash_attention_forward(q, k, v, causal)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal = causal
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
        q, k, v, out, lse = ctx.saved_tensors
        return (*flash_attention_backward(q, k, v, out, lse, dout, ctx.causal), None)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    return _FlashAttention.apply(q, k, v, causal)


if triton is not None:

    @triton.jit
    def _flash_forward_kernel(q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, n_q, n_k, scale,
                              HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_Q: tl.constexpr,
                              BLOCK_K: tl.constexpr, CAUSAL: tl.constexpr):
        start = tl.program_id(0)
        bh = tl.program_id(1).to(tl.int64)  # bh * n * d may pass 2**31 elements
        offs_q = start * BLOCK_Q + tl.arange(0, BLOCK_Q)
        offs_d = tl.arange(0, BLOCK_D)
        d_ok = offs_d[None, :] < HEAD_DIM
        q = tl.load(q_ptr + bh * n_q * HEAD_DIM + offs_q[:, None] * HEAD_DIM + offs_d[None, :],
                    mask=(offs_q[:, None] < n_q) & d_ok, other=0.0)
        m = tl.full([BLOCK_Q], float("-inf"), tl.float32)
        row_sum = tl.zeros([BLOCK_Q], tl.float32)
        acc = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
        hi = n_k
        if CAUSAL:
            hi = tl.minimum((start + 1) * BLOCK_Q, n_k)
        for j0 in range(0, hi, BLOCK_K):
            offs_k = j0 + tl.arange(0, BLOCK_K)
            kv_mask = (offs_k[:, None] < n_k) & d_ok
            kv_offs = bh * n_k * HEAD_DIM + offs_k[:, None] * HEAD_DIM + offs_d[None, :]
            k = tl.load(k_ptr + kv_offs, mask=kv_mask, other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale
            valid = offs_k[None, :] < n_k
            if CAUSAL:
                valid = valid & (offs_k[None, :] <= offs_q[:, None])
            s = tl.where(valid, s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, axis=1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(s - m_new[:, None])
            row_sum = row_sum * alpha + tl.sum(p, axis=1)
            v = tl.load(v_ptr + kv_offs, mask=kv_mask, other=0.0)
            acc = acc * alpha[:, None]
            acc += tl.dot(p.to(v.dtype), v)
            m = m_new
        q_ok = offs_q < n_q
        tl.store(out_ptr + bh * n_q * HEAD_DIM + offs_q[:, None] * HEAD_DIM + offs_d[None, :],
                 (acc / row_sum[:, None]).to(out_ptr.dtype.element_ty), mask=(offs_q[:, None] < n_q) & d_ok)
        tl.store(lse_ptr + bh * n_q + offs_q, m + tl.log(row_sum), mask=q_ok)


def flash_attention_forward_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                           block_q: int = 64, block_k: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    _check(q, k, causal)
    *batch, n_q, d = q.shape
    n_k = k.shape[-2]
    qc, kc, vc = (t.reshape(-1, t.shape[-2], d).contiguous() for t in (q, k, v))
    out = torch.empty_like(qc)
    lse = torch.empty(qc.shape[:-1], dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(n_q, block_q), qc.shape[0])
    _flash_forward_kernel[grid](qc, kc, vc, out, lse, n_q, n_k, 1.0 / math.sqrt(d), HEAD_DIM=d,
                                BLOCK_D=max(16, triton.next_power_of_2(d)), BLOCK_Q=block_q, BLOCK_K=block_k,
                                CAUSAL=causal)
    return out.reshape(q.shape), lse.reshape(q.shape[:-1])
