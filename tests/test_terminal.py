"""What the terminal says after grading: each thing once, the first failure in full, the
next step, and a layout that holds at 80 columns. Built from results, no grading needed."""

from __future__ import annotations

import io
import re

from rich.console import Console

from grader.results import CheckResult, ExerciseResult, RunResult, TrackResult
from grader.terminal import Guide, TerminalReport

MISCONCEPTION = "softmax divides by the sum over the whole tensor instead of the sum along `dim`."
IMPORT_ERROR = ("sol/foundations/softmax.py: SyntaxError at line 2: expected ':'\n"
                "    def softmax(x, dim=-1)\n"
                "                          ^")


def check(name: str, outcome: str = "failed", message: str = "", **kw) -> CheckResult:
    points = 1.0 if outcome == "passed" else 0.0
    return CheckResult(name=name, outcome=outcome, points=points, max_points=1.0, message=message, **kw)


def run_of(*exercises: ExerciseResult) -> RunResult:
    run = RunResult(grader_version="0", started="now", duration_s=1.0, environment={})
    run.tracks.append(TrackResult("foundations", "Foundations", list(exercises)))
    return run


def render(run: RunResult, guide: Guide | None = None, width: int = 80) -> str:
    out = io.StringIO()
    TerminalReport(Console(file=out, width=width, highlight=False)).summary(run, guide)
    return out.getvalue()


def mistaken(name: str) -> CheckResult:
    return check(name, message=f"softmax(x) in {name}: 3 of 4 values differ\nThis is exactly what a known mistake gives: {MISCONCEPTION}",
                 mistake="normalises_whole_tensor")


def test_an_import_error_is_shown_once_for_all_the_checks_it_stopped():
    e = ExerciseResult("foundations.softmax", "Softmax",
                       [check(f"c{i}", "error", IMPORT_ERROR) for i in range(4)])
    text = render(run_of(e))
    assert text.count("SyntaxError") == 1, text
    assert "none of its 4 checks could run" in text
    lines = text.splitlines()
    code = lines.index("        def softmax(x, dim=-1)")
    assert lines[code + 1] == "                              ^"  # the caret still under the column


def test_a_known_mistake_is_named_once_with_the_checks_it_explains():
    e = ExerciseResult("foundations.softmax", "Softmax", [mistaken("a"), check("b", message="other"), mistaken("c")])
    guide = Guide(misconceptions={"foundations.softmax": {"normalises_whole_tensor": MISCONCEPTION}}, expand_all=True)
    text = " ".join(render(run_of(e), guide).split())
    assert text.count("divides by the sum over the whole tensor") == 1, text
    assert "Known mistake, which explains a, c:" in text
    assert text.count("3 of 4 values differ") == 2  # each check's own numbers stay


def test_the_first_failing_check_is_in_full_and_the_others_in_one_line_each():
    first = ExerciseResult("foundations.softmax", "Softmax", [
        check("ok", "passed"),
        check("first", message="first problem\nits second line", traceback='  File "x.py", line 1, in f\n    boom()'),
        check("second", message="second problem\nsecond's detail"),
    ])
    later = ExerciseResult("foundations.cross_entropy", "CE", [check("third", message="third problem\nthird's detail")])
    focused = render(run_of(first, later))
    assert "its second line" in focused and "boom()" in focused
    assert "rerun: grade foundations.softmax.first" in focused
    assert "✗ second (1 pt): second problem" in focused and "second's detail" not in focused
    assert "✗ third (1 pt): third problem" in focused and "third's detail" not in focused
    assert "2 more failing check(s) shown in one line; add --all" in focused
    everything = render(run_of(first, later), Guide(expand_all=True))
    for detail in ("its second line", "second's detail", "third's detail"):
        assert detail in everything
    assert everything.count("rerun: grade") == 3 and "--all" not in everything


