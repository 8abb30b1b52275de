"""Inputs must not be modified: the snapshot and comparison (`grader.inputs`), the `inplace`
key, the solution server's and direct mode's checks, and the case of issue 11 graded both
ways (a relu_backward that zeroes the caller's grad_y)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import ROOT, load_results, run_grade

from grader import inputs
from grader.catalog import load_track
from grader.direct import DirectModule
from grader.errors import ConfigError, SolutionError
from grader.sandbox.protocol import Op
from grader.sandbox.server import SolutionServer


def changed_names(fn: Any, *args: Any, allowed: tuple[str, ...] = (), **kwargs: Any) -> list[str]:
    """The arguments `fn(*args, **kwargs)` modified that `allowed` does not cover, by name."""
    snap = inputs.snapshot(args, kwargs)
    fn(*args, **kwargs)
    return [name for name, _ in inputs.modified(snap, fn, args, kwargs, allowed)]


# --- the snapshot and the comparison ---------------------------------------------------------


def test_arguments_are_named_by_the_callees_parameters():
    def f(a, b, *rest, scale=1.0, **extra):
        a.add_(1)
        b[0] = 5
        for r in rest:
            r.mul_(2)
        scale.zero_()
        extra["out"].fill_(3)

    got = changed_names(f, torch.zeros(2), np.zeros(3), torch.ones(2), scale=torch.ones(1), out=torch.zeros(1))
    assert got == ["a", "b", "argument 2", "scale", "out"]


def test_a_call_that_does_not_fit_the_signature_names_arguments_by_position():
    def f(x):
        x.add_(1)

    t = torch.zeros(2)
    snap = inputs.snapshot((t, 3), {})
    t.add_(1)
    # f cannot take two arguments: bind_partial fails, so positions are used.
    assert [n for n, _ in inputs.modified(snap, f, (t, 3), {})] == ["argument 0"]


def test_one_level_inside_lists_tuples_and_dicts_is_watched():
    def f(params, pair, batch, deep):
        params[2].mul_(0)
        pair[1][0] = 7.0
        batch["ids"][0] = 9
        deep[0][0].add_(1)  # two levels down: not watched

    params = [torch.ones(2) for _ in range(3)]
    got = changed_names(f, params, (np.zeros(2), np.zeros(2)), {"ids": torch.zeros(3, dtype=torch.long)},
                        [[torch.zeros(1)]])
    assert got == ["params[2]", "pair[1]", "batch['ids']"]


def test_an_item_replaced_in_a_list_or_dict_argument_is_a_change():
    def f(params, batch):
        params[0] = params[0] * 2
        del batch["mask"]

    params, batch = [torch.ones(2)], {"mask": torch.ones(2), "ids": torch.zeros(2)}
    snap = inputs.snapshot((params, batch), {})
    f(params, batch)
    changed = inputs.modified(snap, f, (params, batch), {})
    assert [n for n, _ in changed] == ["params[0]", "batch['mask']"]
    assert "the list's item was replaced or removed" in changed[0][1].what
    assert params[0] is snap[0].value and "mask" in batch  # put back


def test_values_compare_bitwise_with_nan_equal_to_nan():
    nan_a = torch.tensor([float("nan"), 0.0])
    other_nan = torch.tensor([1.0, 0.0]).view(torch.int32)
    other_nan[0] = 0x7FC00001  # another NaN payload
    assert inputs.same_data(nan_a, other_nan.view(torch.float32))
    assert not inputs.same_data(torch.tensor([0.0]), torch.tensor([-0.0]))  # equal by ==, not bitwise
    assert inputs.same_data(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert not inputs.same_data(np.array([0.0]), np.array([-0.0]))
    assert inputs.same_data(torch.tensor([1 + 2j, complex("nan")]), torch.tensor([1 + 2j, complex("nan")]))

    def rewrite_nan(x):
        x[0] = float("nan")

    assert changed_names(rewrite_nan, torch.tensor([float("nan"), 1.0])) == []
    assert changed_names(rewrite_nan, torch.tensor([2.0, 1.0])) == ["x"]

    def negate_zero(x):
        x[0] = -0.0

    assert changed_names(negate_zero, np.zeros(2)) == ["x"]


def test_shape_and_dtype_changes_are_changes_and_grad_is_not():
    def reshape(x):
        x.unsqueeze_(0)

    def retype(a):
        a.dtype = np.int64  # the same bytes read as another dtype

    def set_grad(p):
        p.grad = torch.ones_like(p)

    snap = inputs.snapshot((torch.zeros(3),), {})
    reshape(snap[0].value)
    ((name, change),) = inputs.modified(snap, reshape, (snap[0].value,), {})
    assert name == "x" and change.what == "its shape changed from (3,) to (1, 3)"
    assert changed_names(retype, np.zeros(2)) == ["a"]
    assert changed_names(set_grad, torch.nn.Parameter(torch.zeros(2))) == []


def test_what_changed_is_put_back():
    def f(grad_y, x):
        grad_y[x <= 0] = 0
        return grad_y

    grad_y, x = np.arange(1.0, 7.0).reshape(2, 3), np.array([[1.0, -1.0, 0.0], [2.0, -3.0, 4.0]])
    before = grad_y.copy()
    with pytest.raises(inputs.InputModified):
        inputs.checked_call(f, (grad_y, x), {})
    assert np.array_equal(grad_y, before)


def test_the_allowed_list_names_parameters_for_every_function_or_for_one():
    def fill_(tensor, other):
        tensor.fill_(1)
        other.fill_(1)

    def f(tensor):
        tensor.fill_(1)

    assert changed_names(fill_, torch.zeros(2), torch.zeros(2), allowed=("tensor",)) == ["other"]
    assert changed_names(fill_, torch.zeros(2), torch.zeros(2), allowed=("fill_.tensor", "fill_.other")) == []
    assert changed_names(f, torch.zeros(2), allowed=("fill_.tensor",)) == ["tensor"]
    assert changed_names(f, tensor=torch.zeros(2), allowed=("tensor",)) == []


def test_arguments_over_the_size_limit_are_not_checked(monkeypatch: pytest.MonkeyPatch):
    def f(x):
        x.add_(1)

    monkeypatch.setattr("grader.sandbox.inputs.LIMIT_BYTES", 64)
    assert inputs.snapshot((torch.zeros(16),), {}) is not None  # 64 bytes: at the limit, checked
    assert inputs.snapshot((torch.zeros(16), torch.zeros(1)), {}) is None
    assert inputs.checked_call(f, (torch.zeros(17),), {}) is None  # no error: not checked
    assert changed_names(f, torch.zeros(8)) == ["x"]


def test_read_only_arrays_are_not_copied():
    frozen = np.zeros(4)
    frozen.flags.writeable = False
    assert inputs.snapshot((frozen,), {}) is None


def test_the_message_names_the_call_the_argument_and_what_to_do():
    def relu_backward(grad_y, x):
        grad_y[x <= 0] = 0
        return grad_y

    with pytest.raises(inputs.InputModified) as info:
        inputs.checked_call(relu_backward, (torch.randn(3), torch.tensor([1.0, -1.0, 0.0])), {})
    assert str(info.value) == (
        "relu_backward modified its argument `grad_y` in place (its values changed during the call); your code "
        "must not modify its inputs: work on a copy (`grad_y.clone()`) or use out-of-place operations "
        "(`torch.where(...)`, `x * mask`) instead of in-place ones (`x[mask] = 0`, `x.clamp_(...)`)")
    with pytest.raises(inputs.InputModified, match=re.escape("work on a copy (`grad_y.copy()`)")):
        inputs.checked_call(relu_backward, (np.ones(3), np.array([1.0, -1.0, 0.0])), {})


# --- the inplace key -------------------------------------------------------------------------


def write_track(root: Path, exercise_toml: str) -> Path:
    (root / "track.toml").write_text('id = "t"\ntitle = "T"\nexercises = ["e"]\n')
    (root / "e.toml").write_text(exercise_toml)
    return root / "track.toml"


def test_the_inplace_key_is_read_onto_the_exercise(tmp_path: Path):
    track = load_track(write_track(tmp_path, 'title = "E"\ninplace = ["tensor", "fill_.out", "Cache.update.keys"]\n'))
    assert track.exercises[0].inplace == ["tensor", "fill_.out", "Cache.update.keys"]
    assert load_track(write_track(tmp_path, 'title = "E"\n')).exercises[0].inplace == []


@pytest.mark.parametrize("value, words", [
    ('"tensor"', "key 'inplace' must be a list of strings"),
    ("[1]", "key 'inplace' must be a list of strings"),
    ('["grad y"]', "'inplace' entry 'grad y' is not an argument name"),
    ('["f..x"]', "'inplace' entry 'f..x' is not an argument name"),
])
def test_a_bad_inplace_key_names_the_file_and_the_form(tmp_path: Path, value: str, words: str):
    with pytest.raises(ConfigError, match=re.escape(words)) as info:
        load_track(write_track(tmp_path, f'title = "E"\ninplace = {value}\n'))
    assert str(tmp_path / "e.toml") in str(info.value)


# --- the solution server and direct mode -----------------------------------------------------


STUDENT = '''
import torch
from torch import where


def relu_backward(grad_y, x):
    grad_y[x <= 0] = 0
    return grad_y


def fill_(out):
    return out.fill_(1.0)


def leaves_it(x):
    return x * 2


def dropout(x, p=0.5, generator=None):
    return x.mul_(torch.rand(x.shape, generator=generator) > p)


class Layer(torch.nn.Module):
    def forward(self, x):
        return x.clamp_(min=0)
'''


@pytest.fixture
def student() -> types.ModuleType:
    module = types.ModuleType("exercises.t.student")
    exec(compile(STUDENT, "<student>", "exec"), module.__dict__)
    return module


def server_with(module: types.ModuleType, inplace: list[str]) -> SolutionServer:
    request = {"solutions": "/nonexistent", "display_root": "/", "track": "t", "name": "student", "inplace": inplace}
    server = SolutionServer(None, request)
    server.objects[0] = module
    return server


def test_the_server_fails_a_call_that_modifies_an_argument(student: types.ModuleType):
    server = server_with(student, ["fill_.out"])
    call = {"op": Op.CALL, "target": student, "path": ["relu_backward"], "args": (torch.ones(3), torch.zeros(3))}
    with pytest.raises(inputs.InputModified, match=r"^relu_backward modified its argument `grad_y` in place"):
        server.handle(call)
    assert server.handle({**call, "path": ["leaves_it"], "args": (torch.ones(3),)}).tolist() == [2.0, 2.0, 2.0]
    assert server.handle({**call, "path": ["fill_"], "args": (torch.zeros(2),)}).tolist() == [1.0, 1.0]  # allowed
    # A method of a remote object: a module's forward.
    layer = student.Layer()
    with pytest.raises(inputs.InputModified, match=r"^Layer\.forward modified its argument `x` in place"):
        server.handle({"op": Op.CALL, "target": layer, "path": [], "args": (torch.tensor([-1.0, 2.0]),)})


def test_the_server_checks_the_student_functions_a_probe_calls(student: types.ModuleType):
    server = server_with(student, [])
    program = [["const", torch.ones(2)], ["call", "relu_backward", [["reg", 0], ["val", -torch.ones(2)]]]]
    with pytest.raises(inputs.InputModified, match="relu_backward modified its argument `grad_y`"):
        server.handle({"op": Op.PROBE, "name": "run_program", "args": (student, program, [1])})
    with pytest.raises(inputs.InputModified, match="dropout modified its argument `x`"):
        server.handle({"op": Op.PROBE, "name": "seeded_runs", "args": (student.dropout, [torch.ones(20)], {})})
    # call_inplace reports what the call did to its arguments: judging it is expect.in_place's.
    got = server.handle({"op": Op.PROBE, "name": "call_inplace",
                         "args": (student.relu_backward, [torch.ones(2), -torch.ones(2)])})
    assert got["args"][0].tolist() == [0.0, 0.0]


def test_direct_mode_wraps_the_modules_own_functions_only(student: types.ModuleType):
    direct = DirectModule(student, ["fill_.out"])
    with pytest.raises(SolutionError) as info:
        direct.relu_backward(torch.ones(2), torch.zeros(2))
    assert info.value.exc_type == "InputModified" and info.value.call == "relu_backward"
    assert info.value.message.startswith("relu_backward modified its argument `grad_y` in place")
    assert direct.fill_(torch.zeros(1)).item() == 1.0
    # Classes, imported functions and other attributes are the module's own objects.
    assert direct.Layer is student.Layer and direct.where is torch.where and direct.torch is torch
    assert direct.relu_backward is direct.relu_backward and direct.relu_backward.__name__ == "relu_backward"
    assert direct.__name__ == "exercises.t.student" and direct.__dict__ is student.__dict__
    assert "relu_backward" in dir(direct)
    layer = direct.Layer()
    assert layer(torch.tensor([-1.0])).item() == 0.0  # a method is not watched in direct mode (the limit)


# --- issue 11: relu_backward overwrites the caller's grad_y -------------------------------------


IN_PLACE_RELU = "    grad_y[x <= 0] = 0.0\n    return grad_y"


def relu_in_place(solutions: Path) -> Path:
    path = solutions / "foundations" / "mlp_backward.py"
    source = path.read_text()
    assert source.count("    return grad_y * (x > 0)") == 1
    path.write_text(source.replace("    return grad_y * (x > 0)", IN_PLACE_RELU))
    return solutions


def assert_relu_check_fails_naming_grad_y(checks: dict[str, dict[str, Any]]) -> None:
    relu = checks["relu_matches_autograd_including_zero"]
    assert relu["outcome"] == "failed", relu
    assert relu["message"].startswith("relu_backward modified its argument `grad_y` in place"), relu["message"]
    assert "InputModified" not in relu["message"]
    assert "work on a copy (`grad_y.copy()`)" in relu["message"]
    others = {name: c["outcome"] for name, c in checks.items() if name != "relu_matches_autograd_including_zero"}
    assert set(others.values()) == {"passed"}, others


def test_a_relu_backward_that_overwrites_grad_y_fails_when_graded_isolated(solutions_copy: Path, tmp_path: Path):
    relu_in_place(solutions_copy)
    out = tmp_path / "results.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.mlp_backward", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (exercise,) = [e for t in load_results(out)["tracks"] for e in t["exercises"]]
    assert_relu_check_fails_naming_grad_y({c["name"]: c for c in exercise["checks"]})


DIRECT = """
import json, sys
from pathlib import Path
from grader.config import load_config
from grader.plugins import GradePlugins
from grader.runner import RunOptions, run_exercises

catalog = GradePlugins(load_config(Path.cwd())).catalog()
exercise = catalog.exercise("foundations.mlp_backward")
result = run_exercises(catalog, [(exercise, None)], RunOptions(mode="direct", solutions=Path(sys.argv[1])))
print(json.dumps({c.name: {"outcome": c.outcome, "message": c.message} for c in result[exercise.id].checks}))
"""


def test_a_relu_backward_that_overwrites_grad_y_fails_when_graded_direct(solutions_copy: Path):
    relu_in_place(solutions_copy)
    proc = subprocess.run([sys.executable, "-c", DIRECT, str(solutions_copy)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert_relu_check_fails_naming_grad_y(json.loads(proc.stdout.splitlines()[-1]))
