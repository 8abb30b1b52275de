"""A later exercise may import the student's own earlier work as `exercises.<track>.<name>`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from helpers import run_grade

TRACK = {
    "track.toml": 'id = "chain"\ntitle = "Chain"\nexercises = ["base", "built"]\n',
    "base.toml": textwrap.dedent('''
        title = "A function"
        hints = ["one", "two"]
    '''),
    "built.toml": textwrap.dedent('''
        title = "Built on the first"
        hints = ["one", "two"]
    '''),
    "reference/base.py": "def double(x):\n    return 2 * x\n",
    "reference/built.py": "from exercises.chain.base import double\n\ndef quadruple(x):\n    return double(double(x))\n",
    "exercises/base.py": "def double(x):\n    raise NotImplementedError\n",
    "exercises/built.py": "from exercises.chain.base import double\n\ndef quadruple(x):\n    raise NotImplementedError\n",
    "check_base.py": "def test_doubles(solution):\n    assert solution.double(3) == 6\n",
    "check_built.py": "def test_quadruples(solution, reference):\n    assert solution.quadruple(3) == reference.quadruple(3) == 12\n",
}

PLUGIN = '''
from pathlib import Path
from grader import hookimpl
from grader.catalog import load_track

@hookimpl
def grade_register_tracks(register, config):
    register(load_track(Path(__file__).parent / "chain" / "track.toml"))
'''


def make_project(tmp_path: Path) -> Path:
    for name, text in TRACK.items():
        path = tmp_path / "chain" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "chainplugin.py").write_text(PLUGIN)
    (tmp_path / "grade.toml").write_text('plugins = ["chainplugin"]\nsolutions = "mine"\n')
    return tmp_path


def grade(project: Path, solutions: Path) -> dict[str, str]:
    out = project / "r.json"
    proc = run_grade("chain", "--solutions", str(solutions), "--report", f"json:{out}", "-q", cwd=project,
                     env={"PYTHONPATH": str(project), "GRADE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    return {e["id"]: (e["status"], e["checks"][0]["message"]) for e in data["tracks"][0]["exercises"]}


def test_references_and_students_import_earlier_work(tmp_path: Path):
    project = make_project(tmp_path)
    ref = project / "chain" / "reference"
    refs = project / "refs" / "chain"
    refs.mkdir(parents=True)
    for f in ("base.py", "built.py"):
        (refs / f).write_text((ref / f).read_text())
    assert {k: v[0] for k, v in grade(project, project / "refs").items()} == {"chain.base": "passed", "chain.built": "passed"}

    # the student finished `built` on top of a `double` that is still wrong: their own earlier
    # work is what gets imported, so `built` fails for the reason that is really there
    mine = project / "mine" / "chain"
    mine.mkdir(parents=True)
    (mine / "base.py").write_text("def double(x):\n    return x + 1\n")
    (mine / "built.py").write_text(TRACK["reference/built.py"])
    statuses = grade(project, project / "mine")
    assert statuses["chain.base"][0] == "failed"
    assert statuses["chain.built"][0] == "failed"
