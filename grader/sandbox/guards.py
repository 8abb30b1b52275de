"""Forbidden ops: what an exercise may not call, enforced in the solution process.

`install(names, exercise, is_student_file)` runs before the student's module is imported.
An exercise's `forbidden = [...]` holds two kinds of names:

- A bare identifier (no dot), e.g. `"softmax"`, `"scaled_dot_product_attention"`,
  `"autograd"`, names a torch op family. It is enforced at torch's own layer by a
  `torch.overrides.TorchFunctionMode`, which sees every door to the op: `torch.softmax`,
  `torch.nn.functional.softmax`, `Tensor.softmax`, `torch._C._VariableFunctions.softmax`,
  `torch.special.softmax`, `torch.ops.aten._softmax.default`, ... Each function the mode
  sees is mapped to one canonical op name (namespace, `special_` prefix, leading and
  trailing underscores and overload suffix stripped: `aten::_softmax.default` is
  `softmax`, `Tensor.add_` is `add`), then to its family (`FAMILIES`: the private
  kernels `_scaled_dot_product_flash_attention_for_cpu`, `_safe_softmax`, ... belong to
  their public op). `"autograd"` is `Tensor.backward`, `torch.autograd.backward`,
  `torch.autograd.grad` (which `torch.func.grad`/`vjp` and `torch.autograd.functional`
  call) and forward-mode `torch._make_dual` (which `torch.func.jvp`/`jacfwd` call).
- A dotted name, e.g. `"torch.optim.SGD"` or
  `"transformers.models.llama.modeling_llama.LlamaAttention"`, replaces that Python
  callable with a guard (a class by a subclass whose constructor refuses, so student
  classes deriving from it still import and are told why at construction), there and
  wherever a loaded module holds it under another name: an attribute, or a value of a
  module-level dict (a registry such as `ROPE_INIT_FUNCTIONS`). Use it only
  for what torch's layer cannot see: classes, plain Python helpers (`torch.nn.init.*`,
  `torch.optim.*`) and other libraries.

Who may use a forbidden op. `trusted()` marks the few places where a probe itself needs
one (the gradient probe's `backward()`). A forbidden op is allowed only if, walking the
Python stack outward from it: there is no student frame anywhere on it; the walk
reaches a frame that is inside a `with trusted():` block and whose code object is a
probe body (a function of probes.py, nested ones included, compared by identity); and
further out it reaches `grader.sandbox.server.dispatch_probe`, on the main thread.
So student code calling a probe gets nothing, a student callable called by a probe
gets nothing, and a library function handed to a probe (a module-level alias
`softmax = torch.softmax`) is outside `trusted()` and gets nothing.

Limits: a TorchFunctionMode sees the outermost torch call only, so an allowed torch
function that computes a forbidden op inside (`scaled_dot_product_attention` with
identity keys in the softmax exercise) is not seen, nor is Python code that torch runs
on the student's behalf while inside a call (autograd hooks, a custom
`autograd.Function.backward`, a tensor subclass's `__torch_function__`), nor another
thread (the mode stack is per thread). Code that deliberately switches the mode off
(`torch._C.DisableTorchFunction()`) or edits this module is not stopped: the guard
catches using the library, not tampering with the grader.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import linecache
import re
import sys
import threading
import types
from collections.abc import Callable
from typing import Any


class ForbiddenOperation(Exception):
    """Raised when the student's code calls an operation its exercise forbids."""


