"""Randomness through a `generator` argument: `expect.seeded` and its probe, and the rule that
every public function of a reference taking a `generator` is checked with it."""

from __future__ import annotations

import ast
import random
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import ROOT

from grader import probes
from grader.checks import Expect
from grader.compare import CheckFailure
from grader.config import load_config
from grader.plugins import GradePlugins

# Public functions that take a generator without drawing from it: they are exempt, and why.
NOT_DRAWING = {
    "pretraining.checkpoint.load_checkpoint": "restores the generator's state (checkpoint_run checks it)",
    "pretraining.checkpoint.save_checkpoint": "stores the generator's state in the checkpoint (checkpoint_run checks it)",
}


def _takes_generator(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    a = fn.args
    return any(p.arg == "generator" for p in [*a.posonlyargs, *a.args, *a.kwonlyargs])


def public_functions_with_a_generator(path: Path) -> list[str]:
    """Top-level public functions, and public methods of public classes, with a parameter
    named `generator` (`Class.method` for a method)."""
    found = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            if _takes_generator(node):
                found.append(node.name)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            found += [f"{node.name}.{m.name}" for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                      and (not m.name.startswith("_") or m.name in ("__init__", "__call__")) and _takes_generator(m)]
    return found


def seeded_names(path: Path) -> set[str]:
    """The names each `expect.seeded(...)` call of a check module calls: attributes read in its
    first argument (`lambda s: s.xavier_uniform_`) and strings there (`getattr(s, "f")`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "seeded" \
                and node.args:
            for inner in ast.walk(node.args[0]):
                if isinstance(inner, ast.Attribute):
                    names.add(inner.attr)
                elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    names.add(inner.value)
    return names


def test_every_public_function_taking_a_generator_is_checked_with_expect_seeded():
    catalog = GradePlugins(load_config(ROOT)).catalog()
    missing, seen = [], set()
    for exercise in catalog.exercises:
        if not exercise.reference.is_file():
            continue
        functions = public_functions_with_a_generator(exercise.reference)
        called = set().union(*(seeded_names(c) for c in exercise.checks if c.is_file()))
        for fn in functions:
            key = f"{exercise.id}.{fn}"
            seen.add(key)
            if key not in NOT_DRAWING and fn.rpartition(".")[2] not in called:
                missing.append(f"{key} (checks: {', '.join(c.name for c in exercise.checks)})")
    assert not missing, ("these public functions take a `generator` but no check calls them through expect.seeded,"
                         " which proves they draw from it alone: " + "; ".join(missing))
    assert set(NOT_DRAWING) <= seen, f"stale exemptions: {sorted(set(NOT_DRAWING) - seen)}"


def test_the_scan_finds_functions_and_methods_and_the_seeded_calls(tmp_path: Path):
    ref = tmp_path / "ref.py"
    ref.write_text("def init_(tensor, generator=None): ...\ndef _private(generator): ...\n"
                   "class Sampler:\n    def draw(self, n, *, generator): ...\n    def other(self): ...\n")
    assert public_functions_with_a_generator(ref) == ["init_", "Sampler.draw"]
    check = tmp_path / "check.py"
    check.write_text("def test(expect):\n    expect.seeded(lambda s: s.init_, [1], name='x')\n"
                     "    expect.seeded(lambda s: getattr(s, 'draw'), [], name='y')\n    expect(lambda s: s.other)\n")
    assert seeded_names(check) == {"init_", "draw"}


# --- expect.seeded and its probe -------------------------------------------------------------


def good_init(tensor, generator=None):
    return tensor.uniform_(-1.0, 1.0, generator=generator)


def global_init(tensor, generator=None):
    return tensor.uniform_(-1.0, 1.0)


def reseeding_init(tensor, generator=None):
    torch.manual_seed(0)
    return tensor.uniform_(-1.0, 1.0)


def numpy_init(tensor, generator=None):
    return tensor.copy_(torch.from_numpy(np.random.uniform(-1.0, 1.0, tuple(tensor.shape))))


def python_random_init(tensor, generator=None):
    random.random()
    return tensor.uniform_(-1.0, 1.0, generator=generator)


def constant_init(tensor, generator=None):
    return tensor.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(0))


def sampler(n, *, rng=None):
    return torch.randint(0, 10, (n,), generator=rng)


def namespace(**functions: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**functions)


def test_seeded_runs_copies_the_arguments_and_puts_the_global_states_back():
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    w = torch.zeros(3)
    got = probes.seeded_runs(reseeding_init, [w], {}, "generator", [1, 1, 2])
    assert torch.equal(w, torch.zeros(3))  # the caller's tensor was copied, not filled
    assert got["changed"] == {"torch": True, "numpy": False, "random": False}
    assert torch.equal(got["runs"][0]["args"][0], got["runs"][0]["result"])
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    assert probes.seeded_runs(numpy_init, [w], {}, "generator", [1])["changed"]["numpy"]
    assert probes.seeded_runs(python_random_init, [w], {}, "generator", [1])["changed"]["random"]


def test_a_function_drawing_from_its_generator_alone_passes():
    expect = Expect(namespace(init=good_init, sampler=sampler), dict)
    out = expect.seeded(lambda s: s.init, [torch.zeros(4, 5)], name="init(w, generator=g)")
    assert out.shape == (4, 5) and bool((out != 0).all())
    expect.seeded(lambda s: s.sampler, [50], generator="rng", name="sampler(50, rng=g)")


@pytest.mark.parametrize("fn, words", [
    (global_init, ["two calls with generators seeded alike", "returned different tensors",
                   "(torch's global RNG?)", "torch's global random state changed during the call"]),
    (reseeding_init, ["torch's global random state changed", "never reseed the global generator (torch.manual_seed)",
                      "calls with generators seeded differently", "returned identical tensors"]),
    (numpy_init, ["seeded alike", "numpy's global random state changed during the call"]),
    (python_random_init, ["Python's `random` state changed during the call: draw only from the `generator` it is given"]),
    (constant_init, ["calls with generators seeded differently (20240611 and 1000003) returned identical tensors"]),
])
def test_a_function_drawing_from_anything_else_fails_saying_what_was_seen(fn: Any, words: list[str]):
    expect = Expect(namespace(init=fn), dict)
    with pytest.raises(CheckFailure) as info:
        expect.seeded(lambda s: s.init, [torch.zeros(4, 5)], name="init(w, generator=g)")
    message = str(info.value)
    assert message.startswith("init(w, generator=g): ")
    for w in words:
        assert w in message, message


def own_generator_mask(ids, seed=None):
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(ids.shape, generator=g) < 0.5, 0, ids)


def reseeding_mask(ids, seed=None):
    torch.manual_seed(seed)  # the same draws as a generator of its own, but the global state moves
    return torch.where(torch.rand(ids.shape) < 0.5, 0, ids)


def test_a_function_taking_a_seed_makes_its_own_generator():
    ids = torch.arange(1, 41)
    Expect(namespace(mask=own_generator_mask), dict).seeded(lambda s: s.mask, [ids], generator="seed", pass_seed=True,
                                                            name="mask(ids, seed=s)")
    with pytest.raises(CheckFailure) as info:
        Expect(namespace(mask=reseeding_mask), dict).seeded(lambda s: s.mask, [ids], generator="seed", pass_seed=True,
                                                            name="mask(ids, seed=s)")
    assert str(info.value) == (
        "mask(ids, seed=s): torch's global random state changed during the call: draw only from a generator of its"
        " own, g = torch.Generator().manual_seed(seed) (torch.rand(..., generator=g)) and never reseed the global"
        " generator (torch.manual_seed)")


def test_a_known_mistake_breaking_the_same_rules_is_named():
    mutants = {"uses_global": ("draws from the global generator", namespace(init=global_init)),
               "uses_numpy": ("draws from numpy", namespace(init=numpy_init)),
               "fine": ("nothing wrong here", namespace(init=good_init))}
    expect = Expect(namespace(init=global_init), lambda: mutants)
    with pytest.raises(CheckFailure) as info:
        expect.seeded(lambda s: s.init, [torch.zeros(3)], name="init")
    assert info.value.mistake == "uses_global"
    assert "draws from the global generator" in str(info.value)
