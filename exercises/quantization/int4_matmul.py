"""Weight-only int4 matmul (W4A16): group-wise int4 weights, packed two per byte, dequantised on
the fly inside the matmul, in torch and as a Triton kernel.

Decoding one token reads every weight of the model once: at batch size 1 a linear layer is
limited by memory bandwidth, not arithmetic. Storing the weight in 4 bits moves a quarter of
the bytes of fp16, so a kernel that reads the packed codes and dequantises them in registers
runs up to ~4x faster. Activations stay in 16 bits (W4A16, as GPTQ, AWQ and Marlin kernels).

The format (pinned; every function below uses it):
- weight (N, K), one row per output feature as in `torch.nn.Linear`; `group_size` is an even
  number that divides K (K is even). Along each row, the K values form K // group_size groups
  of `group_size` consecutive values; group g of row n is weight[n, g*group_size:(g+1)*group_size].
- Symmetric scales: scales[n, g] = absmax(group) / 7 in float32, shape (N, K // group_size).
  No zero point.
- Codes: q = round(w / scales[n, g]) with torch.round (to nearest, ties to even: 2.5 -> 2,
  3.5 -> 4, -0.5 -> 0), clamped to [-8, 7] (|w| / scale <= 7, so -8 never occurs after rounding;
  the clamp only guards float error). A group of zeros has scale 0 and codes 0 (never NaN).
- Each code is a 4-bit two's complement number: its nibble is q & 0xF (0 -> 0x0, 7 -> 0x7,
  -1 -> 0xF, -8 -> 0x8); unpacked, a nibble v >= 8 stands for v - 16.
- Packing, two codes per byte along K: packed[n, j] = (nibble(q[n, 2j]) << 4) | nibble(q[n, 2j + 1]),
  so the EVEN element k = 2j is the HIGH nibble (bitsandbytes' order). packed is uint8 (N, K // 2).
  Example: one row [7, 2.5, -1.5, 0.5, -7, 3.5, 0, -0.5], group_size 8: scale 7 / 7 = 1, codes
  [7, 2, -2, 0, -7, 4, 0, 0], packed [0x72, 0xE0, 0x94, 0x00].
- Dequantised: w[n, k] = q[n, k] * scales[n, k // group_size], in float32 (the scales may be given
  as float32, float16 or bfloat16: upcast them to float32 first). That is one float32 product
  per value, with no rounding choice, so the judge compares dequantize_int4 exactly; it
  compares codes (packed bytes) exactly on weights far from rounding boundaries, and scales
  within 1e-6 relative (absmax / 7 and absmax * (1 / 7) may differ in the last bit).

The matmuls: x (M, K) activations of dtype float32, float16 or bfloat16 (any strides, M >= 1)
times the dequantised weight transposed:

    out = x @ dequantize_int4(packed, scales, group_size).T        (M, N), in x's dtype

summed in float32: the result is (x.float() @ w.T) cast to x.dtype. The products may use the
dequantised weight rounded to x's dtype (tensor cores take fp16/bf16 operands), but the sum
must be accumulated in float32. The judge allows exactly that: float32 results within float32
rounding of the sum; float16 results within 2**-11 * sum_k |x[m, k] * w[n, k]| (each weight
rounded once to float16) plus one float16 rounding of the result.

int4_matmul_triton must do the same in ONE Triton kernel that reads the packed bytes itself:
tile the output over M and N, loop over K in blocks, load the bytes of the weight tile,
extract each nibble (high for even k), sign-extend it, multiply by the group's scale, and
accumulate tl.dot of the tiles in a float32 accumulator; store the tile in x's dtype. Mask
every load and the store (M, N and K need not be multiples of your block sizes). It must not
call dequantize_int4 or any other torch code on the weight first: the point is that the
unpacked weight never exists in memory. The module must import without triton installed:

    try:
        import triton
        import triton.language as tl
    except ImportError:  # pip install "llm-grader[quant]"
        triton = tl = None

and define the @triton.jit kernel under `if triton is not None:`. On a machine without CUDA
the judge runs your kernel in triton's interpreter (TRITON_INTERPRET=1) on CPU tensors, with
float32 and float16 x only (in the interpreter tl.dot gives wrong results for bfloat16
operands; on CPU do tl.dot in float32). On a GPU it is called with x of shape (M, K), M from
1 to 16, float16 or bfloat16, K and N in the thousands, and timed: tl.dot needs tiles of at
least 16 in every dimension, so use BLOCK_M = 16 and mask the rows past M. For float32 x pass
input_precision="ieee" to tl.dot: on a GPU its default is TF32 (a 10-bit mantissa), far
outside float32 rounding.
Inputs are never modified.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pip install "llm-grader[quant]"
    triton = tl = None

__all__ = ["quantize_int4", "dequantize_int4", "int4_matmul", "int4_matmul_triton"]


def quantize_int4(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise weight (N, K) (any float dtype, upcast to float32) group-wise to int4.

    Returns (packed, scales): packed uint8 (N, K // 2), two codes per byte, the even element in
    the high nibble, each code a 4-bit two's complement number; scales float32
    (N, K // group_size) = absmax of each group / 7. Codes = round(w / scale) (ties to even),
    clamped to [-8, 7]; a group of zeros has scale 0 and codes 0.
    """
    raise NotImplementedError


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    """The float32 weight (N, K) from packed uint8 (N, K // 2) and scales (N, K // group_size):
    w[n, k] = q[n, k] * scales[n, k // group_size], q the sign-extended nibble (high for even k).
    """
    raise NotImplementedError


def int4_matmul(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    """x (M, K) @ dequantize_int4(packed, scales, group_size).T in torch: (M, N) in x's dtype,
    computed in float32 ((x.float() @ w.T).to(x.dtype))."""
    raise NotImplementedError


def int4_matmul_triton(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, group_size: int) -> torch.Tensor:
    """The same product as int4_matmul, by one Triton kernel that unpacks the nibbles, applies the
    group scales and accumulates tl.dot in float32; (M, N) in x's dtype, on x's device.
    Raises ImportError when triton is not installed."""
    raise NotImplementedError
