"""The judge's pytest plugin: fixtures, markers and the collection of results.

Check modules are ordinary pytest files. This plugin maps each to its exercise and gives
its tests these fixtures:

    solution   the student's module: a proxy to the solution process (isolated mode) or the
               module itself (direct mode)
    reference  the reference module, imported in the judge
    rng        `grader.rng.Rng` seeded from (salt, exercise, check)
    expect     `grader.checks.Expect`: `expect(lambda s: s.f(x), truth=..., name=...)` compares
               the solution's result with the truth and names the known mistake it equals;
               its methods are the shared properties (causal, gradients, in_place, hf_parity,
               seeded)
    mistakes   `mistakes(lambda m: m.f(x))` -> what each known mistake returns, for diagnosis
    exercise   the `grader.catalog.Exercise`
    figures    a dict the check fills with measured figures (reported with the result)
    shared_dir a directory for files the check hands to the solution (read-only to it)

and these markers: `points(n)`, `hidden`, `gpu`, `perf`, `needs(module, ...)`, `timeout(seconds)`.

`pytest plugins/` runs every check in direct mode against the references; `grade` runs
them in isolated mode through `grader.runner`.
"""

from __future__ import annotations

import os
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from grader.catalog import Catalog, Exercise
from grader.errors import (
    SolutionError,
    SolutionFailure,
    SolutionImportError,
)
from grader.results import CheckResult
from grader.trusted import TrustedCode

SESSION_KEY = pytest.StashKey["GradeSession"]()
ITEM_KEY = pytest.StashKey["_ItemState"]()
OWNED_KEY = pytest.StashKey[bool]()  # the session was built here (direct mode), not by the runner

MARKERS = {
    "points(n)": "points the check is worth (default 1)",
    "hidden": "instructor/CI-only check; collected only with --hidden",
    "gpu": "needs CUDA; skipped, and left out of the maximum, without it",
    "perf": "performance check, reported with its measured figures",
    "needs(module, ...)": "needs optional modules (triton, bitsandbytes); skipped, and left out of the maximum, "
                          "without them",
    "timeout(seconds)": "per-call deadline for calls into the solution in this check",
}


