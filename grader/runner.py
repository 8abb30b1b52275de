"""Runs the judge: pytest over the selected exercises' check modules, results collected.

`run_exercises` runs in this process; with `jobs > 1` the exercises are split across
worker processes (`python -m grader.runner`), each a judge of its own, and their results
merged. Nothing here formats text; progress is reported through callbacks.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader import __version__
from grader.catalog import Catalog, Exercise
from grader.results import CheckResult, ExerciseResult, RunResult, TrackResult

EMPTY_INI = Path(__file__).with_name("judge.ini")


@dataclass
class RunOptions:
    mode: str = "isolated"
    solutions: Path | None = None  # None: the references
    display_root: Path = field(default_factory=Path.cwd)
    salt: str = "0"
    hidden: bool = False
    timeout: float | None = None
    jobs: int = 1
    isolation: str = "sandbox"  # "sandbox" (namespaces) or "process"; see resolve_isolation
    blocked: tuple[str, ...] = ()  # plugins disabled by name (-p no:NAME), in -j workers too
    maxfail: int = 0  # stop after this many failing checks (0: never); for `grade check --quick`

    def to_json(self) -> dict[str, Any]:
        """The options as a -j worker receives them (see `from_json`)."""
        return {
            "mode": self.mode, "solutions": str(self.solutions) if self.solutions else None,
            "display_root": str(self.display_root), "salt": self.salt, "hidden": self.hidden,
            "timeout": self.timeout, "jobs": self.jobs, "isolation": self.isolation, "blocked": list(self.blocked),
            "maxfail": self.maxfail,
        }

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> RunOptions:
        return cls(
            mode=o["mode"], solutions=Path(o["solutions"]) if o["solutions"] else None,
            display_root=Path(o["display_root"]), salt=o["salt"], hidden=o["hidden"], timeout=o["timeout"],
            jobs=o["jobs"], isolation=o["isolation"], blocked=tuple(o["blocked"]),
            maxfail=o.get("maxfail", 0),
        )


@dataclass
class WarmJudge:
    """What `grade watch` keeps from one run to the next, so a re-grade imports nothing and
    starts no zygote: the trusted code (references, mutants) and the solution side (the
    pool and its zygote, started for `exercises`, and the shared directory)."""

    exercises: list[Exercise] = field(default_factory=list)
    trusted: Any = None
    pool: Any = None
    shared: Path | None = None

    def close(self) -> None:
        from grader.solutions import release

        release(self.pool, self.shared)
        self.pool = self.shared = None


class _Injector:
    """Hands the runner's GradeSession to the judge plugin, reports progress as checks and
    exercises finish, and records check modules that fail to load."""

    def __init__(
        self,
        session: Any,
        on_check: Callable[[str, CheckResult], None] | None,
        on_exercise_done: Callable[[str], None],
    ):
        self.session = session
        self.on_check = on_check
        self.on_exercise_done = on_exercise_done
        self._order: list[tuple[str, str]] = []  # (nodeid, exercise id) in run order

    def pytest_configure(self, config: Any) -> None:
        from grader.pytest_plugin import SESSION_KEY

        config.stash[SESSION_KEY] = self.session
        # Results carry the judge's own messages; pytest's report of a failure walks the
        # source's syntax tree for every frame (0.07 s a failing check), a native one does not.
        config.option.tbstyle = "native"

    def pytest_collection_finish(self, session: Any) -> None:
        from grader.pytest_plugin import ITEM_KEY

        for item in session.items:
            state = item.stash.get(ITEM_KEY, None)
            if state is not None:
                self._order.append((item.nodeid, state.exercise.id))

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        index = next((i for i, (n, _) in enumerate(self._order) if n == nodeid), None)
        if index is None:
            return
        exercise_id = self._order[index][1]
        results = self.session.results.get(exercise_id)
        if self.on_check and results:
            self.on_check(exercise_id, results[-1])
        if index + 1 == len(self._order) or self._order[index + 1][1] != exercise_id:
            self.on_exercise_done(exercise_id)


def _pytest_args(checks: list[Path], root: Path, maxfail: int = 0) -> list[str]:
    return [
        *([f"--maxfail={maxfail}"] if maxfail else []),
        *[str(c) for c in checks],
        "-c", str(EMPTY_INI),
        "--rootdir", str(root),
        "-p", "grader.pytest_plugin",
        "-p", "no:cacheprovider",
        "-p", "no:terminal",
        "-p", "no:warnings",
        # The judge needs none of the machine's pytest plugins (loading them took half a
        # second), nor the hunt for unraisable exceptions, which collects garbage five times.
        "--disable-plugin-autoload",
        "-p", "no:unraisableexception",
        "-p", "no:threadexception",
        "--import-mode=importlib",
    ]


def run_exercises(
    catalog: Catalog,
    selection: list[tuple[Exercise, frozenset[str] | None]],
    options: RunOptions,
    on_exercise: Callable[[ExerciseResult], None] | None = None,
    on_check: Callable[[str, CheckResult], None] | None = None,
    warm: WarmJudge | None = None,
) -> dict[str, ExerciseResult]:
    """Grade the selection in this process (one pytest session, one zygote, or `warm`'s)."""
    import pytest

    from grader.pytest_plugin import GradeSession

    threads = max(1, available_cores() // max(1, options.jobs))
    session = GradeSession(
        catalog=catalog,
        mode=options.mode,
        solutions=options.solutions,
        display_root=options.display_root,
        salt=options.salt,
        hidden=options.hidden,
        timeout=options.timeout,
        # A call is synchronous: the judge waits while the solution computes and the other
        # way round, so each may use the cores that this run's share (-j N splits them).
        threads=threads,
        only={e.id: checks for e, checks in selection},
        isolation=options.isolation,
    )
    if warm is not None:
        session.adopt(warm)
    by_id = {e.id: e for e, _ in selection}
    whole = {e.id: checks is None for e, checks in selection}
    out: dict[str, ExerciseResult] = {}

    def finish(exercise_id: str) -> None:
        exercise = by_id[exercise_id]
        # A released edition's hidden checks are not in it at all: the catalog counts them.
        released_hidden = exercise.hidden_checks if not options.hidden and whole[exercise_id] else 0
        result = ExerciseResult(exercise.id, exercise.title, session.results.get(exercise.id, []),
                                hidden_not_run=session.hidden_not_run.get(exercise.id, 0) + released_hidden)
        why = session.collect_errors.get(exercise.id)
        if why:
            result.error = f"the checks of {exercise.id} could not be loaded:\n{why}"
        elif not any(c.is_file() for c in exercise.checks):
            result.error = f"{exercise.id} has no check module ({', '.join(str(c) for c in exercise.checks)})"
        out[exercise_id] = result
        if on_exercise:
            on_exercise(result)

    injector = _Injector(session, on_check, finish)
    checks = [c for e, _ in selection for c in e.checks if c.is_file()]
    root = catalog.tracks[0].directory.parent if catalog.tracks else Path.cwd()
    exercises = [e for e, _ in selection]
    judge_threads = None
    try:
        if checks:
            # The zygote imports torch while the judge does.
            session.start(warm.exercises if warm is not None and warm.exercises else exercises, wait=False)
            import torch

            judge_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
            session.trusted.load(exercises)
            session.start(exercises)
            pytest.main(_pytest_args(checks, root, options.maxfail), plugins=[injector])
    finally:
        if warm is not None:
            session.hand_back(warm)
        else:
            session.close()
        if judge_threads is not None:
            torch.set_num_threads(judge_threads)
    for exercise, _ in selection:  # exercises none of whose checks ran (all deselected, or broken)
        if exercise.id not in out:
            finish(exercise.id)
    return out


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_isolation(requested: str) -> tuple[str, str]:
    """The isolation level to grade with, and a line to print when it is less than asked.

    "strict" insists on the sandbox and raises `IsolationUnavailable` without it; "auto"
    falls back to plain process isolation; "process" asks for no namespaces.
    """
    from grader.errors import IsolationUnavailable
    from grader.sandbox import jail

    if requested == "process":
        return "process", ""
    ok, why = jail.available()
    if ok:
        return "sandbox", ""
    if requested == "strict":
        raise IsolationUnavailable(
            f"--isolation strict needs the sandbox, and it cannot be built here: {why}. "
            "Fix that, or grade with --isolation auto (process isolation only)."
        )
    return "process", f"Sandbox unavailable ({why}); grading with process isolation only."


def _split(selection: list[tuple[Exercise, Any]], jobs: int) -> list[list[tuple[Exercise, Any]]]:
    groups: list[list[tuple[Exercise, Any]]] = [[] for _ in range(jobs)]
    for i, item in enumerate(selection):
        groups[i % jobs].append(item)
    return [g for g in groups if g]


def run(
    catalog: Catalog,
    selection: list[tuple[Exercise, frozenset[str] | None]],
    options: RunOptions,
    on_exercise: Callable[[ExerciseResult], None] | None = None,
    on_check: Callable[[str, CheckResult], None] | None = None,
    warm: WarmJudge | None = None,
) -> RunResult:
    """Grade and assemble the whole RunResult, in course order."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    if options.jobs <= 1 or len(selection) <= 1:
        results = run_exercises(catalog, selection, options, on_exercise, on_check, warm)
    else:
        results = _run_parallel(catalog, selection, options, on_exercise)
    run_result = RunResult(
        grader_version=__version__,
        started=started,
        duration_s=round(time.perf_counter() - t0, 3),
        environment=environment(options),
    )
    for track in catalog.tracks:
        exercises = [results[e.id] for e in track.exercises if e.id in results]
        if exercises:
            run_result.tracks.append(TrackResult(track.id, track.title, exercises))
    return run_result


def _run_parallel(
    catalog: Catalog,
    selection: list[tuple[Exercise, frozenset[str] | None]],
    options: RunOptions,
    on_exercise: Callable[[ExerciseResult], None] | None,
) -> dict[str, ExerciseResult]:
    import shutil

    workers = []
    tmp = Path(tempfile.mkdtemp(prefix="grade-jobs-"))
    try:
        for i, group in enumerate(_split(selection, options.jobs)):
            spec = {
                "targets": [e.id if c is None else [e.id, sorted(c)] for e, c in group],
                "options": options.to_json(),
                "cwd": str(Path.cwd()),
            }
            spec_path = tmp / f"job{i}.json"
            spec_path.write_text(json.dumps(spec))
            out_path = tmp / f"job{i}.out.json"
            proc = subprocess.Popen([sys.executable, "-m", "grader.runner", str(spec_path), str(out_path)])
            workers.append((group, proc, out_path))
        results: dict[str, ExerciseResult] = {}
        for group, proc, out_path in workers:
            proc.wait()
            try:
                data = json.loads(out_path.read_text())
                for d in data:
                    results[d["id"]] = ExerciseResult.from_dict(d)
            except (OSError, ValueError, KeyError):
                pass
            for exercise, _ in group:
                if exercise.id not in results:
                    results[exercise.id] = ExerciseResult(
                        exercise.id, exercise.title,
                        error=f"the grading worker stopped unexpectedly (exit code {proc.returncode})",
                    )
                if on_exercise:
                    on_exercise(results[exercise.id])
        return results
    finally:
        for _, proc, _ in workers:
            if proc.poll() is None:  # interrupted: no worker outlives the run
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def environment(options: RunOptions) -> dict[str, Any]:
    from importlib import metadata

    import numpy
    import torch

    try:  # from its metadata: importing transformers for its version took a second
        tf_version = metadata.version("transformers")
    except metadata.PackageNotFoundError:  # pragma: no cover
        tf_version = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "transformers": tf_version,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "mode": options.mode,
        "isolation": options.isolation if options.mode == "isolated" else "none",
        "seed": options.salt,
        "hidden": options.hidden,
    }


def _worker(spec_path: str, out_path: str) -> None:
    """A -j worker: grade the exercises named in the spec and write their results."""
    from grader.config import load_config
    from grader.plugins import GradePlugins

    spec = json.loads(Path(spec_path).read_text())
    os.chdir(spec["cwd"])
    config = load_config()
    options = RunOptions.from_json(spec["options"])
    catalog = GradePlugins(config, blocked=options.blocked).catalog()
    selection = []
    for t in spec["targets"]:
        if isinstance(t, str):
            selection.append((catalog.exercise(t), None))
        else:
            selection.append((catalog.exercise(t[0]), frozenset(t[1])))
    results = run_exercises(catalog, selection, options)
    Path(out_path).write_text(json.dumps([r.to_dict() for r in results.values()]))


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
