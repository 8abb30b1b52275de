"""The bodies of the probes: trusted helpers that run next to the student's objects.

Checks call them through `grader.probes`, which sends the call to the solution process
(isolated mode) or runs the body in place (direct mode). Probes are the only check code
that runs in the sandbox. Where a probe itself needs an op the exercise forbids (the
gradient probe's `backward()`), it says so with `guards.trusted()`; student code gets no
such exemption, whether it calls a probe or is called by one.

    probes.grad(solution.layer_norm, [x, w, b], grad_output)
    probes.run_program(solution, program, outputs)
    probes.optimizer_trajectory(solution.AdamW, params, grads, {"lr": 1e-3})
    probes.checkpoint_run(solution, spec, total_steps=10, save_at=[5])
    probes.seeded_runs(solution.xavier_uniform_, [w], {}, "generator", [7, 7, 8])
    probes.largest_allocation(solution.attention, [q, k, v])
"""

from __future__ import annotations

import importlib
import operator
from collections.abc import Callable
from typing import Any

PROBES: dict[str, Callable[..., Any]] = {}


def probe(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register a probe body; the judge side (`grader.probes`) dispatches to it by name."""
    PROBES[fn.__name__] = fn
    return fn


@probe
def grad(fn: Any, inputs: list[Any], grad_output: Any = None) -> dict[str, Any]:
    """Run `fn(*inputs)` with gradients on every floating-point tensor input, then backward.

    Backpropagates `grad_output` (or the sum of the output when None). Returns the output,
    the inputs' gradients (None for inputs that got none) and, when `fn` is a module,
    each named parameter's gradient.
    """
    import torch

    from grader.sandbox import guards

    leaves = []
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            x = x.detach().clone().requires_grad_(True)
        leaves.append(x)
    out = fn(*leaves)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"expected the function to return a tensor, got {type(out).__name__}")
    with guards.trusted():  # the exercise may forbid autograd; the probe's own backward is not the student's
        if not out.requires_grad:  # cut off from its inputs (detached): no input gets a gradient
            pass
        elif grad_output is None:
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
        ["import", "module"]                   the module, e.g. "torch" (to build optimizers,
                                               models or read RNG state in that process)

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
        elif kind == "import":
            regs.append(importlib.import_module(ins[1]))
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
    needs the arguments as the function left them. What the call does to its arguments is
    the caller's to judge (`expect.in_place` names the known mistake), so `fn` is called
    without the check that it leaves them alone (`grader.sandbox.inputs`).
    """
    from grader.sandbox import inputs

    result = inputs.unguarded(fn)(*args, **(kwargs or {}))
    return {"result": result, "args": list(args)}


@probe
def seeded_runs(
    fn: Any, args: list[Any], kwargs: dict[str, Any] | None = None, generator: str = "generator",
    seeds: list[int] | None = None, pass_seed: bool = False,
) -> dict[str, Any]:
    """Call `fn(*args, **kwargs)` once per seed in `seeds`, each time on fresh copies of the
    tensor and array arguments and with a fresh `torch.Generator().manual_seed(seed)` as the
    keyword argument named `generator` (with `pass_seed`, the seed itself: `mask_tokens(...,
    seed=s)` makes its own generator).

    Returns "runs", one per seed: "result" (what the call returned) and "args" and "kwargs"
    (the copies after the call, the generator left out: an initialiser fills its argument in
    place); and "changed": {"torch", "numpy", "random"}, whether torch's global RNG state
    (`torch.get_rng_state()`), numpy's (`np.random.get_state()`) or Python's `random` state
    differs after the runs from before them. Those states are put back afterwards.
    """
    import random

    import numpy as np
    import torch

    def fresh(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        if isinstance(value, np.ndarray):
            return value.copy()
        if isinstance(value, (list, tuple)):
            return type(value)(fresh(v) for v in value)
        if isinstance(value, dict):
            return {k: fresh(v) for k, v in value.items()}
        return value

    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    runs = []
    try:
        for seed in seeds if seeds is not None else [0, 0, 1]:
            call_args, call_kwargs = fresh(list(args)), fresh(dict(kwargs or {}))
            call_kwargs[generator] = int(seed) if pass_seed else torch.Generator().manual_seed(int(seed))
            result = fn(*call_args, **call_kwargs)
            del call_kwargs[generator]
            runs.append({"result": result, "args": call_args, "kwargs": call_kwargs})
        after = torch.get_rng_state(), np.random.get_state(), random.getstate()
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
    numpy_same = (states[1][0] == after[1][0] and np.array_equal(states[1][1], after[1][1])
                  and tuple(states[1][2:]) == tuple(after[1][2:]))
    changed = {"torch": not torch.equal(states[0], after[0]), "numpy": not numpy_same, "random": states[2] != after[2]}
    return {"runs": runs, "changed": changed}


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


@probe
def checkpoint_run(
    namespace: Any, spec: dict[str, Any], total_steps: int, save_at: list[int] | None = None
) -> dict[str, Any]:
    """Train a small dropout model for `total_steps` steps, saving and resuming on the way.

    With `save_at` empty nothing of `namespace` is called: the uninterrupted run. The model
    is a next-token net, Embedding(vocab, dim) - Dropout - Linear(dim, hidden) - GELU -
    Dropout - Linear(hidden, vocab), in train mode, with AdamW(lr, betas, weight_decay) and
    LinearLR(start_factor, end_factor=1, total_iters=warmup_steps). Step t: draw `batch`
    window starts with torch.randint(0, len(tokens) - seq_len, (batch,), generator=g)
    (g: a torch.Generator), x = the windows, y = x shifted by one token; loss =
    F.cross_entropy; zero_grad, backward, optimizer.step(), scheduler.step(). Dropout draws
    its masks from the global torch RNG, so a bitwise resume must restore it too.

    `spec`: tokens (1-D int64 tensor), vocab, dim, hidden, dropout, seq_len, batch, lr,
    betas, weight_decay, start_factor, warmup_steps, seed.

    After s steps, for each s in `save_at` (sorted, 0 <= s <= total_steps):
    `namespace.save_checkpoint(path, model, optimizer, scheduler, generator, s)` writes into
    an empty directory; the file at `path` is copied under another name and the directory
    deleted; FRESH objects are built from other seeds (another init, another generator seed,
    the global RNG reseeded); `namespace.load_checkpoint(moved, model, optimizer, scheduler,
    generator)` restores them, and training goes on from the step it returned (a Python int
    in [0, total_steps]; anything else ends the run there).

    Returns data only:
      "trace": one record per step run, in order: the state before the step (see below),
               "step" (the loop's step number), "batch" (the window starts), "loss" (0-d);
      "final": the state after the last step;
      "saves": per save: "at", "files" (the directory's listing after save_checkpoint),
               "weights_only_error" (None, or why torch.load(path, weights_only=True)
               failed), "missing_from_file" (the parameters whose values the loaded file
               holds in no tensor), "returned" (load_checkpoint's result if an int, else None),
               "returned_repr" and "returned_type" (its repr and type name), "saved" (the
               state save_checkpoint was given), "fresh" (the fresh objects' state before
               loading), "loaded" (their state right after loading; None when
               save_checkpoint wrote no file at `path`, which ends the run there).
    A state is {"params": {name: tensor}, "optimizer": {name: {key: tensor}} (AdamW's
    per-parameter state), "lrs": each param group's lr, "scheduler": scheduler.state_dict(),
    "generator": g.get_state(), "rng": torch.get_rng_state(), "training": model.training}.
    The caller's global RNG state is left as it was.
    """
    import copy
    import os
    import re
    import shutil
    import tempfile

    import torch
    import torch.nn.functional as F

    from grader.sandbox import guards

    points = list(save_at or [])
    if points != sorted(points) or any(not 0 <= s <= total_steps for s in points):
        raise ValueError(f"save_at must be sorted steps in [0, {total_steps}], got {points}")
    tokens = spec["tokens"]
    vocab, seq_len = spec["vocab"], spec["seq_len"]

    def build(segment: int) -> tuple[Any, ...]:
        # Each segment's objects come from other seeds, so nothing carries over unless loaded.
        seed = spec["seed"] + 7919 * segment
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Embedding(vocab, spec["dim"]),
            torch.nn.Dropout(spec["dropout"]),
            torch.nn.Linear(spec["dim"], spec["hidden"]),
            torch.nn.GELU(),
            torch.nn.Dropout(spec["dropout"]),
            torch.nn.Linear(spec["hidden"], vocab),
        )
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=spec["lr"], betas=tuple(spec["betas"]), weight_decay=spec["weight_decay"]
        )
        scheduler = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=spec["start_factor"], end_factor=1.0, total_iters=spec["warmup_steps"]
        )
        generator = torch.Generator().manual_seed(seed + 1)
        torch.manual_seed(seed + 2)
        return model, optimizer, scheduler, generator

    def state(model: Any, optimizer: Any, scheduler: Any, generator: Any) -> dict[str, Any]:
        names = {id(p): n for n, p in model.named_parameters()}
        return {
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "optimizer": {
                names.get(id(p), f"<parameter {i}>"): {
                    k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()
                }
                for i, (p, s) in enumerate(optimizer.state.items())
            },
            "lrs": [float(g["lr"]) for g in optimizer.param_groups],
            "scheduler": copy.deepcopy(scheduler.state_dict()),
            "generator": generator.get_state(),
            "rng": torch.get_rng_state(),
            "training": bool(model.training),
        }

    trace: list[dict[str, Any]] = []
    saves: list[dict[str, Any]] = []
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory(prefix="grade-checkpoint-") as tmp:
        objects = build(0)
        step = 0
        for k, end in enumerate([*points, total_steps]):
            model, optimizer, scheduler, generator = objects
            while step < end:
                record = {"step": step, **state(*objects)}
                with guards.trusted():  # the probe's own training step; the student's code is save/load
                    starts = torch.randint(0, len(tokens) - seq_len, (spec["batch"],), generator=generator)
                    windows = torch.stack([tokens[s : s + seq_len + 1] for s in starts.tolist()])
                    logits = model(windows[:, :-1])
                    loss = F.cross_entropy(logits.reshape(-1, vocab), windows[:, 1:].reshape(-1))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                trace.append({**record, "batch": starts, "loss": loss.detach()})
                step += 1
            if k == len(points):
                break
            directory = os.path.join(tmp, f"save{k}")
            os.mkdir(directory)
            path = os.path.join(directory, "checkpoint.pt")
            saved = state(*objects)
            namespace.save_checkpoint(path, model, optimizer, scheduler, generator, step)
            save: dict[str, Any] = {
                "at": step, "files": sorted(os.listdir(directory)), "weights_only_error": None, "returned": None,
                "returned_repr": "", "returned_type": "", "saved": saved, "fresh": None, "loaded": None,
                "missing_from_file": [],
            }
            saves.append(save)
            if not os.path.isfile(path):
                break
            try:
                contents = torch.load(path, weights_only=True)
                # The file itself must hold the weights: a checkpoint kept in memory and a token
                # file would resume in this process but nowhere else.
                found = _tensors(contents)
                save["missing_from_file"] = [
                    n for n, p in model.named_parameters() if not any(torch.equal(p.detach(), t) for t in found
                                                                      if t.shape == p.shape and t.dtype == p.dtype)
                ]
            except Exception as e:
                # torch's message is long and styled: keep the line that names what was refused.
                lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if line.strip()]
                marker = "WeightsUnpickler error:"
                why = next((line.split(marker, 1)[1] for line in lines if marker in line), lines[0] if lines else "")
                save["weights_only_error"] = f"{type(e).__name__}: {why.strip().split('. ')[0][:300]}"
            moved = os.path.join(tmp, f"resume{k}.pt")
            shutil.copyfile(path, moved)
            shutil.rmtree(directory)
            objects = build(k + 1)
            save["fresh"] = state(*objects)
            returned = namespace.load_checkpoint(moved, *objects)
            save["loaded"] = state(*objects)
            save["returned_repr"], save["returned_type"] = f"{returned!r:.80}", type(returned).__name__
            if not isinstance(returned, int) or isinstance(returned, bool) or not 0 <= returned <= total_steps:
                break
            save["returned"] = step = returned
        final = state(*objects)
    return {"trace": trace, "final": final, "saves": saves}


