"""The plugin API: every hook llm-grader calls, in the order a run calls them.

This module is the single source of truth for plugin authors; `docs/plugins.md` has a
section per hook and the test suite fails when a hook lacks a test or a section.
Implement a hook with `@grader.hookimpl` in a module listed in `[tool.grade] plugins`, or
exposed through the `grade` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from grader.catalog import Exercise, Track
    from grader.config import GradeConfig
    from grader.reporting import Reporter
    from grader.results import ExerciseResult, RunResult

hookspec = pluggy.HookspecMarker("grade")
hookimpl = pluggy.HookimplMarker("grade")


# --- start-up --------------------------------------------------------------------------


@hookspec
def grade_configure(config: GradeConfig) -> None:
    """Read the plugin's own settings, `config.section("<plugin>")`, and check them.

    Raise `grader.errors.ConfigError` with a sentence naming the key for a bad value.
    """


@hookspec
def grade_register_tracks(register: Callable[[Track], None], config: GradeConfig) -> None:
    """Add tracks: call `register(track)` for each, e.g. with `grader.catalog.load_track(path)`.

    Track ids must be unique across plugins; a clash is an error that names both plugins.
    """


@hookspec
def grade_extra_checks(exercise: Exercise, config: GradeConfig) -> list[Path] | None:
    """Return extra check modules (paths) for an existing exercise: hidden checks, GPU checks.

    Their test functions run with the same fixtures (`solution`, `reference`, `rng`, ...).
    """


@hookspec
def grade_register_reporters(register: Callable[[str, Reporter], None]) -> None:
    """Add `--report` formats: `register("name", reporter)`.

    A reporter is a callable `reporter(run: RunResult, path: str | None) -> None`; names are
    unique across plugins.
    """


@hookspec
def grade_register_commands(cli: click.Group) -> None:
    """Add `grade` subcommands to the click group `cli`."""


# --- while grading ---------------------------------------------------------------------


@hookspec
def grade_exercise_finished(result: ExerciseResult) -> None:
    """Called as each exercise's result is known, for progress displays and streaming."""


@hookspec
def grade_run_finished(run: RunResult) -> None:
    """Called once with the whole run's results, after reports are written."""