@dataclass
class GradeSession:
    """The judge of one run: the catalog, the mode, where solutions are, and the results.

    Its parts: `trusted` (references and mutants, imported before any student code runs)
    and, in isolated mode, `pool` (the zygote and one solution process per exercise).
    """

    catalog: Catalog
    mode: str = "direct"  # "direct" or "isolated"
    solutions: Path | None = None  # None: grade the references
    display_root: Path = field(default_factory=Path.cwd)
    salt: str = "0"
    hidden: bool = False
    timeout: float | None = None
    threads: int = 1
    only: dict[str, frozenset[str] | None] | None = None  # exercise id -> check names
    isolation: str = "sandbox"  # in isolated mode: "sandbox" or "process"
    results: dict[str, list[CheckResult]] = field(default_factory=dict)
    collect_errors: dict[str, str] = field(default_factory=dict)  # exercise id -> why a check module failed to load
    hidden_not_run: dict[str, int] = field(default_factory=dict)  # exercise id -> hidden checks left out
    trusted: TrustedCode = field(init=False)
    pool: Any = field(init=False, default=None)
    shared: Path | None = field(init=False, default=None)  # files checks hand to solutions
    _guarded_mutants: dict[str, tuple[Any, dict[str, tuple[str, Any]]]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.trusted = TrustedCode(self.catalog, self.mode == "isolated" or self.solutions is None)

    def track_of(self, exercise: Exercise) -> Any:
        return self.catalog.track(exercise.track)

    def solutions_dir(self, exercise: Exercise) -> Path:
        return self.solutions if self.solutions is not None else self.track_of(exercise).reference.parent

    def display_path(self, exercise: Exercise) -> str:
        path = self.solutions_dir(exercise) / exercise.track / f"{exercise.name}.py"
        try:
            return os.path.relpath(path, self.display_root)
        except ValueError:
            return str(path)

    # --- solution side ----------------------------------------------------------------

    def sandbox_plan(self, exercises: list[Exercise]) -> Any:
        """What the sandbox shows: the solutions, read-only, and none of the judge's files."""
        from grader.solutions import SandboxPlan

        solutions = sorted({self.solutions_dir(e) for e in exercises})
        if self.shared is not None:
            solutions.append(self.shared)
        hidden = [t.directory for t in self.catalog.tracks] + [t.reference.parent for t in self.catalog.tracks]
        preload = list(dict.fromkeys(m for e in exercises for m in e.preload))
        return SandboxPlan(self.isolation, solutions, hidden, preload)

    def start(self, exercises: list[Exercise], wait: bool = True) -> None:
        """Start the zygote before the first check, so no check's time includes it; with
        wait=False, `start` again (or the first call) waits for it."""
        if self.mode == "isolated" and self.pool is not None:
            self.pool.start(wait)
        elif self.mode == "isolated":
            import tempfile

            from grader.solutions import SolutionPool

            self.shared = Path(tempfile.mkdtemp(prefix="grade-shared-"))
            self.shared.chmod(0o755)
            self.pool = SolutionPool(self.sandbox_plan(exercises), self.threads)
            self.pool.start(wait)

    def solution_for(self, exercise: Exercise) -> Any:
        """The `solution` fixture's module: in direct mode the module itself, its functions
        checked for modifying their inputs (`grader.direct.DirectModule`); in isolated mode
        the proxy to the solution process, whose server checks every call."""
        if self.mode == "direct":
            from grader.direct import RecordedModule
            from grader.imports import import_from

            if self.solutions is None:
                return RecordedModule(self.trusted.reference(exercise), exercise.inplace)
            try:
                module = import_from("exercises", self.solutions, exercise.track, exercise.name)
            except SyntaxError as e:
                raise SolutionImportError(f"{self.display_path(exercise)}: SyntaxError at line {e.lineno}: {e.msg}") from None
            return RecordedModule(module, exercise.inplace)
        from grader.remote import SolutionModule

        self.start([exercise])
        handle = self.pool.handle(exercise, self.solutions_dir(exercise), self.display_root,
                                  self.timeout or exercise.timeout)
        handle.ensure_started()
        return SolutionModule(handle, self.display_path(exercise))

    def handle(self, exercise: Exercise) -> Any:
        return self.pool.get(exercise.id) if self.pool is not None else None

    def finish_exercise(self, exercise: Exercise) -> None:
        if self.pool is not None:
            self.pool.finish(exercise.id)

    def adopt(self, warm: Any) -> None:
        """Take over what an earlier run kept warm (`grade watch`): references, mutants,
        the zygote and the shared directory."""
        if warm.trusted is not None:
            self.trusted = warm.trusted
        self.pool, self.shared = warm.pool, warm.shared

    def hand_back(self, warm: Any) -> None:
        """Keep this run's warm parts for the next one; its solution processes are gone."""
        if self.pool is not None:
            for exercise_id in list(self.pool.handles):
                self.pool.finish(exercise_id)
        warm.trusted, warm.pool, warm.shared = self.trusted, self.pool, self.shared
        self.pool = self.shared = None

    def close(self) -> None:
        from grader.solutions import release

        release(self.pool, self.shared)
        self.pool = self.shared = None

    # --- judge side -------------------------------------------------------------------

    def reference_for(self, exercise: Exercise) -> Any:
        return self.trusted.reference_for_checks(exercise)

    def mutants_for(self, exercise: Exercise) -> dict[str, tuple[str, Any]]:
        """name -> (misconception, module) for each known mistake, as the checks call them:
        a mistake that modifies an argument fails that call (and puts the argument back), so
        diagnosing one never changes the check's own inputs."""
        mutants = self.trusted.mutants(exercise)
        cached = self._guarded_mutants.get(exercise.id)
        if cached is None or cached[0] is not mutants:
            guarded = {name: (misconception, self.trusted.guard(exercise, name, module))
                       for name, (misconception, module) in mutants.items()}
            cached = self._guarded_mutants[exercise.id] = (mutants, guarded)
        return cached[1]


@dataclass
class _ItemState:
    exercise: Exercise
    name: str
    points: float
    hidden: bool
    started: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)
    result: CheckResult | None = None


def check_name(item: pytest.Item) -> str:
    name = item.name
    return name[5:] if name.startswith("test_") else name


def get_session(config: pytest.Config) -> GradeSession:
    return config.stash[SESSION_KEY]


# --- hooks -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grade", "llm-grader")
    group.addoption("--grade-solutions", default=None, help="grade this solutions directory (default: the references)")
    group.addoption("--grade-hidden", action="store_true", help="also run hidden checks")
    group.addoption("--grade-seed", default="0", help="salt for the checks' random inputs")


