"""Performance checks: a kernel's speed as a fraction of a ceiling measured in the same run.

A perf check times the student's kernel inside the solution process (`grader.probes.benchmark`:
warm-up, a cache flush before each timed call, CUDA events, the median over rotated inputs),
re-checks the outputs of the timed calls against the truth, and judges the fraction of a
ceiling that this very machine reaches, measured here in the judge:

- memory-bound kernels (softmax, RMSNorm, a W4A16 GEMV): bytes moved / time, against the
  device-to-device copy bandwidth (`copy_bandwidth`);
- compute-bound kernels (attention, GEMM): flops / time, against a large bf16 matmul
  (`matmul_peak`).

The figures reported with the result are `gbps` (or `tflops`), `fraction_of_peak` and
`speedup_vs_eager` (eager PyTorch doing the same work, timed the same way). A fraction above
`PHYSICALLY_POSSIBLE` (1.05) of the ceiling fails: no kernel moves data faster than a copy,
so such a figure means the timing or the work was not what it claims.

    @pytest.mark.gpu
    @pytest.mark.perf
    def test_softmax_bandwidth(solution, rng, figures):
        inputs = [[rng.randn(4096, 4096).half()] for _ in range(2)]
        perf.memory_bound(figures, solution.softmax_triton, inputs,
                          truth=lambda x: torch.softmax(x.float(), -1).half(), eager=torch.softmax ...,
                          bytes_moved=2 * 4096 * 4096 * 2, floor=0.6, name="softmax_triton")
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from grader import probes
from grader.compare import assert_close

PHYSICALLY_POSSIBLE = 1.05
UNIT_SCALE = {"gbps": 1e9, "tflops": 1e12}  # work per second in one unit of each rate


def rate_figures(*, work: float, seconds: float, ceiling: float, eager_seconds: float | None,
                 unit: str) -> dict[str, float]:
    """The figures of one timed kernel: its rate in `unit` ("gbps": work in bytes, 1e9 per s;
    "tflops": work in flops, 1e12 per s), that rate as a fraction of `ceiling` (in work per
    second), and the speedup over eager PyTorch (eager time / kernel time) when timed."""
    if seconds <= 0 or ceiling <= 0:
        raise ValueError(f"times and ceilings must be positive (kernel {seconds} s, ceiling {ceiling})")
    scale = UNIT_SCALE[unit]
    rate = work / seconds
    figures = {unit: round(rate / scale, 3), "fraction_of_peak": round(rate / ceiling, 4)}
    if eager_seconds is not None:
        figures["speedup_vs_eager"] = round(eager_seconds / seconds, 3)
    return figures


def load_floors(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """A floors file (`plugins/gpu_perf/floors.toml`): exercise id -> check name -> {"floor",
    "provisional", ...}. `bench/calibrate_gpu_perf.py --write` rewrites it from a GPU's figures."""
    from grader.tomlload import read_toml

    return read_toml(path)


def judge(figures: dict[str, float], floor: float, name: str, ceiling_name: str, provisional: bool = False) -> None:
    """Fail, with a sentence, a fraction of the ceiling below `floor` or physically impossible."""
    figures["floor"] = floor
    fraction = figures["fraction_of_peak"]
    rate = ", ".join([f"{figures['gbps']:.0f} GB/s"] if "gbps" in figures else []
                     + [f"{figures['tflops']:.1f} TFLOP/s"] if "tflops" in figures else [])
    if fraction > PHYSICALLY_POSSIBLE:
        raise AssertionError(
            f"{name} reached {fraction:.2f} of the {ceiling_name} measured on this machine ({rate}): more than "
            f"{PHYSICALLY_POSSIBLE} is physically impossible, so the kernel did not do the work it was timed "
            "on (does it return before the work finishes, on another stream, or reuse an earlier result?)")
    if fraction < floor:
        speedup = figures.get("speedup_vs_eager")
        versus = f", {speedup:g}x eager PyTorch" if speedup is not None else ""
        raise AssertionError(
            f"{name} reached {fraction:.2f} of the {ceiling_name} measured on this machine ({rate}{versus}); "
            f"this check needs at least {floor:.2f}"
            + (" (a provisional floor, from published figures: the course has not calibrated it on a GPU yet)"
               if provisional else "")
            + ". Profile it: is every load coalesced and vectorised, is "
            "the tile large enough to hide latency, and is anything read twice?")


