"""Importing solutions and references under stable package names from any directory.

Student code is always `exercises.<track>.<name>` and references `reference.<track>.<name>`,
wherever their files are, so a later exercise can `from exercises.attention.mha import ...`
the student's own earlier work.
"""

from __future__ import annotations

import importlib
import linecache
import os
import sys
import types
from pathlib import Path
from typing import Any


def interpret_triton_without_cuda() -> None:
    """Without CUDA, run Triton kernels in triton's interpreter, on CPU tensors.

    Sets `TRITON_INTERPRET=1` in this process unless the user chose a value; solution
    processes inherit it (`grader.solutions.solution_env`). Triton reads it when a kernel is
    defined, so every import of a solution, a reference or a known mistake calls this first.
    """
    if "TRITON_INTERPRET" in os.environ:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


def alias_package(name: str, path: Path) -> None:
    """Make `name` a package whose submodules are looked up under `path` (replacing any)."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    package = types.ModuleType(name)
    package.__path__ = [str(path)]
    sys.modules[name] = package
    importlib.invalidate_caches()


def import_from(package: str, directory: Path, track: str, name: str) -> Any:
    """Import `<package>.<track>.<name>` from `<directory>/<track>/<name>.py`."""
    interpret_triton_without_cuda()
    current = sys.modules.get(package)
    if current is None or list(getattr(current, "__path__", [])) != [str(directory)]:
        alias_package(package, directory)
    return importlib.import_module(f"{package}.{track}.{name}")


def module_from_source(name: str, source: str, filename: str) -> types.ModuleType:
    """A trusted module (a known mistake) built from source text, outside sys.modules."""
    interpret_triton_without_cuda()
    module = types.ModuleType(name)
    module.__file__ = filename
    # inspect.getsource reads it from here: tracebacks show the lines, and Triton's
    # @triton.jit, which parses a kernel's source, works on a known mistake's kernels.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def import_reference(track: str, directory: Path, name: str) -> Any:
    """Import `reference.<track>.<name>` from `<directory>/<name>.py` (trusted code)."""
    interpret_triton_without_cuda()
    if "reference" not in sys.modules or not hasattr(sys.modules["reference"], "__path__"):
        root = types.ModuleType("reference")
        root.__path__ = []
        sys.modules["reference"] = root
    key = f"reference.{track}"
    current = sys.modules.get(key)
    if current is None or list(getattr(current, "__path__", [])) != [str(directory)]:
        package = types.ModuleType(key)
        package.__path__ = [str(directory)]
        sys.modules[key] = package
        setattr(sys.modules["reference"], track, package)
    return importlib.import_module(f"{key}.{name}")


def alias_tracks(package: str, directories: dict[str, Path]) -> None:
    """Make `<package>.<track>` import from `directories[track]` for every track.

    The judge uses it so that reference code importing earlier work as
    `exercises.<track>.<name>` gets the references, never a student's file.
    """
    current = sys.modules.get(package)
    wanted = {t: str(d) for t, d in directories.items()}
    if current is not None and getattr(current, "__grade_tracks__", None) == wanted:
        return
    alias_package(package, Path("/nonexistent"))
    root = sys.modules[package]
    root.__path__ = []
    root.__grade_tracks__ = wanted  # type: ignore[attr-defined]
    for track, directory in wanted.items():
        sub = types.ModuleType(f"{package}.{track}")
        sub.__path__ = [directory]
        sys.modules[f"{package}.{track}"] = sub
        setattr(root, track, sub)
