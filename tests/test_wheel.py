"""The project as a wheel, as a new user gets it: built, installed into a fresh virtual
environment, `grade init`, then graded with the references as solutions (full marks) and with
the untouched stubs (zero); outside any workspace each student command says what to do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow

STUDENT_COMMANDS = (["run"], ["list"], ["hint", "foundations.softmax"], ["watch"], [])


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(where / "dist"), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = (where / "dist").glob("llm_grader-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"grader", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    assert "grader/_curriculum/plugins/foundations/track.toml" in names
    assert "grader/_curriculum/reference/foundations/softmax.py" in names
    # The dependencies (torch, transformers...) come from this machine's site-packages; the
    # project itself only from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(where / "venv")], check=True,
                   timeout=300)
    python = where / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    located = subprocess.run([str(python), "-c", "import grader; print(grader.__file__)"], cwd=where,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert located.startswith(str(where / "venv")), f"grader imported from {located}, not the wheel"
    return python


def grade(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", "from grader.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=1200,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "HF_HUB_OFFLINE": "1"})


def test_outside_a_workspace_each_student_command_says_what_to_do(venv: Path, tmp_path: Path):
    for command in STUDENT_COMMANDS:
        proc = grade(venv, *command, cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "there is no llm-grader workspace here" in proc.stderr and "grade init DIR" in proc.stderr, command
        assert proc.stdout == "", command
    assert list(tmp_path.iterdir()) == [], "nothing is written outside a workspace"


def scores(report: str) -> dict[str, tuple[float, float, str]]:
    data = json.loads(report)
    return {e["id"]: (e["score"], e["max_score"], e["status"]) for t in data["tracks"] for e in t["exercises"]}


def test_init_then_the_stubs_score_zero_and_the_references_full_marks(venv: Path, tmp_path: Path):
    proc = grade(venv, "init", "course", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "course"
    assert (work / "grade.toml").is_file() and (work / "README.md").is_file()
    stubs = sorted(p.relative_to(work / "exercises") for p in (work / "exercises").rglob("*.py"))
    assert len(stubs) >= 50
    stub = grade(venv, "-j", "2", "--report", "json:-", "-q", cwd=work)
    assert stub.returncode == 0, stub.stderr[-3000:]
    assert {s for s, _, _ in scores(stub.stdout).values()} == {0}
    assert {status for _, _, status in scores(stub.stdout).values()} == {"not_started"}
    # The course's references and checks are inside the installed package now: a solution
    # still cannot read them (the sandbox shows only the package's sandbox/ subfolder).
    spy = work / "exercises" / "foundations" / "softmax.py"
    spy.write_text(
        "import os, grader, torch\n"
        "SEEN = [p for p in ('_curriculum/reference/foundations/softmax.py', '_curriculum/plugins') if\n"
        "        os.path.exists(os.path.join(os.path.dirname(grader.__file__), p))]\n\n"
        "def softmax(x, dim=-1):\n"
        "    assert not SEEN, f'the solution sees {SEEN}'\n"
        "    e = (x - x.amax(dim, keepdim=True)).exp()\n"
        "    return e / e.sum(dim, keepdim=True)\n")
    seen = grade(venv, "foundations.softmax.softmax_matches_torch", "--report", "json:-", "-q", cwd=work)
    check = json.loads(seen.stdout)["tracks"][0]["exercises"][0]["checks"][0]
    assert check["outcome"] == "passed", check["message"]
    # The references, copied in as a student's solutions, from the installed package.
    curriculum = Path(subprocess.run([str(venv), "-c", "from grader.config import bundled_root; print(bundled_root())"],
                                     capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip())
    assert curriculum.name == "_curriculum"
    for rel in stubs:
        shutil.copyfile(curriculum / "reference" / rel, work / "exercises" / rel)
    full = grade(venv, "-j", "2", "--report", "json:-", "-q", cwd=work)
    assert full.returncode == 0, full.stderr[-3000:]
    for exercise_id, (score, max_score, status) in scores(full.stdout).items():
        assert (score, status) == (max_score, "passed"), f"{exercise_id}: {score}/{max_score} {status}"
