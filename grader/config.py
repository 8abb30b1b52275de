"""Configuration: `[tool.grade]` in the nearest `pyproject.toml`, or a `grade.toml`.

Keys (all optional):

    solutions = "exercises"     directory holding <track>/<name>.py solutions
    plugins = ["my_plugin"]     extra plugin modules to load
    disable_plugins = ["name"]  plugins to block, like `-p no:NAME`
    timeout = 10.0              seconds per call into a solution (overrides exercise limits)
    jobs = 1                    exercises graded in parallel
    fail_under = 60.0           percentage below which `grade` exits 1
    reports = ["json:out.json"] reports written after each run
    seed = 0                    salt for the inputs each check draws
    gradescope_hidden_visibility = "after_published"
                                when Gradescope shows students the hidden checks: "hidden",
                                "after_due_date", "after_published" or "visible"

A table `[tool.grade.<plugin>]` holds that plugin's own settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import ConfigError
from grader.tomlload import expect, expect_str_list, read_toml, reject_unknown

KEYS = {"solutions", "plugins", "disable_plugins", "timeout", "jobs", "fail_under", "reports", "seed",
        "gradescope_hidden_visibility"}
# Gradescope's own visibility values, from its autograder specification.
GRADESCOPE_VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")


@dataclass
class GradeConfig:
    root: Path
    path: Path | None = None
    solutions: Path | None = None
    plugins: list[str] = field(default_factory=list)
    disable_plugins: list[str] = field(default_factory=list)
    timeout: float | None = None
    jobs: int = 1
    fail_under: float | None = None
    reports: list[str] = field(default_factory=list)
    seed: int = 0
    gradescope_hidden_visibility: str = "after_published"
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        if self.path is None:
            return "configuration"
        return f"{self.path} [tool.grade]" if self.path.name == "pyproject.toml" else str(self.path)

    def section(self, plugin: str) -> dict[str, Any]:
        """The plugin's own table, `[tool.grade.<plugin>]`; empty when absent."""
        return self.sections.get(plugin, {})

    @property
    def state_dir(self) -> Path:
        return self.root / ".grade"


def find_config_file(start: Path) -> Path | None:
    """The nearest grade.toml, or pyproject.toml with a [tool.grade] table, from start upwards."""
    for d in [start, *start.parents]:
        g = d / "grade.toml"
        if g.is_file():
            return g
        p = d / "pyproject.toml"
        if p.is_file():
            if "grade" in read_toml(p).get("tool", {}):
                return p
    return None


def load_config(start: Path | None = None, path: Path | None = None) -> GradeConfig:
    start = (start or Path.cwd()).resolve()
    path = path or find_config_file(start)
    if path is None:
        cfg = GradeConfig(root=start)
        cfg.solutions = start / "exercises"
        return cfg
    data = read_toml(path)
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("grade", {})
    cfg = GradeConfig(root=path.parent, path=path)
    where = cfg.where
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a table.")
    sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    reject_unknown({k: v for k, v in data.items() if k not in sections}, KEYS, where)
    cfg.sections = sections
    cfg.solutions = (cfg.root / expect(data, "solutions", str, where, "exercises")).resolve()
    cfg.plugins = expect_str_list(data, "plugins", where, [])
    cfg.disable_plugins = expect_str_list(data, "disable_plugins", where, [])
    timeout = expect(data, "timeout", (int, float), where, None)
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"{where}: key 'timeout' must be a positive number of seconds, not {timeout!r}.")
    cfg.timeout = None if timeout is None else float(timeout)
    cfg.jobs = expect(data, "jobs", int, where, 1)
    if cfg.jobs < 1:
        raise ConfigError(f"{where}: key 'jobs' must be at least 1, not {cfg.jobs!r}.")
    fail_under = expect(data, "fail_under", (int, float), where, None)
    if fail_under is not None and not 0 <= fail_under <= 100:
        raise ConfigError(f"{where}: key 'fail_under' must be a percentage from 0 to 100, not {fail_under!r}.")
    cfg.fail_under = fail_under
    cfg.reports = expect_str_list(data, "reports", where, [])
    cfg.seed = expect(data, "seed", int, where, 0)
    visibility = expect(data, "gradescope_hidden_visibility", str, where, "after_published")
    if visibility not in GRADESCOPE_VISIBILITIES:
        raise ConfigError(f"{where}: key 'gradescope_hidden_visibility' must be one of "
                          f"{', '.join(GRADESCOPE_VISIBILITIES)}, not {visibility!r}.")
    cfg.gradescope_hidden_visibility = visibility
    return cfg


def bundled_root() -> Path:
    """Where the bundled curriculum (plugins/, reference/, exercises/) lives.

    In a source checkout that is the repository; in an installed wheel, the copy shipped
    inside the package as `grader/_curriculum`.
    """
    here = Path(__file__).resolve().parent
    checkout = here.parent
    if any((checkout / "plugins").glob("*/track.toml")):  # a checkout, or a released edition of any tracks
        return checkout
    return here / "_curriculum"
