"""Checks for pretraining.schedule: transformers' cosine schedules, and accumulation vs one big batch.

Ground truth for the schedule is transformers itself: the judge builds torch.optim.SGD with
`get_cosine_schedule_with_warmup` (min_lr_ratio 0) or `get_cosine_with_min_lr_schedule_with_warmup`
(min_lr_rate=min_lr_ratio) and reads every param group's lr before each step. For gradient
accumulation the ground truth is one torch.optim.SGD step on the concatenated batch with the
mean loss over all its examples.

Optimizers, schedulers and models are objects, not data: the student's `make_scheduler` and
`accumulated_step` get ones built in the student's own process by a `probes.run_program`
program, which imports torch in that process (see `_Program`); the student's file needs
nothing extra for it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grader import probes
from grader.compare import check, fail

# Python floats on both sides, same formula: only the order of a few roundings can differ.
LR_TOL = {"atol": 1e-15, "rtol": 1e-9}
# float64 models: summing micro-batch gradients vs one big batch differs only by round-off.
ACC_TOL = {"atol": 1e-10, "rtol": 1e-9}


class _Program:
    """A `probes.run_program` program; `add` returns the register an instruction fills.

    Register `torch` holds the torch module of the process that runs the program.
    """

    def __init__(self) -> None:
        self.ins: list[list[Any]] = []
        self.torch = self.add("import", "torch")

    def add(self, *instruction: Any) -> int:
        self.ins.append(list(instruction))
        return len(self.ins) - 1

    def fresh(self, value: Any) -> int:
        # In direct mode a program's constants are used as they are: clone so that in-place
        # changes (gradients accumulating into .grad) never reach the judge's tensors.
        return self.add("method", self.add("const", value), "clone", [])


def _number_list(values: list[Any], what: str) -> torch.Tensor:
    for i, v in enumerate(values):
        check(isinstance(v, (int, float)) and not isinstance(v, bool),
              f"{what}: item {i} is a {type(v).__name__} ({v!r:.60}), expected a Python float")
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


# --- the schedule ----------------------------------------------------------------------


def hf_lrs(max_lrs: list[float], warmup: int, total: int, ratio: float, n: int) -> torch.Tensor:
    """(n, groups): every group's lr before each of n steps of transformers' schedule."""
    from transformers.optimization import (
        get_cosine_schedule_with_warmup,
        get_cosine_with_min_lr_schedule_with_warmup,
    )

    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in max_lrs]
    opt = torch.optim.SGD(groups, lr=max_lrs[0])
    if ratio == 0.0:
        sched = get_cosine_schedule_with_warmup(opt, warmup, total)
    else:
        sched = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total, min_lr_rate=ratio)
    trace = []
    for _ in range(n):
        trace.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return torch.tensor(trace, dtype=torch.float64)


def lr_at_trace(namespace: Any, max_lr: float, warmup: int, total: int, ratio: float, n: int) -> torch.Tensor:
    """lr_at(step, ...) for step = 0 .. n-1, in one round trip."""
    program = [
        ["call", "lr_at", [["val", s], ["val", max_lr], ["val", warmup], ["val", total]],
         {"min_lr_ratio": ["val", ratio]}]
        for s in range(n)
    ]
    values = probes.run_program(namespace, program, list(range(n)))
    return _number_list(values, f"lr_at(step, max_lr={max_lr}, ...)")


def _describe(max_lr: float, warmup: int, total: int, ratio: float, n: int) -> str:
    return (f"lr_at(step, max_lr={max_lr:g}, warmup_steps={warmup}, total_steps={total}, "
            f"min_lr_ratio={ratio:g}) for step = 0..{n - 1} (index = step)")


def _check_lr_at(expect: Any, max_lr: float, warmup: int, total: int, ratio: float, n: int) -> None:
    expect(lambda m: lr_at_trace(m, max_lr, warmup, total, ratio, n), truth=hf_lrs([max_lr], warmup, total, ratio, n)[:, 0],
           **LR_TOL, name=_describe(max_lr, warmup, total, ratio, n))


def _float(got: Any, what: str) -> float:
    check(isinstance(got, float), f"{what}: returned a {type(got).__name__}, expected a Python float")
    return got


@pytest.mark.points(3)
def test_lr_at_matches_transformers(expect):
    # Every step of 200-step schedules, with and without a floor, short and long warm-ups.
    for max_lr, warmup, total, ratio in ((1e-3, 20, 200, 0.0), (3e-4, 37, 200, 0.1), (0.02, 150, 200, 0.05),
                                         (1.0, 1, 200, 0.0)):
        _check_lr_at(expect, max_lr, warmup, total, ratio, total + 1)


def test_lr_at_landmarks(expect):
    max_lr = 3e-4
    for step, warmup, total, ratio, expected, what in (
        (0, 10, 50, 0.1, 0.0, "step 0 of the warm-up is 0"),
        (5, 10, 50, 0.1, max_lr / 2, "half-way through the warm-up is max_lr / 2"),
        (10, 10, 50, 0.1, max_lr, "step == warmup_steps is the peak, max_lr"),
        (30, 10, 50, 0.1, max_lr * 0.55, "half-way through the decay is the mean of max_lr and the floor"),
        (50, 10, 50, 0.1, 0.1 * max_lr, "step == total_steps is the floor, min_lr_ratio * max_lr"),
        (0, 0, 50, 0.0, max_lr, "with warmup_steps=0, step 0 is already max_lr"),
    ):
        call = f"lr_at({step}, max_lr={max_lr:g}, warmup_steps={warmup}, total_steps={total}, min_lr_ratio={ratio:g})"
        expect(lambda m, s=step, w=warmup, t=total, r=ratio, c=call: _float(m.lr_at(s, max_lr, w, t, min_lr_ratio=r), c),
               truth=expected, **LR_TOL, name=f"{call}: {what}")


@pytest.mark.points(2)
def test_lr_at_edge_schedules(expect):
    # No warm-up; warm-up as long as the whole run (the decay's denominator is max(1, 0) = 1);
    # a one-step run. A few steps past the end too: the formula simply goes on.
    for max_lr, warmup, total, ratio in ((6e-4, 0, 200, 0.0), (1.0, 0, 13, 0.2), (1e-3, 200, 200, 0.0),
                                         (0.5, 7, 7, 0.3), (1.0, 0, 1, 0.0), (2.0, 1, 1, 0.5)):
        _check_lr_at(expect, max_lr, warmup, total, ratio, total + 4)


def test_lr_at_past_total_steps(expect):
    # Past total_steps transformers does not clamp: the cosine comes back up to max_lr.
    for max_lr, warmup, total, ratio in ((1e-3, 20, 100, 0.1), (0.5, 0, 60, 0.0)):
        _check_lr_at(expect, max_lr, warmup, total, ratio, 2 * total + 10)


def scheduler_program(lrs: list[float], warmup: int, total: int, ratio: float, n: int) -> tuple[_Program, list[int]]:
    """SGD over one param group per lr, the student's make_scheduler on it, n steps of both."""
    p = _Program()
    optim = p.add("getattr", p.torch, "optim")
    groups = p.add("const", [{"params": [torch.zeros(2)], "lr": lr} for lr in lrs])
    opt = p.add("method", optim, "SGD", [["reg", groups], ["val", lrs[0]]])
    sched = p.add("call", "make_scheduler", [["reg", opt], ["val", warmup], ["val", total]],
                  {"min_lr_ratio": ["val", ratio]})
    lambda_lr = p.add("getattr", p.add("getattr", optim, "lr_scheduler"), "LambdaLR")
    is_lambda_lr = p.add("method", lambda_lr, "__instancecheck__", [["reg", sched]])
    type_name = p.add("getattr", p.add("getattr", sched, "__class__"), "__name__")
    param_groups = p.add("getattr", opt, "param_groups")
    lr_regs = []
    for _ in range(n):
        for g in range(len(lrs)):
            group = p.add("method", param_groups, "__getitem__", [["val", g]])
            lr_regs.append(p.add("method", group, "__getitem__", [["val", "lr"]]))
        p.add("method", opt, "step", [])  # optimizer first, then the scheduler: the order torch expects
        p.add("method", sched, "step", [])
    return p, [is_lambda_lr, type_name, *lr_regs]


