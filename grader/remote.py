"""Judge-side proxies for the student's module and for objects living in its process.

`solution.softmax(x)` sends a call over the wire and returns data; an object that is not
data (a module, an optimizer, a `Value`) comes back as a `RemoteObject` whose calls,
attribute reads and writes, indexing and arithmetic are forwarded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from grader import recording
from grader.errors import SolutionCrashed, SolutionError, SolutionFailure
from grader.sandbox import protocol
from grader.sandbox.protocol import Op, Reply
from grader.solutions import ModuleRef, SolutionHandle

_MODULE = ModuleRef()
_SHARED: set[Path] = set()  # the shared_dir of the checks running now


def share(directory: Path) -> None:
    """Open `directory` (a check's shared_dir) to the solution process before each request."""
    _SHARED.add(Path(directory))


def unshare(directory: Path) -> None:
    _SHARED.discard(Path(directory))


def _open_shared() -> None:
    """Make what a check wrote into its shared_dir readable by the solution process, which
    runs as another user: some writers (safetensors) create their files 0600."""
    for directory in list(_SHARED):
        for root, dirs, files in os.walk(directory):
            for name, bits in [(d, 0o555) for d in dirs] + [(f, 0o444) for f in files]:
                path = os.path.join(root, name)
                try:
                    mode = os.lstat(path).st_mode
                    if not stat.S_ISLNK(mode) and mode & bits != bits:
                        os.chmod(path, stat.S_IMODE(mode) | bits)
                except OSError:
                    continue


def request(handle: SolutionHandle, message: dict[str, Any], describe: str = "") -> Any:
    """One request to the solution process: proxies go as references, data comes back.

    Objects that are not data come back as `RemoteObject`s; the student's exception comes
    back as `SolutionError`, and what the student printed is kept on the handle.
    """
    handle.ensure_started()
    generation = handle.generation
    if _SHARED:
        _open_shared()

    def as_ref(obj: Any) -> dict[str, Any]:
        if isinstance(obj, RemoteObject):
            if obj._grade_handle is not handle or obj._grade_generation != generation:
                raise SolutionFailure(
                    "an object from an earlier solution process was used after that process "
                    "was restarted (it crashed or timed out)"
                )
            return {"$ref": obj._grade_id}
        if isinstance(obj, ModuleRef):
            return {"$ref": 0}
        raise TypeError(f"cannot send a {type(obj).__name__} to the solution process; only data crosses")

    header, buffers = protocol.encode(message, as_ref)
    reply_header, reply_buffers, generation = handle.exchange(header, buffers, describe)
    try:
        reply = protocol.decode(
            reply_header, reply_buffers, lambda ref: RemoteObject(handle, generation, ref.id, ref.type, ref.callable)
        )
    except protocol.WireError as e:
        handle.stop()
        raise SolutionCrashed(f"the solution process sent a malformed reply ({e}); it was stopped.") from None
    if not isinstance(reply, dict):
        handle.stop()
        raise SolutionCrashed("the solution process sent a malformed reply; it was stopped.")
    output = reply.get(Reply.OUTPUT)
    if isinstance(output, str) and output:
        handle.output.append(output)
    if Reply.ERROR in reply:
        err = reply[Reply.ERROR] if isinstance(reply[Reply.ERROR], dict) else {}
        message_text = str(err.get("message", ""))
        exc_type = str(err.get("type", "Exception"))
        if exc_type == "MemoryError" or "can't allocate memory" in message_text:
            message_text += f" (the memory limit for this exercise is {handle.memory_mb} MiB)"
        raise SolutionError(exc_type, message_text, str(err.get("traceback", "")), describe)
    return reply.get(Reply.OK)


_describe_call = recording.describe_call


class RemoteObject:
    """An object in the solution process. Only data crosses back; the object stays there."""

    __slots__ = ("_grade_handle", "_grade_generation", "_grade_id", "_grade_type", "_grade_callable")

    def __init__(self, handle: SolutionHandle, generation: int, ref_id: int, type_name: str, is_callable: bool):
        object.__setattr__(self, "_grade_handle", handle)
        object.__setattr__(self, "_grade_generation", generation)
        object.__setattr__(self, "_grade_id", ref_id)
        object.__setattr__(self, "_grade_type", type_name)
        object.__setattr__(self, "_grade_callable", is_callable)

    def _grade_op(self, name: str, *args: Any) -> Any:
        return request(self._grade_handle, {"op": Op.OPERATOR, "name": name, "args": args}, f"{name} on {self._grade_type}")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_grade"):
            raise AttributeError(name)
        return request(self._grade_handle, {"op": Op.GETATTR, "target": self, "name": name}, f"{self._grade_type}.{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        request(self._grade_handle, {"op": Op.SETATTR, "target": self, "name": name, "value": value}, f"setting {self._grade_type}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = request(
            self._grade_handle,
            {"op": Op.CALL, "target": self, "path": [], "args": args, "kwargs": kwargs},
            _describe_call(self._grade_type, args, kwargs),
        )
        recording.record(self._grade_type, args, kwargs, result)
        return result

    def __repr__(self) -> str:
        return f"<{self._grade_type} object in the solution process>"

    def __len__(self) -> int:
        try:
            n = self._grade_op("len", self)
        except SolutionError as e:
            if e.exc_type == "TypeError":  # no len(): let list() and friends fall back to iterating
                raise TypeError(e.message) from None
            raise
        if type(n) is not int or n < 0:
            raise TypeError("len() of the remote object did not return a non-negative int")
        return n

    def __iter__(self) -> Any:
        items = self._grade_op("list", self)
        if not isinstance(items, list):
            raise TypeError("iterating the remote object did not give a list")
        return iter(items)

    def __getitem__(self, key: Any) -> Any:
        return self._grade_op("getitem", self, key)

    def __float__(self) -> float:
        v = self._grade_op("float", self)
        if type(v) is not float:
            raise TypeError("float() of the remote object did not return a float")
        return v

    def __bool__(self) -> bool:
        raise TypeError(f"the truth value of a remote {self._grade_type} is not data; compare its data instead")

    __hash__ = object.__hash__


def _binary(name: str, reflected: bool = False) -> Any:
    def method(self: RemoteObject, other: Any) -> Any:
        return self._grade_op(name, other, self) if reflected else self._grade_op(name, self, other)

    return method


for _op in ("add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "mod", "lt", "le", "gt", "ge"):
    setattr(RemoteObject, f"__{_op}__", _binary(_op))
for _op in ("add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "mod"):
    setattr(RemoteObject, f"__r{_op}__", _binary(_op, reflected=True))
RemoteObject.__neg__ = lambda self: self._grade_op("neg", self)  # type: ignore[attr-defined]
RemoteObject.__abs__ = lambda self: self._grade_op("abs", self)  # type: ignore[attr-defined]


class RemoteFunction:
    """A module-level callable of the student's module; calling it is one round trip."""

    def __init__(self, handle: SolutionHandle, name: str):
        self._handle = handle
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = request(
            self._handle,
            {"op": Op.CALL, "target": _MODULE, "path": [self._name], "args": args, "kwargs": kwargs},
            _describe_call(self._name, args, kwargs),
        )
        recording.record(self._name, args, kwargs, result)
        return result

    def __repr__(self) -> str:
        return f"<{self._name} in the solution process>"


class SolutionModule:
    """The `solution` fixture in isolated mode: the student's module, seen from the judge."""

    def __init__(self, handle: SolutionHandle, display_path: str):
        self._handle = handle
        self._display_path = display_path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        self._handle.ensure_started()
        kind = self._handle.names.get(name)
        if kind is None:
            raise AttributeError(
                f"{self._display_path} does not define '{name}'; keep the names and signatures of the stub."
            )
        if kind == "callable":
            return RemoteFunction(self._handle, name)
        return request(self._handle, {"op": Op.GETATTR, "target": _MODULE, "name": name}, name)

    def __repr__(self) -> str:
        return f"<solution {self._display_path}>"


def handle_of(value: Any) -> SolutionHandle | None:
    """The solution process a proxy lives in, or None for a local value."""
    if isinstance(value, RemoteObject):
        return value._grade_handle
    if isinstance(value, (RemoteFunction, SolutionModule)):
        return value._handle
    return None


def call_probe(handle: SolutionHandle, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run the probe `name` in the solution process; proxies travel as references."""

    def ref(a: Any) -> Any:
        if isinstance(a, SolutionModule):
            return _MODULE
        if isinstance(a, RemoteFunction):
            return request(handle, {"op": Op.GETATTR, "target": _MODULE, "name": a._name}, a._name)
        return a

    return request(
        handle,
        {"op": Op.PROBE, "name": name, "args": tuple(ref(a) for a in args), "kwargs": {k: ref(v) for k, v in kwargs.items()}},
        f"{name}(...)",
    )
