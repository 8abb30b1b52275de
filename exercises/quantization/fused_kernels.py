"""Fused softmax and RMSNorm: first in torch, then as Triton kernels.

A softmax or an RMSNorm written as several torch ops reads and writes the whole tensor once
per op. A fused kernel reads each row once, does all the arithmetic in registers, and writes
the result once: at large sizes it runs at the speed of memory. Write each function in torch
first (it is the specification of your kernel), then as a Triton kernel.

Shapes and dtypes (all four functions):
- x has any shape (..., n) with n >= 1; every function works on the LAST axis, row by row,
  and returns a tensor of x's shape and x's dtype (float32, float16 or bfloat16).
- The arithmetic is float32 whatever x's dtype: upcast on load, compute, cast the result
  back to x's dtype once, at the end.
- Inputs are never modified.

softmax(x): softmax over the last axis, numerically stable:
    z = x.float();  z = z - max(z over the row);  e = exp(z);  y = e / sum(e over the row)
so rows of large values (1000, 1e4, float16's 6e4, float32's 1e38) give the right
probabilities, never inf or NaN. A -inf entry (a masked position) gets probability 0 as long
as its row has a finite entry; a row that is all -inf gives NaN, as torch.softmax does (not
judged).

rmsnorm(x, weight, eps=1e-6): Llama's RMSNorm, all in float32:
    z = x.float();  y = z / sqrt(mean(z * z over the row) + eps) * weight.float()
(mean over the n elements of the row; eps INSIDE the square root; weight has shape (n,),
any float dtype, and is used as weight.float(); the result is rounded to x's dtype ONCE, after
the product with the weight). In float32 this equals transformers' LlamaRMSNorm. In float16
and bfloat16 LlamaRMSNorm rounds twice (h to x's dtype, then weight * h): the checks allow
that difference (two ulps of the dtype) and otherwise compare with the formula above, within
one ulp. (torch.rsqrt(v) or 1 / torch.sqrt(v) are both fine.)

The torch versions must not call torch's softmax, log_softmax or rms_norm: write the math.

softmax_triton(x) and rmsnorm_triton(x, weight, eps=1e-6): the same results from your own
Triton kernels, launched by these wrappers.
- View x as rows: rows = x.reshape(-1, n).contiguous(); allocate out = torch.empty_like(rows);
  launch ONE program per row (grid = (number of rows,)); return out.reshape(x.shape).
- In the kernel: row = tl.program_id(0); offs = tl.arange(0, BLOCK) with BLOCK =
  triton.next_power_of_2(n) (a tl.constexpr), so one block holds the whole row; mask =
  offs < n; load with that mask. The padding lanes (offs >= n) must not change the result:
  load them as -inf for the softmax (exp(-inf) = 0) and as 0 for the RMSNorm, and divide the
  sum of squares by n, never by BLOCK. Store with the same mask, cast to the output's dtype
  (out_ptr.dtype.element_ty).
- Row lengths up to 8192 must work in one block (the GPU performance check calls both on
  CUDA with x of shape (4096, 8192) in bfloat16, weight bfloat16 of shape (8192,), eps=1e-6).
  Optional, not judged: pass num_warps=8 or 16 at launch for rows of 2048 lanes and more, and
  compute row offsets in int64 (tl.program_id(0).to(tl.int64)) so rows * n may pass 2**31.
- On a machine without CUDA the grader runs your kernels in triton's interpreter on CPU
  tensors (TRITON_INTERPRET=1, set for you); there the checks use float32 and float16 (the
  interpreter rounds bfloat16 differently from a GPU). Without triton installed (pip install
  "llm-grader[quant]") the Triton checks are skipped and the torch ones still count.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pip install "llm-grader[quant]"
    triton = tl = None


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Stable softmax over the last axis, in float32, returned in x's dtype."""
    raise NotImplementedError


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(mean(x**2, -1) + eps) * weight, in float32, returned in x's dtype."""
    raise NotImplementedError


# Define your kernels here, inside `if triton is not None:` so this file imports without triton:
#
# if triton is not None:
#
#     @triton.jit
#     def _softmax_kernel(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
#         ...


def softmax_triton(x: torch.Tensor) -> torch.Tensor:
    """softmax(x) from a Triton kernel: one program per row of x.reshape(-1, n)."""
    raise NotImplementedError


def rmsnorm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """rmsnorm(x, weight, eps) from a Triton kernel: one program per row of x.reshape(-1, n)."""
    raise NotImplementedError
