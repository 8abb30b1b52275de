"""An exercise's forbidden library ops fail the check with the op named, by whichever door.

Each section runs `grade` once over several exercises' cheating solutions (a run costs
seconds); its tests read that one report.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, run_grade


def grade_checks(tmp: Path, files: dict[str, str], selectors: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Grade copies of the references with `files` ("track/name.py": source) replaced: {exercise: {check: result}}."""
    solutions = tmp / "solutions"
    shutil.copytree(ROOT / "reference", solutions, ignore=shutil.ignore_patterns("__pycache__"))
    for path, source in files.items():
        (solutions / path).write_text(source)
    out = tmp / "r.json"
    proc = run_grade("--solutions", str(solutions), *selectors, "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    return {
        e["id"]: {c["name"]: c for c in e["checks"]}
        for t in json.loads(out.read_text())["tracks"]
        for e in t["exercises"]
    }


def doors_named(checks: dict[str, dict[str, Any]]) -> set[str]:
    return {m.group(1) for c in checks.values() for m in re.finditer(r"\(called as ([\w.]+)\)", c["message"])}


# --- every door to the op -------------------------------------------------------------

# Each call takes the next door, and each check fails at its first call: the checks
# between them walk every door (the cycles are no longer than the exercises' checks).
SOFTMAX_DOORS = '''\
import torch
import torch.nn.functional as F

calls = 0


def door(x, dim):
    global calls
    calls += 1
    x = torch.as_tensor(x)
    n = calls % 7
    if n == 1:
        return torch.softmax(x, dim)
    if n == 2:
        return F.softmax(x, dim)
    if n == 3:
        return x.softmax(dim)
    if n == 4:
        return torch._C._VariableFunctions.softmax(x, dim)
    if n == 5:
        return torch.ops.aten._softmax.default(x, dim, False)
    if n == 6:
        return torch.ops.aten._log_softmax(x, dim, False)
    return torch.special.logsumexp(x, dim)


def softmax(x, dim=-1):
    return door(x, dim)


def log_softmax(x, dim=-1):
    return door(x, dim)


def logsumexp(x, dim=-1, keepdim=False):
    return door(x, dim)
'''

SDPA_DOORS = '''\
import torch
import torch.nn.functional as F

calls = 0


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None):
    global calls
    calls += 1
    n = calls % 5
    if n == 1:
        return F.scaled_dot_product_attention(q, k, v)
    if n == 2:
        return torch._C._nn.scaled_dot_product_attention(q, k, v)
    if n == 3:
        return torch.ops.aten.scaled_dot_product_attention(q, k, v)
    if n == 4:
        return torch.ops.aten._scaled_dot_product_attention_math(q, k, v)[0]
    return torch._scaled_dot_product_flash_attention_for_cpu(q, k, v)[0]
'''


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, Any]]]:
    return grade_checks(
        tmp_path_factory.mktemp("doors"),
        {"foundations/softmax.py": SOFTMAX_DOORS, "attention/sdpa.py": SDPA_DOORS},
        ["foundations.softmax", "attention.sdpa"],
    )


def test_every_door_to_softmax_fails_with_the_op_named(doors):
    checks = doors["foundations.softmax"]
    assert checks and all(c["outcome"] == "failed" for c in checks.values()), checks
    for c in checks.values():
        assert re.search(r"foundations\.softmax may not use (softmax|log_softmax|logsumexp) \(called as ",
                         c["message"]), c["message"]
        assert "implement it yourself" in c["message"]
    assert doors_named(checks) == {
        "torch.softmax",
        "torch.nn.functional.softmax",
        "torch.Tensor.softmax",
        "torch._C._VariableFunctions.softmax",
        "torch.ops.aten._softmax.default",
        "torch.ops.aten._log_softmax",
        "torch.special.logsumexp",
    }
    messages = " ".join(c["message"] for c in checks.values())
    assert "may not use log_softmax (called as torch.ops.aten._log_softmax)" in messages
    assert "may not use logsumexp (called as torch.special.logsumexp)" in messages


