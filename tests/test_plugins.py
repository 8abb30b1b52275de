"""The plugin API: every hook works as documented, and the docs and tests cover every hook."""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, run_grade

from grader import hookspecs
from grader.config import load_config
from grader.errors import ConfigError
from grader.plugins import GradePlugins

HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("grade_"))

PLUGIN = '''
import json
from pathlib import Path

import click

from grader import hookimpl
from grader.catalog import load_track
from grader.errors import ConfigError

CALLS = Path(__file__).with_name("calls.jsonl")


def log(**kw):
    with open(CALLS, "a") as f:
        f.write(json.dumps(kw) + "\\n")


@hookimpl
def grade_configure(config):
    level = config.section("myplugin").get("level", 1)
    if not isinstance(level, int):
        raise ConfigError("[tool.grade.myplugin] level must be an integer")
    log(hook="grade_configure", level=level)


@hookimpl
def grade_register_tracks(register, config):
    register(load_track(Path(__file__).parent / "track" / "track.toml"))


@hookimpl
def grade_extra_checks(exercise, config):
    if exercise.id == "extra.double":
        return [Path(__file__).parent / "track" / "hidden_double.py"]


@hookimpl
def grade_register_reporters(register):
    register("total", lambda run, path: Path(path).write_text(str(run.score)))


@hookimpl
def grade_register_commands(cli):
    @cli.command("hello")
    def hello():
        click.echo("hello from myplugin")


@hookimpl
def grade_exercise_finished(result):
    log(hook="grade_exercise_finished", id=result.id, score=result.score)


@hookimpl
def grade_run_finished(run):
    log(hook="grade_run_finished", score=run.score, max_score=run.max_score)
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A student project with its own plugin adding a one-exercise track."""
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    track = tmp_path / "track"
    (track / "reference").mkdir(parents=True)
    (track / "exercises").mkdir()
    (track / "track.toml").write_text('id = "extra"\ntitle = "Extra"\norder = 50\nexercises = ["double"]\n')
    (track / "double.toml").write_text(textwrap.dedent('''
        title = "Double a tensor"
        hints = ["multiply", "by two"]
        [[mutants]]
        name = "triple"
        misconception = "multiplies by three"
        replace = "x * 2"
        with = "x * 3"
    '''))
    (track / "reference" / "double.py").write_text("def double(x):\n    return x * 2\n")
    (track / "exercises" / "double.py").write_text("def double(x):\n    raise NotImplementedError\n")
    (track / "check_double.py").write_text(textwrap.dedent('''
        import torch
        from grader.compare import assert_close

        def test_doubles(solution, rng, mistakes):
            x = rng.randn(3)
            assert_close(solution.double(x), x * 2, atol=0, rtol=0, mistakes=mistakes(lambda m: m.double(x)))

        def test_doubles_ints(solution):
            assert solution.double(4) == 8
    '''))
    (track / "hidden_double.py").write_text(textwrap.dedent('''
        import pytest

        @pytest.mark.hidden
        @pytest.mark.points(5)
        def test_hidden_negative(solution):
            assert solution.double(-1) == -2
    '''))
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [tool.grade]
        solutions = "solutions"
        plugins = ["myplugin"]
        [tool.grade.myplugin]
        level = 3
    '''))
    (tmp_path / "solutions" / "extra").mkdir(parents=True)
    (tmp_path / "solutions" / "extra" / "double.py").write_text("def double(x):\n    return x * 2\n")
    return tmp_path


def calls(project: Path) -> list[dict]:
    path = project / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def grade_in(project: Path, *args: str):
    return run_grade(*args, cwd=project, env={"PYTHONPATH": str(project), "GRADE_DISABLE_PLUGIN_AUTOLOAD": "1"})


# --- one test per hook (the meta-test below finds them by name) ------------------------


def test_grade_configure_reads_the_plugins_own_section(project: Path):
    proc = grade_in(project, "plugins")
    assert proc.returncode == 0, proc.stderr
    assert {"hook": "grade_configure", "level": 3} in calls(project)
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().replace("level = 3", 'level = "high"')
    )
    proc = grade_in(project, "plugins")
    assert proc.returncode == 2
    assert "level must be an integer" in proc.stderr


def test_grade_register_tracks_adds_a_track(project: Path):
    proc = grade_in(project, "list")
    assert proc.returncode == 0, proc.stderr
    assert "extra.double" in proc.stdout and "foundations.softmax" in proc.stdout


