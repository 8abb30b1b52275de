"""LLM.int8(): row-wise absmax int8 matmul with the outlier feature columns kept in floating point."""

from __future__ import annotations

import torch

__all__ = ["quantize_rowwise", "outlier_columns", "int8_matmul_int32", "llm_int8_matmul"]


def quantize_rowwise(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = a.float()
    absmax = a.abs().amax(dim=-1)
    # a row of zeros keeps absmax 0 and codes 0 (127 / 0 would make 0 * inf = NaN)
    inv = torch.where(absmax > 0, 127.0 / absmax, torch.zeros_like(absmax))
    codes = torch.round(a * inv[:, None]).to(torch.int8)
    return codes, absmax


def outlier_columns(x: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    is_outlier = x.float().abs() >= threshold
    return torch.nonzero(is_outlier.any(dim=0)).flatten()


def int8_matmul_int32(x_codes: torch.Tensor, w_codes: torch.Tensor) -> torch.Tensor:
    # int8 products summed in int32: exact (int8 would wrap around, float32 rounds above 2**24)
    return x_codes.to(torch.int32) @ w_codes.to(torch.int32).t()


def llm_int8_matmul(x: torch.Tensor, weight: torch.Tensor, threshold: float = 6.0) -> torch.Tensor:
    x = x.float()
    weight = weight.float()
    cols = outlier_columns(x, threshold)
    # the outlier features, multiplied in float32 with the float weight columns they meet
    out = x[:, cols] @ weight[:, cols].t()
    # the rest in int8: the outlier columns are zeroed before the row absmax of x
    regular = x.clone()
    regular[:, cols] = 0.0
    x_codes, x_absmax = quantize_rowwise(regular)
    w_codes, w_absmax = quantize_rowwise(weight)
    acc = int8_matmul_int32(x_codes, w_codes)
    return out + acc.float() * (x_absmax[:, None] / 127.0) * (w_absmax[None, :] / 127.0)