def scheduler_trace(namespace: Any, lrs: list[float], warmup: int, total: int, ratio: float, n: int) -> torch.Tensor:
    p, outputs = scheduler_program(lrs, warmup, total, ratio, n)
    values = probes.run_program(namespace, p.ins, outputs)[2:]
    return _number_list(values, "param_groups[g]['lr']").reshape(n, len(lrs))


def _check_scheduler(expect: Any, lrs: list[float], warmup: int, total: int, ratio: float) -> None:
    # First construct it alone: a wrong return type is reported as such, not as a failed step().
    p, outputs = scheduler_program(lrs, warmup, total, ratio, 0)
    is_lambda_lr, type_name = probes.run_program(expect.solution, p.ins, outputs)
    check(is_lambda_lr is True, f"make_scheduler returned a {type_name}, expected a torch.optim.lr_scheduler.LambdaLR")
    n = total + 3
    what = (f"make_scheduler(SGD with param-group lrs {lrs}, warmup_steps={warmup}, total_steps={total}, "
            f"min_lr_ratio={ratio:g}): param_groups[g]['lr'] before each of {n} steps "
            "(item [s, g] is group g at step s)")
    expect(lambda m: scheduler_trace(m, lrs, warmup, total, ratio, n), truth=hf_lrs(lrs, warmup, total, ratio, n),
           **LR_TOL, name=what)