def test_not_started_names_the_file_to_open():
    stub = ExerciseResult("foundations.softmax", "Softmax",
                          [check("a", message="softmax raised NotImplementedError", not_implemented=True)])
    text = render(run_of(stub), Guide(files={"foundations.softmax": "exercises/foundations/softmax.py"}))
    assert "Next: foundations.softmax (Softmax), not started yet." in text
    assert "open exercises/foundations/softmax.py" in text
    assert "grade hint foundations.softmax" in text


def test_everything_passes_only_when_every_check_of_the_course_passed():
    passing = ExerciseResult("foundations.softmax", "Softmax", [check("a", "passed"), check("b", "passed")])
    failing = ExerciseResult("foundations.cross_entropy", "CE", [check("c", "passed"), check("d", message="no")])
    files = {"foundations.cross_entropy": "exercises/foundations/cross_entropy.py"}

    assert "Everything passes." in render(run_of(passing), Guide(whole_course=True))
    assert "Everything passes." not in render(run_of(passing, failing), Guide(whole_course=True))
    one_of_many = render(run_of(passing), Guide(files=files, next_up=("foundations.cross_entropy", "CE")))
    assert "Everything passes." not in one_of_many and "All 2 selected check(s) pass." in one_of_many
    assert "Next: foundations.cross_entropy (CE)." in one_of_many
    assert "open exercises/foundations/cross_entropy.py" in one_of_many
    assert "grade foundations.cross_entropy" in one_of_many
    skipped = ExerciseResult("foundations.softmax", "Softmax", [check("gpu", "skipped")])
    below = render(run_of(skipped), Guide(whole_course=True, fail_under=50))
    assert "Everything passes." not in below and "Below --fail-under 50%." in below


def test_hidden_checks_not_run_are_counted_and_never_reported_as_passed():
    passing = ExerciseResult("foundations.softmax", "Softmax", [check("a", "passed")], hidden_not_run=2)
    text = " ".join(render(run_of(passing), Guide(whole_course=True)).split())
    assert "Everything passes." not in text and "Every public check passes." in text
    assert "2 hidden check(s) were not run: they run only in your instructor" in text
    one = " ".join(render(run_of(passing), Guide(next_up=("foundations.cross_entropy", "CE"))).split())
    assert "All 1 selected public check(s) pass." in one and "2 hidden check(s) were not run" in one
    assert ExerciseResult.from_dict(passing.to_dict()).hidden_not_run == 2


def test_results_are_printed_in_course_order_whatever_order_they_finish_in():
    out = io.StringIO()
    term = TerminalReport(Console(file=out, width=80, highlight=False))
    ids = ["t.first", "t.second", "t.third"]
    term.start(ids)
    term.exercise_done(ExerciseResult("t.third", "3", [check("a", "passed")]))
    term.exercise_done(ExerciseResult("t.first", "1", [check("a", "passed")]))
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["t.first"]  # third waits for second
    term.exercise_done(ExerciseResult("t.second", "2", [check("a", "passed")]))
    term.stop()
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ids


def test_at_80_columns_ids_and_commands_stay_whole_and_wrapped_lines_keep_their_indent():
    long_id = "architectures.encoder_decoder_with_a_rather_long_name"
    words = " ".join(f"word{i}" for i in range(40))
    e = ExerciseResult(long_id, "A title " * 12, [check("a_check_with_a_long_name_too", message=words)])
    text = render(run_of(e), width=80)
    lines = text.splitlines()
    assert "…" not in text
    assert f"  grade hint {long_id}" in lines
    assert f"    rerun: grade {long_id}.a_check_with_a_long_name_too" in lines
    for line in lines:  # only a command too long for any line may overflow it, whole
        assert len(line) <= 80 or re.fullmatch(r" *(rerun: )?grade (hint )?\S+", line), line
    first = next(i for i, x in enumerate(lines) if "word0 " in x)
    last = next(i for i, x in enumerate(lines) if "word39" in x)
    assert last > first  # it did wrap
    for line in lines[first:last + 1]:
        assert line.startswith("    word") and len(line) <= 80, line