def test_every_door_to_sdpa_fails_with_the_op_named(doors):
    checks = doors["attention.sdpa"]
    assert checks and all(c["outcome"] == "failed" for c in checks.values()), checks
    for c in checks.values():
        assert "attention.sdpa may not use scaled_dot_product_attention (called as " in c["message"], c["message"]
    assert doors_named(checks) == {
        "torch.nn.functional.scaled_dot_product_attention",
        "torch._C._nn.scaled_dot_product_attention",
        "torch.ops.aten.scaled_dot_product_attention",
        "torch.ops.aten._scaled_dot_product_attention_math",
        "torch._scaled_dot_product_flash_attention_for_cpu",
    }
    # the gradient probe calls the student's function: it gets no exemption there either
    assert checks["gradients_match_torch"]["outcome"] == "failed"


# --- no exemption borrowed from the probes --------------------------------------------

SOFTMAX_BORROWS = '''\
import sys

import torch

import grader.sandbox.probes
from grader.sandbox import guards


def softmax(x, dim=-1):
    x = torch.as_tensor(x)
    return grader.sandbox.probes.call_inplace(torch.softmax, [x, dim])["result"]


def log_softmax(x, dim=-1):
    dispatch = sys.modules["grader.sandbox.server"].dispatch_probe
    return dispatch("call_inplace", [torch.log_softmax, [torch.as_tensor(x), dim]], {})["result"]


def logsumexp(x, dim=-1, keepdim=False):
    with guards.trusted():
        return torch.logsumexp(torch.as_tensor(x), dim, keepdim=keepdim)
'''

# The forward is the reference's (its check still passes); the backward borrows autograd.
LAYERNORM_BORROWS = '''

import sys

import grader.sandbox.probes

calls = 0


def layernorm_forward(x, weight, bias, eps=1e-5):
    y, _ = _forward(x, weight, bias, eps)
    return y, (x, weight, bias, eps)


def layernorm_backward(grad_y, cache):
    global calls
    calls += 1
    x, weight, bias, eps = cache
    if calls % 3 == 1:  # autograd itself
        x = x.detach().requires_grad_(True)
        _forward(x, weight, bias, eps)[0].backward(grad_y)
        return x.grad, weight, bias
    args = [lambda a, w, b: _forward(a, w, b, eps)[0], [x, weight, bias], grad_y]
    if calls % 3 == 2:  # the gradient probe's backward, called from here
        got = grader.sandbox.probes.grad(*args)
    else:  # the same through the server's dispatcher
        got = sys.modules["grader.sandbox.server"].dispatch_probe("grad", args, {})
    return tuple(got["input_grads"])
'''

SDPA_ALIAS = '''\
import torch.nn.functional as F

scaled_dot_product_attention = F.scaled_dot_product_attention
'''

OPTIMIZER_WRAPS = '''\
import torch


class _Wrapped(torch.optim.Optimizer):
    def __init__(self, params, **kw):
        self._params, self._kw, self._inner = list(params), kw, None
        super().__init__(self._params, kw)

    def step(self, closure=None):
        if self._inner is None:
            self._inner = self.library(self._params, **self._kw)
        return self._inner.step(closure)


class SGD(_Wrapped):
    library = torch.optim.SGD

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


class AdamW(_Wrapped):
    library = torch.optim.AdamW

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
'''


@pytest.fixture(scope="module")
def borrows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, Any]]]:
    layernorm = (ROOT / "reference" / "foundations" / "layernorm_backward.py").read_text()
    layernorm = layernorm.replace("def layernorm_forward(", "def _forward(", 1) + LAYERNORM_BORROWS
    return grade_checks(
        tmp_path_factory.mktemp("borrows"),
        {
            "foundations/softmax.py": SOFTMAX_BORROWS,
            "foundations/layernorm_backward.py": layernorm,
            "attention/sdpa.py": SDPA_ALIAS,
            "foundations/optimizers.py": OPTIMIZER_WRAPS,
        },
        ["foundations.softmax", "foundations.layernorm_backward", "attention.sdpa", "foundations.optimizers.sgd_momentum"],
    )


def test_student_code_calling_a_probe_or_trusted_gets_no_exemption(borrows):
    checks = borrows["foundations.softmax"]
    assert checks and all(c["outcome"] == "failed" for c in checks.values()), checks
    messages = {name: c["message"] for name, c in checks.items()}
    assert "may not use softmax (called as torch.softmax)" in messages["softmax_matches_torch"]
    assert "may not use log_softmax (called as torch.log_softmax)" in messages["log_softmax_matches_torch"]
    assert "may not use logsumexp (called as torch.logsumexp)" in messages["logsumexp_matches_torch"]


