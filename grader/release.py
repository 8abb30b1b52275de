"""`grade release OUT`: the student edition of the course, and the recorded outputs it replays.

The student edition carries the stubs, the public checks, hints and docs, and no reference
source, known-mistake source or hidden check. Its checks still give the verdicts and
messages of the full course, named mistakes included, because what they asked of the
trusted code is recorded at release time and replayed:

- the `reference` fixture: each call of a reference function, by its name and a fingerprint
  of its arguments;
- the known mistakes (`grader.compare.Mistakes`): each call a check runs on a mistake (a
  lambda such as `lambda s: s.softmax(x)`), by a fingerprint of the call itself (its code and
  everything it closes over) and the mistake's name.

Library ground truths (torch, transformers, peft) are computed live, as in the full course.
Recording grades the reference, the stub and every known mistake as the solution, in direct
mode, with the public checks and the course's seed: every call a check makes on the
reference, and every call it makes on the known mistakes to name the one a solution's output
equals, is then in the record. A solution whose failing output equals a known mistake's takes
the path that mistake took as a solution, so its calls are recorded too.

Keys are scoped by the check's name. A key that gave two different outputs at release time
(a mistake whose output depends on the judge's global random state) is kept as ambiguous and
replayed as "no output": the mistake is then not named. A call that was never recorded is
replayed the same way for a mistake; for the reference it skips the check, saying why.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import lzma
import re
import sys
import types
from pathlib import Path, PurePath
from typing import Any

from grader import recording
from grader.compare import MutantOutcome
from grader.errors import GraderError

FORMAT = 1
_SIMPLE_CONSTS = (str, bytes, int, float, bool, complex)


# --- fingerprints --------------------------------------------------------------------------


def fingerprint(*objs: Any) -> str:
    """A digest of `objs` that is equal for equal judge-side data: tensors and arrays by
    dtype, shape and bytes; containers item by item; functions by their code (module,
    qualified name, line relative to their enclosing function, names used) and what they
    close over; objects of other types by their type alone."""
    walker = _Walker()
    walker.feed(objs, 0)
    return walker.h.hexdigest()[:40]


class _Walker:
    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.seen: dict[int, int] = {}
        self.alive: list[Any] = []  # keeps what was walked alive, so no id is reused meanwhile

    def w(self, *parts: Any) -> None:
        for p in parts:
            self.h.update(str(p).encode("utf-8", "surrogatepass"))
            self.h.update(b"\x1f")

    def feed(self, obj: Any, depth: int) -> None:
        import numpy as np
        import torch

        if depth > 24:
            self.w("deep")
            return
        t = type(obj)
        if t is str:
            self.w("str", repr(_scrub(obj)))
            return
        if obj is None or t in (bool, int, float, complex):
            self.w(t.__name__, repr(obj))
            return
        if isinstance(obj, PurePath):
            self.w("path", _scrub(str(obj)))
            return
        if t in (bytes, bytearray):
            self.w("bytes", len(obj))
            self.h.update(bytes(obj))
            return
        if isinstance(obj, torch.Tensor):
            self._tensor(obj)
            return
        if isinstance(obj, np.ndarray):
            self._array(obj, depth)
            return
        if isinstance(obj, np.generic):
            self.w("np", obj.dtype.str, repr(obj.item()))
            return
        if isinstance(obj, (torch.dtype, torch.device)):
            self.w(t.__name__, str(obj))
            return
        key = id(obj)
        if key in self.seen:
            self.w("again", self.seen[key])
            return
        self.seen[key] = len(self.seen)
        self.alive.append(obj)
        if t in (list, tuple) or isinstance(obj, torch.Size):
            self.w(t.__name__, len(obj))
            for x in obj:
                self.feed(x, depth + 1)
        elif isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
            self.w("namedtuple", _module(t.__module__), t.__qualname__, len(obj))
            for x in obj:
                self.feed(x, depth + 1)
        elif isinstance(obj, dict) and t.__module__ in ("builtins", "collections"):
            self.w("dict", len(obj))
            for k, v in obj.items():
                self.feed(k, depth + 1)
                self.feed(v, depth + 1)
        elif t in (set, frozenset):
            self.w(t.__name__, *sorted(fingerprint(x) for x in obj))
        elif isinstance(obj, types.FunctionType):
            self._function(obj, depth)
        elif isinstance(obj, types.MethodType):
            self.w("method")
            self.feed(obj.__func__, depth + 1)
            self.feed(obj.__self__, depth + 1)
        elif isinstance(obj, functools.partial):
            self.w("partial")
            self.feed((obj.func, obj.args, obj.keywords), depth + 1)
        elif isinstance(obj, (types.BuiltinFunctionType, types.ModuleType, type)):
            self.w(t.__name__, _module(getattr(obj, "__module__", None) or ""),
                   getattr(obj, "__qualname__", obj.__name__))
        elif isinstance(obj, torch.Generator):
            self.w("generator")
            self._tensor(obj.get_state())
        elif isinstance(obj, np.random.Generator):
            self.w("np.generator")
            self.feed(obj.bit_generator.state, depth + 1)
        elif isinstance(obj, torch.nn.Module):
            self.w("module", _module(t.__module__), t.__qualname__, obj.training)
            self.feed(dict(obj.state_dict()), depth + 1)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            self.w("dataclass", _module(t.__module__), t.__qualname__)
            for f in dataclasses.fields(obj):
                self.feed(getattr(obj, f.name), depth + 1)
        elif t.__module__ == "grader.checks" and t.__qualname__ == "OncePerModule":
            self.w("once per module")  # the program alone: what it keeps is the solution's
            self.feed(obj.fn, depth + 1)
        elif t.__module__ == "grader.rng" and t.__qualname__ == "Rng":
            self.w("rng", obj.seed)
            self.feed((obj.torch, obj.np), depth + 1)
        elif t.__module__.startswith("transformers.") and callable(getattr(t, "to_dict", None)):
            self.w("hf", t.__qualname__)  # a configuration
            self.feed(obj.to_dict(), depth + 1)
        else:
            # Anything else (the solution's proxies, the checks' own helper objects) by its
            # type only: reading it could be a request into the solution process.
            self.w("object", _module(t.__module__), t.__qualname__)

    def _tensor(self, obj: Any) -> None:
        import torch

        if obj.layout != torch.strided or obj.is_meta or obj.is_quantized:
            self.w("tensor", obj.layout, obj.dtype, tuple(obj.shape))
            return
        data = obj.detach().cpu().contiguous()
        self.w("tensor", data.dtype, tuple(data.shape), obj.requires_grad)
        if data.numel():
            self.h.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())

    def _array(self, obj: Any, depth: int) -> None:
        import numpy as np

        self.w("ndarray", obj.dtype.str, obj.shape)
        if obj.dtype == object:
            for x in obj.reshape(-1).tolist():
                self.feed(x, depth + 1)
        else:
            self.h.update(np.ascontiguousarray(obj).tobytes())

    def _function(self, fn: types.FunctionType, depth: int) -> None:
        self.w("function", *_code_key(fn))
        self.feed((fn.__defaults__, fn.__kwdefaults__), depth + 1)
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:
                self.w("empty cell")
                continue
            self.feed(value, depth + 1)


_COMPREHENSION = re.compile(r"<(listcomp|dictcomp|setcomp)>\.")
_SUFFIX = re.compile(r"_[0-9a-f]{8}$")


def _code_key(fn: types.FunctionType) -> tuple[Any, ...]:
    """What identifies a function's code in both editions and across Python versions: its
    module and qualified name (comprehension scopes left out: Python 3.12 inlines them), its
    first line relative to the innermost named function around it (stripping hidden checks
    moves whole functions, never lines inside one), its parameters, and the names and simple
    constants its code uses, nested code included."""
    qualname = _COMPREHENSION.sub("", fn.__qualname__)
    base = None
    obj: Any = sys.modules.get(fn.__module__)
    for part in qualname.split("."):
        if part == "<locals>" or obj is None:
            break
        obj = getattr(obj, part, None)
        code = getattr(obj, "__code__", None)
        if isinstance(code, types.CodeType):
            base = code.co_firstlineno
    code = fn.__code__
    names: set[str] = set()
    consts: set[str] = set()

    def collect(c: types.CodeType) -> None:
        names.update(c.co_names)
        for k in c.co_consts:
            if isinstance(k, types.CodeType):
                collect(k)
            elif type(k) in _SIMPLE_CONSTS:
                consts.add(repr(k))

    collect(code)
    params = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    line = code.co_firstlineno - base if base is not None else code.co_firstlineno
    return _module(fn.__module__), qualname, line, params, tuple(sorted(names)), tuple(sorted(consts))


def _module(name: str) -> str:
    """A module's name as both editions know it: a check module imported a second time from
    another folder (both editions in one process) carries a suffix naming the folder
    (`pytest_plugin.CheckModule`), left out here."""
    return _SUFFIX.sub("", name) if name.startswith("grade_checks.") else name


def _scrub(text: str) -> str:
    """A path into the folder a check hands files through (`shared_dir`), with the folder,
    which differs from run to run, replaced by its name."""
    for folder, name in recording.scratch_folders.items():
        if folder in text:
            text = text.replace(folder, name)
    return text


# --- values as they are stored -------------------------------------------------------------


class Unrecordable(TypeError):
    pass


def encode(value: Any) -> Any:
    """`value` as plain data `torch.load(weights_only=True)` reads back: every tuple in the
    result is a tag (`decode` undoes it)."""
    import numpy as np
    import torch

    t = type(value)
    if value is None or t in (bool, int, float, complex, str, bytes):
        return value
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().cpu().clone(), bool(value.requires_grad))
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return ("ndarray", value.dtype.str, torch.from_numpy(np.ascontiguousarray(value).copy()))
        return ("ndlist", value.dtype.str, list(value.shape), encode(value.reshape(-1).tolist()))
    if isinstance(value, np.generic):
        return ("npscalar", value.dtype.str, value.item())
    if isinstance(value, (torch.dtype, torch.device)):
        return value
    if isinstance(value, torch.Size):
        return ("size", list(value))
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return ("tuple", [encode(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [[encode(k), encode(v)] for k, v in value.items()])
    if isinstance(value, (set, frozenset)):
        return ("set" if isinstance(value, set) else "frozenset", [encode(v) for v in value])
    raise Unrecordable(f"{t.__module__}.{t.__qualname__}")


def decode(data: Any) -> Any:
    import numpy as np

    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, tuple):
        return data.clone() if hasattr(data, "clone") else data
    tag = data[0]
    if tag == "tensor":
        return data[1].clone().requires_grad_(data[2]) if data[2] else data[1].clone()
    if tag == "ndarray":
        return data[2].numpy().copy().astype(np.dtype(data[1]), copy=False)
    if tag == "ndlist":
        return np.array(decode(data[3]), dtype=np.dtype(data[1])).reshape(data[2])
    if tag == "npscalar":
        return np.dtype(data[1]).type(data[2])
    if tag == "size":
        import torch

        return torch.Size(data[1])
    if tag == "tuple":
        return tuple(decode(v) for v in data[1])
    if tag == "dict":
        return {decode(k): decode(v) for k, v in data[1]}
    if tag in ("set", "frozenset"):
        return (set if tag == "set" else frozenset)(decode(v) for v in data[1])
    raise GraderError(f"a recorded output carries an unknown tag {tag!r}: the release is damaged or newer than "
                      "this llm-grader")


# --- the record of one exercise ------------------------------------------------------------


AMBIGUOUS = ("ambiguous",)  # a key that gave different outputs at release time
UNRECORDABLE = ("unrecordable",)


@dataclasses.dataclass
class Recording:
    """Everything the checks of one exercise asked of its trusted code, keyed by check name
    and fingerprint: `reference[check][key] = (ok, digest)` and
    `mistakes[check][key][mistake] = (ok, digest)`, each value `encode`d once in `values`."""

    exercise: str
    seed: str = "0"
    signatures: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    reference: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    mistakes: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # digest -> encoded value
    unrecordable: set[str] = dataclasses.field(default_factory=set)  # type names, for the release's report

    def put(self, kind: str, path: tuple[str, ...], outcome: tuple[bool, Any]) -> None:
        """Keep `outcome` at `path` in the table `kind` ("reference" or "mistakes"); a path
        seen before with another output becomes AMBIGUOUS. Each distinct value is stored once
        (in `values`, by digest): most known mistakes give the reference's output for most
        calls."""
        ok, value = outcome
        stored: Any = (False, None)
        if ok:
            try:
                encoded = encode(value)
            except Unrecordable as e:
                self.unrecordable.add(str(e))
                stored = UNRECORDABLE
            else:
                digest = fingerprint(encoded)
                self.values.setdefault(digest, encoded)
                stored = (True, digest)
        node = getattr(self, kind)
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if path[-1] not in node:
            node[path[-1]] = stored
        elif node[path[-1]] != stored:
            node[path[-1]] = AMBIGUOUS

    def get(self, kind: str, path: tuple[str, ...]) -> tuple[bool, Any] | None:
        """The outcome kept at `path`, decoded afresh; None when nothing usable was kept."""
        node: Any = getattr(self, kind)
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if node in (AMBIGUOUS, UNRECORDABLE):
            return None
        ok, digest = node
        return (True, decode(self.values[digest])) if ok else (False, None)

    def save(self, path: Path) -> None:
        import torch

        data = {"format": FORMAT, "exercise": self.exercise, "seed": self.seed, "signatures": self.signatures,
                "reference": self.reference, "mistakes": self.mistakes, "values": self.values}
        buffer = io.BytesIO()
        torch.save(data, buffer)
        # xz: the outputs are mostly float tables (sinusoids, activations), a third the size packed
        path.write_bytes(lzma.compress(buffer.getvalue()))

    @classmethod
    def load(cls, path: Path) -> Recording:
        import torch

        try:
            data = torch.load(io.BytesIO(lzma.decompress(path.read_bytes())), weights_only=True)
        except FileNotFoundError:
            raise GraderError(f"{path} is missing: this edition of the course lacks the recorded outputs its checks "
                              "replay. Reinstall it, or ask your instructor for a complete release.") from None
        except Exception as e:
            raise GraderError(f"{path} cannot be read ({type(e).__name__}): the release is damaged. "
                              "Reinstall it, or ask your instructor for a complete release.") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GraderError(f"{path} is not a recording this llm-grader can read (format "
                              f"{data.get('format') if isinstance(data, dict) else '?'}, expected {FORMAT}).")
        return cls(exercise=data["exercise"], seed=data["seed"], signatures=data["signatures"],
                   reference=data["reference"], mistakes=data["mistakes"], values=data["values"])


def _check() -> str:
    current = recording.current()
    return (current.check if current is not None else None) or ""


# --- record mode: the real trusted code, every answer kept ---------------------------------


class RecordingReference:
    """The reference module, each function call kept in `recording.reference`."""

    def __init__(self, module: Any, recording: Recording):
        self._module = module
        self._recording = recording

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if isinstance(value, type) or not callable(value):
            # Classes and constants are handed over as they are (the diagnosis reads a class's
            # signature): the edition replays function calls only, so a check that uses them
            # differs there, and the release's comparison says so.
            return value
        recording = self._recording

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            key = fingerprint(name, args, kwargs)
            try:
                result = value(*args, **kwargs)
            except Exception as e:
                recording.put("reference", (_check(), key), (False, None))
                raise e
            recording.put("reference", (_check(), key), (True, result))
            return result

        return call


class RecordingMistake(MutantOutcome):
    """A known mistake run live, what each call gave kept in `recording.mistakes`."""

    def __init__(self, name: str, module: Any, recording: Recording):
        self.name, self.module, self.recording = name, module, recording

    def outcome(self, call: Any) -> tuple[bool, Any]:
        from grader.compare import run_mutant

        key = fingerprint(call)
        result = run_mutant(call, self.module)
        self.recording.put("mistakes", (_check(), key, self.name), result)
        return result


# --- replay mode: the released course ------------------------------------------------------


class ReleaseGap(Exception):
    """A check asked the replayed reference for something the release did not record."""


class ReplayedReference:
    """The reference as a released course has it: recorded answers, by call."""

    def __init__(self, recording: Recording, exercise: str):
        self._recording = recording
        self._exercise = exercise

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        recording = self._recording
        exercise = self._exercise

        def call(*args: Any, **kwargs: Any) -> Any:
            check = _check()
            found = recording.get("reference", (check, fingerprint(name, args, kwargs)))
            if found is None:
                raise ReleaseGap(
                    f"this check needs the reference's {name}() for inputs that were not recorded when this edition "
                    f"of the course was released, so it cannot be judged here (it runs in your instructor's "
                    f"grading). Ask your instructor to run 'grade release' again for {exercise}.")
            ok, value = found
            if not ok:
                raise GraderError(f"the reference's {name}() raised on these inputs when the course was released")
            return value

        call.__name__ = call.__qualname__ = name
        params = recording.signatures.get(name)
        if params is not None:
            import inspect

            call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
                [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params])
        return call


def is_replayed(reference: Any) -> bool:
    """Whether the `reference` fixture a check got answers from a recording (a students'
    edition): what it returns is the reference's, but timing it measures nothing."""
    return isinstance(reference, ReplayedReference)