def test_a_check_that_names_several_mistakes_keeps_its_message_whole():
    other = "ignoring the mode argument."
    message = f"draws: wrong law\nThis is what each of these known mistakes gives:\n- {MISCONCEPTION}\n- {other}"
    e = ExerciseResult("foundations.init_and_clip", "Init", [check("a", message=message, mistake="normalises_whole_tensor")])
    guide = Guide(misconceptions={"foundations.init_and_clip": {"normalises_whole_tensor": MISCONCEPTION, "mode": other}})
    text = " ".join(render(run_of(e), guide).split())
    assert f"- {MISCONCEPTION} - {other}" in text and "Known mistake" not in text


def test_a_partial_submission_is_a_line_per_missing_exercise_and_detail_for_the_failing_one():
    def missing(name: str) -> ExerciseResult:
        error = f"sol/foundations/{name}.py: importing it raised FileNotFoundError: sol/foundations/{name}.py does not exist"
        return ExerciseResult(f"foundations.{name}", name, [check(f"c{i}", "error", error) for i in range(10)])

    stub = ExerciseResult("foundations.softmax", "Softmax", [
        check(f"c{i}", message="softmax(x) raised NotImplementedError: not implemented yet.", not_implemented=True,
              traceback='  File "sol/foundations/softmax.py", line 26, in softmax\n    raise NotImplementedError')
        for i in range(8)])
    failing = ExerciseResult("foundations.cross_entropy", "CE", [
        check("ok", "passed"), check("ignore_index", message="got 3.66, expected 4.88\nworst at index ()")])
    passing = [ExerciseResult(f"foundations.p{i}", "P", [check("a", "passed")]) for i in range(3)]
    results = [stub, failing, missing("autograd"), *passing, missing("optimizers")]
    absent = {"foundations.autograd": "sol/foundations/autograd.py", "foundations.optimizers": "sol/foundations/optimizers.py"}

    def output(expand_all: bool = False) -> str:
        out = io.StringIO()
        term = TerminalReport(Console(file=out, width=80, highlight=False), missing=absent)
        term.start([e.id for e in results])
        for e in results:
            term.exercise_done(e)
        term.stop()
        term.summary(run_of(*results), Guide(files={"foundations.softmax": "sol/foundations/softmax.py"},
                                             expand_all=expand_all))
        return out.getvalue()

    text = output()
    lines = text.splitlines()
    for name in ("autograd", "optimizers"):
        said = [x.split() for x in lines if name in x]
        assert said == [["·", f"foundations.{name}", "0/10", "not", "created:", f"sol/foundations/{name}.py"]], text
    said = [x.split() for x in lines if "softmax" in x and x.startswith("·")]
    assert said == [["·", "foundations.softmax", "0/8", "not", "started", "(still", "the", "stub)"]], text
    assert "NotImplementedError" not in text and "FileNotFoundError" not in text
    assert "got 3.66, expected 4.88" in text and "worst at index ()" in text  # the real failure in full
    assert "rerun: grade foundations.cross_entropy.ignore_index" in text
    assert any(x.startswith("Score: 4/33 (12.1%)") for x in lines)  # the summary line stays
    assert len(lines) <= 20, text
    assert "FileNotFoundError" in output(expand_all=True)  # --all still shows everything


def test_missing_files_names_only_the_exercises_without_a_solution_file(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from grader.terminal import missing_files

    (tmp_path / "foundations").mkdir()
    (tmp_path / "foundations" / "softmax.py").write_text("")
    exercises = [SimpleNamespace(id=f"foundations.{n}", track="foundations", name=n) for n in ("softmax", "autograd")]
    monkeypatch.chdir(tmp_path)
    assert missing_files(exercises, tmp_path) == {"foundations.autograd": "foundations/autograd.py"}
