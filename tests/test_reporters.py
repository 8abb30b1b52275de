"""The report formats, each read back by what consumes it: Gradescope's documented keys and
types, junitparser, GitHub's workflow-command syntax, csv, html.parser."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from grader.builtin import reporters
from grader.config import load_config
from grader.errors import ConfigError
from grader.results import CheckResult, ExerciseResult, RunResult, TrackResult

ROOT = Path(__file__).resolve().parent.parent
MULTILINE = "max abs error 0.5 at index (1, 2)\ntolerance 1e-06, 50% of elements off\nsee: the stub"


def sample_run() -> RunResult:
    checks = [
        CheckResult("matches_torch", "passed", 2.0, 2.0, duration_s=0.01),
        CheckResult("near_overflow", "failed", 0.0, 3.0, message=MULTILINE,
                    traceback='  File "exercises/foundations/softmax.py", line 26, in softmax\n    x = x.exp()\n',
                    mistake="no max subtraction"),
        CheckResult("hidden_shapes", "failed", 0.0, 1.0, message="wrong shape <2, 3> & more", hidden=True),
        CheckResult("crashes", "error", 0.0, 2.0, message="ZeroDivisionError: division by zero"),
        CheckResult("gpu_speed", "skipped", 0.0, 4.0, message="needs CUDA"),
    ]
    ex = ExerciseResult("foundations.softmax", "Softmax, stable", checks)
    return RunResult("0.1.0", "2026-01-01T00:00:00Z", 1.5, {"python": "3.12"},
                     [TrackResult("foundations", "Foundations", [ex])])


# --- gradescope ----------------------------------------------------------------------------

GRADESCOPE_TEST_KEYS = {"name": str, "number": str, "score": (int, float), "max_score": (int, float),
                        "output": str, "visibility": str, "tags": list}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def test_gradescope_has_the_documented_keys_and_types():
    out = json.loads(reporters.render_gradescope(sample_run()))
    assert out["score"] == 2 and out["max_score"] == 8  # the skipped check's 4 points left out
    assert out["output_format"] == "md" and out["stdout_visibility"] in {"hidden", "visible"}
    assert isinstance(out["output"], str)
    assert len(out["tests"]) == 5
    for t in out["tests"]:
        for key, typ in GRADESCOPE_TEST_KEYS.items():
            assert isinstance(t[key], typ), (key, t)
        assert t["visibility"] in VISIBILITIES
        assert t.get("status", "passed") in {"passed", "failed"}
        assert all(isinstance(tag, str) for tag in t["tags"])
    by_name = {t["name"].split(" :: ")[1]: t for t in out["tests"]}
    assert by_name["matches_torch"]["status"] == "passed" and by_name["matches_torch"]["score"] == 2
    assert by_name["near_overflow"]["status"] == "failed" and by_name["near_overflow"]["max_score"] == 3
    assert MULTILINE in by_name["near_overflow"]["output"]
    assert "no max subtraction" in by_name["near_overflow"]["tags"]
    assert by_name["hidden_shapes"]["visibility"] == "after_published"
    assert by_name["matches_torch"]["visibility"] == "visible"
    assert by_name["crashes"]["status"] == "failed"
    assert by_name["gpu_speed"]["max_score"] == 0 and "status" not in by_name["gpu_speed"]
    assert sum(t["score"] for t in out["tests"]) == out["score"]
    assert sum(t["max_score"] for t in out["tests"]) == out["max_score"]


def test_gradescope_hidden_visibility_comes_from_the_config(tmp_path, monkeypatch):
    (tmp_path / "grade.toml").write_text('gradescope_hidden_visibility = "hidden"\n')
    config = load_config(tmp_path)
    assert config.gradescope_hidden_visibility == "hidden"
    monkeypatch.setattr(reporters, "_settings", dict(reporters._settings))
    reporters.grade_configure(config)
    reporters.write_gradescope(sample_run(), str(tmp_path / "results.json"))
    tests = json.loads((tmp_path / "results.json").read_text())["tests"]
    assert [t["visibility"] for t in tests if "hidden_shapes" in t["name"]] == ["hidden"]


def test_a_bad_gradescope_visibility_is_a_config_error_naming_the_choices(tmp_path):
    (tmp_path / "grade.toml").write_text('gradescope_hidden_visibility = "later"\n')
    with pytest.raises(ConfigError, match="gradescope_hidden_visibility.*after_published.*'later'"):
        load_config(tmp_path)


# --- junit ---------------------------------------------------------------------------------


def test_junit_is_read_by_junitparser(tmp_path):
    junitparser = pytest.importorskip("junitparser")
    path = tmp_path / "junit.xml"
    reporters.write_junit(sample_run(), str(path))
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert [s.name for s in suites] == ["foundations.softmax"]
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 2, 1, 1)
    assert {p.name: p.value for p in suite.properties()}["score"] == "2"
    cases = {c.name: c for c in suite}
    assert cases["matches_torch"].is_passed
    [failure] = cases["near_overflow"].result
    assert isinstance(failure, junitparser.Failure)
    assert failure.message == "max abs error 0.5 at index (1, 2)"
    assert MULTILINE in failure.text and "softmax.py" in failure.text
    assert isinstance(cases["crashes"].result[0], junitparser.Error)
    assert isinstance(cases["gpu_speed"].result[0], junitparser.Skipped)
    props = {p.get("name"): p.get("value") for p in cases["near_overflow"]._elem.iter("property")}
    assert props["points"] == "0" and props["max_points"] == "3"
    assert "<2, 3> & more" in cases["hidden_shapes"].result[0].message  # escaped, read back intact


# --- github --------------------------------------------------------------------------------


def test_github_annotations_in_the_exact_workflow_command_format():
    lines = reporters.render_github_annotations(sample_run()).splitlines()
    assert len(lines) == 3  # the failures and the error; neither the pass nor the skip
    assert lines[0] == (
        "::error file=exercises/foundations/softmax.py,line=26,"
        "title=foundations.softmax near_overflow%3A failed (0/3 points)::"
        "max abs error 0.5 at index (1, 2)%0Atolerance 1e-06, 50%25 of elements off%0Asee: the stub"
    )
    # no traceback: line 1 of the exercise's file
    assert lines[1].startswith("::error file=exercises/foundations/softmax.py,line=1,title=")
    assert lines[2].endswith("::ZeroDivisionError: division by zero")


def test_github_says_an_exercise_not_started_once():
    stub = ExerciseResult("foundations.cross_entropy", "Cross-entropy", [
        CheckResult(f"check_{i}", "failed", 0.0, 2.0, message="raised NotImplementedError", not_implemented=True)
        for i in range(6)])
    run = RunResult("0.1.0", "2026-01-01T00:00:00Z", 1.0, {}, [TrackResult("foundations", "Foundations", [stub])])
    assert stub.status == "not_started"
    assert reporters.render_github_annotations(run).splitlines() == [
        "::notice file=exercises/foundations/cross_entropy.py,line=1,"
        "title=foundations.cross_entropy%3A not started (0/12 points)::Cross-entropy: not started yet."]


def test_github_writes_the_step_summary(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    reporters.write_github(sample_run(), None)
    assert capsys.readouterr().out.startswith("::error file=")
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as GitHub expects
    assert "2/8 points" in text and "| foundations.softmax | error | 2/8 |" in text
    assert "<code>near_overflow</code>: failed" in text and MULTILINE in text


# --- csv, markdown, html -------------------------------------------------------------------


def test_csv_has_a_row_per_check_read_back_by_the_csv_module():
    rows = list(csv.DictReader(io.StringIO(reporters.render_csv(sample_run()))))
    assert [r["check"] for r in rows] == ["matches_torch", "near_overflow", "hidden_shapes", "crashes", "gpu_speed"]
    assert rows[1]["message"] == MULTILINE and rows[1]["points"] == "0" and rows[1]["max_points"] == "3"
    assert rows[2]["hidden"] == "true" and rows[4]["outcome"] == "skipped"


def test_markdown_keeps_the_table_intact():
    run = sample_run()
    run.tracks[0].exercises[0].title = "Soft|max"
    text = reporters.render_markdown(run)
    assert "## llm-grader: 2/8 points (25.0%)" in text
    assert "4 points of skipped checks" in text
    assert "### foundations.softmax: Soft\\|max" in text
    assert text.count("<details>") == 3


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_html_is_self_contained_and_escaped():
    run = sample_run()
    run.tracks[0].exercises[0].checks[2].message = '<script src="https://evil.example/x.js"></script>'
    html = reporters.render_html(run)
    parser = _Links()
    parser.feed(html)
    assert all(ref.startswith("#") for ref in parser.refs), parser.refs
    assert "script" not in parser.tags and "link" not in parser.tags
    assert parser.tags.count("details") == 3  # the failing checks expand; passed and skipped do not
    assert "&lt;script" in html
    assert "2/8 points" in html


# --- end to end ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["gradescope", "junit"])
def test_grade_writes_the_report_end_to_end(tmp_path, fmt):
    path = tmp_path / f"report.{fmt}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from grader.cli import main; main()", "--solutions", "exercises",
         "foundations.softmax", "--report", f"{fmt}:{path}", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    if fmt == "gradescope":
        out = json.loads(path.read_text())
        assert out["score"] == 0 and out["max_score"] > 0
        assert out["tests"] and all(t["status"] == "failed" for t in out["tests"])
        assert all(t["name"].startswith("foundations.softmax :: ") for t in out["tests"])
    else:
        junitparser = pytest.importorskip("junitparser")
        [suite] = list(junitparser.JUnitXml.fromfile(str(path)))
        assert suite.name == "foundations.softmax" and suite.tests == suite.failures > 0