@pytest.hookimpl(trylast=True)  # after the runner's injector, which may bring its own session
def pytest_configure(config: pytest.Config) -> None:
    for marker, text in MARKERS.items():
        config.addinivalue_line("markers", f"{marker}: {text}")
    from grader.imports import interpret_triton_without_cuda

    interpret_triton_without_cuda()
    if SESSION_KEY in config.stash:
        return  # the runner built the session (isolated mode)
    from grader.config import load_config
    from grader.plugins import GradePlugins

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from grader.errors import GraderError

    try:
        catalog = GradePlugins(load_config(Path(str(config.rootpath)))).catalog()
    except GraderError as e:
        raise pytest.UsageError(str(e)) from None
    solutions = config.getoption("--grade-solutions")
    config.stash[SESSION_KEY] = GradeSession(
        catalog=catalog,
        mode="direct",
        solutions=Path(solutions).resolve() if solutions else None,
        display_root=Path.cwd(),
        salt=str(config.getoption("--grade-seed")),
        hidden=bool(config.getoption("--grade-hidden")),
    )
    config.stash[OWNED_KEY] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    # The runner closes (or, for `grade watch`, keeps) the sessions it builds.
    if SESSION_KEY in config.stash and config.stash.get(OWNED_KEY, False):
        config.stash[SESSION_KEY].close()


