"""Tracks and exercises as data, read from `track.toml` and one `<name>.toml` per exercise.

A track directory holds:

    track.toml          id, title, order, where stubs and references live, exercise order
    <name>.toml         one exercise: title, topics, limits, forbidden ops, arguments its
                        functions may modify (inplace), hints, known mistakes (mutants)
    check_<name>.py     its checks (pytest test functions)

A released (student) edition, written by `grade release`, has no references: its track.toml
names `recorded` (the folder of recorded outputs, `<name>.pt.xz`) and `recorded_seed`, its
known mistakes carry a name and a sentence without source edits, and each exercise counts the
hidden checks it leaves out (`hidden_checks`).
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from grader.errors import ConfigError, GraderError
from grader.tomlload import expect, expect_str_list, read_toml, reject_unknown

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 4096
DEFAULT_MAX_FRAME_MB = 256  # the largest reply a solution may send in one call


@dataclass(frozen=True)
class Mutant:
    """A known mistake: the reference with a few exact text edits.

    Written as edits rather than a copy so that it stays in step with the reference; an
    edit whose text is no longer found in the reference is an error, not a silent no-op.
    """

    name: str
    misconception: str
    edits: tuple[tuple[str, str], ...]

    def apply(self, source: str, where: str = "reference") -> str:
        if not self.edits:
            raise GraderError(f"mutant '{self.name}' has no source edits here: this is a released edition of the "
                              "course, which carries the known mistakes' recorded outputs, not their source.")
        for old, new in self.edits:
            count = source.count(old)
            if count != 1:
                found = "not found" if count == 0 else f"found {count} times"
                raise GraderError(
                    f"mutant '{self.name}': the text to replace is {found} in {where}; "
                    f"each edit must match exactly once:\n{old}"
                )
            source = source.replace(old, new)
        return source


@dataclass
class Exercise:
    track: str
    name: str
    title: str
    stub: Path
    reference: Path
    checks: list[Path]
    hints: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    preload: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    # Arguments the exercise's functions may modify in place: "tensor" (for any function) or
    # "xavier_uniform_.tensor" (for one). Every other argument must be left as it was given.
    inplace: list[str] = field(default_factory=list)
    mutants: list[Mutant] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    max_frame_mb: int = DEFAULT_MAX_FRAME_MB
    # A released (student) edition: the file of the trusted code's recorded outputs that its
    # checks replay (`grader.release`), and how many hidden checks the full course has here.
    recorded: Path | None = None
    hidden_checks: int = 0

    @property
    def id(self) -> str:
        return f"{self.track}.{self.name}"

    @property
    def module_name(self) -> str:
        """The name the student's module is imported under, whatever directory it is in."""
        return f"exercises.{self.track}.{self.name}"

    @property
    def reference_module_name(self) -> str:
        return f"reference.{self.track}.{self.name}"

    def check_names(self) -> list[str] | None:
        """The names of this exercise's checks (test functions without `test_`), read from its
        check modules without importing them (no torch); None when a module cannot be read,
        since then only collecting it can tell (and its error is reported then)."""
        names: list[str] = []
        for path in self.checks:
            try:
                tree = ast.parse(path.read_text(), str(path))
            except (OSError, SyntaxError, ValueError):
                return None
            bodies = [tree.body] + [n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")]
            for body in bodies:
                names += [n.name[5:] for n in body
                          if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")]
        return names

    def mutant(self, name: str) -> Mutant:
        for m in self.mutants:
            if m.name == name:
                return m
        raise GraderError(f"{self.id} has no known mistake named '{name}'.")


@dataclass
class Track:
    id: str
    title: str
    order: int
    directory: Path
    stubs: Path
    reference: Path
    exercises: list[Exercise]
    plugin: str = ""
    recorded: Path | None = None  # a released edition: the folder of recorded outputs
    recorded_seed: int = 0  # the seed they were recorded with


_TRACK_KEYS = {"id", "title", "order", "stubs", "reference", "exercises", "recorded", "recorded_seed"}
_EXERCISE_KEYS = {
    "title", "topics", "requires", "preload", "forbidden", "inplace", "hints", "mutants",
    "timeout", "memory_mb", "max_frame_mb", "checks", "hidden_checks",
}
_MUTANT_KEYS = {"name", "misconception", "replace", "with", "edits"}


def load_track(track_toml: Path) -> Track:
    """Read a track directory's `track.toml` and its exercises' `<name>.toml` files."""
    track_toml = Path(track_toml).resolve()
    where = str(track_toml)
    data = read_toml(track_toml)
    reject_unknown(data, _TRACK_KEYS, where)
    track_id = expect(data, "id", str, where)
    if not track_id.isidentifier():
        raise ConfigError(f"{where}: track id '{track_id}' must be a Python identifier.")
    directory = track_toml.parent
    stubs = (directory / expect(data, "stubs", str, where, "exercises")).resolve()
    reference = (directory / expect(data, "reference", str, where, "reference")).resolve()
    track = Track(
        id=track_id,
        title=expect(data, "title", str, where),
        order=expect(data, "order", int, where, 100),
        directory=directory,
        stubs=stubs,
        reference=reference,
        exercises=[],
    )
    recorded = expect(data, "recorded", str, where, "")
    if recorded:
        track.recorded = (directory / recorded).resolve()
        track.recorded_seed = expect(data, "recorded_seed", int, where, 0)
    for name in expect_str_list(data, "exercises", where):
        track.exercises.append(_load_exercise(track, name))
    return track


def _load_exercise(track: Track, name: str) -> Exercise:
    path = track.directory / f"{name}.toml"
    where = str(path)
    if not name.isidentifier():
        raise ConfigError(f"{track.directory / 'track.toml'}: exercise name '{name}' must be a Python identifier.")
    data = read_toml(path)
    reject_unknown(data, _EXERCISE_KEYS, where)
    checks = expect_str_list(data, "checks", where, [f"check_{name}.py"])
    mutants = []
    for i, m in enumerate(expect(data, "mutants", list, where, [])):
        mwhere = f"{where} mutants[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(f"{mwhere}: each mutant must be a table.")
        reject_unknown(m, _MUTANT_KEYS, mwhere)
        if track.recorded is not None and not ({"edits", "replace", "with"} & m.keys()):
            edits: tuple[tuple[str, str], ...] = ()  # a released edition: recorded outputs, no source
        elif "edits" in m:
            edits = tuple(
                (expect(e, "replace", str, mwhere), expect(e, "with", str, mwhere))
                for e in expect(m, "edits", list, mwhere)
            )
        else:
            edits = ((expect(m, "replace", str, mwhere), expect(m, "with", str, mwhere)),)
        mutants.append(
            Mutant(
                name=expect(m, "name", str, mwhere),
                misconception=expect(m, "misconception", str, mwhere),
                edits=edits,
            )
        )
    timeout = float(expect(data, "timeout", (int, float), where, DEFAULT_TIMEOUT_S))
    memory_mb = expect(data, "memory_mb", int, where, DEFAULT_MEMORY_MB)
    max_frame_mb = expect(data, "max_frame_mb", int, where, DEFAULT_MAX_FRAME_MB)
    if timeout <= 0 or memory_mb <= 0 or max_frame_mb <= 0:
        raise ConfigError(f"{where}: 'timeout', 'memory_mb' and 'max_frame_mb' must be positive.")
    return Exercise(
        track=track.id,
        name=name,
        title=expect(data, "title", str, where),
        stub=track.stubs / f"{name}.py",
        reference=track.reference / f"{name}.py",
        checks=[(track.directory / c).resolve() for c in checks],
        hints=expect_str_list(data, "hints", where, []),
        topics=expect_str_list(data, "topics", where, []),
        requires=expect_str_list(data, "requires", where, []),
        preload=expect_str_list(data, "preload", where, []),
        forbidden=expect_str_list(data, "forbidden", where, []),
        inplace=_inplace(data, where),
        mutants=mutants,
        timeout=timeout,
        memory_mb=memory_mb,
        max_frame_mb=max_frame_mb,
        recorded=track.recorded / f"{name}.pt.xz" if track.recorded is not None else None,
        hidden_checks=expect(data, "hidden_checks", int, where, 0),
    )


def _inplace(data: dict, where: str) -> list[str]:
    """The `inplace` list: each entry an argument name, or `function.argument`."""
    value = data.get("inplace", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"{where}: key 'inplace' must be a list of strings, each an argument name its functions may modify"
            f" (\"tensor\") or \"function.argument\" (\"xavier_uniform_.tensor\"), not {value!r}."
        )
    for entry in value:
        if not all(part.isidentifier() for part in entry.split(".")):
            raise ConfigError(
                f"{where}: 'inplace' entry {entry!r} is not an argument name (\"tensor\") or"
                f" \"function.argument\" (\"xavier_uniform_.tensor\")."
            )
    return list(value)


class Catalog:
    """Every registered track, in course order, with lookups by id, target and check file."""

    def __init__(self, tracks: list[Track]):
        self.tracks = sorted(tracks, key=lambda t: (t.order, t.id))
        self._exercises = {e.id: e for t in self.tracks for e in t.exercises}
        self._by_check: dict[Path, Exercise] = {}
        for e in self._exercises.values():
            for c in e.checks:
                self._by_check[c.resolve()] = e

    @property
    def exercises(self) -> list[Exercise]:
        return [e for t in self.tracks for e in t.exercises]

    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise GraderError(f"no track named '{track_id}'{self._did_you_mean(track_id)}.")

    def exercise(self, exercise_id: str) -> Exercise:
        try:
            return self._exercises[exercise_id]
        except KeyError:
            raise GraderError(
                f"no exercise named '{exercise_id}'{self._did_you_mean(exercise_id)}. "
                "Run 'grade list' to see them all."
            ) from None

    def add_checks(self, exercise: Exercise, paths: list[Path]) -> None:
        for p in paths:
            p = Path(p).resolve()
            if p not in exercise.checks:
                exercise.checks.append(p)
            self._by_check[p] = exercise

    def exercise_for_check(self, path: Path) -> Exercise | None:
        return self._by_check.get(Path(path).resolve())

    def select(self, targets: list[str]) -> list[tuple[Exercise, frozenset[str] | None]]:
        """Resolve targets to (exercise, check names or None for all), in course order.

        A target is a track id, an exercise id, a glob over exercise ids, or
        `<exercise id>.<check name>` for a single check (`attention.sdpa.causal_top_left`).
        A check name that the exercise does not have is an error, with the closest names.
        """
        if not targets:
            return [(e, None) for e in self.exercises]
        chosen: dict[str, set[str | None]] = {}
        for target in targets:
            matched = self._match(target)
            for exercise_id, check in matched:
                chosen.setdefault(exercise_id, set()).add(check)
        return [
            (e, None if None in chosen[e.id] else frozenset(c for c in chosen[e.id] if c))
            for e in self.exercises
            if e.id in chosen
        ]

    def _match(self, target: str) -> list[tuple[str, str | None]]:
        if any(t.id == target for t in self.tracks):
            return [(e.id, None) for e in self.track(target).exercises]
        if target in self._exercises:
            return [(target, None)]
        if any(ch in target for ch in "*?["):
            hits = [(i, None) for i in self._exercises if fnmatch.fnmatchcase(i, target)]
            if hits:
                return hits
            raise GraderError(f"no exercise matches '{target}'. Run 'grade list' to see them all.")
        exercise_id, _, check = target.rpartition(".")
        if exercise_id in self._exercises and check:
            self._check_exists(self._exercises[exercise_id], check)
            return [(exercise_id, check)]
        raise GraderError(
            f"no track or exercise named '{target}'{self._did_you_mean(target)}. "
            "Run 'grade list' to see them all."
        )

    def _check_exists(self, exercise: Exercise, check: str) -> None:
        names = exercise.check_names()
        if names is None or check.partition("[")[0] in names:
            return
        close = closest(check, names)
        if close:
            hint = f" (did you mean '{exercise.id}.{close}'?)"
        else:
            hint = f". Its checks are: {', '.join(names)}" if names else ". It has no checks"
        raise GraderError(f"{exercise.id} has no check named '{check}'{hint}.")

    def _did_you_mean(self, name: str) -> str:
        close = closest(name, self.names())
        return f" (did you mean '{close}'?)" if close else ""

    def names(self) -> list[str]:
        """Every track and exercise id, in course order."""
        return [t.id for t in self.tracks] + list(self._exercises)


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate `name` was most likely meant to be: the most similar by spelling, else
    the only one containing it (`near_overflow` for `softmax_near_overflow`)."""
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    if close:
        # Two letters swapped (`hnit`) is the likeliest typo: among equally close spellings,
        # one with exactly the same letters wins (`hint`, not `init`).
        best = difflib.SequenceMatcher(None, name, close[0]).ratio()
        tied = [c for c in close if difflib.SequenceMatcher(None, name, c).ratio() == best]
        return next((c for c in tied if sorted(c) == sorted(name)), close[0])
    containing = [c for c in candidates if name and name in c]
    return containing[0] if len(containing) == 1 else None
