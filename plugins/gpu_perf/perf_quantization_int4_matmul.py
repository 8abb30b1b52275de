"""GPU performance of the W4A16 Triton kernel (quantization.int4_matmul).

At decode sizes (a few rows of activations against a large weight) the kernel is bound by
reading the packed int4 weight: a quarter of the bytes of the bf16 weight. It is judged as a
fraction of the device-to-device copy bandwidth measured in the same run, with every byte it
must read or write counted once (packed weight, scales, x, the output). Eager PyTorch doing
the same work (dequantise the whole weight, then a bf16 matmul: the exercise's torch version)
is timed beside it.
"""

from pathlib import Path

import pytest
import torch

from grader import perf

FLOORS = perf.load_floors(Path(__file__).with_name("floors.toml"))["quantization.int4_matmul"]
M, N, K, GROUP = 16, 8192, 8192, 128
DTYPE = torch.bfloat16
# The stub lets the kernel round the dequantised weight to bf16 for the tensor cores (unit
# roundoff 2**-8): with x ~ N(0, 1) and weights of size 0.02, each output (std ~1.8) moves by
# about 2**-8 * 1.8 / sqrt(3) ~ 0.004 (sd), at most ~0.018 over the 131k outputs (4.5 sd);
# atol 5e-2 is under 3x that. The output and the truth are each rounded to bf16 once, so they
# may differ by one bf16 ulp (2**-7 relative at the bottom of a binade), plus the weight error:
# rtol 2e-2 is 2.5 ulps. Not measured on a GPU yet, so not tightened further.
TOL = {"atol": 5e-2, "rtol": 2e-2}

pytestmark = [pytest.mark.gpu, pytest.mark.perf, pytest.mark.needs("triton"), pytest.mark.timeout(300)]


@pytest.mark.points(2)
def test_int4_gemv_bandwidth(solution, reference, rng, figures):
    floor = FLOORS["int4_gemv_bandwidth"]
    inputs = []
    for _ in range(2):  # two weights: the timed calls alternate, and each is re-checked
        packed, scales = reference.quantize_int4(rng.randn(N, K, scale=0.02), GROUP)
        inputs.append([rng.randn(M, K, dtype=DTYPE), packed, scales, GROUP])
    nbytes = packed.numel() + scales.numel() * scales.element_size() + (M * K + M * N) * DTYPE.itemsize
    perf.memory_bound(
        figures, solution.int4_matmul_triton, inputs,
        truth=reference.int4_matmul,
        eager=reference.int4_matmul,
        bytes_moved=nbytes, **TOL,
        floor=floor["floor"], provisional=floor.get("provisional", False), name="int4_matmul_triton",
    )