@pytest.mark.points(3)
def test_make_scheduler_matches_transformers(expect):
    # Two param groups with different lrs: each follows the schedule scaled by its own initial lr.
    _check_scheduler(expect, [1e-3, 2.5e-4], 20, 200, 0.1)
    _check_scheduler(expect, [0.5], 0, 30, 0.0)
    _check_scheduler(expect, [0.1, 0.3], 5, 5, 0.2)


# --- gradient accumulation ----------------------------------------------------------------

N_IN, N_HIDDEN, N_OUT = 5, 6, 3
LR = 0.5  # large, so a wrong gradient or an extra step moves the parameters far beyond round-off


def _model(kind: str) -> torch.nn.Module:
    if kind == "linear":
        return torch.nn.Linear(N_IN, N_OUT)
    return torch.nn.Sequential(torch.nn.Linear(N_IN, N_HIDDEN), torch.nn.Tanh(), torch.nn.Linear(N_HIDDEN, N_OUT))


def _case(rng: Any, kind: str, sizes: list[int]) -> dict[str, Any]:
    """Weights, stale gradients (from an imagined earlier step) and micro-batches, all float64."""
    # _model(kind) gives only the names and shapes: every weight is drawn from rng.
    state = {k: rng.randn(*v.shape, dtype=torch.float64) * 0.5 for k, v in _model(kind).state_dict().items()}
    stale = {k: rng.randn(*v.shape, dtype=torch.float64) for k, v in state.items()}
    batches = []
    for n in sizes:
        x = rng.randn(n, N_IN, dtype=torch.float64)
        y = rng.randint(0, N_OUT, (n,)) if kind == "linear" else rng.randn(n, N_OUT, dtype=torch.float64)
        batches.append((x, y))
    return {"kind": kind, "state": state, "stale": stale, "batches": batches,
            "loss": "cross_entropy" if kind == "linear" else "mse_loss"}


def accumulate(namespace: Any, case: dict[str, Any]) -> list[Any]:
    """[returned loss, parameters after the step, their .grad, rows of the model's last input].

    The model, SGD(lr=LR) and loss_fn are built in the namespace's process; every parameter
    gets a stale .grad first, as a training loop leaves it after the previous step. A forward
    pre-hook, `calls.__setitem__` (called as hook(model, args)), keeps the last input's args.
    """
    p = _Program()
    nn = p.add("getattr", p.torch, "nn")
    if case["kind"] == "linear":
        model = p.add("method", nn, "Linear", [["val", N_IN], ["val", N_OUT]])
    else:
        layers = [p.add("method", nn, "Linear", [["val", N_IN], ["val", N_HIDDEN]]), p.add("method", nn, "Tanh", []),
                  p.add("method", nn, "Linear", [["val", N_HIDDEN], ["val", N_OUT]])]
        model = p.add("method", nn, "Sequential", [["reg", r] for r in layers])
    p.add("method", model, "double", [])
    p.add("method", model, "load_state_dict", [["val", case["state"]]])
    calls = p.add("const", {})
    p.add("method", model, "register_forward_pre_hook", [["reg", p.add("getattr", calls, "__setitem__")]])
    params = {name: p.add("method", model, "get_parameter", [["val", name]]) for name in case["state"]}
    opt = p.add("method", p.add("getattr", p.torch, "optim"), "SGD",
                [["reg", p.add("method", model, "parameters", [])], ["val", LR]])
    for name, reg in params.items():
        p.add("method", reg, "__setattr__", [["val", "grad"], ["reg", p.fresh(case["stale"][name])]])
    loss_fn = p.add("getattr", p.add("getattr", nn, "functional"), case["loss"])
    # The micro-batches go as data: a list of (x, y) tuples (nothing modifies them in place).
    loss = p.add("call", "accumulated_step",
                 [["reg", model], ["reg", opt], ["val", case["batches"]], ["reg", loss_fn]])
    values = [p.add("method", reg, "detach", []) for reg in params.values()]
    last_input = p.add("method", calls, "get", [["reg", model]])
    outputs: list[Any] = [loss, *values, *[[reg, "grad"] for reg in params.values()], last_input]
    out = probes.run_program(namespace, p.ins, outputs)
    k = len(params)
    last = out[-1]
    rows = len(last[0]) if isinstance(last, tuple) and last and isinstance(last[0], torch.Tensor) else None
    return [out[0], out[1:1 + k], out[1 + k:1 + 2 * k], rows]


