"""Inputs must not be modified: the snapshot taken before a call into the student's code and
the comparison after it.

The code lives in `grader.sandbox.inputs`, since the solution server runs it inside the
sandbox, which sees only that package; this module is its name on the judge's side (direct
mode, `grader.direct`, and the checks' helpers). See that module for what is compared.

    snap = inputs.snapshot(args, kwargs)
    result = fn(*args, **kwargs)
    changed = inputs.modified(snap, fn, args, kwargs, allowed=exercise.inplace)
    if changed:
        raise ... inputs.message("relu_backward", changed)
"""

from __future__ import annotations

from grader.sandbox.inputs import (
    LIMIT_BYTES,
    MAX_ITEMS,
    Change,
    GuardedModule,
    InputModified,
    Snapshot,
    call_name,
    checked_call,
    guarded,
    message,
    modified,
    parameter_names,
    restore,
    same_data,
    same_value,
    snapshot,
    unguarded,
)

__all__ = [
    "LIMIT_BYTES", "MAX_ITEMS", "Change", "GuardedModule", "InputModified", "Snapshot", "call_name", "checked_call",
    "guarded", "message", "modified", "parameter_names", "restore", "same_data", "same_value", "snapshot",
    "unguarded",
]
