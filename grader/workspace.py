"""A student's workspace: `grade init DIR` writes one from the installed course, and the
student commands (`grade`, `list`, `hint`, `watch`) need one.

A workspace is a folder with a `grade.toml` (or a `pyproject.toml` with a `[tool.grade]`
table) and the solutions folder it names, `exercises/` by default: one `<track>/<name>.py`
per exercise, starting as the stub.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from grader.errors import ConfigError

GRADE_TOML = """\
# llm-grader workspace: `grade` grades the solutions below, against the installed course.
solutions = "exercises"
"""

README = """\
# Your llm-grader workspace

Each exercise is a file under `exercises/<track>/<name>.py`. It starts as a stub: the
docstring states exactly what to build (shapes, dtypes, conventions), and every body raises
`NotImplementedError`. Replace the bodies, then grade:

    grade                         the whole course
    grade {first_track}           one track
    grade {first}                 one exercise
    grade watch                   regrade each file as you save it
    grade hint {first}            a hint, one more each time you ask
    grade list                    every exercise and how it stood when last graded

Start with `exercises/{first_path}`. Your code runs in a separate, sandboxed process and is
never trusted by the grader; a crash, a hang or an infinite loop costs only that check.
Your progress is kept in `.grade/`.
"""


def require(config: Any, command: str) -> None:
    """Stop a student command outside any workspace, saying how to make one."""
    if config.path is None:
        raise ConfigError(
            f"there is no llm-grader workspace here: no grade.toml (or pyproject.toml with a [tool.grade] "
            f"table) in {config.root} or any folder above it. Create one with 'grade init DIR', then run "
            f"'{command}' inside DIR.")


def init(directory: Path, catalog: Any) -> tuple[list[Path], list[Path]]:
    """Write a workspace into `directory` (created if needed): the stub of every exercise of
    the catalog, a grade.toml and a README. A file that exists already is kept, never
    overwritten. Returns (written, kept)."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file; 'grade init' needs a folder (new or existing).")
    if not catalog.exercises:
        raise ConfigError("no course is installed: no track is registered, so there is nothing to start.")
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    kept: list[Path] = []

    def write(path: Path, text: str | None = None, source: Path | None = None) -> None:
        if path.exists():
            kept.append(path)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            shutil.copyfile(source, path)
        else:
            path.write_text(text or "")
        written.append(path)

    for exercise in catalog.exercises:
        stub = catalog.track(exercise.track).stubs / f"{exercise.name}.py"
        if not stub.is_file():
            raise ConfigError(f"the course's stub for {exercise.id} is missing ({stub}); reinstall llm-grader.")
        write(directory / "exercises" / exercise.track / f"{exercise.name}.py", source=stub)
    first = catalog.exercises[0]
    write(directory / "grade.toml", GRADE_TOML)
    write(directory / "README.md", README.format(first=first.id, first_track=first.track,
                                                 first_path=f"{first.track}/{first.name}.py"))
    return written, kept