def test_autograd_is_forbidden_even_through_the_gradient_probe(borrows):
    checks = borrows["foundations.layernorm_backward"]
    forward = checks["forward_matches_f_layer_norm"]
    assert forward["outcome"] == "passed", forward["message"]
    backward = [c for c in checks.values() if c["name"] != "forward_matches_f_layer_norm"]
    assert len(backward) >= 3, checks  # each way to autograd, at least once
    for c in backward:
        assert c["outcome"] == "failed", c
        assert "foundations.layernorm_backward may not use autograd (called as torch.Tensor.backward)" in c["message"]


def test_a_library_op_exported_as_the_solution_gets_no_exemption(borrows):
    checks = borrows["attention.sdpa"]
    assert checks and all(c["outcome"] == "failed" for c in checks.values()), checks
    for c in checks.values():
        assert ("attention.sdpa may not use scaled_dot_product_attention "
                "(called as torch.nn.functional.scaled_dot_product_attention)") in c["message"], c["message"]


def test_student_code_called_from_a_probe_is_still_guarded(borrows):
    """Wrapping the library optimizer and stepping it only inside the judge's probe is caught."""
    [check] = borrows["foundations.optimizers"].values()
    assert check["outcome"] == "failed"
    assert "may not use torch.optim.SGD" in check["message"]


def test_the_gradient_probe_keeps_its_own_backward_where_autograd_is_forbidden(tmp_path: Path):
    """In a solution process that forbids autograd, the judge's gradient probe still runs backward."""
    student = tmp_path / "student.py"
    student.write_text(
        "import sys\n"
        "def borrow(fn, x):\n"
        "    return sys.modules['grader.sandbox.server'].dispatch_probe('grad', [fn, [x]], {})\n"
    )
    script = f"""
import sys, torch
from grader.sandbox import guards, server
guards.install(["autograd"], "demo.exercise", lambda f: f == {str(student)!r})
sys.path.insert(0, {str(tmp_path)!r})
import student
got = server.dispatch_probe("grad", [torch.sin, [torch.zeros(3)]], {{}})
assert torch.equal(got["input_grads"][0], torch.ones(3)), got
try:
    student.borrow(torch.sin, torch.zeros(3))
except guards.ForbiddenOperation as e:
    print(e)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "demo.exercise may not use autograd (called as torch.Tensor.backward); "
        "implement it yourself with basic operations"
    )


# --- the plugins' lists ----------------------------------------------------------------


def test_every_bare_forbidden_name_is_a_torch_op():
    """A misspelt op family would forbid nothing."""
    from grader.sandbox import guards
    from grader.tomlload import read_toml

    unknown = []
    for path in sorted((ROOT / "plugins").glob("*/*.toml")):
        for name in read_toml(path).get("forbidden", []):
            if "." not in name and not guards.known_op(name):
                unknown.append(f"{path.relative_to(ROOT)}: {name}")
    assert not unknown


# --- a forbidden library function reached by another name --------------------------------

ROPE_REGISTRY = '''\
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS


def _config(head_dim, max_pos, params):
    return LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, num_key_value_heads=2, head_dim=head_dim,
                       max_position_embeddings=max_pos, rope_parameters=params)


def linear_inv_freq(head_dim, base, factor):
    config = _config(head_dim, 512, {"rope_type": "linear", "rope_theta": base, "factor": factor})
    return ROPE_INIT_FUNCTIONS["linear"](config)[0]
'''


def test_a_forbidden_function_reached_through_a_registry_is_refused(tmp_path: Path):
    """rope_scaling forbids transformers' `_compute_linear_scaling_rope_parameters`; its
    registry `ROPE_INIT_FUNCTIONS["linear"]` holds the same function and is refused too."""
    reference = (ROOT / "reference" / "frontier" / "rope_scaling.py").read_text()
    source = reference.replace("def linear_inv_freq(", "def _own_linear_inv_freq(", 1) + "\n\n" + ROPE_REGISTRY
    checks = grade_checks(tmp_path, {"frontier/rope_scaling.py": source}, ["frontier.rope_scaling.linear_matches_transformers"])
    check = checks["frontier.rope_scaling"]["linear_matches_transformers"]
    assert check["outcome"] == "failed", check
    assert "may not use transformers.modeling_rope_utils._compute_linear_scaling_rope_parameters" in check["message"]
