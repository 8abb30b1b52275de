"""GPU performance of the FlashAttention forward Triton kernel (frontier.flash_attention).

Attention at N = 4096 is compute-bound: 4 * B * H * N * N * d flops for the two matmuls (half
of that when causal, whose upper-triangle tiles are skipped), so it is judged as a fraction of
a large bf16 matmul's throughput measured in the same run. Naive eager attention (the full
(N, N) scores, softmax, then the product with v; about 2 GiB of scores in bf16 here) is timed
beside it for the speedup.
"""

import math
from pathlib import Path

import pytest
import torch

from grader import perf

FLOORS = perf.load_floors(Path(__file__).with_name("floors.toml"))["frontier.flash_attention"]
BATCH, HEADS, N, HEAD_DIM = 4, 16, 4096, 64
DTYPE = torch.bfloat16

pytestmark = [pytest.mark.gpu, pytest.mark.perf, pytest.mark.needs("triton"), pytest.mark.timeout(300)]


def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def truth(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, lse) in float32, one batch entry at a time (a (HEADS, N, N) float32 slice: 1 GiB)."""
    outs, lses = [], []
    for qb, kb, vb in zip(q.float(), k.float(), v.float()):
        s = (qb @ kb.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if causal:
            s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
        lse = torch.logsumexp(s, dim=-1)
        outs.append((torch.exp(s - lse[..., None]) @ vb).to(q.dtype))
        lses.append(lse)
        del s
    return torch.stack(outs), torch.stack(lses)


def _check(solution, rng, figures, causal: bool, name: str) -> None:
    floor = FLOORS[name]
    shape = (BATCH, HEADS, N, HEAD_DIM)
    inputs = [[rng.randn(*shape, dtype=DTYPE), rng.randn(*shape, dtype=DTYPE), rng.randn(*shape, dtype=DTYPE), causal]
              for _ in range(2)]
    flops = 4 * BATCH * HEADS * N * N * HEAD_DIM / (2 if causal else 1)
    perf.compute_bound(
        figures, solution.flash_attention_forward_triton, inputs, truth=truth, eager=naive, flops=flops,
        floor=floor["floor"], provisional=floor.get("provisional", False),
        name=f"flash_attention_forward_triton(q, k, v bf16 {shape}, causal={causal})",
    )


@pytest.mark.points(2)
def test_forward_matmul_fraction(solution, rng, figures):
    _check(solution, rng, figures, False, "forward_matmul_fraction")


@pytest.mark.points(2)
def test_causal_forward_matmul_fraction(solution, rng, figures):
    _check(solution, rng, figures, True, "causal_forward_matmul_fraction")
