"""Weight-only int4 quantisation (W4A16): group-wise symmetric codes packed two per byte, and the
matmul that dequantises them on the fly, in torch and as a Triton kernel."""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pip install "llm-grader[quant]"
    triton = tl = None

__all__ = ["quantize_int4", "dequantize_int4", "int4_matmul", "int4_matmul_triton"]


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = weight.float()
    n, k = w.shape
    groups = w.reshape(n, k // group_size, group_size)
    scales = groups.abs().amax(dim=-1) / 7.0
    # a group of zeros keeps scale 0 and codes 0 (0 / 0 would be NaN)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(groups / safe[..., None]).clamp(-8, 7).to(torch.int32).reshape(n, k)
    nibbles = q & 0xF  # two's complement in 4 bits: -1 -> 0b1111, -8 -> 0b1000
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]  # even k in the high nibble
    return packed.to(torch.uint8), scales


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    """(N, K // 2) uint8 -> (N, K) int32 codes in -8..7."""
    p = packed.to(torch.int32)
    nibbles = torch.stack([p >> 4, p & 0xF], dim=-1).reshape(p.shape[0], -1)
    return (nibbles ^ 8) - 8  # sign-extend: 8..15 stand for -8..-1


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    q = _unpack(packed)
    return q.float() * scales.float().repeat_interleave(group_size, dim=1)


def int4_matmul(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    w = dequantize_int4(packed, scales, group_size)
    return (x.float() @ w.t()).to(x.dtype)


if triton is not None:

    @triton.jit
    def _int4_matmul_kernel(
        x_ptr, packed_ptr, scales_ptr, out_ptr,
        M, N, K, group_size,
        stride_xm, stride_xk, stride_pn, stride_pk, stride_sn, stride_sg, stride_om, stride_on,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, LOW_PRECISION_DOT: tl.constexpr,
    ):
        # one (BLOCK_M, BLOCK_N) tile of the output, summed over K in steps of BLOCK_K
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        m_mask = offs_m < M
        n_mask = offs_n < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_mask = offs_k < K
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk,
                        mask=m_mask[:, None] & k_mask[None, :], other=0.0)
            # the weight tile (BLOCK_N, BLOCK_K), k along the fast axis so neighbouring threads read
            # neighbouring bytes. Element (n, k) lives in byte k // 2 of row n, in the high nibble
            # when k is even; its scale is scales[n, k // group_size].
            w_mask = n_mask[:, None] & k_mask[None, :]
            byte = tl.load(packed_ptr + offs_n[:, None] * stride_pn + (offs_k[None, :] // 2) * stride_pk,
                           mask=w_mask, other=0).to(tl.int32)
            nibble = (byte >> (4 * (1 - offs_k[None, :] % 2))) & 0xF
            q = (nibble ^ 8) - 8  # sign-extend the 4-bit two's complement code
            scale = tl.load(scales_ptr + offs_n[:, None] * stride_sn + (offs_k[None, :] // group_size) * stride_sg,
                            mask=w_mask, other=0.0).to(tl.float32)
            w = tl.trans(q.to(tl.float32) * scale)  # (BLOCK_K, BLOCK_N)
            if LOW_PRECISION_DOT:
                # tensor cores: fp16/bf16 operands, products summed in float32
                acc = tl.dot(x, w.to(x.dtype), acc)
            else:
                acc = tl.dot(x.to(tl.float32), w, acc, input_precision="ieee")
        tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n[None, :] * stride_on,
                 acc.to(out_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


def int4_matmul_triton(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    if triton is None:
        raise ImportError('int4_matmul_triton needs triton: pip install "llm-grader[quant]"')
    m, k = x.shape
    n = packed.shape[0]
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    block_m, block_n, block_k = 16, 32, 128
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _int4_matmul_kernel[grid](
        x, packed, scales, out,
        m, n, k, group_size,
        x.stride(0), x.stride(1), packed.stride(0), packed.stride(1),
        scales.stride(0), scales.stride(1), out.stride(0), out.stride(1),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        # fp16/bf16 operands for the tensor cores on a GPU; float32 elsewhere (triton's
        # interpreter computes tl.dot of bfloat16 operands wrongly)
        LOW_PRECISION_DOT=(x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)
                           and os.environ.get("TRITON_INTERPRET", "0") in ("", "0")),
    )
    return out
