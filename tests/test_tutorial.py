"""docs/plugins.md's "Your first track in ten minutes", followed literally: every file it
shows is written where it says, every command it shows is run in order, and every line of
output it shows must appear in what that command printed. It is also the test of `grade
new-track` and `grade new-exercise` against an installed copy: scaffold, `pip install -e`,
`grade check` (reference passing, stub failing, what is missing), grade."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

BLOCK = re.compile(r'^```(?P<lang>\w+)(?: title="(?P<title>[^"]+)")?\n(?P<body>.*?)^```$', re.M | re.S)


def tutorial_steps() -> list[tuple[str, str, str]]:
    """('file', path, content) and ('command', line, expected output) in the order shown."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    start = text.index("## Your first track in ten minutes")
    section = text[start:text.index("\n## ", start + 1)]
    steps: list[tuple[str, str, str]] = []
    for block in BLOCK.finditer(section):
        if block["title"]:
            steps.append(("file", block["title"], block["body"]))
        elif block["lang"] == "console":
            for chunk in re.split(r"^\$ ", block["body"], flags=re.M)[1:]:
                command, _, output = chunk.partition("\n")
                steps.append(("command", command, output))
    return steps


def test_the_tutorial_parses_into_its_steps():
    kinds = [(kind, what.split()[0] if kind == "command" else Path(what).name) for kind, what, _ in tutorial_steps()]
    assert kinds == [
        ("command", "grade"), ("command", "pip"), ("command", "grade"), ("command", "grade"),
        ("file", "swish.py"), ("file", "swish.py"), ("file", "swish.toml"), ("file", "check_swish.py"),
        ("command", "grade"), ("file", "swish.py"), ("command", "grade"),
    ]


def test_following_the_tutorial_literally(tmp_path: Path):
    venv = tmp_path / "venv"
    # An environment of its own (the machine's packages visible), so the tutorial's track
    # never reaches other tests' runs.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("GRADE_DISABLE_PLUGIN_AUTOLOAD", None)
    for kind, what, body in tutorial_steps():
        if kind == "file":
            path = work / what
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            continue
        argv = shlex.split(what)
        if argv[0] == "grade":
            argv = [python, "-c", "from grader.cli import main; main()", *argv[1:]]
        elif argv[0] == "pip":  # offline: build with the setuptools already installed
            argv = [python, "-m", "pip", *argv[1:], "--no-build-isolation", "--no-deps", "-q"]
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        printed = done.stdout + done.stderr
        # A check that shows its problems exits 4 (grade check); anything else must succeed.
        assert done.returncode == (4 if "problem:" in body else 0), f"$ {what}\n{printed}"
        for line in body.splitlines():
            assert line.strip() in printed, f"$ {what}: the tutorial shows {line.strip()!r}, but it printed:\n{printed}"

    # Past the tutorial: what new-exercise wrote, that it never writes over, and the grade in numbers.
    def grade(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-c", "from grader.cli import main; main()", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)

    track = work / "grade-track-mytrack" / "grade_track_mytrack" / "track"
    assert 'exercises = ["scale", "swish"]' in (track / "track.toml").read_text()
    again = grade("new-exercise", "mytrack.swish")
    assert again.returncode == 2 and "already" in again.stderr, again.stderr
    graded = grade("--solutions", "solutions", "mytrack.swish", "--report", "json:-", "-q")
    exercise = json.loads(graded.stdout)["tracks"][0]["exercises"][0]
    assert (exercise["id"], exercise["score"], exercise["max_score"]) == ("mytrack.swish", 5, 5), graded.stderr
