"""The bundled curriculum: every `plugins/<track>/track.toml` shipped with llm-grader."""

from __future__ import annotations

from collections.abc import Callable

from grader.catalog import Track, load_track
from grader.config import GradeConfig, bundled_root
from grader.hookspecs import hookimpl


@hookimpl
def grade_register_tracks(register: Callable[[Track], None], config: GradeConfig) -> None:
    for track_toml in sorted((bundled_root() / "plugins").glob("*/track.toml")):
        register(load_track(track_toml))
