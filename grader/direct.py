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

import types
from collections.abc import Iterable

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
