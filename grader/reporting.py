"""Reports rendered from the results model; `--report FORMAT[:PATH]` picks them."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from grader.results import RunResult

Reporter = Callable[[RunResult, "str | None"], None]


def write_text_atomically(path: str | None, text: str) -> None:
    """Write `text` to `path` (stdout when None or '-') so a reader never sees half a file."""
    if path in (None, "-"):
        sys.stdout.write(text)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, target)


def write_json(run: RunResult, path: str | None) -> None:
    write_text_atomically(path, json.dumps(run.to_dict(), indent=2) + "\n")


def parse_report_spec(spec: str, available: dict[str, Reporter]) -> tuple[str, str | None]:
    """`json:out/results.json` -> ("json", "out/results.json"); `json` -> ("json", None)."""
    from grader.errors import ConfigError

    fmt, sep, path = spec.partition(":")
    if fmt not in available:
        known = ", ".join(sorted(available)) or "none"
        raise ConfigError(f"unknown report format '{fmt}' in --report {spec}. Known formats: {known}.")
    return fmt, (path if sep and path else None)
