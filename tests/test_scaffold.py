"""`grade new-track` and `grade new-exercise`, followed as an instructor would: scaffold,
install with pip into an environment of its own, prove with `grade check`, grade."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT


def test_a_new_track_installs_is_checked_and_grades(tmp_path: Path):
    venv = tmp_path / "venv"
    # Its own environment (the machine's packages visible, this one's pip), so the demo
    # track's entry point never reaches other tests' runs.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("GRADE_DISABLE_PLUGIN_AUTOLOAD", None)

    def grade(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-c", "from grader.cli import main; main()", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    made = grade("new-track", "demo", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "grade-track-demo"
    assert f"pip install -e {project}" in made.stdout and "grade check demo" in made.stdout
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "-e",
                                str(project)], env=env, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    checked = grade("check", "demo")
    assert checked.returncode == 4, checked.stdout + checked.stderr  # sound, but short of the minimums
    out = checked.stdout
    assert "reference: 1/1 over 1 checks and 0 hidden" in out and "stub: 0/1, status not_started" in out, out
    assert "mutant adds_instead: caught by scales_every_entry (diagnosed by name)" in out
    for missing in ("has 1 public checks; every exercise needs at least 3", "has 0 hidden checks; every exercise needs at"
                    " least 1", "has 1 known mistakes; every exercise needs at least 3",
                    "has 1 hints; every exercise needs at least 2"):
        assert missing in out
    assert "lacks" not in out and "not listed" not in out

    added = grade("new-exercise", "demo.double")
    assert added.returncode == 0, added.stderr
    track = project / "grade_track_demo" / "track"
    assert 'exercises = ["scale", "double"]' in (track / "track.toml").read_text()
    assert "reference: 1/1" in grade("check", "demo.double").stdout
    assert grade("new-exercise", "demo.double").returncode == 2, "an exercise is never written over"

    solutions = tmp_path / "solutions" / "demo"
    solutions.mkdir(parents=True)
    shutil.copy(track / "reference" / "scale.py", solutions / "scale.py")
    graded = grade("--solutions", str(solutions.parent), "demo.scale", "--report", "json:-", "-q")
    assert graded.returncode == 0, graded.stderr
    exercise = json.loads(graded.stdout)["tracks"][0]["exercises"][0]
    assert (exercise["id"], exercise["score"], exercise["max_score"]) == ("demo.scale", 1, 1)


@pytest.mark.parametrize("name", ["Demo", "1demo", "de-mo", "de mo"])
def test_a_track_name_must_be_a_module_name(tmp_path: Path, name: str):
    from grader.errors import ConfigError
    from grader.scaffold import new_track

    with pytest.raises(ConfigError, match="cannot name a track"):
        new_track(name, tmp_path)