# Op families: a bare name in `forbidden` covers every canonical op name its pattern fully
# matches (besides the name itself).
FAMILIES: dict[str, str] = {
    "softmax": r"(safe_|masked_|sparse_)?softmax|softmin|nested_tensor_softmax_with_shape",
    "log_softmax": r"(sparse_)?log_softmax",
    "scaled_dot_product_attention": (
        r"scaled_dot_product_\w+|triton_scaled_dot_attention|(flash|efficient)_attention_\w+"
    ),
    "multi_head_attention": r"(native_|triton_)?multi_head_attention(_forward)?",
    "transformer_encoder_layer": r"transformer_encoder_layer_fwd",
    "cross_entropy": r"cross_entropy(_loss)?",
    "nll_loss": r"nll_loss(2d|_nd)?(_forward)?",
    "layer_norm": r"(native_)?layer_norm",
    "rms_norm": r"(fused_)?rms_norm",
    "autograd": r"make_dual",
}
_FAMILY_PATTERNS = [(family, re.compile(pattern)) for family, pattern in FAMILIES.items()]

MESSAGE_TAIL = "implement it yourself with basic operations"


# --- who may use a forbidden op -------------------------------------------------------


class _Trust:
    """What the stack walk compares against; filled in by `install`."""

    is_student_file: Callable[[str], bool] = staticmethod(lambda filename: False)
    student_files: dict[str, bool] = {}
    probe_codes: dict[int, types.CodeType] = {}
    dispatch_code: types.CodeType | None = None
    main_thread: int | None = None
    # Frames now inside a `with trusted():` block, innermost last.
    entered: list[types.FrameType] = []


def _is_student(filename: str) -> bool:
    known = _Trust.student_files.get(filename)
    if known is None:
        known = _Trust.student_files[filename] = bool(_Trust.is_student_file(filename))
    return known


class trusted:
    """`with trusted():` around a probe's own use of an op the exercise forbids.

    A with-block leaves no frame of the context manager on the stack while its body
    runs, so `trusted()` records the frame that entered it; the stack walk accepts that
    frame only while it is inside the block and only if its code is a probe body.
    """

    __slots__ = ("_frame",)

    def __enter__(self) -> None:
        self._frame = sys._getframe(1)
        _Trust.entered.append(self._frame)

    def __exit__(self, *exc: Any) -> None:
        entered = _Trust.entered
        for i in range(len(entered) - 1, -1, -1):
            if entered[i] is self._frame:
                del entered[i]
                break
        self._frame = None


def _walk(frame: types.FrameType | None) -> tuple[bool, types.FrameType | None]:
    """Whether a forbidden op called from `frame` is a probe's own use, and the nearest student frame."""
    entered = None
    dispatched = False
    while frame is not None:
        code = frame.f_code
        if _is_student(code.co_filename):
            return False, frame
        if entered is None:
            if _Trust.probe_codes.get(id(code)) is code and any(frame is f for f in _Trust.entered):
                entered = frame
        elif code is _dispatch_code():
            dispatched = True
        frame = frame.f_back
    return dispatched and threading.get_ident() == _Trust.main_thread, None


def _allowed(frame: types.FrameType | None) -> bool:
    return bool(_Trust.entered) and _walk(frame)[0]


def _dispatch_code() -> types.CodeType | None:
    if _Trust.dispatch_code is None:
        server = sys.modules.get("grader.sandbox.server")  # importing it here would be a cycle
        dispatch = getattr(server, "dispatch_probe", None)
        _Trust.dispatch_code = getattr(dispatch, "__code__", None)
    return _Trust.dispatch_code


def _codes_of(module: Any) -> dict[int, types.CodeType]:
    """The code objects of a module's functions, nested functions included, by identity."""
    found: dict[int, types.CodeType] = {}

    def add(code: types.CodeType) -> None:
        if id(code) in found:
            return
        found[id(code)] = code
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add(const)

    for value in vars(module).values():
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            add(value.__code__)
    return found


# --- the torch layer -----------------------------------------------------------------