def one_big_batch(case: dict[str, Any]) -> list[Any]:
    """The same model and SGD, one step on the concatenated batch with the mean loss over all examples."""
    model = _model(case["kind"]).double()
    model.load_state_dict(case["state"])
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    opt.zero_grad()
    x = torch.cat([x for x, _ in case["batches"]])
    y = torch.cat([y for _, y in case["batches"]])
    loss = getattr(F, case["loss"])(model(x), y)  # the judge may concatenate: it is the definition
    loss.backward()
    opt.step()
    names = list(case["state"])
    params = dict(model.named_parameters())
    return [loss.item(), [params[n].detach().clone() for n in names], [params[n].grad.clone() for n in names]]


def _check_accumulation(expect: Any, case: dict[str, Any]) -> None:
    sizes = [len(x) for x, _ in case["batches"]]
    model = "nn.Linear" if case["kind"] == "linear" else "a Linear-Tanh-Linear MLP"
    what = (f"accumulated_step with {model}, SGD(lr={LR}), F.{case['loss']} and micro-batches of sizes {sizes}"
            f" (.grad held stale gradients before the call)")
    names = list(case["state"])
    got = accumulate(expect.solution, case)  # one call; each comparison reruns it on the known mistakes
    loss, params, grads = one_big_batch(case)
    expect.compare(got[1], params, lambda m: accumulate(m, case)[1], **ACC_TOL,
                   name=f"{what}: the parameters after the step (items: {names}), vs one step on the whole batch")
    expect.compare(got[2], grads, lambda m: accumulate(m, case)[2], **ACC_TOL,
                   name=f"{what}: each parameter's .grad after the call (items: {names}), vs the whole batch's")
    expect.compare(_float(got[0], what), loss, lambda m: accumulate(m, case)[0], **ACC_TOL,
                   name=f"{what}: the returned loss, vs the whole batch's mean loss")


@pytest.mark.points(3)
def test_accumulation_matches_one_big_batch(expect, rng):
    # Unequal sizes, one of them a single example: only weights n_i / N give the batch mean.
    _check_accumulation(expect, _case(rng, "linear", [5, 2, 7, 1]))


@pytest.mark.points(2)
def test_accumulation_mlp_mse(expect, rng):
    _check_accumulation(expect, _case(rng, "mlp", [3, 8, 4]))


def test_accumulation_single_micro_batch(expect, rng):
    # One micro-batch is an ordinary training step: zero the stale gradients, backward, step.
    _check_accumulation(expect, _case(rng, "linear", [9]))


def test_accumulation_one_micro_batch_at_a_time(expect, rng):
    # Concatenating the micro-batches gives the right numbers but keeps the whole batch's
    # activations alive at once, which is what accumulation exists to avoid.
    case = _case(rng, "linear", [4, 6, 3])
    sizes = [len(x) for x, _ in case["batches"]]
    rows = accumulate(expect.solution, case)[3]
    check(rows is not None, "accumulated_step never called the model as model(x) (its forward hooks never ran)")
    if rows not in sizes:
        fail(f"accumulated_step with micro-batches of sizes {sizes}: the model's last call got {rows} examples, not "
             "one micro-batch; run model(x) on one micro-batch at a time, never on the concatenated batch",
             rows, expect.mistakes(lambda m: accumulate(m, case)[3]))


@pytest.mark.hidden
def test_hidden_fresh_schedules_and_micro_batches(expect, rng):
    """Schedules and batches drawn fresh for any seed, none of the public checks' round numbers:
    lr_at over a run of 50 to 300 steps with a warm-up anywhere in it, a floor anywhere in
    [0.01, 0.5] and a max_lr from 1e-5 to 1, compared at every step and 7 past the end;
    make_scheduler on three param groups with their own lrs; and accumulated_step on the MLP
    with 2 to 6 micro-batches of 1 to 7 examples each."""
    total = int(rng.np.integers(50, 301))
    warmup = int(rng.np.integers(1, total))
    ratio = float(rng.np.uniform(0.01, 0.5))
    max_lr = float(10 ** rng.np.uniform(-5, 0))
    _check_lr_at(expect, max_lr, warmup, total, ratio, total + 8)
    lrs = [float(10 ** e) for e in rng.np.uniform(-4, -1, 3)]
    _check_scheduler(expect, lrs, int(rng.np.integers(0, 12)), int(rng.np.integers(12, 40)), ratio)
    sizes = [int(n) for n in rng.np.integers(1, 8, int(rng.np.integers(2, 7)))]
    _check_accumulation(expect, _case(rng, "mlp", sizes))