def _tensors(value: Any) -> list[Any]:
    """Every tensor inside nested dicts, lists and tuples (what a weights-only load gives)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


@probe
def benchmark(fn: Any, inputs: list[list[Any]], device: str = "cuda", warmup: int = 10, reps: int = 50,
              flush_bytes: int = 256 << 20) -> dict[str, Any]:
    """Time `fn(*args)` on the device, rotating through the argument lists of `inputs`.

    Each argument list is moved to `device` once. `warmup` untimed calls run first (they
    compile and autotune kernels). Then each of `reps` timed calls takes the next argument
    list in turn, after a write of `flush_bytes` bytes that evicts the caches (the GPU's L2),
    and is timed alone: by CUDA events on a GPU, by the wall clock around a synchronised call
    elsewhere. Returns "times_s" (one per timed call, in seconds), "median_s", and
    "outputs": for each argument list, what its LAST timed call returned, on the CPU, so the
    judge re-checks the very results that were timed.
    """
    import statistics
    import time

    import torch

    def to(value: Any, where: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(where)
        if isinstance(value, (list, tuple)):
            return type(value)(to(v, where) for v in value)
        if isinstance(value, dict):
            return {k: to(v, where) for k, v in value.items()}
        return value

    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sets = [to(list(args), device) for args in inputs]
    flush = torch.empty(int(flush_bytes), dtype=torch.uint8, device=device)
    for i in range(int(warmup)):
        fn(*sets[i % len(sets)])
    sync()
    times: list[float] = []
    events = []
    outputs: list[Any] = [None] * len(sets)
    for r in range(int(reps)):
        k = r % len(sets)
        flush.fill_(r % 251)
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            outputs[k] = fn(*sets[k])
            end.record()
            events.append((start, end))
        else:
            sync()
            t0 = time.perf_counter()
            outputs[k] = fn(*sets[k])
            times.append(time.perf_counter() - t0)
    sync()
    if cuda:
        times = [start.elapsed_time(end) / 1e3 for start, end in events]
    return {"times_s": times, "median_s": statistics.median(times), "outputs": to(outputs, "cpu")}


@probe
def largest_allocation(fn: Any, args: list[Any], kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call `fn(*args, **kwargs)` and watch every tensor that a torch op creates during the call.

    Every op's outputs are seen (a `TorchDispatchMode`); views and in-place results (outputs
    sharing storage with one of the op's inputs) allocate nothing and are left out. Returns
    "result" (what the call returned), "numel" (the most elements of one tensor created), and
    "op" and "shape" (the op that created it and its shape; "" and [] when none was created),
    and "peak_numel": the most elements that the tensors created in the call held at once (a
    storage counts while any tensor on it, a view included, is alive). Memory checks compare
    them with a bound: "never allocate a tensor as large as X", "never hold X at once".
    """
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    largest: dict[str, Any] = {"numel": 0, "op": "", "shape": []}
    live: dict[int, list[int]] = {}  # storage address -> [elements, tensors alive on it]
    held = {"now": 0, "peak": 0}

    def release(address: int) -> None:
        entry = live.get(address)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del live[address]
                held["now"] -= entry[0]

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, op_args: Any = (), op_kwargs: Any = None) -> Any:
            out = func(*op_args, **(op_kwargs or {}))
            inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((op_args, op_kwargs))[0]
                      if isinstance(t, torch.Tensor)}
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor) or t.is_meta:
                    continue
                storage = t.untyped_storage()
                address = storage.data_ptr()
                if address in live:  # another tensor on a storage made in this call: a view
                    live[address][1] += 1
                    weakref.finalize(t, release, address)
                elif address not in inputs and storage.nbytes():
                    numel = storage.nbytes() // t.element_size()
                    live[address] = [numel, 1]
                    weakref.finalize(t, release, address)
                    held["now"] += numel
                    held["peak"] = max(held["peak"], held["now"])
                if t.numel() > largest["numel"] and address not in inputs:
                    largest.update(numel=t.numel(), op=str(func.overloadpacket.__name__), shape=list(t.shape))
            return out

    with Watch():
        result = fn(*args, **(kwargs or {}))
    return {"result": result, **largest, "peak_numel": held["peak"]}


@probe
def matmul_flops(fn: Any, args: list[Any], kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call `fn(*args, **kwargs)` and count the floating-point operations of its matrix
    products (torch's `FlopCounterMode`: mm, addmm, bmm, baddbmm, matmuls inside einsum and
    linear, convolutions, attention; 2 per multiply-add). Returns "result" and "flops". Work
    done without a matrix product (a multiply then a sum) is not counted, so a check bounds
    from above: "no more than the routed work"."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        result = fn(*args, **(kwargs or {}))
    return {"result": result, "flops": int(counter.get_total_flops())}
