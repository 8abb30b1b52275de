"""The untrusted side: imports the student's module and serves the judge's calls.

Runs only inside a solution process (forked from the zygote). Everything the student's
code returns is sent back as data or kept here behind a reference; exceptions are sent
as (type, message, traceback filtered to the student's own files).
"""

from __future__ import annotations

import importlib
import io
import linecache
import operator
import os
import sys
import traceback
import types
from pathlib import Path
from typing import Any

from grader.sandbox import guards, inputs, protocol
from grader.sandbox.protocol import Op, Reply

OUTPUT_CAP = 64 << 10
MESSAGE_CAP = 4000

OPERATORS = {
    name: getattr(operator, name)
    for name in (
        "add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "mod", "neg", "pos",
        "abs", "getitem", "lt", "le", "gt", "ge", "contains",
    )
}
OPERATORS.update({"len": len, "list": list, "float": float, "int": int, "str": str, "repr": repr})


class CappedOutput(io.TextIOBase):
    """sys.stdout/sys.stderr replacement: keeps the first OUTPUT_CAP characters per call."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s: Any) -> int:
        s = str(s)
        room = OUTPUT_CAP - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def take(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters of output dropped]"
        self.parts, self.kept, self.dropped = [], 0, 0
        return text


def safe_str(obj: Any) -> str:
    try:
        s = str(obj)
    except BaseException:  # a hostile __str__ must not take the server down
        s = f"<{type(obj).__name__} whose str() failed>"
    return s if len(s) <= MESSAGE_CAP else s[:MESSAGE_CAP] + " [...]"


class SolutionServer:
    def __init__(self, sock: Any, request: dict[str, Any]):
        self.sock = sock
        self.solutions = Path(request["solutions"]).resolve()
        self.display_root = Path(request["display_root"])
        self.track = request["track"]
        self.name = request["name"]
        self.objects: dict[int, Any] = {}
        self.next_id = 1
        self.output = CappedOutput()
        self.max_frame = int(request.get("max_frame", protocol.DEFAULT_MAX_FRAME))
        # The arguments the exercise's functions may modify; any other change fails the call.
        self.inplace = tuple(str(a) for a in request.get("inplace", ()))

    # --- student files and tracebacks -------------------------------------------------

    def display(self, filename: str) -> str:
        try:
            return os.path.relpath(filename, self.display_root)
        except ValueError:
            return filename

    def is_student_file(self, filename: str) -> bool:
        try:
            return Path(filename).resolve().is_relative_to(self.solutions)
        except (OSError, ValueError):
            return False

    def student_traceback(self, exc: BaseException) -> str:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if self.is_student_file(f.filename)]
        lines = []
        for f in frames[-20:]:
            lines.append(f'  File "{self.display(f.filename)}", line {f.lineno}, in {f.name}')
            if f.line:
                lines.append(f"    {f.line}")
                # Under the expression that raised, as Python shows it (not when it is the whole line).
                colno, end = getattr(f, "colno", None), getattr(f, "end_colno", None)
                if colno is not None and end is not None and f.end_lineno == f.lineno:
                    raw = linecache.getline(f.filename, f.lineno).encode()
                    indent = len(raw) - len(raw.lstrip())
                    start = len(raw[indent:colno].decode(errors="replace"))  # the columns count bytes
                    stop = len(raw[indent:end].decode(errors="replace"))
                    if 0 <= start < stop <= len(f.line) and stop - start < len(f.line):
                        lines.append(f"    {caret(f.line, start, stop)}")
        return "\n".join(lines)

    def error_payload(self, exc: BaseException) -> dict[str, Any]:
        kind = type(exc).__name__
        if isinstance(exc, SystemExit):
            message = f"your code called sys.exit({safe_str(exc.code)})"
        else:
            message = safe_str(exc)
        return {"type": kind, "message": message, "traceback": self.student_traceback(exc)}

    # --- import -----------------------------------------------------------------------

    def import_student(self) -> Any:
        package = types.ModuleType("exercises")
        package.__path__ = [str(self.solutions)]
        sys.modules["exercises"] = package
        module_name = f"exercises.{self.track}.{self.name}"
        path = self.solutions / self.track / f"{self.name}.py"
        if not path.is_file():
            raise FileNotFoundError(f"{self.display(str(path))} does not exist")
        return importlib.import_module(module_name)

    def import_error(self, exc: BaseException) -> dict[str, Any]:
        path = self.display(str(self.solutions / self.track / f"{self.name}.py"))
        if isinstance(exc, SyntaxError):
            where = f" at line {exc.lineno}" if exc.lineno else ""
            detail = ""
            if exc.text:
                line = exc.text.rstrip()
                detail = f"\n    {line}"
                if exc.offset and exc.offset > 0:
                    one_line = exc.end_lineno == exc.lineno and (exc.end_offset or 0) > exc.offset
                    end = exc.end_offset if one_line else exc.offset + 1
                    detail += f"\n    {caret(line, exc.offset - 1, end - 1)}"
            file = self.display(exc.filename) if exc.filename else path
            message = f"{file}: {type(exc).__name__}{where}: {exc.msg}{detail}"
        elif isinstance(exc, FileNotFoundError) and not exc.__traceback__.tb_next:
            message = f"{path} does not exist: create it (copy the stub) and try again"
        else:
            message = f"{path}: importing it raised {self.error_payload(exc)['type']}: {self.error_payload(exc)['message']}"
        return {"message": message, "traceback": self.student_traceback(exc)}

    # --- references -------------------------------------------------------------------

    def as_ref(self, obj: Any) -> dict[str, Any]:
        ref_id = self.next_id
        self.next_id += 1
        self.objects[ref_id] = obj
        return {"$ref": ref_id, "type": safe_str(type(obj).__qualname__)[:200], "callable": callable(obj)}

    def from_ref(self, ref: protocol.Ref) -> Any:
        try:
            return self.objects[ref.id]
        except KeyError:
            raise protocol.WireError(f"unknown reference {ref.id}") from None

    # --- serving ----------------------------------------------------------------------

    def serve(self, module: Any) -> None:
        self.objects[0] = module
        names = {}
        for key, value in vars(module).items():
            if not key.startswith("_") and not isinstance(value, types.ModuleType):
                names[key] = "callable" if callable(value) else "data"
        self.send({Reply.READY: {"names": names}})
        while True:
            try:
                header, buffers = protocol.recv_frame(self.sock)
            except protocol.PeerClosed:
                return
            try:
                # The judge adds the deadline beside the encoded request, which decoding drops.
                limit_cpu(header.get("deadline_s") if isinstance(header, dict) else None)
                request = protocol.decode(header, buffers, self.from_ref)
                result = self.handle(request)
                reply: dict[str, Any] = {Reply.OK: result}
            except BaseException as exc:  # the student's failures are data for the judge
                reply = {Reply.ERROR: self.error_payload(exc)}
            reply[Reply.OUTPUT] = self.output.take()
            try:
                self.send(reply)
            except protocol.WireError as exc:
                self.send({"error": {"type": "WireError", "message": f"the value could not be sent to the grader: {exc}", "traceback": ""}, "output": ""})

    def send(self, reply: dict[str, Any]) -> None:
        header, buffers = protocol.encode(reply, self.as_ref)
        size = sum(len(b) for b in buffers)
        if size > self.max_frame:
            raise protocol.FrameTooLarge(size, self.max_frame)
        protocol.send_frame(self.sock, header, buffers)

    def handle(self, request: dict[str, Any]) -> Any:
        op = request["op"]
        target = request.get("target")
        if op == Op.CALL:
            fn = target
            path = request.get("path", [])
            for attr in path:
                fn = getattr(fn, attr)
            # A function of the module goes by the name the judge called it by; anything else
            # (a remote object, its bound method) by its type's or qualified name.
            name = ".".join(path) if path and target is self.objects.get(0) else None
            return inputs.checked_call(fn, tuple(request.get("args", ())), dict(request.get("kwargs", {})),
                                       self.inplace, name)
        if op == Op.GETATTR:
            return getattr(target, request["name"])
        if op == Op.SETATTR:
            setattr(target, request["name"], request["value"])
            return None
        if op == Op.OPERATOR:
            return OPERATORS[request["name"]](*request["args"])
        if op == Op.PROBE:
            args = tuple(self.guard(a) for a in request.get("args", ()))
            kwargs = {k: self.guard(v) for k, v in request.get("kwargs", {}).items()}
            return dispatch_probe(request["name"], args, kwargs)
        raise ValueError(f"unknown operation {op!r}")

    def guard(self, value: Any) -> Any:
        """A probe argument as the probe should call it: the student's module, or one of its
        functions, checked for modifying its inputs on every call as Op.CALL is (and as direct
        mode's `grader.direct.DirectModule` is)."""
        module = self.objects.get(0)
        if module is None:
            return value
        if value is module:
            return inputs.GuardedModule(module, self.inplace)
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            return inputs.guarded(value, self.inplace)
        return value


def caret(line: str, start: int, end: int) -> str:
    """A line of ^ under columns start..end-1 (0-based) of `line`; its tabs are kept so
    that the ^ line up however tabs are shown."""
    pad = "".join(ch if ch == "\t" else " " for ch in line[:start])
    return pad + "^" * max(1, end - start)


def limit_cpu(deadline_s: Any) -> None:
    """Tie this call's CPU time to its wall-clock deadline: CPU time so far, plus the
    deadline on each of the process's torch threads, plus a little (the hard limit, set at
    spawn, caps the process's total)."""
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)) or not deadline_s > 0:
        return
    import resource

    import torch

    used = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used.ru_utime + used.ru_stime + min(deadline_s, 1e6) * max(1, torch.get_num_threads())) + 2
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (OSError, ValueError):
        pass


def dispatch_probe(name: str, args: Any, kwargs: Any) -> Any:
    """Run a probe the judge asked for. Only a probe entered here may use `guards.trusted()`."""
    from grader.sandbox import probes

    fn = probes.PROBES[name]
    return fn(*args, **kwargs)


def run(sock: Any, request: dict[str, Any]) -> None:
    """Entry point in the forked solution process; never returns into the zygote."""
    server = SolutionServer(sock, request)
    sys.stdout = sys.stderr = server.output
    try:
        guards.install(request.get("forbidden", []), f"{request['track']}.{request['name']}", server.is_student_file)
        module = server.import_student()
    except BaseException as exc:
        server.send({Reply.IMPORT_ERROR: server.import_error(exc), Reply.OUTPUT: server.output.take()})
        return
    server.serve(module)
