"""What a check sent to the student's code and what came back, for the diagnosers.

While a check runs, every call into the solution (a function of the student's module, or a
method of an object living in the solution process) is kept here with its arguments and
its result. When a comparison fails, `grader.diagnose` looks for the call that produced the
value being compared: its inputs (is the output one of them? is it wrong only where a mask
argument is 0?) and the other calls' results (is it an earlier call's answer?).

Only the judge's own values are kept, by reference and for one check; nothing is copied.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MAX_CALLS = 64  # a check making more calls keeps its latest ones


def describe_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """`name(Tensor(4, 7), dim=0)`: a call as a message shows it, arrays by their shape."""

    def short(v: Any) -> str:
        # looked up on the type: on a proxy of an object in the solution process (a tokenizer
        # passed back to the student's function) reading an attribute would be a request there
        if hasattr(type(v), "shape") and hasattr(type(v), "dtype"):
            return f"{type(v).__name__}{tuple(v.shape)}"
        r = repr(v)
        return r if len(r) <= 30 else r[:27] + "..."

    parts = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


@dataclass
class Call:
    function: str  # the name the call was made through: "softmax", or a type name for a method
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any = None
    names: list[str] = field(default_factory=list)  # parameter names of args, when known

    def inputs(self) -> list[tuple[str, Any]]:
        """The call's arguments as (name, value): the parameter's name when the signature is
        known, else `argument i`; keyword arguments by their keyword."""
        out = []
        for i, value in enumerate(self.args):
            name = self.names[i] if i < len(self.names) else f"argument {i}"
            out.append((name, value))
        out.extend(self.kwargs.items())
        return out

    def describe(self) -> str:
        return describe_call(self.function, self.args, self.kwargs)

    def leaves(self) -> list[Any]:
        """The result, or its items when it is a tuple, list or dict (one level)."""
        r = self.result
        if isinstance(r, (list, tuple)):
            return list(r[:16])
        if isinstance(r, dict):
            return list(r.values())[:16]
        return [r]

    def produced(self, value: Any) -> bool:
        """Whether `value` is this call's result or one of its items (by identity)."""
        return _contains(self.result, value, depth=2)


def _contains(container: Any, value: Any, depth: int) -> bool:
    if container is value:
        return True
    if depth <= 0:
        return False
    if isinstance(container, (list, tuple)):
        return any(_contains(c, value, depth - 1) for c in container[:64])
    if isinstance(container, dict):
        return any(_contains(c, value, depth - 1) for c in list(container.values())[:64])
    return False


@dataclass
class Compared:
    """A verdict the check passed: the call that produced the student's value, and what
    else that verdict accepts (a known mistake is named only if it is accepted too)."""

    call: Any
    accepts: Any  # output -> bool


class Recorder:
    def __init__(self, signature_of: Any = None, check: str | None = None) -> None:
        self.calls: list[Call] = []
        self.compared: list[Compared] = []
        self.signature_of = signature_of  # function name -> what to read its signature from
        self.check = check  # the check's name (a released course's recorded outputs are kept by it)

    def add(self, function: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
            signature_of: Any = None) -> None:
        if signature_of is None and self.signature_of is not None:
            signature_of = self.signature_of(function)
        names = (positional_names(signature_of) or []) if signature_of is not None else []
        self.calls.append(Call(function, tuple(args), dict(kwargs), result, names))
        if len(self.calls) > MAX_CALLS:
            del self.calls[0]

    def source_of(self, value: Any) -> Call | None:
        """The latest call whose result is `value` or holds it."""
        for call in reversed(self.calls):
            if call.produced(value):
                return call
        return None


def positional_names(function: Any) -> list[str] | None:
    """The names of `function`'s positional parameters; None when its signature can't be read."""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


_current: Recorder | None = None

# Folders a check hands files through (its `shared_dir`), each with the name a released
# course's fingerprints give it: the folder differs from run to run, the files' names do not.
scratch_folders: dict[str, str] = {}


@contextmanager
def recording(signature_of: Any = None, check: str | None = None) -> Iterator[Recorder]:
    """Keep the calls made into the solution until the block ends (one check, named `check`).
    `signature_of(name)` returns what to read a called function's parameter names from."""
    global _current
    before, _current = _current, Recorder(signature_of, check)
    try:
        yield _current
    finally:
        _current = before


def record(function: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any, signature_of: Any = None) -> None:
    """Called by the solution proxies after each call that returned."""
    if _current is not None:
        try:
            _current.add(function, args, kwargs, result, signature_of)
        except Exception:  # recording is for diagnosis only: it never costs a check
            pass


def signatures_from(module: Any) -> Any:
    """A `signature_of` for `recording`: a name of `module` gives that function, or a class's
    `forward` (or `__call__`) without `self`, for calls on its instances."""

    def find(name: str) -> Any:
        obj = getattr(module, name, None)
        if isinstance(obj, type):
            method = getattr(obj, "forward", None) or vars(obj).get("__call__")
            return functools.partial(method, None) if method is not None else None
        return obj if callable(obj) else None

    return find


def current() -> Recorder | None:
    return _current


def compared(call: Any, accepts: Any) -> None:
    """Called by each verdict that passes, with the call it judged and `accepts(output)`:
    whether another output (a known mistake's) would have been judged the same."""
    if _current is not None:
        _current.compared.append(Compared(call, accepts))
        if len(_current.compared) > 4 * MAX_CALLS:
            del _current.compared[0]