class CheckModule(pytest.Module):
    """A check module, imported as `grade_checks.<track>.<file stem>`.

    pytest's importlib mode would name `plugins/peft/check_lora.py` `peft.check_lora` and put
    a stand-in for the package `peft` (the folder) in sys.modules, hiding the library of the
    same name from every check; a track may be named like any library, so check modules get
    a namespace of their own.
    """

    def _getobj(self) -> Any:
        import hashlib
        import importlib.util
        import sys
        import types

        exercise = get_session(self.config).catalog.exercise_for_check(self.path)
        track = exercise.track if exercise is not None else "unknown"
        name = f"grade_checks.{track}.{self.path.stem}"
        taken = sys.modules.get(name)
        if taken is not None and getattr(taken, "__file__", None) != str(self.path):
            name += "_" + hashlib.sha1(str(self.path).encode()).hexdigest()[:8]
        for parent in ("grade_checks", f"grade_checks.{track}"):
            if parent not in sys.modules:
                sys.modules[parent] = types.ModuleType(parent)
                sys.modules[parent].__path__ = []
        spec = importlib.util.spec_from_file_location(name, self.path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # pytest's own skip is not an Exception: it still skips the module
            sys.modules.pop(name, None)
            info = pytest.ExceptionInfo.from_current()
            raise self.CollectError(f"{type(e).__name__} while importing {self.path}:\n"
                                    f"{info.getrepr(style='short')}") from e
        self.config.pluginmanager.consider_module(module)
        return module



@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """Whatever stops a check module's collection (its import, a bad parametrize) becomes its
    exercise's error here, where the file is known: pytest's own report names it relative to
    its rootdir, or not at all for a file outside it."""
    report = yield
    path = getattr(collector, "path", None)
    if report.failed and path is not None and SESSION_KEY in collector.config.stash:
        grade = get_session(collector.config)
        exercise = grade.catalog.exercise_for_check(Path(path))
        if exercise is not None:
            grade.collect_errors.setdefault(exercise.id, str(report.longrepr)[-3000:])
    return report


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if SESSION_KEY not in parent.config.stash:
        return None
    if get_session(parent.config).catalog.exercise_for_check(module_path) is None:
        return None  # not a check (the engine's own tests): pytest's import
    return CheckModule.from_parent(parent, path=module_path)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    grade = get_session(config)
    keep, drop = [], []
    for item in items:
        path = getattr(item, "path", None)
        exercise = grade.catalog.exercise_for_check(Path(path)) if path else None
        if exercise is None:
            keep.append(item)
            continue
        hidden = item.get_closest_marker("hidden") is not None
        if hidden and not grade.hidden:
            if grade.only is None or grade.only.get(exercise.id) is None:  # the whole exercise was asked for
                grade.hidden_not_run[exercise.id] = grade.hidden_not_run.get(exercise.id, 0) + 1
            drop.append(item)
            continue
        if grade.only is not None:
            wanted = grade.only.get(exercise.id, frozenset())
            if wanted is not None and check_name(item) not in wanted:
                drop.append(item)
                continue
        marker = item.get_closest_marker("points")
        points = float(marker.args[0]) if marker and marker.args else 1.0
        item.stash[ITEM_KEY] = _ItemState(exercise, check_name(item), points, hidden)
        if item.get_closest_marker("gpu") is not None:
            import torch

            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none is available here"))
        missing = missing_modules(item)
        if missing:
            item.add_marker(pytest.mark.skip(reason=missing))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


# Optional modules a check may need, and how a user gets each.
OPTIONAL = {"triton": "pip install 'llm-grader[quant]' (a CUDA build of torch brings it)",
            "bitsandbytes": "pip install 'llm-grader[quant]'"}


def missing_modules(item: pytest.Item) -> str | None:
    """Why the check cannot run here (a sentence), or None: the modules of its `needs` markers."""
    import importlib.util

    names = [n for marker in item.iter_markers("needs") for n in marker.args]
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if not missing:
        return None
    how = "; ".join(dict.fromkeys(OPTIONAL.get(n, f"pip install {n}") for n in missing))
    return f"needs {' and '.join(missing)}, not installed here ({how})"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = item.stash.get(ITEM_KEY, None)
    if state is None:
        return
    state.started = time.perf_counter()
    from grader.rng import derive_seed, seed_globals

    grade = get_session(item.config)
    seed_globals(derive_seed(check_salt(grade, state), state.exercise.id, state.name, "global state"))
    handle = grade.handle(state.exercise)
    if handle is not None:
        handle.take_output()  # output printed before this check is not this check's


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    state = item.stash.get(ITEM_KEY, None)
    if state is None:
        return
    next_state = nextitem.stash.get(ITEM_KEY, None) if nextitem is not None else None
    if next_state is None or next_state.exercise.id != state.exercise.id:
        grade = get_session(item.config)
        handle = grade.handle(state.exercise)
        if handle is not None and state.result is not None:
            state.result.output += handle.take_output()
        grade.finish_exercise(state.exercise)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Keep the check's calls into the solution, for the diagnosis of a failed comparison."""
    from grader import recording

    state = item.stash.get(ITEM_KEY, None)
    if state is None:
        yield
        return
    try:
        signatures = recording.signatures_from(get_session(item.config).reference_for(state.exercise))
    except Exception:  # the reference cannot be loaded: parameter names stay unknown
        signatures = None
    with recording.recording(signatures, check=state.name):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    state = item.stash.get(ITEM_KEY, None)
    if state is None:
        return
    grade = get_session(item.config)
    if call.when == "setup" and report.passed:
        return
    if call.when == "call" or (call.when == "setup" and not report.passed):
        state.result = _result(state, call, report, grade)
        grade.results.setdefault(state.exercise.id, []).append(state.result)
    if call.when == "teardown" and state.result is not None:
        handle = grade.handle(state.exercise)
        if handle is not None:
            state.result.output += handle.take_output()
        state.result.duration_s = round(time.perf_counter() - state.started, 4)
        state.result.figures.update(state.figures)


def _result(state: _ItemState, call: pytest.CallInfo[None], report: pytest.TestReport, grade: GradeSession) -> CheckResult:
    result = CheckResult(
        name=state.name, outcome="passed", points=state.points, max_points=state.points, hidden=state.hidden
    )
    if report.skipped:
        result.outcome, result.points = "skipped", 0.0
        longrepr = report.longrepr
        result.message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr or "")
        result.message = result.message.removeprefix("Skipped: ")
        return result
    if report.passed:
        return result
    result.points = 0.0
    exc = call.excinfo.value if call.excinfo else None
    if isinstance(exc, SolutionImportError):
        result.outcome, result.message, result.traceback = "error", exc.message, exc.traceback
    elif isinstance(exc, SolutionError):
        result.outcome = "failed"
        result.not_implemented = exc.not_implemented
        if exc.not_implemented:
            result.message = f"{exc.call or 'your code'} raised NotImplementedError: not implemented yet."
        elif exc.exc_type == "InputModified":  # the grader's verdict on the call, not the student's exception
            result.message = exc.message
        else:
            result.message = str(exc)
        result.traceback = exc.traceback
    elif isinstance(exc, SolutionFailure):
        result.outcome, result.message = exc.outcome, str(exc)
    elif type(exc).__name__ == "ReleaseGap" and type(exc).__module__ == "grader.release":
        # A released edition lacks a recorded answer this check needs: it cannot be judged
        # here, which is not the student's loss (left out of the maximum, like a GPU check).
        result.outcome, result.message = "skipped", str(exc)
    elif call.when == "setup":
        result.outcome = "error"
        result.message = f"the check could not be set up: {type(exc).__name__}: {exc}"
    elif isinstance(exc, AssertionError):
        result.outcome, result.message = "failed", str(exc)
        result.mistake = getattr(exc, "mistake", "")
    elif isinstance(exc, NotImplementedError) and grade.mode == "direct":
        result.outcome, result.not_implemented = "failed", True
        result.message = "raised NotImplementedError: not implemented yet."
    else:
        result.outcome = "failed"
        result.message = f"the check could not use your result: {type(exc).__name__}: {exc}"
        if grade.mode == "direct" and grade.solutions is not None and call.excinfo is not None:
            frames = [
                f for f in tb.extract_tb(call.excinfo.tb) if Path(f.filename).resolve().is_relative_to(grade.solutions)
            ]
            if frames:
                result.message = f"{type(exc).__name__}: {exc}"
                result.traceback = "".join(tb.format_list(frames))
    return result


