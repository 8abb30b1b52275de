"""Forbidden ops: what an exercise may not call, enforced in the solution process.

`install(names, exercise, is_student_file)` runs before the student's module is imported.
`trusted()` marks the few places where a probe itself needs a forbidden op.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def trusted() -> Iterator[None]:
    """A probe's own use of an op the exercise forbids (placeholder until the torch-layer guard)."""
    yield


FORBIDDEN_ALIASES = {
    "autograd": ["torch.autograd.grad", "torch.autograd.backward", "torch.Tensor.backward"],
}


class ForbiddenOperation(Exception):
    """Raised when the student's code calls an operation its exercise forbids."""


_PROBES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes.py")


def _called_by_probe(is_student_file: Any) -> bool:
    """Whether the nearest caller that is either student code or a probe is a probe.

    A probe may call a forbidden op itself (the gradient probe calls backward), but student
    code called from inside a probe may not.
    """
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename == _PROBES_FILE:
            return True
        if is_student_file(filename):
            return False
        frame = frame.f_back
    return False


def install(names: list[str], exercise: str, is_student_file: Any) -> None:
    """Replace each named callable with one that raises ForbiddenOperation for student code.

    A forbidden class is replaced by a subclass whose constructor raises, so that student
    code subclassing it still imports and is told why at construction.
    """
    import functools

    for spec in names:
        for qualname in FORBIDDEN_ALIASES.get(spec, [spec]):
            owner_path, _, attr = qualname.rpartition(".")
            try:
                owner: Any = importlib.import_module(owner_path)
            except ImportError:
                owner = importlib.import_module(owner_path.split(".")[0])
                for part in owner_path.split(".")[1:]:
                    owner = getattr(owner, part, None)
            original = getattr(owner, attr, None)
            if original is None:
                continue  # not in this version of the library: nothing to forbid
            message = f"{exercise} may not use {qualname}; implement it yourself with basic operations"

            guarded: Any = None
            if isinstance(original, type):

                def init(self: Any, *args: Any, _original: Any = original, _message: str = message, **kwargs: Any) -> None:
                    if not _called_by_probe(is_student_file):
                        raise ForbiddenOperation(_message)
                    _original.__init__(self, *args, **kwargs)

                try:
                    guarded = type(original.__name__, (original,), {"__init__": init, "__module__": original.__module__})
                except TypeError:  # a class that cannot be subclassed (a Rust or C type): guard its calls
                    guarded = None
            if guarded is None:

                def make(original: Any, message: str) -> Any:
                    @functools.wraps(original)
                    def guard(*args: Any, **kwargs: Any) -> Any:
                        if _called_by_probe(is_student_file):
                            return original(*args, **kwargs)
                        raise ForbiddenOperation(message)

                    return guard

                guarded = make(original, message)
            try:
                setattr(owner, attr, guarded)
            except (AttributeError, TypeError):
                continue  # a read-only attribute (a C extension's) cannot be guarded
