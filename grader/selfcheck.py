"""`grade check`: prove each exercise's checks are sound.

For every exercise: the reference scores full marks; the untouched stub fails every check
and counts as not started; every known mistake (mutant) fails at least one check; at
least one mutant is diagnosed by name in a failure message; the stub exposes the same
public names, with the same signatures, as the reference; and the exercise meets the
curriculum's minimums (3 checks, 3 mutants, 2 hints, 1 hidden check); and every mutant is
caught by a public check (the students' edition has no other). With `hidden` (`grade check
--hidden`, the default here) the hidden checks run too: the reference must pass them, the
stub fail them, and each mutant still fails a check; without it they are only counted. For each track: no file in its
folders that the track does not list.
"""

from __future__ import annotations

import ast
import multiprocessing
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.catalog import Catalog, Exercise, Track
from grader.results import ExerciseResult
from grader.runner import RunOptions, resolve_isolation, run_exercises

MIN_CHECKS = 3
MIN_MUTANTS = 3
MIN_HINTS = 2
MIN_HIDDEN = 1


@dataclass
class ExerciseVerdict:
    exercise: str
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)  # score, max_score, checks, failing
    stub: dict[str, Any] = field(default_factory=dict)  # score, max_score, status, passing
    mutants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> caught_by, named

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """What `grade check --report json:PATH` writes for the exercise."""
        return {"id": self.exercise, "ok": self.ok, "reference": self.reference, "stub": self.stub,
                "mutants": [{"name": name, **m} for name, m in self.mutants.items()], "problems": self.problems}


def _grade(catalog: Catalog, exercise: Exercise, solutions: Path | None, mode: str, maxfail: int = 0,
           hidden: bool = True) -> ExerciseResult:
    isolation = resolve_isolation("auto")[0] if mode == "isolated" else "sandbox"
    options = RunOptions(mode=mode, solutions=solutions, timeout=None, isolation=isolation, hidden=hidden,
                         maxfail=maxfail)
    return run_exercises(catalog, [(exercise, None)], options)[exercise.id]


def mutant_solutions(catalog: Catalog, exercise: Exercise, mutant: str, directory: Path) -> Path:
    """A solutions directory: every track's references, with this exercise replaced by a mutant."""
    copy_references(catalog, directory)
    target = directory / exercise.track
    source = exercise.reference.read_text()
    (target / f"{exercise.name}.py").write_text(exercise.mutant(mutant).apply(source, str(exercise.reference)))
    return directory


def public_api(path: Path) -> dict[str, str]:
    """The public names a module defines at its top level, each with what a student must
    match: a function's parameters (names, kinds and defaults, annotations aside), a class's
    public methods' parameters, or 'value' for anything assigned. Read from the source,
    without importing it."""

    def params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
        args = fn.args
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None:
                a.annotation = None
        return f"({ast.unparse(args)})"

    api: dict[str, str] = {}
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            api[node.name] = f"function {node.name}{params(node)}"
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            methods = [f"{m.name}{params(m)}" for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                       and (not m.name.startswith("_") or m.name in ("__init__", "__call__"))]
            api[node.name] = f"class {node.name} with " + (", ".join(methods) or "no methods")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for name in ast.walk(t):
                    if isinstance(name, ast.Name) and not name.id.startswith("_") and name.id != name.id.upper():
                        api[name.id] = "value"
    declared = _declared_all(tree)
    return api if declared is None else {name: api.get(name, "undefined") for name in declared}