# --- fixtures ------------------------------------------------------------------------------


def _state(request: pytest.FixtureRequest) -> _ItemState:
    state = request.node.stash.get(ITEM_KEY, None)
    if state is None:
        raise RuntimeError(f"{request.node.nodeid} is not a check of any registered exercise")
    return state


@pytest.fixture
def exercise(request: pytest.FixtureRequest) -> Exercise:
    return _state(request).exercise


@pytest.fixture
def solution(request: pytest.FixtureRequest) -> Any:
    state = _state(request)
    grade = get_session(request.config)
    module = grade.solution_for(state.exercise)
    handle = grade.handle(state.exercise)
    if handle is not None:
        marker = request.node.get_closest_marker("timeout")
        handle.timeout = float(marker.args[0]) if marker and marker.args else handle.default_timeout
    return module


@pytest.fixture
def reference(request: pytest.FixtureRequest) -> Any:
    return get_session(request.config).reference_for(_state(request).exercise)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> Any:
    from grader.rng import Rng, derive_seed

    state = _state(request)
    return Rng(derive_seed(check_salt(get_session(request.config), state), state.exercise.id, state.name))


def check_salt(grade: GradeSession, state: _ItemState) -> str:
    """The salt of a check's inputs: the run's seed, and for a hidden check the instructor's
    secret (`GRADE_SECRET_SALT`) too, so its inputs cannot be learnt from any run a student
    can make. A public check's inputs are the same in a student's run and in the
    instructor's, so their verdicts agree."""
    return grade.salt + (os.environ.get("GRADE_SECRET_SALT", "") if state.hidden else "")


def _mutants(request: pytest.FixtureRequest) -> Any:
    """What builds the exercise's known mistakes, called only when a failure needs them."""
    session, exercise = get_session(request.config), _state(request).exercise
    return lambda: session.mutants_for(exercise)


@pytest.fixture
def mistakes(request: pytest.FixtureRequest) -> Any:
    from grader.compare import Mistakes

    load = _mutants(request)
    return lambda call: Mistakes(load, call)


@pytest.fixture
def expect(request: pytest.FixtureRequest, solution: Any) -> Any:
    """`grader.checks.Expect` bound to the solution and the exercise's known mistakes."""
    from grader.checks import Expect

    return Expect(solution, _mutants(request))


@pytest.fixture
def shared_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A fresh directory for files the check hands to the solution (a token file to memmap).

    The solution process sees it at the same path, read-only; nothing else of the judge's
    files is visible in the sandbox. Files the check writes there are made readable to the
    solution before each call into it, whatever mode their writer chose. Removed after the
    check.
    """
    from grader import recording

    grade = get_session(request.config)
    if grade.shared is None:  # direct mode: everything is visible anyway
        recording.scratch_folders[str(tmp_path)] = "<shared_dir>"
        try:
            yield tmp_path
        finally:
            recording.scratch_folders.pop(str(tmp_path), None)
        return
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(dir=grade.shared, prefix=f"{_state(request).exercise.id}."))
    directory.chmod(0o755)
    from grader import remote

    remote.share(directory)  # what the check writes there is made readable before each call
    recording.scratch_folders[str(directory)] = "<shared_dir>"
    try:
        yield directory
    finally:
        recording.scratch_folders.pop(str(directory), None)
        remote.unshare(directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, float]:
    return _state(request).figures