class ReplayedMistake(MutantOutcome):
    """A known mistake as a released course has it: what it gave for each recorded call; a
    call not recorded gives nothing, so the mistake is not named there."""

    def __init__(self, name: str, recording: Recording):
        self.name, self.recording = name, recording

    def outcome(self, call: Any) -> tuple[bool, Any]:
        found = self.recording.get("mistakes", (_check(), fingerprint(call), self.name))
        return found if found is not None else (False, None)

    def __repr__(self) -> str:
        return f"<known mistake {self.name} (recorded)>"


def signatures(module: Any) -> dict[str, list[str]]:
    """Each public callable of a reference module with the positional parameter names the
    diagnosis reads (`grader.recording`), so that a released course names arguments as the
    full course does."""
    find = recording.signatures_from(module)
    out = {}
    for name in dir(module):
        if name.startswith("_") or isinstance(getattr(module, name, None), types.ModuleType):
            continue
        target = find(name)
        names = recording.positional_names(target) if target is not None else []
        if names:
            out[name] = names
    return out


# --- the student edition -------------------------------------------------------------------


def strip_hidden(source: str, where: str = "<check module>") -> tuple[str | None, int]:
    """`source` without its hidden checks (test functions, or Test classes, marked
    `pytest.mark.hidden`), and how many were removed; None for a module whose `pytestmark`
    makes every check in it hidden."""
    import ast

    tree = ast.parse(source, where)

    def hidden(decorators: list[ast.expr]) -> bool:
        for d in decorators:
            target = d.func if isinstance(d, ast.Call) else d
            if isinstance(target, ast.Attribute) and target.attr == "hidden":
                return True
        return False

    def marks(node: ast.AST) -> list[ast.expr]:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return list(node.value.elts) if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
        return []

    if any(hidden(marks(node)) for node in tree.body):
        tests = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name.startswith("test_")]
        return None, len(tests)
    drop: list[tuple[int, int]] = []
    removed = 0

    def span(node: ast.AST) -> tuple[int, int]:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return first, node.end_lineno or node.lineno

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            if hidden(node.decorator_list):
                drop.append(span(node))
                removed += 1
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            tests = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and m.name.startswith("test_")]
            if hidden(node.decorator_list) or any(hidden(marks(m)) for m in node.body):
                drop.append(span(node))
                removed += len(tests)
                continue
            for m in tests:
                if hidden(m.decorator_list):
                    drop.append(span(m))
                    removed += 1
    lines = source.splitlines(keepends=True)
    for first, last in sorted(drop, reverse=True):
        del lines[first - 1:last]
    return "".join(lines), removed


