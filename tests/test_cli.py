"""The `grade` command as a student and a CI job use it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT, exercise_scores, load_results, run_grade

from grader.config import load_config
from grader.plugins import GradePlugins


def load_results_text(text: str) -> dict:
    data = json.loads(text)
    assert data["schema"] == "llm-grader/results/1"
    return data


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


def test_reports_and_list_show_last_status_and_one_exercise_is_not_everything(tmp_path: Path):
    (tmp_path / "grade.toml").write_text(f'solutions = "{ROOT / "reference"}"\n')
    out = tmp_path / "out" / "results.json"
    # All of softmax, and one check of cross_entropy (which counts as graded only in part).
    proc = run_grade("foundations.softmax", "foundations.cross_entropy.loss_matches_torch", "--report",
                     f"json:{out}", "--report", "json:-", cwd=tmp_path, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    data = load_results(out)
    assert set(data) == {"schema", "grader_version", "started", "duration_s", "environment", "score",
                         "max_score", "skipped_points", "tracks"}
    exercise = data["tracks"][0]["exercises"][0]
    assert {"id", "title", "score", "max_score", "status", "checks"} <= set(exercise)
    assert {"name", "outcome", "points", "max_points", "message", "duration_s", "figures"} <= set(exercise["checks"][0])
    assert data["environment"]["torch"] and data["environment"]["mode"] == "isolated"
    # json:- : stdout is the report alone (it parses), and people read stderr.
    assert load_results_text(proc.stdout) == data
    human = proc.stderr
    assert "Score: 15/15 (100.0%)" in human and "All 9 selected public check(s) pass." in human
    hidden = exercise["hidden_not_run"]
    assert hidden >= 1 and f"{hidden} hidden check(s) were not run" in " ".join(human.split())
    assert "Everything passes" not in human  # the rest of the course is still to do
    assert "Next: foundations.cross_entropy" in human
    assert f"open {ROOT / 'reference' / 'foundations' / 'cross_entropy.py'}" in human
    # A mistyped check name grades nothing and leaves the progress alone: exit 2, a suggestion.
    typo = run_grade("foundations.softmax.near_overflow", cwd=tmp_path)
    assert typo.returncode == 2 and typo.stdout == ""
    assert "foundations.softmax has no check named 'near_overflow' (did you mean " \
           "'foundations.softmax.softmax_near_overflow'?)" in typo.stderr
    # grade list at 80 columns through a pipe: one line per exercise, ids and scores whole.
    listing = run_grade("list", cwd=tmp_path, env={"COLUMNS": "80"})
    rows = listing.stdout.splitlines()[1:]
    ids = [e.id for e in GradePlugins(load_config(tmp_path)).catalog().exercises]
    assert [row.split()[0] for row in rows] == ids
    assert all(len(row) <= 80 for row in rows), rows
    softmax = rows[ids.index("foundations.softmax")]
    assert "passed" in softmax and "13/13" in softmax
    assert "not graded" in rows[ids.index("foundations.cross_entropy")]  # one check is not the exercise
    # Grading another directory (here the stubs) leaves the project's progress alone.
    other = run_grade("--solutions", str(ROOT / "exercises"), "foundations.softmax", "-q", cwd=tmp_path)
    assert other.returncode == 0 and "Score: 0/" in other.stdout + other.stderr
    listing = run_grade("list", cwd=tmp_path, env={"COLUMNS": "80"})
    assert "passed" in listing.stdout.splitlines()[1:][ids.index("foundations.softmax")]


def write_broken_solutions(solutions: Path) -> None:
    """softmax: a known mistake (explaining several checks) and a ValueError; cross_entropy:
    a syntax error; layernorm_backward: the untouched stub."""
    softmax = solutions / "foundations" / "softmax.py"
    text = softmax.read_text().replace("    return e / _sum(e, dim)", "    return e / e.sum()")
    softmax.write_text(text.replace("    return z - _log(_sum(_exp(z), dim))", "    raise ValueError('not yet')"))
    (solutions / "foundations" / "cross_entropy.py").write_text(
        "import torch\n\ndef cross_entropy(logits, target)\n    return logits\n")
    shutil.copy(ROOT / "exercises" / "foundations" / "layernorm_backward.py", solutions / "foundations")


def test_feedback_says_each_thing_once_and_holds_at_80_columns_through_a_pipe(solutions_copy: Path):
    write_broken_solutions(solutions_copy)
    proc = run_grade("--solutions", "solutions", "foundations.softmax", "foundations.cross_entropy",
                     "foundations.layernorm_backward", cwd=solutions_copy.parent, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    out, lines = proc.stdout, proc.stdout.splitlines()
    # The syntax error: once for the exercise's 7 checks, with the file, the line and a caret.
    assert out.count("SyntaxError") == 1, out
    assert "none of its 7 checks could run" in out
    code = next(i for i, x in enumerate(lines) if "def cross_entropy(logits, target)" in x)
    assert "solutions/foundations/cross_entropy.py: SyntaxError at line 3: expected ':'" in lines[code - 1]
    assert lines[code + 1].index("^") == lines[code].index(")") + 1
    # The known mistake: named once, with the checks it explains.
    flat = " ".join(out.split())
    assert flat.count("divides by the sum over the whole tensor") == 1, out
    assert "Known mistake, which explains softmax_matches_torch, softmax_near_overflow," in flat
    # The first failing check in full, the others one line each.
    assert "rerun: grade foundations.softmax.softmax_matches_torch" in out
    assert "rerun: grade foundations.softmax.log_softmax_matches_torch" not in out
    assert any(x.startswith("✗ log_softmax_matches_torch (2 pt): ValueError in log_softmax") for x in lines)
    assert "add --all to see each in full" in out
    # 80 columns through a pipe: lines fit, ids and commands are whole, wrapped prose keeps its indent.
    assert all(len(x) <= 80 for x in lines), [x for x in lines if len(x) > 80]
    for exercise in ("foundations.softmax", "foundations.cross_entropy", "foundations.layernorm_backward"):
        assert any(x.split()[1:2] == [exercise] for x in lines), exercise
    assert not re.search(r"[a-z_.]…", " ".join(x for x in lines if not x.startswith("✗"))), out
    assert re.findall(r"grade hint\s*(\S*)", out) == ["foundations.softmax"], out
    assert all(cmd.startswith("foundations.") for cmd in re.findall(r"grade (?:hint )?(\S*)", out)), out
    wrapped = next(i for i, x in enumerate(lines) if "softmax(x of shape (4, 7), dim=-1):" in x)
    assert lines[wrapped + 1].startswith("    ") and lines[wrapped + 1].strip(), lines[wrapped:wrapped + 2]


def test_a_timeout_shows_the_students_line_and_all_expands_every_failing_check(solutions_copy: Path):
    softmax = solutions_copy / "foundations" / "softmax.py"
    text = softmax.read_text().replace("def logsumexp(x, dim=-1, keepdim=False):\n",
                                       "def logsumexp(x, dim=-1, keepdim=False):\n    return _spin(x)\n\n\ndef _unused():\n")
    text = text.replace("    return z - _log(_sum(_exp(z), dim))", "    raise NotImplementedError")
    text += "\n\ndef _spin(x):\n    n = 1\n    while n > 0:\n        n += 1\n"
    softmax.write_text(text)
    source = text.splitlines()
    call, loop = source.index("    return _spin(x)") + 1, source.index("    while n > 0:") + 1
    out = solutions_copy.parent / "results.json"
    proc = run_grade("--solutions", "solutions", "foundations.softmax", "--timeout", "2", "--all",
                     "--report", f"json:{out}", cwd=solutions_copy.parent, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    checks = load_results(out)["tracks"][0]["exercises"][0]["checks"]
    timed_out = [c["name"] for c in checks if c["outcome"] == "timeout"]
    failing = [c["name"] for c in checks if c["outcome"] != "passed"]
    assert timed_out == ["logsumexp_matches_torch", "logsumexp_all_masked_slice"], checks
    stopped = proc.stdout.split("Your code was here when it was stopped:")
    assert len(stopped) == 1 + len(timed_out), proc.stdout
    for where in stopped[1:]:
        frames = where.split("rerun:")[0].strip().splitlines()
        assert frames[0] == f'File "solutions/foundations/softmax.py", line {call}, in logsumexp', frames
        assert frames[1].strip() == "return _spin(x)"
        assert frames[2].strip() in (f'File "solutions/foundations/softmax.py", line {n}, in _spin' for n in (loop, loop + 1))
    for name in failing:  # --all: every failing check in full
        assert f"rerun: grade foundations.softmax.{name}" in proc.stdout
    assert "--all" not in proc.stdout


def test_fail_under_exit_code_and_not_started_names_the_file_to_open(tmp_path: Path):
    proc = run_grade("--solutions", "exercises", "foundations.softmax", "--fail-under", "50", cwd=ROOT)
    assert proc.returncode == 1
    assert "Below --fail-under 50%" in proc.stdout
    flat = " ".join(proc.stdout.split())
    assert "Next: foundations.softmax (Stable softmax, log-softmax and logsumexp), not started yet." in flat
    assert "  open exercises/foundations/softmax.py" in proc.stdout


def test_usage_errors_exit_2():
    assert run_grade("no_such_track", cwd=ROOT).returncode == 2
    proc = run_grade("--solutions", "/does/not/exist", cwd=ROOT)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert run_grade("--jobs", "0", cwd=ROOT).returncode == 2
    both = run_grade("--report", "json", "--report", "json:-", cwd=ROOT)
    assert both.returncode == 2 and "would be written to stdout" in both.stderr


def test_a_mistyped_command_is_neither_a_command_nor_a_target():
    for typo, meant in (("lsit", "the command 'grade list'"), ("hnit", "the command 'grade hint'"),
                        ("foundatons", "'grade foundations'")):
        proc = run_grade(typo, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert f"'{typo}' is neither a command nor a track or exercise. Did you mean {meant}?" in proc.stderr
        from grader.cli import cli

        assert f"Commands: {', '.join(sorted(cli.commands))};" in proc.stderr
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
    examples = re.findall(r"^\s*grade ([a-z_][\w.*'-]*)", text, flags=re.MULTILINE)
    targets = [t.strip("'") for t in examples if t not in cli.commands]
    assert "foundations.softmax.softmax_near_overflow" in targets and "attention.sdpa.causal_top_left" in targets
    for target in targets:
        catalog.select([target])  # raises for a name that does not exist


def test_parallel_jobs_give_the_same_scores_in_course_order(tmp_path: Path):
    two = tmp_path / "two.json"
    targets = ["foundations.softmax", "foundations.cross_entropy", "foundations.layernorm_backward"]
    a = run_grade("--solutions", "reference", *targets, "--report", "json:-", "-q", cwd=ROOT)
    b = run_grade("--solutions", "reference", *targets, "--report", f"json:{two}", "-j", "2", cwd=ROOT)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stderr.strip().splitlines()[-1] == "Score: 39/39 (100.0%)"  # -q with json:- : the report alone on stdout
    assert exercise_scores(load_results_text(a.stdout)) == exercise_scores(load_results(two))
    assert [e["id"] for e in json.loads(two.read_text())["tracks"][0]["exercises"]] == targets
    # -j 2 grades softmax and layernorm_backward in one worker, cross_entropy in the other:
    # the lines still come in course order.
    shown = [line.split()[1] for line in b.stdout.splitlines() if line.startswith("✓ ")]
    assert shown == targets, b.stdout


def test_an_unwritable_report_path_is_a_sentence_not_a_crash(tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = run_grade("--solutions", "reference", "foundations.softmax", "-q",
                     "--report", f"json:{tmp_path / 'a_file' / 'r.json'}")
    assert proc.returncode == 2
    assert "could not be written" in proc.stderr and "Traceback" not in proc.stderr
