"""The judge's trusted code: references and the known mistakes (mutants) built from them.

Everything here is imported before any student code runs, so a solution that rewrites
files on disk cannot change what it is judged against.
"""

from __future__ import annotations

from typing import Any

from grader.catalog import Catalog, Exercise


class TrustedCode:
    """Imports references and builds mutant modules, once per exercise."""

    def __init__(self, catalog: Catalog, references_as_exercises: bool):
        self.catalog = catalog
        # In the judge, `exercises.<track>.<name>` (how later exercises import earlier work)
        # must mean the references: no student code lives in this process.
        self.references_as_exercises = references_as_exercises
        self._mutants: dict[str, dict[str, tuple[str, Any]]] = {}

    def load(self, exercises: list[Exercise]) -> None:
        """Import every reference and build every mutant now, before any solution runs."""
        for exercise in exercises:
            try:
                self.reference(exercise)
                self.mutants(exercise)
            except Exception:  # reported by the checks that need them, as a setup error
                continue

    def reference(self, exercise: Exercise) -> Any:
        from grader.imports import alias_tracks, import_reference

        if self.references_as_exercises:
            alias_tracks("exercises", {t.id: t.reference for t in self.catalog.tracks})
        return import_reference(exercise.track, self.catalog.track(exercise.track).reference, exercise.name)

    def mutants(self, exercise: Exercise) -> dict[str, tuple[str, Any]]:
        """name -> (misconception, module) for each known mistake of `exercise`."""
        if exercise.id not in self._mutants:
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
