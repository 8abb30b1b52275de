"""The `grade` command as a student and a CI job use it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT, exercise_scores, load_results, run_grade

from grader.config import load_config
from grader.plugins import GradePlugins


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from grader.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch was imported'"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "grade attention.sdpa" in proc.stdout
    assert time.perf_counter() - started < 10


def test_list_does_not_import_torch():
    code = "import sys; from grader.cli import main\ntry:\n    main(['list'])\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "foundations.softmax" in proc.stdout


def test_report_json_and_list_show_last_status(tmp_path: Path):
    (tmp_path / "grade.toml").write_text(f'solutions = "{ROOT / "reference"}"\n')
    out = tmp_path / "out" / "results.json"
    proc = run_grade("foundations.softmax", "--report", f"json:{out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "foundations.softmax" in proc.stdout and "Score: 13/13 (100.0%)" in proc.stdout
    data = load_results(out)
    assert set(data) == {"schema", "grader_version", "started", "duration_s", "environment", "score",
                         "max_score", "skipped_points", "tracks"}
    exercise = data["tracks"][0]["exercises"][0]
    assert {"id", "title", "score", "max_score", "status", "checks"} <= set(exercise)
    assert {"name", "outcome", "points", "max_points", "message", "duration_s", "figures"} <= set(exercise["checks"][0])
    assert data["environment"]["torch"] and data["environment"]["mode"] == "isolated"
    # A mistyped check name grades nothing and leaves the progress alone: exit 2, a suggestion.
    typo = run_grade("foundations.softmax.near_overflow", cwd=tmp_path)
    assert typo.returncode == 2 and typo.stdout == ""
    assert "foundations.softmax has no check named 'near_overflow' (did you mean " \
           "'foundations.softmax.softmax_near_overflow'?)" in typo.stderr
    listing = run_grade("list", cwd=tmp_path)
    line = next(x for x in listing.stdout.splitlines() if "foundations.softmax" in x)
    assert "passed" in line and "13/13" in line


def test_failing_checks_show_mismatch_student_frames_and_hint(tmp_path: Path, solutions_copy: Path):
    (solutions_copy / "foundations" / "softmax.py").write_text(
        "import torch\n\ndef softmax(x, dim=-1):\n    e = torch.exp(x)\n    return e / e.sum(dim, keepdim=True)\n\n"
        "def log_softmax(x, dim=-1):\n    raise ValueError('not yet')\n\n"
        "def logsumexp(x, dim=-1, keepdim=False):\n    raise NotImplementedError\n"
    )
    proc = run_grade("--solutions", str(solutions_copy), "foundations.softmax", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "partial" in out
    assert "known mistake gives: exponentiating without first subtracting the maximum" in out
    assert "ValueError in log_softmax" in out and "raise ValueError('not yet')" in out
    assert "grade hint foundations.softmax" in out


def test_fail_under_exit_code(tmp_path: Path):
    proc = run_grade("--solutions", "exercises", "foundations.softmax", "--fail-under", "50", cwd=ROOT)
    assert proc.returncode == 1
    assert "Below --fail-under 50%" in proc.stdout


def test_usage_errors_exit_2():
    assert run_grade("no_such_track", cwd=ROOT).returncode == 2
    proc = run_grade("--solutions", "/does/not/exist", cwd=ROOT)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert run_grade("--jobs", "0", cwd=ROOT).returncode == 2


def test_a_mistyped_command_is_neither_a_command_nor_a_target():
    for typo, meant in (("lsit", "the command 'grade list'"), ("hnit", "the command 'grade hint'"),
                        ("foundatons", "'grade foundations'")):
        proc = run_grade(typo, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert f"'{typo}' is neither a command nor a track or exercise. Did you mean {meant}?" in proc.stderr
        assert "Commands: check, hint, list, plugins, run" in proc.stderr
    proc = run_grade("hnit", "foundations.softmax", cwd=ROOT)
    assert proc.returncode == 2 and "Did you mean the command 'grade hint'?" in proc.stderr


def test_hint_gives_the_next_hint_each_time_and_says_which_is_the_last(tmp_path: Path):
    (tmp_path / "grade.toml").write_text("")
    shown = [run_grade("hint", "foundations.softmax", cwd=tmp_path).stdout for _ in range(4)]
    assert shown[0].startswith("Hint 1 of 3 for foundations.softmax:\n")
    assert shown[1].startswith("Hint 2 of 3 for foundations.softmax:\n")
    assert "Ask again for the next one: grade hint foundations.softmax" in shown[1]
    assert shown[2].startswith("Hint 3 of 3 for foundations.softmax (the last one):\n")
    assert "That was the last hint" in shown[2] and "Ask again" not in shown[2]
    assert shown[3].startswith("Hint 3 of 3 for foundations.softmax again (the last one; there are no more):\n")
    last_hint = shown[2].split("\n\n")[1]
    assert last_hint in shown[3] and "Ask again" not in shown[3]


def test_the_readme_and_help_examples_name_real_targets():
    from grader.cli import cli

    catalog = GradePlugins(load_config(ROOT)).catalog()
    text = (ROOT / "README.md").read_text() + (cli.help or "")
    examples = re.findall(r"^\s*grade ([a-z_][\w.*']*)", text, flags=re.MULTILINE)
    targets = [t.strip("'") for t in examples if t not in cli.commands]
    assert "foundations.softmax.softmax_near_overflow" in targets and "attention.sdpa.causal_top_left" in targets
    for target in targets:
        catalog.select([target])  # raises for a name that does not exist


def test_parallel_jobs_give_the_same_scores(tmp_path: Path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    targets = ["foundations.softmax", "foundations.cross_entropy", "foundations.layernorm_backward"]
    a = run_grade("--solutions", "reference", *targets, "--report", f"json:{one}", "-q", cwd=ROOT)
    b = run_grade("--solutions", "reference", *targets, "--report", f"json:{two}", "-q", "-j", "2", cwd=ROOT)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert exercise_scores(load_results(one)) == exercise_scores(load_results(two))
    assert [e["id"] for e in json.loads(two.read_text())["tracks"][0]["exercises"]] == targets


def test_an_unwritable_report_path_is_a_sentence_not_a_crash(tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = run_grade("--solutions", "reference", "foundations.softmax", "-q",
                     "--report", f"json:{tmp_path / 'a_file' / 'r.json'}")
    assert proc.returncode == 2
    assert "could not be written" in proc.stderr and "Traceback" not in proc.stderr
