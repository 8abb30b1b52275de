"""GPU performance checks for the bundled curriculum, added to exercises like any
instructor's extra checks: `plugins/gpu_perf/perf_<track>_<name>.py` joins the checks of
`<track>.<name>`. Each is marked `gpu` (skipped, and left out of the maximum, without CUDA)
and `perf` (reported with its figures); `grader.perf` holds the timing and the verdicts."""

from __future__ import annotations

from pathlib import Path

from grader.catalog import Exercise
from grader.config import GradeConfig, bundled_root
from grader.hookspecs import hookimpl


@hookimpl
def grade_extra_checks(exercise: Exercise, config: GradeConfig) -> list[Path] | None:
    return perf_checks(bundled_root(), exercise) or None


def perf_checks(root: Path, exercise: Exercise) -> list[Path]:
    """The GPU performance checks of `exercise` in the curriculum at `root`."""
    module = root / "plugins" / "gpu_perf" / f"perf_{exercise.track}_{exercise.name}.py"
    return [module] if module.is_file() else []
