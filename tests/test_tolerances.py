"""An implementation that differs from the reference only by float rounding never loses a
point (issue 9): the references with every computed floating result moved by one ulp of its
dtype score full marks."""

from __future__ import annotations

from pathlib import Path

from helpers import exercise_scores, load_results, run_grade

# Appended to a reference: each public function, and each nn.Module's forward, returns its
# floating results one ulp up. Exact zeros and infinities stay (rounding never moves them),
# and so does a result that is one of the arguments (an in-place function's).
ONE_ULP_UP = '''

import functools as _functools
import math as _math

import numpy as _np
import torch as _torch


def _ulp_up(v):
    if isinstance(v, _torch.Tensor) and v.is_floating_point():
        d = v.detach()
        moved = _torch.nextafter(d, _torch.full_like(d, _math.inf)) - d
        return v + _torch.where(_torch.isfinite(d) & (d != 0), moved, _torch.zeros_like(d))
    if isinstance(v, _np.ndarray) and v.dtype.kind == "f":
        up = _np.nextafter(v, _np.array(_np.inf, dtype=v.dtype))
        return _np.where(_np.isfinite(v) & (v != 0), up, v).astype(v.dtype)
    if type(v) is float:
        return _math.nextafter(v, _math.inf) if _math.isfinite(v) and v != 0 else v
    if type(v) in (tuple, list):
        return type(v)(_ulp_up(x) for x in v)
    return v


def _one_ulp_up(f):
    @_functools.wraps(f)
    def moved(*args, **kwargs):
        out = f(*args, **kwargs)
        return out if any(out is a for a in args) else _ulp_up(out)
    return moved


for _name, _value in list(globals().items()):
    if _name.startswith("_") or getattr(_value, "__module__", None) != __name__:
        continue
    if isinstance(_value, type) and issubclass(_value, _torch.nn.Module) and "forward" in vars(_value):
        _value.forward = _one_ulp_up(_value.forward)
    elif callable(_value) and not isinstance(_value, type):
        globals()[_name] = _one_ulp_up(_value)
'''

# Exercises whose results are computed (rounded), not moved or copied: a check of pure data
# movement (rotate_half, repeat_kv, a mask) may rightly ask for exact values.
COMPUTED = [  # reward_model left out: its pooling is a selection, compared exactly
    "foundations.softmax", "foundations.cross_entropy", "foundations.layernorm_backward",
    "foundations.mlp_backward", "attention.sdpa", "architectures.norms_ffn",
    "pretraining.clm_loss", "pretraining.schedule", "alignment.logprobs",
    "alignment.ppo", "alignment.dpo", "alignment.grpo", "peft.lora_linear", "peft.inject", "peft.merge",
    "quantization.fused_kernels",
]


def test_one_ulp_off_the_reference_loses_no_point(solutions_copy: Path, tmp_path: Path):
    for exercise_id in COMPUTED:
        track, name = exercise_id.split(".")
        module = solutions_copy / track / f"{name}.py"
        module.write_text(module.read_text() + ONE_ULP_UP)
    out = tmp_path / "results.json"
    proc = run_grade("--solutions", str(solutions_copy), *COMPUTED, "--report", f"json:{out}", "-q")
    data = load_results(out)
    lost = {
        f"{e['id']}.{c['name']}": c["message"]
        for t in data["tracks"] for e in t["exercises"] for c in e["checks"]
        if c["outcome"] not in ("passed", "skipped")  # skipped: GPU performance checks without CUDA
    }
    assert not lost, "\n".join(f"{k}: {v}" for k, v in lost.items())
    scores = exercise_scores(data)
    assert sorted(scores) == sorted(COMPUTED)
    assert all(score == max_score for score, max_score, _ in scores.values()), scores
    assert proc.returncode == 0, proc.stdout + proc.stderr