@dataclasses.dataclass
class Recorded:
    """What recording one exercise produced: its `Recording`, and how the full course graded
    each solution recorded (label -> ExerciseResult; labels `reference`, `stub`, `mistake:NAME`),
    with the folders those solutions were in."""

    recording: Recording
    results: dict[str, Any]
    solutions: dict[str, Path]


def record_exercise(catalog: Any, exercise: Any, seed: int, workdir: Path) -> Recorded:
    """Grade the reference, the stub and every known mistake of `exercise` as the solution
    (direct mode, public checks, `seed`), keeping every answer the trusted code gave the
    checks. Each solutions folder is written under `workdir`."""
    from grader.runner import RunOptions, WarmJudge, run_exercises
    from grader.selfcheck import copy_references, mutant_solutions, stub_solutions
    from grader.trusted import TrustedCode

    recording = Recording(exercise.id, seed=str(seed))
    trusted = TrustedCode(catalog, False, recordings={exercise.id: recording})
    recording.signatures = signatures(trusted.reference(exercise))
    warm = WarmJudge(trusted=trusted)
    makers: dict[str, Any] = {
        "reference": lambda d: copy_references(catalog, d),
        "stub": lambda d: stub_solutions(catalog, exercise, d),
    }
    for m in exercise.mutants:
        makers[f"mistake:{m.name}"] = functools.partial(mutant_solutions, catalog, exercise, m.name)
    results, folders = {}, {}
    for label, make in makers.items():
        folder = workdir / exercise.id / label.replace(":", "-")
        folder.mkdir(parents=True)
        make(folder)
        options = RunOptions(mode="direct", solutions=folder, display_root=workdir, salt=str(seed), hidden=False,
                             timeout=None)
        results[label] = run_exercises(catalog, [(exercise, None)], options, warm=warm)[exercise.id]
        folders[label] = folder
    return Recorded(recording, results, folders)


