"""Did a call modify its arguments? A snapshot before, a comparison after.

A student's function that writes into the caller's array (`grad_y[x <= 0] = 0; return
grad_y`) can return the right values and still break the caller, who reads `grad_y` again
later. The judge cannot see it: in isolated mode the arguments it sent were copies. So the
solution server (and, in direct mode, `grader.direct.DirectModule`) wraps each call:

    snap = snapshot(args, kwargs)              # clones of the tensors and arrays
    result = fn(*args, **kwargs)
    changed = modified(snap, fn, args, kwargs, allowed=exercise.inplace)
    if changed: raise InputModified(message(call_name(fn), changed))

What is watched: torch tensors and numpy arrays passed as arguments, and those one level
inside a list, tuple or dict argument (`params[2]`, `batch['ids']`). A change is a
tensor's data (not its `.grad`), shape or dtype, or a list or dict item replaced by
another object. Values compare bitwise, except that NaN equals NaN whatever its payload.
Arguments are named by the callee's parameters (`inspect.signature(fn).bind_partial`),
else `argument i` or the keyword. Read-only numpy arrays (a memmap opened with mode='r')
cannot change and are not copied; when the watched data passes `LIMIT_BYTES` in all, the
call is not checked at all (the copies would cost too much memory).

`allowed` holds the exercise's `inplace` names: a parameter name (`"tensor"`) for every
function of the exercise, or `"function.parameter"` (`"xavier_uniform_.tensor"`) for one.

Runs inside the sandbox (imports nothing of the judge) and in the judge in direct mode.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

LIMIT_BYTES = 256 << 20
"""Calls whose watched arguments hold more than this are not checked."""

MAX_ITEMS = 10_000
"""Only the first items of a long list, tuple or dict argument are looked at."""


class InputModified(Exception):
    """A call modified an argument that its exercise does not declare in `inplace`."""


@dataclass
class _Entry:
    position: int | str  # the argument's index, or its keyword
    key: Any  # the item's key inside the argument, or _TOP for the argument itself
    container: Any  # the list or dict holding the item (None at the top, or in a tuple)
    value: Any  # the tensor or array itself
    shape: tuple[int, ...]
    dtype: Any
    copy: Any


_TOP = object()


@dataclass
class Change:
    """One modified argument: where it was passed, and what changed."""

    position: int | str
    key: Any
    what: str  # "its values changed", "its shape changed from (3,) to (1, 3)", ...
    numpy: bool

    def name(self, params: dict[int | str, str]) -> str:
        base = params.get(self.position)
        if base is None:
            base = f"argument {self.position}" if isinstance(self.position, int) else str(self.position)
        return base if self.key is _TOP else f"{base}[{self.key!r}]"


Snapshot = list[_Entry]


def _array_types() -> tuple[type, ...]:
    kinds: list[type] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        kinds.append(torch.Tensor)
    np = sys.modules.get("numpy")
    if np is not None:
        kinds.append(np.ndarray)
    return tuple(kinds)


def _watched(x: Any, kinds: tuple[type, ...]) -> bool:
    if not isinstance(x, kinds):
        return False
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        return x.dtype != object and bool(x.flags.writeable)  # a read-only array cannot change
    return not getattr(x, "is_sparse", False) and x.layout == sys.modules["torch"].strided


def _nbytes(x: Any) -> int:
    n = getattr(x, "nbytes", None)
    if isinstance(n, int):
        return n
    return int(x.numel()) * int(x.element_size())


def _copy(x: Any) -> Any:
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.ndarray):
        return np.array(x, copy=True)
    return x.detach().clone()


def snapshot(args: Iterable[Any], kwargs: dict[str, Any] | None = None) -> Snapshot | None:
    """Copies of the tensors and arrays among `args` and `kwargs` (and one level inside their
    lists, tuples and dicts); None when there are none, or more than LIMIT_BYTES of them."""
    kinds = _array_types()
    if not kinds:
        return None
    found: list[tuple[int | str, Any, Any, Any]] = []

    def look(position: int | str, arg: Any) -> None:
        if _watched(arg, kinds):
            found.append((position, _TOP, None, arg))
        elif isinstance(arg, (list, tuple)):
            holder = arg if isinstance(arg, list) else None
            for i, item in enumerate(arg[:MAX_ITEMS]):
                if _watched(item, kinds):
                    found.append((position, i, holder, item))
        elif isinstance(arg, dict):
            for i, (key, item) in enumerate(arg.items()):
                if i >= MAX_ITEMS:
                    break
                if _watched(item, kinds):
                    found.append((position, key, arg, item))

    for i, arg in enumerate(args):
        look(i, arg)
    for key, arg in (kwargs or {}).items():
        look(key, arg)
    if not found:
        return None
    seen: set[int] = set()
    total = 0
    for *_, value in found:
        if id(value) not in seen:
            seen.add(id(value))
            total += _nbytes(value)
    if total > LIMIT_BYTES:
        return None
    return [_Entry(pos, key, holder, value, tuple(value.shape), value.dtype, _copy(value))
            for pos, key, holder, value in found]


def same_data(a: Any, b: Any) -> bool:
    """Whether two tensors, or two numpy arrays, hold the same bits (NaN equal to NaN)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(a, np.ndarray):
        if not isinstance(b, np.ndarray) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        a, b = np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1)
        if a.dtype.kind == "c":
            a, b = a.view(a.real.dtype), b.view(b.real.dtype)
        if a.dtype.kind == "f" and a.dtype.itemsize in (2, 4, 8):
            bits = f"u{a.dtype.itemsize}"
            return bool(((a.view(bits) == b.view(bits)) | (np.isnan(a) & np.isnan(b))).all())
        return a.tobytes() == b.tobytes()
    torch = sys.modules["torch"]
    if not isinstance(b, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    a, b = a.detach(), b.detach()
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    if a.is_floating_point():
        ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return bool(((a.view(ints) == b.view(ints)) | (torch.isnan(a) & torch.isnan(b))).all())
    return bool(torch.equal(a, b))


def same_value(a: Any, b: Any) -> bool:
    """Whether two results are identical: tensors and arrays bit for bit (NaN equal to NaN),
    lists, tuples and dicts item by item, anything else by ==."""
    kinds = _array_types()
    if isinstance(a, kinds) or isinstance(b, kinds):
        return type(a) is type(b) and same_data(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(same_value(a[k], b[k]) for k in a))
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return a is b


def _changes(snap: Snapshot) -> list[tuple[_Entry, Change]]:
    np = sys.modules.get("numpy")
    out: list[tuple[_Entry, Change]] = []
    for e in snap:
        is_numpy = np is not None and isinstance(e.value, np.ndarray)
        what = None
        if e.container is not None:
            try:
                replaced = e.container[e.key] is not e.value
            except (KeyError, IndexError, TypeError):
                replaced = True
            if replaced:
                kind = "list" if isinstance(e.container, list) else "dict"
                what = f"the {kind}'s item was replaced or removed"
        if what is None:
            shape, dtype = tuple(e.value.shape), e.value.dtype
            if shape != e.shape:
                what = f"its shape changed from {e.shape} to {shape}"
            elif dtype != e.dtype:
                what = f"its dtype changed from {e.dtype} to {dtype}"
            else:
                try:
                    if not same_data(e.value, e.copy):
                        what = "its values changed"
                except Exception:  # a tensor that cannot be compared this way is not judged
                    what = None
        if what is not None:
            out.append((e, Change(e.position, e.key, what, is_numpy)))
    return out


def restore(entries: Iterable[_Entry]) -> None:
    """Put back what the call changed, where the shape and dtype still allow it, so that the
    caller's values survive a call that is then reported (in direct mode, the judge's own)."""
    np = sys.modules.get("numpy")
    for e in entries:
        try:
            if e.container is not None:
                e.container[e.key] = e.value
            if tuple(e.value.shape) == e.shape and e.value.dtype == e.dtype:
                if np is not None and isinstance(e.value, np.ndarray):
                    e.value[...] = e.copy
                else:
                    with sys.modules["torch"].no_grad():
                        e.value.copy_(e.copy)
        except Exception:
            continue


def call_name(fn: Any, name: str | None = None) -> str:
    """How a message names the callee: the name it was called by, else its qualified name."""
    if name:
        return name
    if isinstance(fn, (types.FunctionType, types.MethodType, type)):
        qualname = getattr(fn, "__qualname__", None)
        if isinstance(qualname, str):
            return qualname.rpartition("<locals>.")[2]  # a function defined inside another: its own name
    torch = sys.modules.get("torch")
    method = "forward" if torch is not None and isinstance(fn, torch.nn.Module) else "__call__"
    return f"{type(fn).__qualname__}.{method}"


def parameter_names(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[int | str, str]:
    """Argument index or keyword -> the callee's parameter name, as Python would bind them;
    {} when the signature cannot be read or does not take these arguments."""
    target = fn
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(fn, torch.nn.Module):
        target = fn.forward
    try:
        sig = inspect.signature(target)
        sig.bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return {}
    positional = [p.name for p in sig.parameters.values()
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    names: dict[int | str, str] = {i: positional[i] for i in range(min(len(args), len(positional)))}
    names.update({k: k for k in kwargs})
    return names


def _is_allowed(change: Change, params: dict[int | str, str], callee: Iterable[str], allowed: Iterable[str]) -> bool:
    param = params.get(change.position)
    if param is None:
        return False
    for entry in allowed:
        function, _, name = entry.rpartition(".")
        if name == param and (not function or function in callee):
            return True
    return False


def modified(snap: Snapshot | None, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
             allowed: Iterable[str] = ()) -> list[tuple[str, Change]]:
    """The arguments the call changed that `allowed` does not cover, as (name, change);
    what it changed is put back (see `restore`)."""
    if not snap:
        return []
    changes = _changes(snap)
    if not changes:
        return []
    params = parameter_names(fn, args, kwargs)
    qualname = call_name(fn)
    callee = {qualname, qualname.rpartition(".")[2], getattr(fn, "__name__", qualname)}
    bad = [(e, c) for e, c in changes if not _is_allowed(c, params, callee, allowed)]
    restore(e for e, _ in bad)
    return [(c.name(params), c) for _, c in bad]


def message(call: str, changed: list[tuple[str, Change]]) -> str:
    """What the student reads: which argument changed, how, and what to do instead."""
    def arg(name: str) -> str:
        return name if name.startswith("argument ") else f"argument `{name}`"

    if len(changed) == 1:
        name, change = changed[0]
        head = f"{call} modified its {arg(name)} in place ({change.what} during the call)"
    else:
        parts = [f"{arg(n)} ({c.what})" for n, c in changed]
        head = f"{call} modified its " + ", ".join(parts[:-1]) + f" and {parts[-1]} in place during the call"
    name, change = changed[0]
    example = name if not name.startswith("argument ") else "x"
    if change.numpy:
        advice = (f"work on a copy (`{example}.copy()`) or use out-of-place operations (`np.where(...)`, `x * mask`)"
                  " instead of in-place ones (`x[mask] = 0`, `x += ...`)")
    else:
        advice = (f"work on a copy (`{example}.clone()`) or use out-of-place operations (`torch.where(...)`,"
                  " `x * mask`) instead of in-place ones (`x[mask] = 0`, `x.clamp_(...)`)")
    return f"{head}; your code must not modify its inputs: {advice}"


def _unobserved() -> Any:
    """A block in which torch's dispatch modes are off: the snapshot's copies and comparisons
    are the grader's work, not the student's, and a probe watching the call (the tensors it
    allocates, its FLOPs) must not count them."""
    if "torch" not in sys.modules:  # nothing could be watching
        return contextlib.nullcontext()
    from torch.utils._python_dispatch import _disable_current_modes

    return _disable_current_modes()


def checked_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], allowed: Iterable[str] = (),
                 name: str | None = None, error: Callable[[str, str], BaseException] | None = None) -> Any:
    """`fn(*args, **kwargs)`, failing with `error(call, message)` (default: InputModified)
    when it modified an argument that `allowed` does not cover."""
    with _unobserved():
        snap = snapshot(args, kwargs)
    result = fn(*args, **kwargs)
    if snap:
        with _unobserved():
            changed = modified(snap, fn, args, kwargs, allowed)
        if changed:
            call = call_name(fn, name)
            text = message(call, changed)
            raise error(call, text) if error is not None else InputModified(text)
    return result


def guarded(fn: Callable[..., Any], allowed: Iterable[str] = (), name: str | None = None,
            error: Callable[[str, str], BaseException] | None = None) -> Callable[..., Any]:
    """`fn`, checking on every call that it leaves its arguments alone (see `checked_call`)."""
    allowed = tuple(allowed)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return checked_call(fn, args, kwargs, allowed, name, error)

    call.__grade_guarded__ = fn  # type: ignore[attr-defined]
    return call


def unguarded(fn: Any) -> Any:
    """The function a `guarded` wrapper calls, or `fn` itself: for a probe that observes what
    a call does to its arguments and judges that itself (`call_inplace`)."""
    if isinstance(fn, types.FunctionType):
        inner = fn.__dict__.get("__grade_guarded__")
        if inner is not None:
            return inner
    return fn


class GuardedModule:
    """A module whose own functions check their arguments on every call (`guarded`).

    Only plain functions defined in the module itself are wrapped; classes (and so their
    methods), functions it imported and every other attribute come back as they are.
    """

    __slots__ = ("_grade_module", "_grade_allowed", "_grade_error", "_grade_cache")

    def __init__(self, module: types.ModuleType, allowed: Iterable[str] = (),
                 error: Callable[[str, str], BaseException] | None = None):
        object.__setattr__(self, "_grade_module", module)
        object.__setattr__(self, "_grade_allowed", tuple(allowed))
        object.__setattr__(self, "_grade_error", error)
        object.__setattr__(self, "_grade_cache", {})

    def __getattr__(self, name: str) -> Any:
        module = object.__getattribute__(self, "_grade_module")
        value = getattr(module, name)
        if not (isinstance(value, types.FunctionType) and value.__module__ == module.__name__):
            return value
        cache = object.__getattribute__(self, "_grade_cache")
        hit = cache.get(name)
        if hit is None or hit.__grade_guarded__ is not value:
            hit = cache[name] = guarded(value, self._grade_allowed, name, self._grade_error)
        return hit

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_grade_module"), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(object.__getattribute__(self, "_grade_module"), name)

    def __dir__(self) -> list[str]:
        return dir(object.__getattribute__(self, "_grade_module"))

    def __repr__(self) -> str:
        return repr(object.__getattribute__(self, "_grade_module"))
