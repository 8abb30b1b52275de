"""The plugin manager and a small typed facade over it.

The rest of the code calls `GradePlugins` methods and never touches pluggy directly. It is
built when the CLI (or the pytest plugin) starts, never at import, so `grade --help` stays
fast and tests stay isolated.

Load order: built-ins (`BUILTIN_PLUGINS`), then entry points in the group `grade` (unless
`GRADE_DISABLE_PLUGIN_AUTOLOAD` is set), then `[tool.grade] plugins`. A plugin is blocked by
`-p no:NAME`, `GRADE_DISABLE_PLUGINS=NAME,...` or `[tool.grade] disable_plugins`.
`GRADE_TRACE_PLUGINS=1` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

from grader import hookspecs
from grader.errors import ConfigError

if TYPE_CHECKING:
    import click

    from grader.catalog import Catalog, Track
    from grader.config import GradeConfig
    from grader.reporting import Reporter
    from grader.results import ExerciseResult, RunResult

BUILTIN_PLUGINS = (
    "grader.builtin.tracks",
    "grader.builtin.reporters",
    "grader.builtin.gpu_perf",
)

ENTRY_POINT_GROUP = "grade"


def _builtin_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


class GradePlugins:
    def __init__(self, config: GradeConfig, blocked: Iterable[str] = ()):
        self.config = config
        self.pm = pluggy.PluginManager("grade")
        self.pm.add_hookspecs(hookspecs)
        blocked = set(blocked) | set(config.disable_plugins)
        blocked |= {b for b in os.environ.get("GRADE_DISABLE_PLUGINS", "").split(",") if b}
        for name in blocked:
            self.pm.set_blocked(name)
        if os.environ.get("GRADE_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda s: sys.stderr.write(s))
            self.pm.enable_tracing()
        for module in BUILTIN_PLUGINS:
            self._register_module(module, _builtin_name(module), "built-in")
        if not os.environ.get("GRADE_DISABLE_PLUGIN_AUTOLOAD"):
            try:
                self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            except Exception as e:  # a broken third-party plugin must not look like our bug
                raise ConfigError(
                    f"a plugin installed for llm-grader failed to load: {type(e).__name__}: {e}. "
                    "Uninstall or fix it, or set GRADE_DISABLE_PLUGIN_AUTOLOAD=1."
                ) from None
        for module in config.plugins:
            self._register_module(module, module, config.where)
        self.pm.check_pending()
        self.pm.hook.grade_configure(config=config)

    def _register_module(self, module: str, name: str, source: str) -> None:
        if self.pm.is_blocked(name) or self.pm.is_blocked(module):
            return
        try:
            mod = importlib.import_module(module)
        except Exception as e:
            raise ConfigError(
                f"could not load plugin '{module}' (listed in {source}): {type(e).__name__}: {e}. "
                "Check that it is installed and importable."
            ) from None
        if self.pm.is_registered(mod):
            return
        self.pm.register(mod, name=name)

    # --- registration hooks: called one plugin at a time so a name clash names both -----

    def _each_impl(self, hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
        caller = getattr(self.pm.hook, hook_name)
        # Registration order (built-ins first), so the first plugin to claim a name keeps it.
        return [(impl.plugin_name, impl.function) for impl in caller.get_hookimpls()]

    def _collect(self, hook_name: str, what: str, **kwargs: Any) -> dict[str, tuple[str, Any]]:
        found: dict[str, tuple[str, Any]] = {}
        for plugin, function in self._each_impl(hook_name):

            def register(name: str, value: Any, _plugin: str = plugin) -> None:
                if name in found:
                    raise ConfigError(
                        f"two plugins register a {what} named '{name}': "
                        f"'{found[name][0]}' and '{_plugin}'. Disable one with -p no:NAME."
                    )
                found[name] = (_plugin, value)

            function(register=register, **kwargs)
        return found

    def tracks(self) -> list[Track]:
        tracks: dict[str, Track] = {}
        for plugin, function in self._each_impl("grade_register_tracks"):

            def register(track: Track, _plugin: str = plugin) -> None:
                if track.id in tracks:
                    raise ConfigError(
                        f"two plugins register a track named '{track.id}': "
                        f"'{tracks[track.id].plugin}' and '{_plugin}'. Disable one with -p no:NAME."
                    )
                track.plugin = _plugin
                tracks[track.id] = track

            function(register=register, config=self.config)
        return list(tracks.values())

    def catalog(self) -> Catalog:
        from grader.catalog import Catalog

        catalog = Catalog(self.tracks())
        for exercise in catalog.exercises:
            for paths in self.pm.hook.grade_extra_checks(exercise=exercise, config=self.config):
                catalog.add_checks(exercise, list(paths or []))
        return catalog

    def reporters(self) -> dict[str, Reporter]:
        return {name: value for name, (_, value) in self._collect("grade_register_reporters", "reporter").items()}

    def register_commands(self, cli: click.Group) -> None:
        self.pm.hook.grade_register_commands(cli=cli)

    def exercise_finished(self, result: ExerciseResult) -> None:
        self.pm.hook.grade_exercise_finished(result=result)

    def run_finished(self, run: RunResult) -> None:
        self.pm.hook.grade_run_finished(run=run)

    def describe(self) -> list[tuple[str, str, list[str]]]:
        """(name, where it comes from, hooks it implements) for each loaded plugin."""
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(
                h.name for h in self.pm.get_hookcallers(plugin) or [] if h.name.startswith("grade_")
            )
            origin = getattr(plugin, "__file__", None) or repr(plugin)
            rows.append((name, origin, hooks))
        return rows