def verdicts(result: Any) -> list[tuple[Any, ...]]:
    """What must be the same in both editions, check by check: outcome, points, message and
    the named mistakes (hidden checks aside: the student edition has none)."""
    return [(c.name, c.outcome, c.points, c.max_points, c.message, c.mistake)
            for c in result.checks if not c.hidden]


STUDENT_README = """\
# {title}: student edition

This is the student edition of the course: the exercises to write, with every public check,
hint and known-mistake diagnosis of the full course. It carries no solutions: the checks
compare your work with outputs recorded from the reference solutions when the course was
released ({count} exercises, seed {seed}).

    pip install -e .              install llm-grader and this course
    grade                         grade every exercise under exercises/
    grade {first}        one exercise
    grade watch                   regrade each file as you save it
    grade hint {first}   a hint, one more each time you ask

Write your solutions in `exercises/<track>/<name>.py`, starting with
`exercises/{first_path}`. Each exercise also has hidden checks (fresh inputs and edge cases):
they are not in this edition and run only in your instructor's grading, so a local pass means
every public check passes. Your code runs in a separate, sandboxed process.
"""

ENGINE_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", ".gitignore", "LICENSE", "LICENSE.md", "LICENSE.txt")


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[\n" + "".join(f"    {_toml_value(v)},\n" for v in value) + "]" if value else "[]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise GraderError(f"cannot write {type(value).__name__} to TOML")


