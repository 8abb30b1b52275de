"""The judge's trusted code: references and the known mistakes (mutants) built from them.

Everything here is imported before any student code runs, so a solution that rewrites
files on disk cannot change what it is judged against.

In a released (student) edition an exercise has no reference or mutant source; its checks
get the outputs recorded at release time instead (`grader.release`). While `grade release`
records, the references and mutants the checks use are wrapped so that every answer is kept.
"""

from __future__ import annotations

from typing import Any

from grader.catalog import Catalog, Exercise


class TrustedCode:
    """Imports references and builds mutant modules, once per exercise."""

    def __init__(self, catalog: Catalog, references_as_exercises: bool, recordings: dict[str, Any] | None = None):
        self.catalog = catalog
        # In the judge, `exercises.<track>.<name>` (how later exercises import earlier work)
        # must mean the references: no student code lives in this process.
        self.references_as_exercises = references_as_exercises
        # exercise id -> grader.release.Recording, while `grade release` records
        self.recordings = recordings
        self._mutants: dict[str, dict[str, tuple[str, Any]]] = {}
        self._replays: dict[str, Any] = {}

    def load(self, exercises: list[Exercise]) -> None:
        """Import every reference and build every mutant now, before any solution runs."""
        for exercise in exercises:
            try:
                if exercise.recorded is not None:
                    self.replay(exercise)
                    continue
                self.reference(exercise)
                self.mutants(exercise)
            except Exception:  # reported by the checks that need them, as a setup error
                continue

    def replay(self, exercise: Exercise) -> Any:
        """The recorded outputs of a released exercise (`grader.release.Recording`)."""
        if exercise.id not in self._replays:
            from grader.release import Recording

            assert exercise.recorded is not None
            self._replays[exercise.id] = Recording.load(exercise.recorded)
        return self._replays[exercise.id]

    def reference(self, exercise: Exercise) -> Any:
        """The reference module (in a released edition there is none: an error)."""
        from grader.imports import alias_tracks, import_reference

        if exercise.recorded is not None:
            from grader.errors import GraderError

            raise GraderError(f"{exercise.id}: this released edition of the course has no reference source.")
        if self.references_as_exercises:
            alias_tracks("exercises", {t.id: t.reference for t in self.catalog.tracks})
        return import_reference(exercise.track, self.catalog.track(exercise.track).reference, exercise.name)

    def reference_for_checks(self, exercise: Exercise) -> Any:
        """What the `reference` fixture gives: the module, its recorded answers in a released
        edition, or the module with every call kept while `grade release` records."""
        from grader import release

        if exercise.recorded is not None:
            return release.ReplayedReference(self.replay(exercise), exercise.id)
        module = self.reference(exercise)
        if self.recordings is not None:
            return release.RecordingReference(module, self.recordings[exercise.id])
        return module

    def mutants(self, exercise: Exercise) -> dict[str, tuple[str, Any]]:
        """name -> (misconception, module) for each known mistake of `exercise` (in a released
        edition, each mistake's recorded answers)."""
        if exercise.id not in self._mutants:
            if exercise.recorded is not None:
                from grader.release import ReplayedMistake

                recording = self.replay(exercise)
                self._mutants[exercise.id] = {m.name: (m.misconception, ReplayedMistake(m.name, recording))
                                              for m in exercise.mutants}
                return self._mutants[exercise.id]
            from grader.imports import module_from_source

            source = exercise.reference.read_text()
            modules = {}
            for m in exercise.mutants:
                mutated = m.apply(source, str(exercise.reference))
                module = module_from_source(
                    f"grade_mutants.{exercise.track}.{exercise.name}.{m.name}", mutated, f"<mutant {m.name}>"
                )
                modules[m.name] = (m.misconception, module)
            self._mutants[exercise.id] = modules
        return self._mutants[exercise.id]

    def guard(self, exercise: Exercise, name: str, module: Any) -> Any:
        """A known mistake as the checks call it: a mistake that modifies an argument fails
        that call (and puts the argument back); while recording, every answer is kept."""
        from grader.compare import MutantOutcome
        from grader.direct import DirectModule

        if isinstance(module, MutantOutcome):
            return module
        guarded = DirectModule(module, exercise.inplace)
        if self.recordings is not None:
            from grader.release import RecordingMistake

            return RecordingMistake(name, guarded, self.recordings[exercise.id])
        return guarded