def _declared_all(tree: ast.Module) -> list[str] | None:
    """The names in a top-level `__all__ = [...]`: what a module with helpers of its own
    declares as its API (a reference's helper classes are not the student's to write)."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                and isinstance(node.value, (ast.List, ast.Tuple))):
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return None


def api_problems(exercise: Exercise, stub: Path) -> list[str]:
    """Where the stub's public API differs from the reference's, one sentence each."""
    try:
        want, have = public_api(exercise.reference), public_api(stub)
    except (OSError, SyntaxError) as e:
        return [f"cannot read the stub or the reference: {e}"]
    problems = []
    for name, what in want.items():
        if name not in have:
            problems.append(f"the stub lacks {name}, which the reference defines ({what})")
        elif have[name] != what:
            problems.append(f"{name} differs: the stub has {have[name]}, the reference {what}")
    for name in have.keys() - want.keys():
        problems.append(f"the stub defines {name}, which the reference does not")
    return problems


def track_problems(track: Track) -> list[str]:
    """Files in the track's folders that it does not list: a forgotten exercise, a stale
    check or a stray draft (which `grade release` would ship)."""
    listed = {track.directory / "track.toml"}
    for e in track.exercises:
        listed |= {track.directory / f"{e.name}.toml", track.stubs / f"{e.name}.py", track.reference / f"{e.name}.py"}
        listed |= {Path(c).resolve() for c in e.checks}
    listed = {p.resolve() for p in listed}
    problems = []
    for folder in dict.fromkeys([track.directory, track.stubs, track.reference]):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name in ("__pycache__", "__init__.py") or path.name.lower().startswith("readme"):
                continue
            if path.resolve() not in listed and path.resolve() not in (track.stubs.resolve(), track.reference.resolve()):
                problems.append(f"{path} is not listed by track '{track.id}' (add it to an exercise, or remove it)")
    return problems


def stub_solutions(catalog: Catalog, exercise: Exercise, directory: Path) -> Path:
    """A solutions directory: every track's references, with this exercise's untouched stub
    (laid out by track id, whatever the track's stub folder is called)."""
    copy_references(catalog, directory)
    stub = catalog.track(exercise.track).stubs / f"{exercise.name}.py"
    (directory / exercise.track / f"{exercise.name}.py").write_text(stub.read_text())
    return directory


def copy_references(catalog: Catalog, directory: Path) -> None:
    """Every track's references under `directory`/<track id>.

    `directory` is made readable to all: a temporary directory is private to its owner,
    and the sandboxed solution process (--isolated) runs as another user."""
    directory.chmod(0o755)
    for track in catalog.tracks:  # every track: an exercise may import earlier work from any
        if track.reference.is_dir():
            shutil.copytree(track.reference, directory / track.id, ignore=shutil.ignore_patterns("__pycache__"))


def _names(mistake: str) -> list[str]:
    """The known mistakes a check's `mistake` field names (several when they agree on
    everything the check compared)."""
    return [n for n in mistake.split(", ") if n]


def check_exercise(catalog: Catalog, exercise: Exercise, mode: str = "direct", quick: bool = False,
                   hidden: bool = True) -> ExerciseVerdict:
    """Prove one exercise. `quick` proves the same rules for less: once some known mistake
    has been named by a failure, each further mistake runs only up to the first check that
    catches it, so its `caught_by` lists that one check. Without `hidden` only the public
    checks run (what the students' edition has); the hidden ones are then counted, not run."""
    verdict = ExerciseVerdict(exercise.id)
    problems = verdict.problems
    problems += api_problems(exercise, catalog.track(exercise.track).stubs / f"{exercise.name}.py")

    ref = _grade(catalog, exercise, None, mode, hidden=hidden)
    ran = [c for c in ref.checks if c.outcome != "skipped"]
    n_hidden = len([c for c in ran if c.hidden]) if hidden else _count_hidden(exercise)
    n_checks = len(ran) - (n_hidden if hidden else 0)
    verdict.lines.append(f"reference: {ref.score:g}/{ref.max_score:g} over {n_checks} checks and {n_hidden} hidden"
                         + ("" if hidden else " (not run: --hidden runs them)"))
    verdict.reference = {"score": ref.score, "max_score": ref.max_score, "checks": n_checks, "hidden": n_hidden,
                         "failing": [c.name for c in ref.checks if c.outcome not in ("passed", "skipped")]}
    if ref.error:
        problems.append(f"reference: {ref.error}")
    for c in ref.checks:
        if c.outcome not in ("passed", "skipped"):
            problems.append(f"reference fails check '{c.name}' ({c.outcome}): {c.message}")
    if n_checks < MIN_CHECKS:
        problems.append(f"has {n_checks} public checks; every exercise needs at least {MIN_CHECKS}")
    if n_hidden < MIN_HIDDEN:
        problems.append(f"has {n_hidden} hidden checks; every exercise needs at least {MIN_HIDDEN}"
                        " (@pytest.mark.hidden: fresh shapes or an edge case the public checks do not show)")

    with tempfile.TemporaryDirectory(prefix="grade-stub-") as tmp:
        stub = _grade(catalog, exercise, stub_solutions(catalog, exercise, Path(tmp)), mode, hidden=hidden)
    verdict.lines.append(f"stub: {stub.score:g}/{stub.max_score:g}, status {stub.status}")
    verdict.stub = {"score": stub.score, "max_score": stub.max_score, "status": stub.status,
                    "passing": [c.name for c in stub.checks if c.outcome == "passed"]}
    for c in stub.checks:
        if c.outcome == "passed":
            problems.append(f"the stub passes check '{c.name}': that check cannot tell a solution from nothing")
    if stub.status != "not_started":
        problems.append(f"the stub's status is '{stub.status}', not 'not_started'")

    if len(exercise.mutants) < MIN_MUTANTS:
        problems.append(f"has {len(exercise.mutants)} known mistakes; every exercise needs at least {MIN_MUTANTS}")
    diagnosed = []
    for m in exercise.mutants:
        with tempfile.TemporaryDirectory(prefix="grade-mutant-") as tmp:
            try:
                solutions = mutant_solutions(catalog, exercise, m.name, Path(tmp))
            except Exception as e:
                problems.append(f"mutant '{m.name}': {e}")
                verdict.mutants[m.name] = {"caught_by": [], "named": False, "error": str(e)}
                continue
            result = _grade(catalog, exercise, solutions, mode, maxfail=1 if quick and diagnosed else 0, hidden=hidden)
        caught = [c.name for c in result.checks if c.outcome not in ("passed", "skipped")]
        caught_publicly = [c.name for c in result.checks if c.outcome not in ("passed", "skipped") and not c.hidden]
        named = [c.name for c in result.checks if m.name in _names(c.mistake)]
        misnamed = {c.name: c.mistake for c in result.checks if c.mistake and m.name not in _names(c.mistake)}
        verdict.mutants[m.name] = {"caught_by": caught, "named": bool(named), "misnamed": misnamed}
        for check_name, other in misnamed.items():
            problems.append(f"mutant '{m.name}' is named as another known mistake, '{other}', by check '{check_name}':"
                            " a name must explain everything the check compared")
        if named:
            diagnosed.append(m.name)
        skipped = sorted({c.message for c in result.checks if c.outcome == "skipped"})
        if caught and not caught_publicly and not (quick and diagnosed):
            # (quick stops at the first catching check, which may be a hidden one)
            problems.append(f"mutant '{m.name}' is caught only by hidden checks: the students' edition, which has the "
                            f"public checks alone, can never show \"{m.misconception}\"")
        if caught:
            verdict.lines.append(f"mutant {m.name}: caught by {', '.join(caught)}" + (" (diagnosed by name)" if named else ""))
        elif skipped:
            # Not a fault of the course: the checks that would catch it cannot run on this machine.
            verdict.mutants[m.name]["unproven"] = skipped
            verdict.lines.append(f"mutant {m.name}: not proven here: it passes every check that ran, and some were "
                                 f"skipped ({'; '.join(skipped)})")
        else:
            problems.append(f"mutant '{m.name}' passes every check: no check catches \"{m.misconception}\"")
    if exercise.mutants and not diagnosed:
        problems.append("no failure message names any known mistake; pass mistakes=... to a comparison that one of them fails")
    if len(exercise.hints) < MIN_HINTS:
        problems.append(f"has {len(exercise.hints)} hints; every exercise needs at least {MIN_HINTS}")
    return verdict


def _count_hidden(exercise: Exercise) -> int:
    """How many hidden checks the exercise's check modules define (read, not run)."""
    from grader.release import strip_hidden

    total = 0
    for path in exercise.checks:
        try:
            total += strip_hidden(Path(path).read_text(), str(path))[1]
        except (OSError, SyntaxError):
            continue
    return total


def check_exercises(
    catalog: Catalog, exercises: Sequence[Exercise], mode: str = "direct", jobs: int = 1, start: Path | None = None,
    quick: bool = False, hidden: bool = True,
) -> Iterator[ExerciseVerdict]:
    """`check_exercise` for each exercise, verdicts yielded in the given order.

    With jobs > 1 the exercises are checked in `jobs` fresh worker processes, each taking the
    next exercise as soon as it is free (their costs differ by 10x). A worker rebuilds the
    catalog from the configuration found from `start` (default: the current directory), as
    `grade` itself would; spawned, not forked, so no torch thread pool or pytest state of
    this process is inherited.
    """
    if jobs <= 1 or len(exercises) <= 1:
        for exercise in exercises:
            yield check_exercise(catalog, exercise, mode, quick, hidden)
        return
    context = multiprocessing.get_context("spawn")
    start_dir = str((start or Path.cwd()).resolve())
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(exercises)), mp_context=context,
                               initializer=_worker_init, initargs=(start_dir,))
    try:
        futures = [pool.submit(_worker_check, exercise.id, mode, quick, hidden) for exercise in exercises]
        for exercise, future in zip(exercises, futures):
            try:
                verdict = future.result()
            except Exception as e:  # a worker that died takes its exercise with it, never the run
                verdict = ExerciseVerdict(exercise.id)
                verdict.problems.append(f"the worker process checking it stopped: {type(e).__name__}: {e}")
            yield verdict
    finally:  # also when the caller stops early: what has not started never will
        pool.shutdown(wait=True, cancel_futures=True)


_WORKER_CATALOG: Catalog | None = None


def _worker_init(start: str) -> None:
    global _WORKER_CATALOG
    # Some libraries act differently in a multiprocessing child (transformers' collator refuses
    # its seed outside a process named "MainProcess"): a worker checks as `grade` itself would.
    multiprocessing.current_process().name = "MainProcess"
    from grader.config import load_config
    from grader.plugins import GradePlugins

    _WORKER_CATALOG = GradePlugins(load_config(Path(start))).catalog()


def _worker_check(exercise_id: str, mode: str, quick: bool, hidden: bool = True) -> ExerciseVerdict:
    assert _WORKER_CATALOG is not None
    return check_exercise(_WORKER_CATALOG, _WORKER_CATALOG.exercise(exercise_id), mode, quick, hidden)
