"""A student's progress between runs: last status per exercise and hints shown, in .grade/."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from grader.results import RunResult


class ProgressState:
    def __init__(self, directory: Path):
        self.path = directory / "state.json"
        self.data: dict[str, Any] = {"exercises": {}, "hints": {}}
        try:
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self.data["exercises"] = dict(loaded.get("exercises", {}))
                self.data["hints"] = dict(loaded.get("hints", {}))
        except (OSError, ValueError):
            pass  # no state yet, or a damaged file: start afresh rather than fail

    def status(self, exercise_id: str) -> dict[str, Any] | None:
        return self.data["exercises"].get(exercise_id)

    def record(self, run: RunResult, skip: Collection[str] = ()) -> None:
        """Remember each exercise's status, except those in `skip` (graded only in part)."""
        for e in run.exercises:
            if e.id in skip:
                continue
            self.data["exercises"][e.id] = {
                "status": e.status,
                "score": e.score,
                "max_score": e.max_score,
                "graded_at": run.started,
            }

    def next_hint(self, exercise_id: str, n_hints: int) -> tuple[int, bool]:
        """The index of the hint to show now, one further each call and staying on the last,
        and whether it was shown before (asked for again after the last)."""
        try:
            shown = max(0, int(self.data["hints"].get(exercise_id, 0)))
        except (TypeError, ValueError):
            shown = 0  # a damaged entry: start from the first hint
        index = min(shown, n_hints - 1)
        self.data["hints"][exercise_id] = min(shown + 1, n_hints)
        return index, shown >= n_hints

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state.")
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f, indent=1)
            os.replace(tmp, self.path)
        except OSError:
            pass  # progress is a convenience; never fail a run over it
