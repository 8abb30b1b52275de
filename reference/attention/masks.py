"""Boolean attention masks (True = may attend), and their additive (0 / -inf) form."""

from __future__ import annotations

import torch


def causal_mask(
    L: int, S: int | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    if S is None:
        S = L
    rows = torch.arange(L, device=device)[:, None]  # query positions, as a column
    cols = torch.arange(S, device=device)[None, :]  # key positions, as a row
    return cols <= rows  # top-left aligned: query i sees keys 0..i


def padding_mask(lengths: torch.Tensor, S: int) -> torch.Tensor:
    positions = torch.arange(S, device=lengths.device)[None, :]
    return positions < lengths[:, None]


def left_padding_mask(lengths: torch.Tensor, S: int) -> torch.Tensor:
    positions = torch.arange(S, device=lengths.device)[None, :]
    return positions >= S - lengths[:, None]


def combined_mask(lengths: torch.Tensor, L: int, causal: bool = True) -> torch.Tensor:
    keys = padding_mask(lengths, L)[:, None, None, :]  # (B, 1, 1, L): key j is a real token
    allowed = torch.ones(L, L, dtype=torch.bool, device=lengths.device)
    if causal:
        allowed = causal_mask(L, device=lengths.device)
    return keys & allowed  # broadcasts to (B, 1, L, L); padded query rows are left alone


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))
