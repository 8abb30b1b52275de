"""Probes: trusted helpers that run next to the student's objects, in the solution process.

A check calls a probe like a function. Given remote arguments (`solution.f`, a remote
object) the probe runs in the solution process and only data comes back; given local
ones (direct mode) it runs in place. Probes are the only check code that runs there.

    probes.grad(solution.layer_norm, [x, w, b], grad_output)
    probes.run_program(solution, program, outputs)
    probes.optimizer_trajectory(solution.AdamW, params, grads, {"lr": 1e-3})
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

PROBES: dict[str, Callable[..., Any]] = {}


def probe(fn: Callable[..., Any]) -> Callable[..., Any]:
    PROBES[fn.__name__] = fn

    @functools.wraps(fn)
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        from grader.remote import RemoteFunction, RemoteObject, SolutionModule
        from grader.solution_process import ModuleRef

        handle = None
        for a in (*args, *kwargs.values()):
            if isinstance(a, (RemoteObject, RemoteFunction, SolutionModule)):
                handle = a._grade_handle if isinstance(a, RemoteObject) else a._handle
                break
        if handle is None:
            return fn(*args, **kwargs)

        def ref(a: Any) -> Any:
            if isinstance(a, SolutionModule):
                return ModuleRef()
            if isinstance(a, RemoteFunction):
                return handle.request({"op": "getattr", "target": ModuleRef(), "name": a._name}, a._name)
            return a

        return handle.request(
            {
                "op": "probe",
                "name": fn.__name__,
                "args": tuple(ref(a) for a in args),
                "kwargs": {k: ref(v) for k, v in kwargs.items()},
            },
            f"{fn.__name__}(...)",
        )

    return dispatch


@probe
def grad(fn: Any, inputs: list[Any], grad_output: Any = None) -> dict[str, Any]:
    """Run `fn(*inputs)` with gradients on every floating-point tensor input, then backward.

    Backpropagates `grad_output` (or the sum of the output when None). Returns the output,
    the inputs' gradients (None for inputs that got none) and, when `fn` is a module,
    each named parameter's gradient.
    """
    import torch

    leaves = []
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            x = x.detach().clone().requires_grad_(True)
        leaves.append(x)
    out = fn(*leaves)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"expected the function to return a tensor, got {type(out).__name__}")
    if grad_output is None:
        out.sum().backward()
    else:
        out.backward(grad_output)
    params = {}
    if isinstance(fn, torch.nn.Module):
        params = {n: (p.grad.detach().clone() if p.grad is not None else None) for n, p in fn.named_parameters()}
    return {
        "output": out.detach(),
        "input_grads": [x.grad if isinstance(x, torch.Tensor) and x.requires_grad else None for x in leaves],
        "param_grads": params,
    }


_OPS: dict[str, Callable[..., Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "pow": operator.pow,
    "neg": operator.neg,
    "radd": lambda a, b: b + a,
    "rsub": lambda a, b: b - a,
    "rmul": lambda a, b: b * a,
    "rtruediv": lambda a, b: b / a,
}


@probe
def run_program(namespace: Any, program: list[Any], outputs: list[Any]) -> list[Any]:
    """Run a straight-line program against `namespace` (the student's module) in one go.

    Saves a round trip per operation when a check builds a large object graph (an
    expression of `Value`s). Each instruction appends one register:

        ["const", value]
        ["call", "Name", [args], {kwargs}]      namespace.Name(*args, **kwargs)
        ["op", "add"|"sub"|"mul"|"truediv"|"pow"|"neg"|"radd"|"rsub"|"rmul"|"rtruediv", [args]]
        ["method", reg, "name", [args]]        registers[reg].name(*args)
        ["getattr", reg, "name"]

    An argument is ["reg", i] for a register or ["val", v] for a literal. `outputs` lists
    what to return: a register index, or [index, "attr"] for an attribute of a register.
    """
    regs: list[Any] = []

    def arg(a: Any) -> Any:
        kind, v = a
        return regs[v] if kind == "reg" else v

    for ins in program:
        kind = ins[0]
        if kind == "const":
            regs.append(ins[1])
        elif kind == "call":
            kwargs = {k: arg(v) for k, v in (ins[3] if len(ins) > 3 else {}).items()}
            regs.append(getattr(namespace, ins[1])(*[arg(a) for a in ins[2]], **kwargs))
        elif kind == "op":
            regs.append(_OPS[ins[1]](*[arg(a) for a in ins[2]]))
        elif kind == "method":
            regs.append(getattr(regs[ins[1]], ins[2])(*[arg(a) for a in ins[3]]))
        elif kind == "getattr":
            regs.append(getattr(regs[ins[1]], ins[2]))
        else:
            raise ValueError(f"unknown instruction {kind!r}")
    out = []
    for o in outputs:
        out.append(getattr(regs[o[0]], o[1]) if isinstance(o, (list, tuple)) else regs[o])
    return out


@probe
def optimizer_trajectory(
    optimizer_cls: Any, params: list[Any], grads: list[list[Any]], kwargs: dict[str, Any]
) -> list[list[Any]]:
    """Step `optimizer_cls(parameters, **kwargs)` once per entry of `grads`.

    `params` are the initial values; before step t each parameter's `.grad` is set to
    `grads[t][i]` (None leaves it unset). Returns the parameters' values after every step.
    """
    import torch

    parameters = [torch.nn.Parameter(p.detach().clone()) for p in params]
    optimizer = optimizer_cls(parameters, **kwargs)
    trajectory = []
    for step_grads in grads:
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(parameters, step_grads):
            p.grad = None if g is None else g.detach().clone()
        optimizer.step()
        trajectory.append([p.detach().clone() for p in parameters])
    return trajectory


@probe
def call_inplace(fn: Any, args: list[Any], kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call `fn(*args, **kwargs)` and return its result and the arguments afterwards.

    For functions that work in place (`xavier_uniform_(w)`): the judge sees copies, so it
    needs the arguments as the function left them.
    """
    result = fn(*args, **(kwargs or {}))
    return {"result": result, "args": list(args)}


@probe
def with_parameters(
    fn: Any, values: list[Any], grads: list[Any], args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Call `fn(parameters, *args, **kwargs)` on fresh `nn.Parameter`s with `.grad` set.

    Returns the result and the parameters' values and gradients afterwards: for
    `clip_grad_norm_`-style functions that change gradients in place.
    """
    import torch

    parameters = []
    for v, g in zip(values, grads):
        p = torch.nn.Parameter(v.detach().clone())
        p.grad = None if g is None else g.detach().clone()
        parameters.append(p)
    result = fn(parameters, *(args or []), **(kwargs or {}))
    return {
        "result": result,
        "values": [p.detach().clone() for p in parameters],
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in parameters],
    }
