"""`grade gradescope-bundle`: the zip Gradescope builds its image from, and its
run_autograder run as Gradescope runs it on one student's submission."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import ROOT, run_grade


def test_the_bundle_holds_the_scripts_and_the_course(tmp_path: Path):
    out = tmp_path / "autograder.zip"
    proc = run_grade("gradescope-bundle", str(out))
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
    for script in ("setup.sh", "run_autograder"):
        assert script in names and modes[script] & stat.S_IXUSR, script
    assert {"pyproject.toml", "grader/cli.py", "plugins/foundations/track.toml", "reference/foundations/softmax.py",
            "exercises/foundations/softmax.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_run_autograder_writes_gradescope_results_for_a_submission(tmp_path: Path):
    autograder = tmp_path / "autograder"
    (autograder / "source").mkdir(parents=True)
    script = ROOT / "templates" / "ci" / "gradescope" / "run_autograder"
    submission = autograder / "submission" / "foundations"
    submission.mkdir(parents=True)
    shutil.copyfile(ROOT / "reference" / "foundations" / "softmax.py", submission / "softmax.py")
    grade = tmp_path / "grade"  # the image's venv/bin/grade: this interpreter's grader
    grade.write_text(f'#!/bin/sh\nexec {sys.executable} -c "from grader.cli import main; main()" "$@"\n')
    grade.chmod(0o755)
    env = {**os.environ, "AUTOGRADER": str(autograder), "GRADE": str(grade), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((autograder / "results" / "results.json").read_text())
    assert isinstance(results["score"], (int, float)) and results["output_format"] == "md"
    softmax = [t for t in results["tests"] if t["name"].startswith("foundations.softmax ")]
    assert softmax and all(t["status"] == "passed" for t in softmax), softmax
    assert any(t["visibility"] == "after_published" for t in softmax), "the hidden checks ran, shown after publishing"
    assert results["score"] == sum(t["score"] for t in softmax)
