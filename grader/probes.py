"""Probes, as checks call them: trusted helpers that run next to the student's objects.

Given remote arguments (`solution.f`, a remote object) a probe runs in the solution process
and only data comes back; given local ones (direct mode) it runs in place. The bodies live
in `grader.sandbox.probes`, the only check code that runs in the sandbox; their docstrings
say what each returns.

    probes.grad(solution.layer_norm, [x, w, b], grad_output)
    probes.run_program(solution, program, outputs)
    probes.optimizer_trajectory(solution.AdamW, params, grads, {"lr": 1e-3})
    probes.call_inplace(solution.xavier_uniform_, [w])
    probes.with_parameters(solution.clip_grad_norm_, values, grads, [1.0])
    probes.checkpoint_run(solution, spec, total_steps=10, save_at=[5])
    probes.seeded_runs(solution.xavier_uniform_, [w], {"gain": 2.0}, "generator", [7, 7, 8])
    probes.benchmark(solution.softmax_triton, [[x1], [x2]], device="cuda")
    probes.largest_allocation(solution.attention, [q, k, v])
    probes.matmul_flops(moe_block, [x])
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from grader.sandbox import probes as _bodies


def _dispatcher(body: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(body)
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        from grader.remote import call_probe, handle_of

        handle = next((h for h in map(handle_of, (*args, *kwargs.values())) if h is not None), None)
        if handle is None:
            return body(*args, **kwargs)
        return call_probe(handle, body.__name__, args, kwargs)

    return dispatch


grad = _dispatcher(_bodies.grad)
run_program = _dispatcher(_bodies.run_program)
optimizer_trajectory = _dispatcher(_bodies.optimizer_trajectory)
call_inplace = _dispatcher(_bodies.call_inplace)
with_parameters = _dispatcher(_bodies.with_parameters)
checkpoint_run = _dispatcher(_bodies.checkpoint_run)
seeded_runs = _dispatcher(_bodies.seeded_runs)
benchmark = _dispatcher(_bodies.benchmark)
largest_allocation = _dispatcher(_bodies.largest_allocation)
matmul_flops = _dispatcher(_bodies.matmul_flops)

__all__ = sorted(_bodies.PROBES)