def test_grade_register_tracks_name_clash_names_both_plugins(project: Path):
    (project / "clash.py").write_text(
        "from pathlib import Path\nfrom grader import hookimpl\nfrom grader.catalog import load_track\n"
        "@hookimpl\ndef grade_register_tracks(register, config):\n"
        "    register(load_track(Path(__file__).parent / 'track' / 'track.toml'))\n"
    )
    text = (project / "pyproject.toml").read_text().replace('plugins = ["myplugin"]', 'plugins = ["myplugin", "clash"]')
    (project / "pyproject.toml").write_text(text)
    proc = grade_in(project, "list")
    assert proc.returncode == 2
    assert "two plugins register a track named 'extra': 'myplugin' and 'clash'" in proc.stderr


def test_grade_extra_checks_adds_hidden_checks(project: Path):
    out = project / "r.json"
    proc = grade_in(project, "extra", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    names = [c["name"] for c in json.loads(out.read_text())["tracks"][0]["exercises"][0]["checks"]]
    assert names == ["doubles", "doubles_ints"], "hidden checks run only with --hidden"
    proc = grade_in(project, "extra", "--hidden", "--report", f"json:{out}", "-q")
    exercise = json.loads(out.read_text())["tracks"][0]["exercises"][0]
    assert [c["name"] for c in exercise["checks"]][-1] == "hidden_negative"
    assert exercise["score"] == exercise["max_score"] == 7


def test_grade_register_reporters_adds_a_format(project: Path):
    proc = grade_in(project, "extra", "--report", f"total:{project / 'total.txt'}", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (project / "total.txt").read_text() == "2.0"
    proc = grade_in(project, "extra", "--report", "nope:x")
    assert proc.returncode == 2 and "unknown report format 'nope'" in proc.stderr and "total" in proc.stderr


def test_grade_register_commands_adds_a_subcommand(project: Path):
    proc = grade_in(project, "hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hello from myplugin"


def test_grade_exercise_finished_and_grade_run_finished_see_results(project: Path):
    proc = grade_in(project, "extra", "-q")
    assert proc.returncode == 0, proc.stderr
    seen = calls(project)
    assert {"hook": "grade_exercise_finished", "id": "extra.double", "score": 2.0} in seen
    assert {"hook": "grade_run_finished", "score": 2.0, "max_score": 2.0} in seen


# --- grade check ---------------------------------------------------------------------------


def test_grade_check_rejects_a_stub_missing_a_function_and_an_unlisted_file(project: Path):
    track = project / "track"
    proc = grade_in(project, "check", "extra")
    assert proc.returncode == 4, "the fixture's track lacks mutants and checks: " + proc.stdout
    assert "lacks" not in proc.stdout and "not listed" not in proc.stdout, proc.stdout
    (track / "reference" / "double.py").write_text(
        "def double(x):\n    return x * 2\n\ndef halve(x, exact=True):\n    return x / 2\n")
    (track / "draft_check.py").write_text("def test_nothing():\n    pass\n")
    proc = grade_in(project, "check", "extra", "--report", "json:-")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "the stub lacks halve, which the reference defines (function halve(x, exact=True))" in proc.stderr
    assert "draft_check.py is not listed by track 'extra'" in proc.stderr, proc.stderr
    findings = json.loads(proc.stdout)  # only the report on stdout
    assert findings["ok"] is False
    assert findings["tracks"][0]["id"] == "extra" and "draft_check.py" in findings["tracks"][0]["problems"][0]
    (exercise,) = findings["exercises"]
    assert exercise["reference"]["score"] == exercise["reference"]["max_score"] == 7, "hidden checks run too"
    assert (exercise["reference"]["checks"], exercise["reference"]["hidden"]) == (2, 1)
    assert exercise["stub"]["status"] == "not_started" and exercise["stub"]["passing"] == [], proc.stderr
    assert exercise["mutants"] == [{"name": "triple", "caught_by": ["doubles", "doubles_ints", "hidden_negative"],
                                    "named": True, "misnamed": {}}]
    assert any("lacks halve" in problem for problem in exercise["problems"])
    (track / "exercises" / "double.py").write_text(
        "def double(x):\n    raise NotImplementedError\n\ndef halve(x):\n    raise NotImplementedError\n")
    proc = grade_in(project, "check", "extra")
    assert "halve differs: the stub has function halve(x), the reference function halve(x, exact=True)" in proc.stdout


def test_grade_check_hidden_runs_the_hidden_checks_and_wants_every_mistake_caught_publicly(project: Path):
    toml = project / "track" / "double.toml"
    toml.write_text(toml.read_text() + textwrap.dedent('''
        [[mutants]]
        name = "ints_lose_sign"
        misconception = "an int loses its sign"
        replace = "x * 2"
        with = "abs(x) * 2 if isinstance(x, int) else x * 2"
    '''))
    proc = grade_in(project, "check", "extra", "--hidden", "--report", "json:-")
    assert proc.returncode == 4, proc.stderr
    (exercise,) = json.loads(proc.stdout)["exercises"]
    assert exercise["reference"]["score"] == exercise["reference"]["max_score"] == 7  # the hidden check ran
    assert {m["name"]: m["caught_by"] for m in exercise["mutants"]}["ints_lose_sign"] == ["hidden_negative"]
    assert any("'ints_lose_sign' is caught only by hidden checks" in p for p in exercise["problems"]), exercise
    proc = grade_in(project, "check", "extra", "--public-only", "--report", "json:-")
    (exercise,) = json.loads(proc.stdout)["exercises"]
    assert (exercise["reference"]["score"], exercise["reference"]["hidden"]) == (2, 1)  # counted, not run
    assert "passes every check" in " ".join(exercise["problems"])
    assert "(not run: --hidden runs them)" in proc.stderr


def test_public_api_honours_all_and_ignores_annotations(tmp_path: Path):
    from grader.selfcheck import public_api

    module = tmp_path / "m.py"
    module.write_text("import torch\n__all__ = ['Model']\nclass Model:\n    def __init__(self, d: int = 2):\n"
                      "        pass\n    def forward(self, x: torch.Tensor) -> torch.Tensor:\n        return x\n"
                      "class Helper:\n    pass\n")
    assert public_api(module) == {"Model": "class Model with __init__(self, d=2), forward(self, x)"}


# --- loading ------------------------------------------------------------------------------


def test_parallel_workers_honour_disabled_plugins_and_leave_no_files(project: Path, tmp_path: Path):
    (project / "adder.py").write_text(textwrap.dedent('''
        from pathlib import Path
        from grader import hookimpl
        @hookimpl
        def grade_extra_checks(exercise, config):
            if exercise.id == "extra.double":
                return [Path(__file__).parent / "added.py"]
    '''))
    (project / "added.py").write_text("def test_added_by_adder(solution):\n    assert solution.double(1) == 2\n")
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().replace('plugins = ["myplugin"]', 'plugins = ["myplugin", "adder"]'))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = project / "r.json"

    def checks(*args: str) -> list[str]:
        proc = run_grade("extra", "foundations.softmax", "-j", "2", *args, "--report", f"json:{out}", "-q", cwd=project,
                         env={"PYTHONPATH": str(project), "GRADE_DISABLE_PLUGIN_AUTOLOAD": "1", "TMPDIR": str(scratch)})
        assert proc.returncode == 0, proc.stderr
        exercises = {e["id"]: e for t in json.loads(out.read_text())["tracks"] for e in t["exercises"]}
        return [c["name"] for c in exercises["extra.double"]["checks"]]

    assert "added_by_adder" in checks()
    assert "added_by_adder" not in checks("-p", "no:adder"), "a -j worker loaded a disabled plugin"
    assert not list(scratch.glob("grade-jobs-*")), "the workers' directory was left behind"


def test_blocking_a_plugin_removes_its_hooks(project: Path):
    proc = run_grade("plugins", cwd=project, env={"PYTHONPATH": str(project), "GRADE_DISABLE_PLUGINS": "myplugin"})
    assert proc.returncode == 0, proc.stderr
    assert "myplugin" not in proc.stdout and "tracks" in proc.stdout


def test_grade_plugins_lists_hooks(project: Path):
    proc = grade_in(project, "plugins")
    assert proc.returncode == 0, proc.stderr
    assert "myplugin" in proc.stdout and "grade_register_reporters" in proc.stdout


def test_a_missing_plugin_is_a_clear_error(tmp_path: Path):
    (tmp_path / "grade.toml").write_text('plugins = ["not_a_module_anywhere"]\n')
    proc = run_grade("list", cwd=tmp_path)
    assert proc.returncode == 2
    assert "could not load plugin 'not_a_module_anywhere'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plugin_manager_is_not_built_at_import():
    import subprocess
    import sys

    code = (
        "import sys, pluggy\n"
        "built = []\n"
        "init = pluggy.PluginManager.__init__\n"
        "def counting(self, *a, **k):\n"
        "    built.append(a)\n"
        "    init(self, *a, **k)\n"
        "pluggy.PluginManager.__init__ = counting\n"
        "import grader, grader.cli, grader.plugins, grader.runner, grader.catalog, grader.config\n"
        "print(len(built), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False"], f"plugin managers built at import, torch imported: {out}"


def test_one_grade_run_builds_one_plugin_manager():
    """So grade_configure runs once per run, whatever the first word of the command line."""
    import subprocess
    import sys

    code = (
        "import pluggy\n"
        "built = []\n"
        "init = pluggy.PluginManager.__init__\n"
        "def counting(self, project_name, *a, **k):\n"
        "    built.append(project_name)\n"
        "    init(self, project_name, *a, **k)\n"
        "pluggy.PluginManager.__init__ = counting\n"
        "from grader.cli import main\n"
        "for args in (['foundations.softmax', '--solutions', 'reference', '-q'], ['list']):\n"
        "    built.clear()\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print('BUILT', built.count('grade'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    assert [line for line in out.splitlines() if line.startswith("BUILT")] == ["BUILT 1", "BUILT 1"], out


def test_entry_point_autoload_can_be_disabled(monkeypatch):
    seen = []
    monkeypatch.setenv("GRADE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setattr("pluggy.PluginManager.load_setuptools_entrypoints", lambda self, group: seen.append(group))
    GradePlugins(load_config(ROOT))
    assert seen == []
    monkeypatch.delenv("GRADE_DISABLE_PLUGIN_AUTOLOAD")
    GradePlugins(load_config(ROOT))
    assert seen == ["grade"]


def test_broken_entry_point_is_reported(monkeypatch):
    def broken(self, group):
        raise ImportError("no module named shiny")

    monkeypatch.setattr("pluggy.PluginManager.load_setuptools_entrypoints", broken)
    with pytest.raises(ConfigError, match="a plugin installed for llm-grader failed to load"):
        GradePlugins(load_config(ROOT))


# --- meta-tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str):
    names = [n for n, v in globals().items() if n.startswith("test_") and inspect.isfunction(v)]
    assert any(hook in n for n in names), f"no test in tests/test_plugins.py is named after {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"^## {hook}$", docs, re.M), f"docs/plugins.md has no '## {hook}' section"
    assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring in grader/hookspecs.py"


def test_grade_check_isolated_grades_stub_and_mistakes_through_the_sandbox(project: Path):
    # The stub and each mistake are laid out in temporary directories, which the sandboxed
    # solution process (another user) must be able to read.
    proc = grade_in(project, "check", "--isolated", "extra", "--report", "json:-")
    (exercise,) = json.loads(proc.stdout)["exercises"]
    assert exercise["stub"]["status"] == "not_started", proc.stderr
    assert exercise["mutants"][0]["named"] is True, proc.stderr


def test_files_a_check_writes_0600_into_shared_dir_are_readable_by_the_solution(project: Path):
    # safetensors' save_pretrained writes its files 0600; the sandboxed solution runs as
    # another user and must still read what the check hands it.
    with (project / "solutions" / "extra" / "double.py").open("a") as f:
        f.write("\n\ndef read_back(path):\n    return open(path).read()\n")
    with (project / "track" / "check_double.py").open("a") as f:
        f.write(textwrap.dedent('''

            def test_reads_a_private_file(solution, shared_dir):
                (shared_dir / "sub").mkdir(mode=0o700)
                path = shared_dir / "sub" / "weights.bin"
                path.write_text("hello")
                path.chmod(0o600)
                assert solution.read_back(str(path)) == "hello"
        '''))
    proc = grade_in(project, "--solutions", "solutions", "extra", "--report", "json:-")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["tracks"][0]["exercises"][0]["checks"]}
    assert checks["reads_a_private_file"]["outcome"] == "passed", checks["reads_a_private_file"]["message"]


def test_grade_check_quick_stops_each_mistake_at_its_first_catch_once_one_is_named(project: Path):
    with (project / "track" / "double.toml").open("a") as toml:
        toml.write('[[mutants]]\nname = "plus_one"\nmisconception = "adds one"\nreplace = "x * 2"\nwith = "x * 2 + 1"\n')
    full = json.loads(grade_in(project, "check", "extra", "--report", "json:-").stdout)["exercises"][0]["mutants"]
    quick = json.loads(grade_in(project, "check", "extra", "--quick", "--report", "json:-").stdout)
    assert [m["caught_by"] for m in full] == [["doubles", "doubles_ints", "hidden_negative"]] * 2
    assert [m["caught_by"] for m in quick["exercises"][0]["mutants"]] == [
        ["doubles", "doubles_ints", "hidden_negative"], ["doubles"]], "the first is run in full until one is named"
    assert [m["named"] for m in quick["exercises"][0]["mutants"]] == [True, True]


def test_grade_check_in_worker_processes_sees_the_projects_plugins(project: Path):
    # `grade check -j 2` rebuilds the catalog in each worker from the project's configuration:
    # the plugin's track is checked there too, and its verdict comes back in course order.
    result = grade_in(project, "check", "-j", "2", "extra", "foundations.softmax")
    assert result.returncode == 4, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    assert lines == ["ok  foundations.softmax", "FAIL  extra.double"], result.stdout
    assert "has 2 public checks; every exercise needs at least 3" in result.stdout
    assert "mutant triple: caught by doubles, doubles_ints, hidden_negative (diagnosed by name)" in result.stdout
