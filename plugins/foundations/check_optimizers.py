"""Checks for foundations.optimizers: 200-step trajectories against torch.optim.SGD / AdamW."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from grader import probes
from grader.compare import check

SHAPES = ((5,), (3, 4), (7,))  # small, non-power-of-two: 200 steps stay fast
STEPS = 200
# No feedback from parameters to gradients (they are fixed data), so rounding differences only
# add up linearly over the 200 steps; float32 round-off stays far below this.
TOL = {"atol": 1e-5, "rtol": 1e-5}
TORCH = {"SGD": torch.optim.SGD, "AdamW": torch.optim.AdamW}


def _params(rng: Any) -> list[torch.Tensor]:
    return [rng.randn(*s) for s in SHAPES]


def _grads(
    rng: Any, scale: float = 1.0, missing: Callable[[int, int], bool] | None = None
) -> list[list[torch.Tensor | None]]:
    """grads[t][i]: parameter i's gradient before step t+1, None where `missing(t, i)`."""
    out = []
    for t in range(STEPS):
        row = [rng.randn(*s, scale=scale) for s in SHAPES]
        out.append([None if missing is not None and missing(t, i) else g for i, g in enumerate(row)])
    return out


def _describe(cls: str, kwargs: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"{cls}({args})"


def _check_trajectory(
    expect: Any, cls: str, params: list[Any], grads: list[Any], kwargs: dict[str, Any], what: str = "",
    tol: dict[str, float] = TOL,
) -> None:
    expect(lambda s: probes.optimizer_trajectory(getattr(s, cls), params, grads, kwargs),
           truth=probes.optimizer_trajectory(TORCH[cls], params, grads, kwargs), **tol,
           name=f"parameters after each of {STEPS} steps of {_describe(cls, kwargs)}{what}"
                " (item [t][i] is parameter i after step t+1)")


def test_sgd_without_momentum(expect, rng):
    params, grads = _params(rng), _grads(rng)
    for kwargs in ({"lr": 0.1}, {"lr": 0.05, "weight_decay": 0.2}):
        _check_trajectory(expect, "SGD", params, grads, kwargs)


@pytest.mark.points(2)
def test_sgd_momentum(expect, rng):
    params, grads = _params(rng), _grads(rng)
    for kwargs in ({"lr": 0.02, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.8, "weight_decay": 0.1}):
        _check_trajectory(expect, "SGD", params, grads, kwargs)


@pytest.mark.points(2)
def test_sgd_nesterov(expect, rng):
    params, grads = _params(rng), _grads(rng)
    for kwargs in (
        {"lr": 0.02, "momentum": 0.9, "nesterov": True},
        {"lr": 0.01, "momentum": 0.7, "weight_decay": 0.05, "nesterov": True},
    ):
        _check_trajectory(expect, "SGD", params, grads, kwargs)


@pytest.mark.points(2)
def test_adamw_defaults(expect, rng):
    params, grads = _params(rng), _grads(rng)
    _check_trajectory(expect, "AdamW", params, grads, {})
    _check_trajectory(expect, "AdamW", params, grads, {"lr": 0.01, "weight_decay": 0.0})


@pytest.mark.points(2)
def test_adamw_strong_decoupled_decay(expect, rng):
    # lr * wd large enough that where the decay goes (gradient, before or after the update,
    # scaled by lr or not) changes the trajectory far beyond round-off.
    params, grads = _params(rng), _grads(rng)
    kwargs = {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.5}
    _check_trajectory(expect, "AdamW", params, grads, kwargs)


def test_adamw_tiny_gradients(expect, rng):
    # sqrt(v_hat) is about the gradient scale, comparable with eps: where eps goes matters.
    params, grads = _params(rng), _grads(rng, scale=1e-7)
    _check_trajectory(expect, "AdamW", params, grads, {"lr": 0.01}, what=" with gradients of size ~1e-7")
    _check_trajectory(expect, "AdamW", params, grads, {"lr": 0.01, "eps": 1e-6},
                      what=" with gradients of size ~1e-7")


@pytest.mark.points(2)
def test_missing_gradients_are_skipped(expect, rng):
    # Parameter 1 has no gradient on the first 5 steps and on every third step after that;
    # parameter 2 never has one and must come out exactly as it went in.
    params = _params(rng)
    grads = _grads(rng, missing=lambda t, i: i == 2 or (i == 1 and (t < 5 or t % 3 == 0)))
    what = " where some .grad are None"
    _check_trajectory(expect, "SGD", params, grads, {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.1},
                      what=what)
    _check_trajectory(expect, "AdamW", params, grads, {"lr": 0.02, "weight_decay": 0.1}, what=what)


def _groups_program(
    cls: str, params: list[torch.Tensor], groups: list[tuple[list[int], dict[str, Any]]],
    kwargs: dict[str, Any], grads: list[list[torch.Tensor]],
) -> tuple[list[Any], list[Any]]:
    """A run_program that builds `cls` over param groups, sets .grad and steps STEPS times.

    Fresh copies every time: in direct mode the program's tensors are used as they are.
    """
    group_data = [{"params": [params[i].clone() for i in idx], **over} for idx, over in groups]
    program: list[Any] = [
        ["const", group_data],
        ["call", cls, [["reg", 0]], {k: ["val", v] for k, v in kwargs.items()}],
        ["getattr", 1, "param_groups"],
    ]
    regs: dict[int, int] = {}  # parameter index -> register of that tensor inside the optimizer
    for g, (idx, _) in enumerate(groups):
        program.append(["method", 2, "__getitem__", [["val", g]]])
        program.append(["method", len(program) - 1, "__getitem__", [["val", "params"]]])
        plist = len(program) - 1
        for j, i in enumerate(idx):
            program.append(["method", plist, "__getitem__", [["val", j]]])
            regs[i] = len(program) - 1
    outputs = []
    for step_grads in grads:
        for i, reg in sorted(regs.items()):
            program.append(["method", reg, "__setattr__", [["val", "grad"], ["val", step_grads[i].clone()]]])
        program.append(["method", 1, "step", []])
        for _, reg in sorted(regs.items()):
            program.append(["method", reg, "clone", []])
            outputs.append(len(program) - 1)
    return program, outputs


@pytest.mark.points(2)
def test_param_groups(expect, rng):
    # Optional in torch terms but stated in the spec: each group's own hyperparameters apply.
    params, grads = _params(rng), _grads(rng)
    cases = [
        ("SGD", [([0, 2], {}), ([1], {"lr": 0.05, "momentum": 0.5, "nesterov": True})],
         {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1}),
        ("AdamW", [([1], {"weight_decay": 0.0}), ([0, 2], {"lr": 0.02, "betas": (0.8, 0.9)})],
         {"lr": 0.005, "weight_decay": 0.3}),
    ]
    n = len(SHAPES)
    for cls, groups, kwargs in cases:
        def run(namespace: Any, cls: str = cls, groups: Any = groups, kwargs: Any = kwargs) -> list[Any]:
            flat = probes.run_program(namespace, *_groups_program(cls, params, groups, kwargs, grads))
            return [list(flat[t * n:(t + 1) * n]) for t in range(STEPS)]

        where = "; ".join(f"params {idx} with {over or 'the defaults'}" for idx, over in groups)
        expect(run, truth=run(torch.optim), **TOL,
               name=f"parameters after each of {STEPS} steps of {_describe(cls, kwargs)} with param groups [{where}]"
                    " (item [t][i] is parameter i after step t+1)")


def test_step_with_closure(expect, rng):
    # step(closure) evaluates the closure before updating and returns its value; here the
    # closure is the bound method x.sum of the one parameter x.
    x, g = rng.randn(6), rng.randn(6)
    for cls, kwargs in (("SGD", {"lr": 0.1, "momentum": 0.9}), ("AdamW", {"lr": 0.1})):
        def run(namespace: Any, cls: str = cls, kwargs: Any = kwargs) -> list[Any]:
            program = [
                ["const", [x.clone()]],
                ["method", 0, "__getitem__", [["val", 0]]],
                ["call", cls, [["reg", 0]], {k: ["val", v] for k, v in kwargs.items()}],
                ["method", 1, "__setattr__", [["val", "grad"], ["val", g.clone()]]],
                ["getattr", 1, "sum"],
                ["method", 2, "step", [["reg", 4]]],
                ["method", 1, "clone", []],
            ]
            return probes.run_program(namespace, program, [5, 6])

        loss, value = run(expect.solution)
        expected_loss, expected_value = run(torch.optim)
        expect.compare(loss, expected_loss, lambda m, run=run: run(m)[0], atol=1e-6, rtol=1e-6,
                       name=f"what {_describe(cls, kwargs)}.step(closure) returns (the closure's loss before the update)")
        expect.compare(value, expected_value, lambda m, run=run: run(m)[1], **TOL,
                       name=f"the parameter after {_describe(cls, kwargs)}.step(closure)")


def test_hyperparameters_live_in_param_groups(expect, rng):
    # Called directly, not through a probe: the optimizer is a remote object and its
    # param_groups come back as data. No parameter has a .grad, so step() must change nothing.
    x = rng.randn(4)
    for cls, kwargs, expected in (
        ("SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False}),
        ("AdamW", {"lr": 0.01, "betas": (0.8, 0.95)},
         {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-8, "weight_decay": 1e-2}),
    ):
        def step(m: Any, cls: str = cls, kwargs: Any = kwargs) -> tuple[Any, Any]:
            """What step() returned, and the param_groups after it."""
            opt = getattr(m, cls)([x.clone()], **kwargs)
            return opt.step(), opt.param_groups

        what = f"{_describe(cls, kwargs)} over one parameter"
        loss, groups = step(expect.solution)
        check(loss is None, f"{what}: step() without a closure returned {loss!r}, expected None")
        check(isinstance(groups, list) and len(groups) == 1,
              f"{what}: param_groups should be a list of one group, got {groups!r}"[:300])
        group = groups[0]
        check(isinstance(group, dict), f"{what}: param_groups[0] should be a dict, got {type(group).__name__}")
        for key, value in expected.items():
            check(key in group, f"{what}: param_groups[0] has no key {key!r} (keys: {sorted(group)})")
            # betas may come back as a list: the comparison takes a list for a tuple
            expect.compare(group[key], value, lambda m, k=key, step=step: step(m)[1][0][k],
                           name=f"{what}: param_groups[0][{key!r}]")
        expect.compare(list(group["params"]), [x], lambda m, step=step: list(step(m)[1][0]["params"]),
                       name=f"{what}: its parameter after step() with .grad None")


@pytest.mark.hidden
def test_hidden_float64_and_odd_shapes(expect, rng):
    """Parameters the public checks do not use: float64 ones, held to float64 precision (state
    kept in float32 shows), of shapes (), (2, 3, 5) and (1,); SGD with Nesterov momentum and
    decay, AdamW with its own betas and eps."""
    shapes = ((), (2, 3, 5), (1,))

    def draw() -> list[torch.Tensor]:
        return [rng.randn(max(1, math.prod(s)), dtype=torch.float64).reshape(s) for s in shapes]

    params, grads = draw(), [draw() for _ in range(STEPS)]
    for cls, kwargs in (("SGD", {"lr": 0.03, "momentum": 0.85, "weight_decay": 0.05, "nesterov": True}),
                        ("AdamW", {"lr": 0.02, "betas": (0.85, 0.98), "eps": 1e-7, "weight_decay": 0.1})):
        _check_trajectory(expect, cls, params, grads, kwargs, what=f" on float64 parameters of shapes {shapes}",
                          tol={"atol": 1e-10, "rtol": 1e-10})