def op_name(func: Any) -> str:
    """The one canonical op name of a function a TorchFunctionMode receives.

    `torch.ops.aten._softmax.default`, `torch._softmax`, `torch.special.softmax`,
    `Tensor.softmax` all give `softmax`; `Tensor.add_` gives `add`. A tensor attribute
    read or write (`x.grad`) gives `Tensor.<attr>`, which no bare name matches.
    """
    import torch

    if func is torch.Tensor.backward or func is torch.autograd.backward or func is torch.autograd.grad:
        return "autograd"
    name = getattr(func, "__name__", None) or type(func).__name__
    if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        name = name.split(".")[0]
    elif name in ("__get__", "__set__", "__delete__") and hasattr(getattr(func, "__self__", None), "__name__"):
        return f"Tensor.{func.__self__.__name__}"
    if name.startswith("special_"):
        name = name[len("special_"):]
    return name.strip("_")


def family(op: str) -> str:
    for name, pattern in _FAMILY_PATTERNS:
        if pattern.fullmatch(op):
            return name
    return op


def known_op(name: str) -> bool:
    """Whether a bare forbidden name is an op family or an op this torch has (for checking tomls)."""
    import torch
    import torch.nn.functional as F

    if name in FAMILIES:
        return True
    owners = (torch, F, torch.Tensor, torch.special, torch.linalg, torch.ops.aten)
    for attr in (name, f"_{name}", f"{name}_", f"special_{name}"):
        for owner in owners:
            try:
                if getattr(owner, attr, None) is not None:
                    return True
            except (AttributeError, RuntimeError):
                continue
    return False


def _door(func: Any, student: types.FrameType | None) -> str:
    """The dotted name the student reached `func` by (among its aliases, the one on the student's line)."""
    import torch
    import torch.nn.functional as F

    if isinstance(func, torch._ops.OpOverload):
        return f"torch.ops.{func.namespace}.{func.__name__}"
    if isinstance(func, torch._ops.OpOverloadPacket):
        return "torch.ops." + func._qualified_op_name.replace("::", ".")
    name = getattr(func, "__name__", "") or ""
    if name in ("__get__", "__set__", "__delete__") and hasattr(getattr(func, "__self__", None), "__name__"):
        return f"torch.Tensor.{func.__self__.__name__}"
    owners = [
        ("torch", torch), ("torch.nn.functional", F), ("torch.special", torch.special), ("torch.Tensor", torch.Tensor),
        ("torch.autograd", torch.autograd), ("torch.linalg", torch.linalg),
        ("torch._C._VariableFunctions", torch._C._VariableFunctions), ("torch._C._nn", torch._C._nn),
        ("torch._C._special", torch._C._special), ("torch._C._linalg", torch._C._linalg),
    ]
    attrs = [name] + ([name[len("special_"):]] if name.startswith("special_") else [])
    aliases = []
    for path, owner in owners:
        for attr in attrs:
            try:
                if getattr(owner, attr, None) is func:
                    aliases.append(f"{path}.{attr}")
            except Exception:  # an odd attribute: not this alias
                continue
    if aliases:
        line = linecache.getline(student.f_code.co_filename, student.f_lineno) if student is not None else ""
        for alias in aliases:
            if ".".join(alias.split(".")[-2:]) in line:
                return alias
        return aliases[0]
    module = getattr(func, "__module__", None) or ""
    module = "torch" if module == "torch._tensor" else module
    qualname = getattr(func, "__qualname__", name)
    return f"{module}.{qualname}" if module else qualname


def _torch_mode(forbidden: frozenset[str], exercise: str) -> Any:
    from torch.overrides import TorchFunctionMode

    verdicts: dict[Any, str | None] = {}

    def verdict(func: Any) -> str | None:
        """The forbidden op `func` is a door to, or None."""
        op = op_name(func)
        fam = family(op)
        return fam if fam in forbidden else op if op in forbidden else None

    class ForbiddenOps(TorchFunctionMode):
        """Refuses the exercise's forbidden torch ops, by whichever door they are reached."""

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            try:
                op = verdicts[func]
            except KeyError:
                op = verdicts[func] = verdict(func)
            except TypeError:  # an unhashable callable
                op = verdict(func)
            if op is not None:
                allowed, student = _walk(sys._getframe(1))
                if not allowed:
                    raise ForbiddenOperation(
                        f"{exercise} may not use {op} (called as {_door(func, student)}); {MESSAGE_TAIL}"
                    )
            return func(*args, **(kwargs or {}))

    return ForbiddenOps()


