"""The performance-check machinery, tested on the CPU wherever it can be: the figures'
arithmetic, the verdicts (the floor and the 1.05 rule), the benchmark probe (warm-up,
rotation, the outputs of the timed calls re-checked) through the sandbox, the figures in the
results JSON; and the GPU checks of the bundled curriculum skipped without CUDA, with the
reason, and left out of the maximum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import ROOT, one_exercise_track, run_grade

from grader import perf, probes


def test_rate_figures_arithmetic():
    # 1 GB in 1 ms is 1000 GB/s; against a 2000 GB/s ceiling, half of it; eager took 3 ms.
    figures = perf.rate_figures(work=1e9, seconds=1e-3, ceiling=2e12, eager_seconds=3e-3, unit="gbps")
    assert figures == {"gbps": 1000.0, "fraction_of_peak": 0.5, "speedup_vs_eager": 3.0}
    figures = perf.rate_figures(work=4e12, seconds=0.01, ceiling=8e14, eager_seconds=None, unit="tflops")
    assert figures == {"tflops": 400.0, "fraction_of_peak": 0.5}
    with pytest.raises(ValueError):
        perf.rate_figures(work=1.0, seconds=0.0, ceiling=1.0, eager_seconds=None, unit="gbps")


def test_the_verdict_fails_below_the_floor_and_above_what_is_physically_possible():
    perf.judge({"gbps": 100.0, "fraction_of_peak": 0.6}, 0.6, "k", "copy bandwidth")  # at the floor: passes
    perf.judge({"gbps": 100.0, "fraction_of_peak": 1.05}, 0.6, "k", "copy bandwidth")  # noise above 1: passes
    with pytest.raises(AssertionError, match="this check needs at least 0.60"):
        perf.judge({"gbps": 100.0, "fraction_of_peak": 0.59, "speedup_vs_eager": 1.5}, 0.6, "k", "copy bandwidth")
    with pytest.raises(AssertionError, match="physically impossible"):
        perf.judge({"gbps": 100.0, "fraction_of_peak": 1.06}, 0.6, "k", "copy bandwidth")


def test_benchmark_warms_up_rotates_and_returns_the_timed_outputs():
    calls = []

    def fn(x):
        calls.append(float(x[0]))
        return x * 2

    sets = [[torch.tensor([1.0])], [torch.tensor([2.0])], [torch.tensor([3.0])]]
    timing = probes.benchmark(fn, sets, device="cpu", warmup=2, reps=7, flush_bytes=1 << 16)
    assert calls == [1.0, 2.0] + [1.0, 2.0, 3.0] * 2 + [1.0]
    assert len(timing["times_s"]) == 7 and all(t > 0 for t in timing["times_s"])
    assert timing["median_s"] == sorted(timing["times_s"])[3]
    assert [o.item() for o in timing["outputs"]] == [2.0, 4.0, 6.0]


def test_compute_bound_reports_tflops_against_its_ceiling_and_rechecks_outputs():
    a, b = torch.randn(32, 32), torch.randn(32, 32)
    figures: dict[str, float] = {}
    perf.compute_bound(figures, torch.mm, [[a, b]], truth=torch.mm, eager=torch.mm, flops=2 * 32**3, floor=0.0,
                       name="mm", device="cpu", reps=3, ceiling=1e12)
    assert {"tflops", "fraction_of_peak", "speedup_vs_eager", "ceiling_tflops", "floor"} <= set(figures)
    assert figures["ceiling_tflops"] == 1.0
    with pytest.raises(AssertionError, match="the output of a timed call of mm"):
        perf.compute_bound({}, torch.mm, [[a, b]], truth=lambda x, y: x @ y + 1, flops=1.0, floor=0.0, name="mm",
                           device="cpu", reps=3, ceiling=1e12)


def test_copy_bandwidth_is_measured_here():
    assert perf.copy_bandwidth("cpu", 1 << 20) > 1e8  # over 0.1 GB/s on any machine that runs this


SOLUTION = '''
import torch

_seen = []


def scale(x):
    return x * 2


def lazy_scale(x):
    # Fast on repeated calls because it reuses its first result: wrong on rotated inputs.
    if not _seen:
        _seen.append(x * 2)
    return _seen[0]
'''

CHECKS = '''
import pytest
import torch

from grader import perf

CPU_COPY = perf.copy_bandwidth("cpu", 1 << 22)


def inputs(rng):
    return [[rng.randn(64, 64)] for _ in range(3)]


def test_scale(expect, rng):
    x = rng.randn(5)
    expect(lambda s: s.scale(x), truth=x * 2, name="scale")


@pytest.mark.perf
def test_scale_speed(solution, rng, figures):
    perf.memory_bound(figures, solution.scale, inputs(rng), truth=lambda x: x * 2, eager=lambda x: x * 2,
                      bytes_moved=2 * 64 * 64 * 4, floor=0.0, name="scale", device="cpu", reps=5,
                      ceiling=CPU_COPY)


@pytest.mark.perf
def test_claims_too_much(solution, rng, figures):
    perf.memory_bound(figures, solution.scale, inputs(rng), truth=lambda x: x * 2, bytes_moved=1e15,
                      floor=0.0, name="scale", device="cpu", reps=5, ceiling=CPU_COPY)


@pytest.mark.perf
def test_lazy(solution, rng, figures):
    perf.memory_bound(figures, solution.lazy_scale, inputs(rng), truth=lambda x: x * 2,
                      bytes_moved=2 * 64 * 64 * 4, floor=0.0, name="lazy_scale", device="cpu", reps=5,
                      ceiling=CPU_COPY)


@pytest.mark.gpu
@pytest.mark.perf
@pytest.mark.points(4)
def test_on_a_gpu(solution, rng, figures):
    perf.memory_bound(figures, solution.scale, inputs(rng), truth=lambda x: x * 2, bytes_moved=1.0, floor=0.5,
                      name="scale")
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return one_exercise_track(tmp_path, "speed", "scale", toml='title = "Scale"\nhints = ["a", "b"]\n', reference=SOLUTION,
                              stub="def scale(x):\n    raise NotImplementedError\n", checks=CHECKS, solution=SOLUTION)


def test_perf_checks_through_the_sandbox_report_their_figures_and_verdicts(project: Path):
    proc = run_grade("speed", "--report", "json:-", cwd=project,
                     env={"PYTHONPATH": str(project), "GRADE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 0, proc.stderr
    exercise = json.loads(proc.stdout)["tracks"][0]["exercises"][0]
    checks = {c["name"]: c for c in exercise["checks"]}
    speed = checks["scale_speed"]
    assert speed["outcome"] == "passed", speed["message"]
    assert {"gbps", "fraction_of_peak", "speedup_vs_eager", "median_us", "ceiling_gbps"} <= set(speed["figures"])
    assert speed["figures"]["gbps"] > 0 and 0 < speed["figures"]["fraction_of_peak"] <= 1.05
    too_much = checks["claims_too_much"]
    assert too_much["outcome"] == "failed" and "physically impossible" in too_much["message"]
    assert too_much["figures"]["fraction_of_peak"] > 1.05, "the figures are reported with the failure"
    lazy = checks["lazy"]
    assert lazy["outcome"] == "failed" and "the output of a timed call of lazy_scale (input set 1)" in lazy["message"]
    gpu = checks["on_a_gpu"]
    if not torch.cuda.is_available():
        assert gpu["outcome"] == "skipped" and "needs a CUDA GPU" in gpu["message"]
        assert exercise["skipped_points"] == 4 and exercise["max_score"] == 4  # scale, scale_speed, too_much, lazy


def test_the_terminal_shows_each_perf_checks_figures(project: Path):
    proc = run_grade("speed", cwd=project, env={"PYTHONPATH": str(project), "GRADE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    text = " ".join(proc.stdout.split())
    assert "Performance (measured in this run): speed.scale.scale_speed:" in text, proc.stdout
    assert "GB/s" in text and "of the ceiling" in text and "x eager PyTorch" in text


def _results(outcome: str, fraction: float) -> dict:
    from grader.perf import load_floors

    floors = load_floors(ROOT / "plugins" / "gpu_perf" / "floors.toml")
    exercises = [{"id": e, "checks": [{"name": c, "outcome": outcome, "message": "needs a CUDA GPU" if outcome == "skipped"
                                       else "", "figures": {} if outcome == "skipped" else
                                       {"gbps": 2400.0, "fraction_of_peak": fraction, "speedup_vs_eager": 2.0}}
                                      for c in checks]} for e, checks in floors.items()]
    return {"metadata": {"device": "NVIDIA H200"}, "tracks": [{"exercises": exercises}]}


def test_calibration_sets_each_floor_to_three_quarters_of_the_reference(tmp_path: Path, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate", ROOT / "bench" / "calibrate_gpu_perf.py")
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    floors = tmp_path / "floors.toml"
    floors.write_text((ROOT / "plugins" / "gpu_perf" / "floors.toml").read_text())
    monkeypatch.setattr(calibrate, "FLOORS", floors)
    results = tmp_path / "r.json"
    results.write_text(json.dumps(_results("skipped", 0.0)))
    assert calibrate.main(["--from-results", str(results), "--write"]) == 2
    assert "were skipped on this machine" in capsys.readouterr().out
    results.write_text(json.dumps(_results("passed", 0.8)))
    assert calibrate.main(["--from-results", str(results), "--write"]) == 0
    written = perf.load_floors(floors)
    entries = [entry for checks in written.values() for entry in checks.values()]
    assert len(entries) >= 3 and all(e["floor"] == 0.6 and e["provisional"] is False for e in entries)
    assert all(e["measured_on"] == "NVIDIA H200" and e["reference_gbps"] == 2400.0 for e in entries)
    assert floors.read_text().startswith("# Pass floors"), "the explanation at the top is kept"


def test_the_bundled_floors_are_marked_provisional_until_calibrated():
    floors = perf.load_floors(ROOT / "plugins" / "gpu_perf" / "floors.toml")
    for exercise_id, checks in floors.items():
        for name, entry in checks.items():
            module = ROOT / "plugins" / "gpu_perf" / f"perf_{exercise_id.replace('.', '_')}.py"
            assert f"def test_{name}(" in module.read_text(), f"{exercise_id}.{name} has a floor but no check"
            assert entry["provisional"] or "measured_on" in entry
            assert 0 < entry["floor"] < 1


def test_the_curriculums_perf_checks_are_skipped_without_cuda_and_left_out_of_the_maximum():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the perf checks run")
    proc = run_grade("--solutions", "reference", "quantization.int4_matmul.int4_gemv_bandwidth", "--report", "json:-")
    assert proc.returncode == 0, proc.stderr
    exercise = json.loads(proc.stdout)["tracks"][0]["exercises"][0]
    (check,) = exercise["checks"]
    assert check["outcome"] == "skipped" and check["message"] == "needs a CUDA GPU; none is available here"
    assert exercise["skipped_points"] == 2 and exercise["max_score"] == 0 and exercise["score"] == 0


PERF_MODULES = sorted((ROOT / "plugins" / "gpu_perf").glob("perf_*.py"))
SMALL = {"ROWS": 8, "COLS": 100, "M": 2, "N": 64, "K": 256}


@pytest.mark.parametrize("module_path", PERF_MODULES, ids=[p.stem for p in PERF_MODULES])
def test_each_curriculum_perf_check_runs_on_the_cpu_at_small_sizes(module_path: Path, monkeypatch):
    # What needs no GPU, checked without one: each perf check's inputs, truth, eager baseline and
    # byte count, run on the CPU at small sizes with the reference's torch version as the kernel
    # (X_triton -> X); the timing and the verdict are the same code as on a GPU, only the floor
    # is 0 (a CPU is no measure of a kernel).
    import importlib.util
    import inspect
    import types

    from grader.imports import import_reference
    from grader.rng import Rng

    spec = importlib.util.spec_from_file_location(f"dry_{module_path.stem}", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, value in SMALL.items():
        if hasattr(module, name):
            monkeypatch.setattr(module, name, value)
    track, exercise = module_path.stem.removeprefix("perf_").split("_", 1)
    reference = import_reference(track, ROOT / "reference" / track, exercise)
    solution = types.SimpleNamespace(**{f"{n}_triton": getattr(reference, n) for n in dir(reference)
                                        if callable(getattr(reference, n)) and hasattr(reference, f"{n}_triton")})

    def on_cpu(real, ceiling):
        def run(figures, fn, inputs, **kwargs):
            real(figures, fn, inputs, **{**kwargs, "device": "cpu", "reps": 3, "floor": 0.0, "ceiling": ceiling})
        return run

    monkeypatch.setattr(perf, "memory_bound", on_cpu(perf.memory_bound, perf.copy_bandwidth("cpu", 1 << 22)))
    # a CPU's bf16 matmul can be slower than the float32 arithmetic of the reference's torch version
    square = torch.randn(512, 512)
    float32_peak = 2 * 512**3 / perf._median_seconds(lambda: square @ square, "cpu", reps=5)
    monkeypatch.setattr(perf, "compute_bound", on_cpu(perf.compute_bound, float32_peak))
    checks = [f for n, f in vars(module).items() if n.startswith("test_")]
    assert checks
    for check in checks:
        figures: dict[str, float] = {}
        fixtures = {"solution": solution, "reference": reference, "rng": Rng(0), "figures": figures}
        check(**{p: fixtures[p] for p in inspect.signature(check).parameters})
        rate = "gbps" if "gbps" in figures else "tflops"
        assert {rate, "fraction_of_peak", "speedup_vs_eager", "floor"} <= set(figures), (check.__name__, figures)
        assert 0 < figures["fraction_of_peak"] <= perf.PHYSICALLY_POSSIBLE, (check.__name__, figures)
