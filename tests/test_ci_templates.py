"""templates/ci: the workflows a course hands to students are valid YAML, and the student
workflow's grading step, run as GitHub Actions runs it, annotates, summarises and reports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GITHUB = ROOT / "templates" / "ci" / "github" / "grade.yml"
GITLAB = ROOT / "templates" / "ci" / "gitlab" / ".gitlab-ci.yml"
ROSTER = ROOT / "templates" / "ci" / "github" / "roster.yml"


def _steps() -> dict[str, dict]:
    workflow = yaml.safe_load(GITHUB.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert "push" in triggers
    return {step.get("name", step.get("uses")): step for step in workflow["jobs"]["grade"]["steps"]}


def test_the_workflows_are_valid_yaml_with_what_they_promise():
    steps = _steps()
    assert steps["Grade"]["run"].startswith("grade --report github ")
    kept = steps["Keep the report"]
    assert kept["uses"].startswith("actions/upload-artifact@") and kept["if"] == "always()"
    assert "grade-report.html" in kept["with"]["path"]
    job = yaml.safe_load(GITLAB.read_text())["grade"]
    assert job["artifacts"]["reports"]["junit"] == "grade-junit.xml"
    assert any(line.startswith("grade --report junit:grade-junit.xml ") for line in job["script"])


def test_the_instructor_workflow_grades_shards_and_merges_them():
    workflow = yaml.safe_load(ROSTER.read_text())
    shards = workflow["env"]["SHARDS"]
    grade = workflow["jobs"]["grade"]
    assert grade["strategy"]["matrix"]["shard"] == list(range(1, shards + 1))
    run = next(s["run"] for s in grade["steps"] if s.get("name") == "Grade this shard")
    assert " roster " in run and "--shard \"${{ matrix.shard }}/$SHARDS\"" in run and "--hidden" in run
    merge = workflow["jobs"]["merge"]
    assert merge["needs"] == "grade"
    script = next(s["run"] for s in merge["steps"] if s.get("name") == "Merge and export")
    assert "grade gradebook merge class.sqlite gradebook-*.sqlite" in script
    assert "grade gradebook export class.sqlite --csv grades.csv --lms canvas.csv" in script


@pytest.mark.slow  # grades the whole course's stubs (30 s)
def test_the_student_workflows_grading_step_runs_as_github_actions_runs_it(tmp_path: Path):
    # A student's repository: the course's stubs, untouched. The step's command runs in bash
    # with the variables the runner sets; `grade` is the installed CLI.
    (tmp_path / "grade.toml").write_text(f'solutions = "{ROOT / "exercises"}"\n')
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "HF_HUB_OFFLINE": "1"}
    env.pop("GRADE_FAIL_UNDER", None)
    proc = subprocess.run(["bash", "-e", "-c", _steps()["Grade"]["run"]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    annotations = proc.stdout.splitlines()
    assert annotations and all(line.startswith("::notice file=") for line in annotations), annotations[:3]
    assert any("exercises/foundations/softmax.py,line=" in a and "title=foundations.softmax%3A not started" in a
               for a in annotations), annotations[:3]
    assert summary.read_text().startswith("## llm-grader: 0/")
    html = (tmp_path / "grade-report.html").read_text()
    assert "foundations.softmax" in html and (tmp_path / "grade-results.json").exists()