# --- name guards ---------------------------------------------------------------------


def _resolve(qualname: str) -> tuple[Any, str, Any]:
    owner_path, _, attr = qualname.rpartition(".")
    try:
        owner: Any = importlib.import_module(owner_path)
    except ImportError:
        owner = importlib.import_module(owner_path.split(".")[0])
        for part in owner_path.split(".")[1:]:
            owner = getattr(owner, part, None)
    return owner, attr, getattr(owner, attr, None)


def _guard_name(qualname: str, exercise: str) -> tuple[Any, Any] | None:
    """Replace the named callable with one that raises ForbiddenOperation unless a probe's own
    use; returns (original, guard), or None when there is nothing to guard."""
    owner, attr, original = _resolve(qualname)
    if original is None:
        return None  # not in this version of the library: nothing to forbid
    message = f"{exercise} may not use {qualname}; {MESSAGE_TAIL}"

    guarded: Any = None
    if isinstance(original, type):

        def init(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            if not _allowed(sys._getframe(1)):
                raise ForbiddenOperation(message)
            _original.__init__(self, *args, **kwargs)

        try:
            guarded = type(original.__name__, (original,), {"__init__": init, "__module__": original.__module__})
        except TypeError:  # a class that cannot be subclassed (a Rust or C type): guard its calls
            guarded = None
    if guarded is None:

        @functools.wraps(original)
        def guard(*args: Any, **kwargs: Any) -> Any:
            if _allowed(sys._getframe(1)):
                return original(*args, **kwargs)
            raise ForbiddenOperation(message)

        del guard.__wrapped__  # no handle on the original
        guarded = guard
    try:
        setattr(owner, attr, guarded)
    except (AttributeError, TypeError):
        return None  # a read-only attribute (a C extension's) cannot be guarded
    return original, guarded


def _guard_aliases(guards: dict[int, Any], packages: set[str]) -> None:
    """Put each guard in place of its original wherever a loaded module of `packages` (the
    guarded names' top-level packages) holds another reference to it: a module attribute
    (`from a import f` elsewhere) or a value of a plain dict that is a module attribute (a
    registry, such as transformers' `ROPE_INIT_FUNCTIONS["yarn"]`), so that no second name
    reaches the original. `guards` maps id(original) to its guard; the caller keeps every
    original alive, so an id found there is that object."""
    for module_name, module in list(sys.modules.items()):
        if module_name.partition(".")[0] not in packages:
            continue
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if id(value) in guards:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(module, name, guards[id(value)])
            elif type(value) is dict:
                value.update({key: guards[id(entry)] for key, entry in value.items() if id(entry) in guards})


def install(names: list[str], exercise: str, is_student_file: Any) -> None:
    """Forbid `names` (see the module docstring) to the student's code in this process.

    Bare op names install a TorchFunctionMode, entered and never exited, only when there
    are some; dotted names replace the named callables.
    """
    from grader.sandbox import probes

    _Trust.is_student_file = staticmethod(is_student_file)
    _Trust.student_files = {}
    _Trust.probe_codes = _codes_of(probes)
    _Trust.dispatch_code = None
    _Trust.main_thread = threading.get_ident()
    _dispatch_code()
    ops = frozenset(name for name in names if "." not in name)
    if ops:
        _torch_mode(ops, exercise).__enter__()
    dotted = [name for name in names if "." in name]
    pairs = [pair for pair in (_guard_name(name, exercise) for name in dotted) if pair is not None]
    if pairs:
        _guard_aliases({id(original): guard for original, guard in pairs}, {n.partition(".")[0] for n in dotted})
