"""QLoRA: a LoRA adapter trained on top of a frozen base weight stored in 4-bit NormalFloat.

QLoRA (Dettmers et al. 2023) keeps the base model in NF4, 4 bits a weight, and trains LoRA
adapters in higher precision on top. The base is dequantised on the fly in every forward and
never receives a gradient; only the adapters A and B learn.

NF4 storage, as bitsandbytes' quantize_4bit(w, blocksize, quant_type="nf4") lays it out:
- The weight (out_features, in_features) is flattened row-major (n = out * in elements) and cut
  into blocks of `blocksize` CONSECUTIVE elements of that flat order (blocks may straddle rows;
  the last block may be shorter). Block k has one scale, absmax[k] (float32), the largest |w|
  in the block.
- Each element is stored as a 4-bit index into the 16-value NF4 code book below (quantiles of
  N(0, 1) scaled to [-1, 1], with an exact 0 at index 7): the value nearest to w / absmax.
- Two indices per byte, the FIRST element in the HIGH nibble: byte i = (code[2i] << 4) |
  code[2i + 1]. `packed` is uint8 with ceil(n / 2) bytes (any shape: flatten it); when n is odd
  the low nibble of the last byte is padding and must be ignored, whatever it holds.
- Dequantised element j = NF4_CODE[code_j] * absmax[j // blocksize], ONE float32 product. This
  is exact math: the judge compares your dequantised weight bit for bit (torch.equal). Computing
  the product in float32 (or in float64 and rounding to float32) gives exactly these bits.

You may use anything in torch; bitsandbytes is not needed (and not available to every student).
Inputs are never modified in place.
"""

from __future__ import annotations

import torch
from torch import nn

# bitsandbytes' NF4 code book (index -> value), float32 values
NF4_CODE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)


def dequantize_nf4(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: tuple[int, ...],
    blocksize: int = 64,
) -> torch.Tensor:
    """The float32 weight of `shape` stored as NF4 (see the module docstring).

    - `packed`: uint8, ceil(n / 2) bytes in any shape (bitsandbytes returns (ceil(n / 2), 1));
      the first element of each pair in the HIGH nibble.
    - `absmax`: float32 (ceil(n / blocksize),), one scale per block of `blocksize` consecutive
      elements of the flattened weight.
    - `shape`: the weight's shape, n = its product; `blocksize`: a positive integer (64 in
      QLoRA; any value works the same way).

    Returns a float32 tensor of `shape` with element j (row-major) equal to
    NF4_CODE[code_j] * absmax[j // blocksize], exactly. A block whose absmax is 0 gives zeros.
    """
    raise NotImplementedError


class QLoRALinear(nn.Module):
    """y = x @ W.T + bias + (alpha / r) * (x @ A.T) @ B.T, with W = dequantize_nf4(packed, absmax,
    shape, blocksize) frozen and only A and B trained.

    Constructor arguments: `packed` (uint8) and `absmax` (float32) as in `dequantize_nf4`;
    `shape` = (out_features, in_features); `blocksize`; `bias`: float32 (out_features,) or None;
    `r` >= 1; `alpha` > 0. Keep copies (do not alias the caller's tensors).

    Attributes the judge uses:
    - buffers (register_buffer) `packed`, `absmax` and `bias` (None when there is no bias):
      they appear in state_dict() under those names and must stay BITWISE as given, through any
      forward, backward and optimiser step over `self.parameters()`.
    - exactly two parameters, `lora_A`: nn.Parameter (r, in_features), initialised from torch's
      global generator with nn.init.kaiming_uniform_(a=math.sqrt(5)) (as peft), and `lora_B`:
      nn.Parameter (out_features, r), initialised to zeros. `self.parameters()` yields these two
      and nothing else: the dequantised weight is never stored as a parameter.

    forward(x): x is float32 (..., in_features) (any number of leading dimensions, or none);
    returns float32 (..., out_features). Dequantise W inside forward; scaling is alpha / r
    (not rsLoRA's alpha / sqrt(r)); no dropout. Gradients flow to lora_A, lora_B and x only.
    """

    def __init__(
        self,
        packed: torch.Tensor,
        absmax: torch.Tensor,
        shape: tuple[int, int],
        blocksize: int,
        bias: torch.Tensor | None,
        r: int,
        alpha: float,
    ) -> None:
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
