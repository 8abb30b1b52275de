"""Built-in report formats: `json` (the native results format)."""

from __future__ import annotations

from collections.abc import Callable

from grader.hookspecs import hookimpl
from grader.reporting import Reporter, write_json


@hookimpl
def grade_register_reporters(register: Callable[[str, Reporter], None]) -> None:
    register("json", write_json)