def _toml(data: dict[str, Any], tables: dict[str, list[dict[str, Any]]] | None = None) -> str:
    out = [f"{k} = {_toml_value(v)}\n" for k, v in data.items()]
    for name, rows in (tables or {}).items():
        for row in rows:
            out.append(f"\n[[{name}]]\n")
            out += [f"{k} = {_toml_value(v)}\n" for k, v in row.items()]
    return "".join(out)


def write_edition(catalog: Any, exercises: list[Any], recorded: dict[str, Recorded], out: Path, seed: int,
                  source_root: Path) -> list[Path]:
    """Write the student edition into `out`: the engine, stubs, public checks, exercise data
    without mutant source, and each exercise's recorded outputs. Returns the files written."""
    import shutil

    from grader.tomlload import read_toml

    written: list[Path] = []

    def write(path: Path, text: str | bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        written.append(path)

    package = Path(__file__).resolve().parent
    shutil.copytree(package, out / "grader", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_curriculum"))
    for name in ENGINE_FILES:
        if (source_root / name).is_file():
            shutil.copyfile(source_root / name, out / name)
    for folder in ("templates", "docs"):
        if (source_root / folder).is_dir():
            shutil.copytree(source_root / folder, out / folder, ignore=shutil.ignore_patterns("__pycache__"))
    chosen = {e.id for e in exercises}
    perf = source_root / "plugins" / "gpu_perf"
    for track in catalog.tracks:
        mine = [e for e in track.exercises if e.id in chosen]
        if not mine:
            continue
        folder = out / "plugins" / track.id
        data = read_toml(track.directory / "track.toml")
        data.pop("reference", None)
        data.update(stubs=f"../../exercises/{track.id}", exercises=[e.name for e in mine], recorded="recorded",
                    recorded_seed=seed)
        write(folder / "track.toml", _toml(data))
        for exercise in mine:
            write(out / "exercises" / track.id / f"{exercise.name}.py", (track.stubs / f"{exercise.name}.py").read_bytes())
            hidden = 0
            checks = []
            for check in exercise.checks:
                if Path(check).parent == perf:
                    continue  # the edition's gpu_perf plugin adds it, from the edition's plugins/gpu_perf
                text, removed = strip_hidden(Path(check).read_text(), str(check))
                hidden += removed
                if text is not None:
                    write(folder / Path(check).name, text)
                    checks.append(Path(check).name)
            data = read_toml(track.directory / f"{exercise.name}.toml")
            mutants = [{"name": m["name"], "misconception": m["misconception"]} for m in data.pop("mutants", [])]
            data["checks"] = checks
            data["hidden_checks"] = hidden
            write(folder / f"{exercise.name}.toml", _toml(data, {"mutants": mutants}))
            path = folder / "recorded" / f"{exercise.name}.pt.xz"
            path.parent.mkdir(parents=True, exist_ok=True)
            recorded[exercise.id].recording.save(path)
            written.append(path)
    if perf.is_dir():
        for path in sorted(perf.iterdir()):
            if path.is_file() and path.suffix == ".toml":
                write(out / "plugins" / "gpu_perf" / path.name, path.read_bytes())
            elif path.is_file() and any(path.name == f"perf_{e.track}_{e.name}.py" for e in exercises):
                text, removed = strip_hidden(path.read_text(), str(path))
                if removed:
                    raise GraderError(f"{path} holds hidden checks: GPU performance checks are public")
                write(out / "plugins" / "gpu_perf" / path.name, path.read_bytes())
    first = exercises[0]
    title = catalog.track(first.track).title.split(":")[0] if len(catalog.tracks) == 1 else "llm-grader"
    write(out / "README.md", STUDENT_README.format(
        title=title, count=len(exercises), seed=seed, first=first.id, first_path=f"{first.track}/{first.name}.py"))
    return written


def source_checkout() -> Path:
    """The course's source repository (pyproject.toml beside plugins/): what a release is built from."""
    from grader.config import bundled_root

    root = bundled_root()
    if not (root / "pyproject.toml").is_file():
        raise GraderError("grade release builds from the course's source repository (a checkout with "
                          "pyproject.toml, reference/ and plugins/), and this llm-grader is installed from a wheel. "
                          "Run it in a clone of the course, installed with 'pip install -e .'.")
    return root


def released_catalog(out: Path) -> Any:
    """The catalog of the student edition in `out`, as its own `grade` would build it."""
    from grader.builtin.gpu_perf import perf_checks
    from grader.catalog import Catalog, load_track

    catalog = Catalog([load_track(p) for p in sorted((out / "plugins").glob("*/track.toml"))])
    for exercise in catalog.exercises:
        catalog.add_checks(exercise, perf_checks(out, exercise))
    return catalog


def compare_editions(released: Any, exercise_id: str, recorded: Recorded, workdir: Path) -> list[str]:
    """Grade every solution recorded for the exercise with the released catalog, and say
    where a verdict differs from the full course's (one sentence each)."""
    from grader.runner import RunOptions, run_exercises

    exercise = released.exercise(exercise_id)
    problems = []
    for label, folder in recorded.solutions.items():
        options = RunOptions(mode="direct", solutions=folder, display_root=workdir,
                             salt=recorded.recording.seed, hidden=False, timeout=None)
        got = run_exercises(released, [(exercise, None)], options)[exercise_id]
        want = recorded.results[label]
        if got.error != want.error:
            problems.append(f"{exercise_id} with the {label} as the solution: the released edition reports "
                            f"{got.error!r}, the full course {want.error!r}")
        for a, b in zip(verdicts(got), verdicts(want)):
            if a != b:
                unfound = (" (the edition did not find what the known mistake gave this check: its rerun closes over "
                           "something a release cannot tell apart; see \"Checks a release can replay\" in "
                           "docs/plugins.md)") if b[-1] and not a[-1] and a[1:3] == b[1:3] else ""
                problems.append(f"{exercise_id} with the {label} as the solution, check {b[0]}: the released edition "
                                f"gives {a[1:]}, the full course {b[1:]}{unfound}")
        if len(verdicts(got)) != len(verdicts(want)):
            problems.append(f"{exercise_id} with the {label} as the solution: {len(verdicts(got))} public checks in "
                            f"the released edition, {len(verdicts(want))} in the full course")
    return problems


# --- the whole release ---------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """One exercise's part of a release: what was recorded and what is wrong with it."""

    exercise: str
    recorded: Recorded | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    size: int = 0  # bytes of recorded outputs

    def lines(self) -> list[str]:
        if self.recorded is None:
            return []
        results = self.recorded.results
        named = sum(1 for label, r in results.items() if label.startswith("mistake:")
                    and any(label.removeprefix("mistake:") in c.mistake.split(", ") for c in r.checks))
        mistakes = sum(1 for label in results if label.startswith("mistake:"))
        return [f"recorded: the reference, the stub and {mistakes} known mistakes ({named} named by a check); "
                f"{self.size / 1024:.0f} KiB"]


def _record_problems(exercise: Any, recorded: Recorded) -> list[str]:
    reference = recorded.results["reference"]
    problems = [f"the reference fails public check '{c.name}' ({c.outcome}): {c.message}"
                for c in reference.checks if c.outcome not in ("passed", "skipped")]
    if reference.error:
        problems.append(f"the reference cannot be graded: {reference.error}")
    problems += [f"a known mistake gave a {t}, which a release cannot record (plain data only: tensors, arrays, "
                 "numbers, strings, bytes, and lists, tuples, dicts and sets of them)"
                 for t in sorted(recorded.recording.unrecordable)]
    return problems


def release(catalog: Any, exercises: list[Any], out: Path, seed: int, jobs: int = 1, verify: bool = True,
            start: Path | None = None, on_exercise: Any = None, workdir: Path | None = None) -> list[Outcome]:
    """Build the student edition of `exercises` in `out` (see the module docstring). With
    `verify`, every recorded solution is graded again in the new edition and each verdict
    compared with the full course's. `on_exercise(stage, Outcome)` reports progress. The
    recorded solutions are written under `workdir` (kept), else a temporary folder."""
    import contextlib
    import shutil
    import tempfile

    root = validate(exercises, out)
    global _CATALOG
    _CATALOG = catalog  # the jobs run here when jobs == 1; spawned workers build their own
    outcomes: dict[str, Outcome] = {}
    with (contextlib.nullcontext(str(workdir)) if workdir is not None
          else tempfile.TemporaryDirectory(prefix="grade-release-")) as tmp:
        workdir = Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o755)
        for exercise_id, blob, error in _map(_record_job, [(e.id, seed, str(workdir)) for e in exercises],
                                             jobs, start):
            outcome = outcomes[exercise_id] = Outcome(exercise_id, _unpack(blob) if blob is not None else None)
            if error:
                outcome.problems.append(error)
            else:
                outcome.problems += _record_problems(catalog.exercise(exercise_id), outcome.recorded)
            if on_exercise:
                on_exercise("recorded", outcome)
        out.mkdir(parents=True, exist_ok=True)
        recorded_ok = {i: o.recorded for i, o in outcomes.items() if o.recorded is not None}
        good = [e for e in exercises if e.id in recorded_ok]
        if not good:
            shutil.rmtree(out, ignore_errors=True)
            return list(outcomes.values())
        write_edition(catalog, good, recorded_ok, out, seed, root)
        for e in good:
            outcomes[e.id].size = (out / "plugins" / e.track / "recorded" / f"{e.name}.pt.xz").stat().st_size
        if verify:
            jobs_args = [(str(out), e.id, _pack(recorded_ok[e.id]), str(workdir)) for e in good]
            for exercise_id, problems, error in _map(_verify_job, jobs_args, jobs, start):
                outcome = outcomes[exercise_id]
                outcome.problems += problems + ([error] if error else [])
                if on_exercise:
                    on_exercise("verified", outcome)
    return [outcomes[e.id] for e in exercises]


def validate(exercises: list[Any], out: Path) -> Path:
    """Refuse a release that cannot be built, saying why; returns the source checkout."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GraderError(f"{out} exists and is not an empty folder; give 'grade release' a new folder to write into.")
    released = [e.id for e in exercises if e.recorded is not None]
    if released:
        raise GraderError(f"{', '.join(released)} come from a released edition already (no references to record "
                          "from); run 'grade release' in the course's source repository.")
    return source_checkout()


# Between processes a recording travels as bytes (torch.save): multiprocessing's pickler would
# hand each of its tensors over as a file descriptor of shared memory, thousands of them.


def _pack(recorded: Recorded) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(recorded, buffer)
    return buffer.getvalue()


def _unpack(blob: bytes) -> Recorded:
    import torch

    return torch.load(io.BytesIO(blob), weights_only=False)  # from this release's own worker


def _record_job(exercise_id: str, seed: int, workdir: str) -> tuple[str, bytes | None, str]:
    catalog = _worker_catalog()
    try:
        recorded = record_exercise(catalog, catalog.exercise(exercise_id), seed, Path(workdir))
        return exercise_id, _pack(recorded), ""
    except Exception as e:
        return exercise_id, None, f"recording failed: {type(e).__name__}: {e}"


def _verify_job(out: str, exercise_id: str, recorded: bytes, workdir: str) -> tuple[str, list[str], str]:
    try:
        return exercise_id, compare_editions(released_catalog(Path(out)), exercise_id, _unpack(recorded),
                                             Path(workdir)), ""
    except Exception as e:
        return exercise_id, [], f"grading the released edition failed: {type(e).__name__}: {e}"


_CATALOG: Any = None
_START: Path | None = None


def _worker_catalog() -> Any:
    global _CATALOG
    if _CATALOG is None:
        from grader.config import load_config
        from grader.plugins import GradePlugins

        _CATALOG = GradePlugins(load_config(_START or Path.cwd())).catalog()
    return _CATALOG


def _worker_init(start: str) -> None:
    import multiprocessing

    global _START
    multiprocessing.current_process().name = "MainProcess"  # as in grade check's workers
    _START = Path(start)


def _map(job: Any, args: list[tuple[Any, ...]], jobs: int, start: Path | None) -> Any:
    """`job(*a)` for each `a`, in order; with jobs > 1 in that many spawned worker processes."""
    if jobs <= 1 or len(args) <= 1:
        global _START
        _START = start
        for a in args:
            yield job(*a)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(args)), mp_context=context, initializer=_worker_init,
                             initargs=(str((start or Path.cwd()).resolve()),)) as pool:
        futures = [pool.submit(job, *a) for a in args]
        for a, future in zip(args, futures):
            try:
                yield future.result()
            except Exception as e:  # a worker that died takes its exercise with it, never the release
                yield (a[0] if job is _record_job else a[1]), None if job is _record_job else [], \
                    f"the worker process stopped: {type(e).__name__}: {e}"


def require_recorded_inputs(exercises: list[Any], hidden: bool, salt: str) -> None:
    """Stop a run that a released edition cannot judge: hidden checks (it has none) or
    another seed (its outputs were recorded for one)."""
    from grader.errors import ConfigError

    released = [e for e in exercises if e.recorded is not None]
    if not released:
        return
    if hidden:
        raise ConfigError("this is the student edition of the course: it has no hidden checks (they run only in your "
                          "instructor's grading, from the full course). Grade without --hidden.")
    seeds = {str(s) for s in _recorded_seeds(released)}
    if salt not in seeds:
        raise ConfigError(f"this student edition of the course replays outputs recorded with seed "
                          f"{', '.join(sorted(seeds))}, and this run asks for seed {salt} (--seed or 'seed' in "
                          "the configuration). Grade with that seed: drop --seed, or set it back.")


def _recorded_seeds(exercises: list[Any]) -> set[int]:
    """The seed each released exercise's track was recorded with (track.toml `recorded_seed`)."""
    from grader.catalog import load_track

    seeds = set()
    for track_toml in {e.recorded.parent.parent / "track.toml" for e in exercises}:
        seeds.add(load_track(track_toml).recorded_seed)
    return seeds
