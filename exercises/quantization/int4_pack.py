"""Signed int4 weights with group-wise scales, packed two codes per byte.

4-bit weights halve int8's memory, but nothing in torch stores 4 bits: two codes share one
uint8. This file quantises a weight to signed int4 codes with one absmax scale per group,
packs the codes two per byte, unpacks them and dequantises.

Quantise (`quantize_int4`), in float32 (start with w = w.float()), symmetric, per group:
- Groups: the LAST axis of w (..., n) is cut into consecutive runs of `group_size`
  elements (w.reshape(..., n // group_size, group_size)). n must be a multiple of
  group_size, else ValueError.
- scale = absmax(group) / 7 (float32 division). Codes = torch.round(w / scale) (halves to
  even), clamped to -7 .. 7 (symmetric: -8 is a valid int4 value but never produced).
- An all-zero group: scale 0.0 and codes 0 (never NaN).

Pack (`pack_int4`), the layout (checked bit for bit):
- Each code is stored as its 4-bit two's complement nibble: code & 0xF, so 0 .. 7 -> 0x0 ..
  0x7, -1 -> 0xF, -8 -> 0x8 (NOT offset binary code + 8).
- Byte i of the last axis holds elements 2i and 2i + 1: element 2i in the HIGH nibble
  (bits 4-7), element 2i + 1 in the LOW nibble (bits 0-3):
      packed[..., i] = ((q[..., 2i] & 0xF) << 4) | (q[..., 2i + 1] & 0xF)
  (the first value in the high bits, as bitsandbytes packs NF4; every packed format of this
  track, nf4 and int4_matmul too, uses this order. GPTQ's int32 words put the first value in
  the lowest bits instead.) Example: [1, -2, 7, -8] -> [0x1E, 0x78].
- The last axis must have an even length: an odd one raises ValueError (no padding).
  Codes outside -8 .. 7 raise ValueError.
- Result: uint8 (..., n // 2); every leading axis is kept.

Unpack (`unpack_int4`) is the exact inverse: uint8 (..., m) -> int8 (..., 2m), the
high nibble first, each nibble sign-extended (0x8 .. 0xF -> -8 .. -1). Every byte 0 .. 255 is
valid.

Dequantise (`dequantize_int4`): unpack, then codes.float() * scale group by group (groups of
`group_size` along the last axis of the unpacked codes): float32 (..., n).
Beware: uint8 arithmetic wraps around and >> on int8 is an arithmetic shift; convert to a
wider integer dtype (int16, int32) before shifting and masking. Inputs are never modified.
"""

from __future__ import annotations

import torch


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-wise symmetric int4 codes. Returns (q int8 (..., n) in -7 .. 7, scale float32 (..., n // group_size))."""
    raise NotImplementedError


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int int4 codes (..., n) in -8 .. 7, n even -> uint8 (..., n // 2), element 2i in the high nibble."""
    raise NotImplementedError


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """uint8 (..., m) -> int8 (..., 2m) in -8 .. 7: the inverse of pack_int4."""
    raise NotImplementedError


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, group_size: int) -> torch.Tensor:
    """unpack_int4(packed).float() * scale per group of `group_size`: float32 (..., 2m)."""
    raise NotImplementedError
