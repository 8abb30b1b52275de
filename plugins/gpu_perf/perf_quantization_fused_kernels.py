"""GPU performance of the fused softmax and RMSNorm Triton kernels (quantization.fused_kernels).

Both are memory-bound: one read of x and one write of the output (plus the weight, for
RMSNorm), so they are judged as a fraction of the device-to-device copy bandwidth measured in
the same run. Eager PyTorch doing the same work is timed beside them: torch.softmax (itself a
fused kernel) and the unfused RMSNorm of the exercise's torch version.
"""

from pathlib import Path

import pytest
import torch

from grader import perf

FLOORS = perf.load_floors(Path(__file__).with_name("floors.toml"))["quantization.fused_kernels"]
ROWS, COLS = 4096, 8192
DTYPE = torch.bfloat16

pytestmark = [pytest.mark.gpu, pytest.mark.perf, pytest.mark.needs("triton"), pytest.mark.timeout(300)]


def _inputs(rng, *extra):
    return [[rng.randn(ROWS, COLS, dtype=DTYPE), *extra] for _ in range(2)]


@pytest.mark.points(2)
def test_softmax_bandwidth(solution, rng, figures):
    floor = FLOORS["softmax_bandwidth"]
    perf.memory_bound(
        figures, solution.softmax_triton, _inputs(rng),
        truth=lambda x: torch.softmax(x.float(), dim=-1).to(x.dtype),
        eager=lambda x: torch.softmax(x, dim=-1),
        bytes_moved=2 * ROWS * COLS * DTYPE.itemsize,
        floor=floor["floor"], provisional=floor.get("provisional", False), name="softmax_triton",
    )


@pytest.mark.points(2)
def test_rmsnorm_bandwidth(solution, reference, rng, figures):
    floor = FLOORS["rmsnorm_bandwidth"]
    weight, eps = 1 + 0.1 * rng.randn(COLS, dtype=DTYPE), 1e-6
    perf.memory_bound(
        figures, solution.rmsnorm_triton, _inputs(rng, weight, eps),
        truth=reference.rmsnorm,
        eager=reference.rmsnorm,
        bytes_moved=(2 * ROWS * COLS + COLS) * DTYPE.itemsize,
        floor=floor["floor"], provisional=floor.get("provisional", False), name="rmsnorm_triton",
    )
