"""The student's module in direct mode (in the judge's process), with its functions checked
for modifying their inputs as the solution server checks them in isolated mode.

`DirectModule(module, exercise.inplace)` is what the `solution` fixture gives in direct mode
(`pytest plugins/`, `grade check`, `--grade-solutions`). Each plain function defined in
the module itself is wrapped: its tensor and array arguments are copied before the call and
compared after it (`grader.inputs`), and a change that the exercise's `inplace` list does
not allow fails the call with the same `SolutionError("InputModified", ...)` isolated
grading raises, after the arguments are put back as they were.

The limit: only module-level functions are watched. Classes are returned as they are, so
the methods of the objects they make (`layer(x)`, `optimizer.step()`) are not checked in
direct mode, while isolated mode checks every call the judge makes into the solution
process; nor are functions the module imported from elsewhere, nor any other attribute.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable
from typing import Any

from grader import recording
from grader.errors import SolutionError
from grader.sandbox.inputs import GuardedModule


def _error(call: str, message: str) -> SolutionError:
    return SolutionError("InputModified", message, "", call)


class DirectModule(GuardedModule):
    """`module` with its own functions failing a call that modifies an argument not named in
    `inplace` (see the module docstring for what is and is not watched)."""

    __slots__ = ()

    def __init__(self, module: types.ModuleType, inplace: Iterable[str] = ()):
        super().__init__(module, inplace, _error)

    def __repr__(self) -> str:
        return f"<solution {object.__getattribute__(self, '_grade_module').__name__} (direct)>"


class RecordedModule(DirectModule):
    """The student's module in direct mode: a `DirectModule` whose function calls are also
    kept for the check's diagnosis (`grader.recording`), as the isolated proxies keep theirs.
    Known mistakes are plain `DirectModule`s: the judge's own calls to them are not the
    student's and stay out of the record."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        value = DirectModule.__getattr__(self, name)
        inner = getattr(value, "__grade_guarded__", None)
        if inner is None:
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            recording.record(name, args, kwargs, result, signature_of=inner)
            return result

        call.__grade_guarded__ = inner  # type: ignore[attr-defined]
        return call