def _median_seconds(fn: Callable[[], Any], device: str, reps: int) -> float:
    return float(probes.benchmark(fn, [[]], device=device, warmup=3, reps=reps)["median_s"])


@functools.cache
def copy_bandwidth(device: str = "cuda", nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth in bytes per second (read plus write), measured here."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / _median_seconds(lambda: dst.copy_(src), device, reps=20)


@functools.cache
def matmul_peak(device: str = "cuda", n: int = 8192) -> float:
    """A large bf16 matmul's throughput in flops per second, measured here."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / _median_seconds(lambda: a @ b, device, reps=20)


def _measure(figures: dict[str, float], fn: Any, inputs: Sequence[Sequence[Any]], *, truth: Callable[..., Any],
             eager: Callable[..., Any] | None, name: str, device: str, atol: float, rtol: float, reps: int,
             work: float, unit: str, peak: float, ceiling_name: str, floor: float, provisional: bool) -> None:
    """Time `fn`, re-check its timed outputs, time `eager`, fill `figures` and judge them."""
    sets = [list(args) for args in inputs]
    timing = probes.benchmark(fn, sets, device=device, reps=reps)
    for k, (args, output) in enumerate(zip(inputs, timing["outputs"])):
        assert_close(output, truth(*args), atol=atol, rtol=rtol,
                     name=f"the output of a timed call of {name} (input set {k})")
    seconds = float(timing["median_s"])
    eager_seconds = None if eager is None else float(probes.benchmark(eager, sets, device=device, reps=reps)["median_s"])
    figures["median_us"] = round(seconds * 1e6, 2)
    figures["spread"] = round(statistics.pstdev(timing["times_s"]) / max(seconds, 1e-12), 3)
    figures.update(rate_figures(work=work, seconds=seconds, ceiling=peak, eager_seconds=eager_seconds, unit=unit))
    figures[f"ceiling_{unit}"] = round(peak / UNIT_SCALE[unit], 3)
    judge(figures, floor, name, ceiling_name, provisional)


def memory_bound(figures: dict[str, float], fn: Any, inputs: Sequence[Sequence[Any]], *, truth: Callable[..., Any],
                 bytes_moved: float, floor: float, name: str, eager: Callable[..., Any] | None = None,
                 device: str = "cuda", atol: float = 1e-2, rtol: float = 1e-2, reps: int = 50,
                 ceiling: float | None = None, provisional: bool = False) -> None:
    """Time a memory-bound kernel and judge it against the copy bandwidth.

    `inputs` holds argument lists (CPU tensors; each is moved to `device` once and the timed
    calls rotate through them); `truth(*args)` gives each expected output (re-checked on the
    outputs of the timed calls); `eager(*args)`, run in the judge, is the same work in eager
    PyTorch. Fills `figures` (the check's fixture) with gbps, fraction_of_peak,
    speedup_vs_eager, median_us, spread and floor, then fails below `floor` (saying so when the
    floor is `provisional`: not yet calibrated on a GPU) or above 1.05.
    """
    _measure(figures, fn, inputs, truth=truth, eager=eager, name=name, device=device, atol=atol, rtol=rtol,
             reps=reps, work=bytes_moved, unit="gbps", peak=ceiling if ceiling is not None else copy_bandwidth(device),
             ceiling_name="device-to-device copy bandwidth", floor=floor, provisional=provisional)


def compute_bound(figures: dict[str, float], fn: Any, inputs: Sequence[Sequence[Any]], *, truth: Callable[..., Any],
                  flops: float, floor: float, name: str, eager: Callable[..., Any] | None = None,
                  device: str = "cuda", atol: float = 1e-2, rtol: float = 1e-2, reps: int = 50,
                  ceiling: float | None = None, provisional: bool = False) -> None:
    """Time a compute-bound kernel and judge it against a large bf16 matmul (as `memory_bound`,
    with `flops` the work of one call and tflops in the figures)."""
    _measure(figures, fn, inputs, truth=truth, eager=eager, name=name, device=device, atol=atol, rtol=rtol,
             reps=reps, work=flops, unit="tflops", peak=ceiling if ceiling is not None else matmul_peak(device),
             ceiling_name="bf16 matmul throughput", floor=floor, provisional=provisional)
