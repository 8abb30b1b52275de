"""Checks that need an optional module (`@pytest.mark.needs`), and Triton kernels graded on
CPU: without CUDA the engine runs them in triton's interpreter, in the sandbox as in the
judge, and a known mistake's kernel (built from source text) is judged like any other."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import one_exercise_track, run_grade

KERNEL = '''
import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None

if triton is not None:
    @triton.jit
    def _row_sum_kernel(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        tl.store(out_ptr + row, tl.sum(tl.load(x_ptr + row * n_cols + offs, mask=mask, other=0.0)))


def row_sum(x):
    return x.sum(-1)


def extra():
    return 1


def row_sum_triton(x):
    rows, cols = x.shape
    out = torch.empty(rows, dtype=x.dtype)
    _row_sum_kernel[(rows,)](x.contiguous(), out, cols, BLOCK=triton.next_power_of_2(cols))
    return out
'''

CHECKS = '''
import pytest
import torch


def test_row_sum(expect, rng):
    x = rng.randn(3, 5)
    expect(lambda s: s.row_sum(x), truth=x.sum(-1), name="row_sum", atol=1e-6)


@pytest.mark.needs("no_such_module_for_llm_grader")
@pytest.mark.points(3)
def test_needs_a_missing_module(solution):
    assert solution.extra() == 1


@pytest.mark.needs("triton")
def test_kernel(expect, rng):
    x = rng.randn(4, 37)  # rows not a power of two: an extra element read is the next row's first
    expect(lambda s: s.row_sum_triton(x), truth=x.sum(-1), name="row_sum_triton", atol=1e-5)
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    toml = textwrap.dedent('''
        title = "Row sums, in torch and in Triton"
        hints = ["multiply", "by two"]
        [[mutants]]
        name = "mask_off_by_one"
        misconception = "the mask lets each row read one element past its end"
        replace = "mask = offs < n_cols"
        with = "mask = offs <= n_cols"
        [[mutants]]
        name = "extra_two"
        misconception = "only a check that cannot run here would see this"
        replace = "    return 1"
        with = "    return 2"
        [[mutants]]
        name = "mean"
        misconception = "takes the mean, not the sum"
        replace = "    return x.sum(-1)"
        with = "    return x.mean(-1)"
    ''')
    stub = ("def row_sum(x):\n    raise NotImplementedError\n\n\ndef row_sum_triton(x):\n    raise NotImplementedError\n"
            "\n\ndef extra():\n    raise NotImplementedError\n")
    return one_exercise_track(tmp_path, "kern", "row_sum", toml=toml, reference=KERNEL, stub=stub, checks=CHECKS,
                              solution=KERNEL)


def grade_in(project: Path, *args: str):
    # As from a user's shell: the engine, not the environment, sets TRITON_INTERPRET (this
    # test process has it from the judge's pytest plugin).
    return run_grade(*args, cwd=project, env={"PYTHONPATH": str(project), "GRADE_DISABLE_PLUGIN_AUTOLOAD": "1",
                                              "TRITON_INTERPRET": None})


def checks_of(report: str) -> dict[str, dict]:
    exercise = json.loads(report)["tracks"][0]["exercises"][0]
    return {c["name"]: c for c in exercise["checks"]} | {"": exercise}


def test_a_check_needing_a_missing_module_is_skipped_with_the_reason_and_left_out_of_the_maximum(project: Path):
    proc = grade_in(project, "kern", "--report", "json:-")
    assert proc.returncode == 0, proc.stderr
    checks = checks_of(proc.stdout)
    skipped = checks["needs_a_missing_module"]
    assert skipped["outcome"] == "skipped"
    assert "needs no_such_module_for_llm_grader, not installed here" in skipped["message"]
    assert "pip install no_such_module_for_llm_grader" in skipped["message"]
    assert checks[""]["skipped_points"] == 3 and checks[""]["max_score"] == checks[""]["score"]
    terminal = grade_in(project, "kern")
    assert "3 points were skipped and left out of the maximum: needs no_such_module_for_llm_grader" in \
        " ".join(terminal.stdout.split())


needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


@needs_triton
def test_a_triton_kernel_is_graded_in_the_sandbox_on_cpu(project: Path):
    checks = checks_of(grade_in(project, "kern", "--report", "json:-").stdout)
    assert checks["kernel"]["outcome"] == "passed", checks["kernel"]["message"]
    assert checks["row_sum"]["outcome"] == "passed"


@needs_triton
def test_a_known_mistakes_kernel_runs_from_source_and_its_off_by_one_mask_fails(project: Path):
    # The mutant's module is built from text: @triton.jit must still read its source.
    proc = grade_in(project, "check", "kern.row_sum")
    text = " ".join(proc.stdout.split())
    # The toy exercise lacks a hidden check and a third mistake; what matters here is the kernel.
    assert "mutant mask_off_by_one: caught by kernel (diagnosed by name)" in text, proc.stdout + proc.stderr
    assert "reference: 2/2 over 2 checks" in text, "the check needing a missing module is left out"
    # A mistake only a skipped check could catch is not proven here, and not called uncaught.
    assert "mutant extra_two: not proven here: it passes every check that ran, and some were skipped (needs " \
           "no_such_module_for_llm_grader" in text
    assert "extra_two' passes every check" not in text


@needs_triton
def test_a_known_mistakes_kernel_compiles_from_source_text():
    # On a GPU, @triton.jit parses the kernel's source, which a known mistake (a module built
    # from text) has only through linecache; triton refuses a function it cannot read.
    program = textwrap.dedent('''
        from grader.imports import module_from_source
        source = "import triton\\n@triton.jit\\ndef kernel(x):\\n    pass\\n"
        module = module_from_source("grade_mutants.kern.row_sum.m", source, "<mutant m>")
        print(type(module.kernel).__name__)
    ''')
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "JITFunction", proc.stderr[-2000:]


def _library_track(tmp_path: Path, check_source: str) -> Path:
    # A track named like an installed library its checks import (peft's track imports peft).
    # order 0: the first track, whose folder's parent pytest would take as its rootdir and so
    # name this check module junitparser.check_one
    return one_exercise_track(tmp_path, "junitparser", "one", toml='title = "One"\nhints = ["a", "b"]\n',
                              reference="def one():\n    return 1\n", stub="def one():\n    raise NotImplementedError\n",
                              checks=check_source, solution="def one():\n    return 1\n", order=0)


def test_a_track_named_like_a_library_does_not_hide_the_library_from_its_checks(tmp_path: Path):
    project = _library_track(tmp_path, textwrap.dedent('''
        from junitparser import JUnitXml  # the library, not the track's folder


        def test_one(solution):
            assert JUnitXml is not None and solution.one() == 1
    '''))
    proc = grade_in(project, "junitparser", "--report", "json:-")
    checks = checks_of(proc.stdout)
    assert checks["one"]["outcome"] == "passed", proc.stdout[-3000:] + proc.stderr[-3000:]


def test_a_check_module_that_cannot_be_imported_is_an_error_not_a_silent_zero(tmp_path: Path):
    project = _library_track(tmp_path, "from no_such_module_for_llm_grader import x\n\n\ndef test_one(solution):\n"
                                       "    pass\n")
    proc = grade_in(project, "junitparser", "--report", "json:-")
    exercise = json.loads(proc.stdout)["tracks"][0]["exercises"][0]
    assert exercise["status"] == "error", exercise
    assert "could not be loaded" in exercise["error"] and "no_such_module_for_llm_grader" in exercise["error"]
    # An error after the import, while pytest collects the module's checks, too.
    (project / "junitparser" / "check_one.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('y', [1])\ndef test_one(solution):\n    pass\n")
    proc = grade_in(project, "junitparser", "--report", "json:-")
    exercise = json.loads(proc.stdout)["tracks"][0]["exercises"][0]
    assert exercise["status"] == "error" and "uses no argument 'y'" in exercise["error"], exercise
