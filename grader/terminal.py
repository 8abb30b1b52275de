"""What a person sees in the terminal: progress while grading, then verdicts and next steps.

Each thing is said once: checks that failed the same way (an import error fails them all)
are one item, and a known mistake is named once per exercise with the checks it explains.
The run's first failing check is shown in full and the others in one line each, unless
`expand_all`. An exercise not started (its file missing, or the untouched stub) is one line:
a partial submission reads as a list of what is left, not a page of errors per check.
Layout holds at 80 columns and through a pipe: a line holding an id or a command is never
wrapped (the terminal may fold it; a pipe keeps it whole), and wrapped prose keeps its
indent.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from grader.results import CheckResult, ExerciseResult, RunResult

STATUS_STYLE = {
    "passed": ("✓", "green"),
    "partial": ("◐", "yellow"),
    "failed": ("✗", "red"),
    "error": ("!", "red"),
    "not_started": ("·", "dim"),
}
OUTPUT_SHOWN = 1500
INDENT = 4


@dataclass
class Guide:
    """What the summary says beyond the results, filled in by the CLI from the catalog, the
    selection and the progress file."""

    files: dict[str, str] = field(default_factory=dict)  # exercise id -> the student's file
    misconceptions: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> mistake -> meaning
    whole_course: bool = False  # every check of every exercise was selected
    # The first exercise in course order not passed yet, after this run: (id, title).
    next_up: tuple[str, str] | None = None
    expand_all: bool = False
    fail_under: float | None = None


@dataclass
class _Failure:
    """Checks of one exercise that failed with the same outcome, message and traceback."""

    checks: list[CheckResult]
    message: str  # without the known mistake's sentence, which is shown once per exercise

    @property
    def first(self) -> CheckResult:
        return self.checks[0]

    @property
    def points(self) -> float:
        return sum(c.max_points for c in self.checks)


def failing_checks(e: ExerciseResult) -> list[CheckResult]:
    return [c for c in e.checks if c.outcome not in ("passed", "skipped")]


def describe_figures(figures: dict[str, float]) -> str:
    """A perf check's figures in words: '1843 GB/s, 0.71 of the ceiling, 2.3x eager PyTorch'."""
    parts = []
    if "gbps" in figures:
        parts.append(f"{figures['gbps']:.0f} GB/s")
    if "tflops" in figures:
        parts.append(f"{figures['tflops']:.1f} TFLOP/s")
    if "fraction_of_peak" in figures:
        parts.append(f"{figures['fraction_of_peak']:.2f} of the ceiling")
    if "speedup_vs_eager" in figures:
        parts.append(f"{figures['speedup_vs_eager']:.2f}x eager PyTorch")
    if "median_us" in figures:
        parts.append(f"median {figures['median_us']:g} us")
    known = {"gbps", "tflops", "fraction_of_peak", "speedup_vs_eager", "median_us", "spread", "ceiling_gbps",
             "ceiling_tflops"}
    parts += [f"{k} {v:g}" for k, v in figures.items() if k not in known]
    return ", ".join(parts)


def needs_work(e: ExerciseResult) -> bool:
    return bool(e.error) or bool(failing_checks(e))


def _named_mistake(check: CheckResult, misconceptions: dict[str, str]) -> str:
    """The known mistake `check`'s message names, to be shown once for the exercise; "" when
    it names none, or several (one output can match more than one mistake: left as it is)."""
    meaning = misconceptions.get(check.mistake)
    if not meaning or meaning not in check.message:
        return ""
    if any(other in check.message for name, other in misconceptions.items() if name != check.mistake):
        return ""
    return check.mistake


def _without(message: str, text: str) -> str:
    """`message` less the line that holds `text` (from that line's start to `text`'s end)."""
    at = message.find(text) if text else -1
    if at < 0:
        return message
    start = max(message.rfind("\n", 0, at), 0)
    return (message[:start] + message[at + len(text):]).strip("\n")


def missing_files(exercises: list[Any], solutions_dir: Path) -> dict[str, str]:
    """Exercise id -> the student's file, for each of `exercises` whose file does not exist."""
    return {e.id: student_file(solutions_dir, e) for e in exercises
            if not (solutions_dir / e.track / f"{e.name}.py").exists()}


class TerminalReport:
    def __init__(self, console: Console | None = None, *, stderr: bool = False,
                 missing: dict[str, str] | None = None):
        """`missing`: exercise id -> the solution file not created yet (see `missing_files`);
        such an exercise is said in one line, never as an import error per check."""
        self.console = console or Console(highlight=False, stderr=stderr)
        self.missing = dict(missing or {})
        self.progress: Progress | None = None
        self.task: Any = None
        self._order: list[str] = []
        self._held: dict[str, ExerciseResult] = {}
        self._id_width = 36

    # --- layout helpers ----------------------------------------------------------------

    def _line(self, text: Text | str, style: str = "") -> None:
        """One line that is never wrapped or cut: ids and commands stay whole."""
        line = text if isinstance(text, Text) else Text(text, style=style)
        self.console.print(line, no_wrap=True, overflow="ignore", crop=False)

    def _wrapped(self, text: str, indent: int, style: str = "") -> None:
        """Prose wrapped to the width, every line (the continuations too) at `indent`; a
        word longer than a line (a path) is kept whole on a line of its own."""
        width = max(20, self.console.width - indent)
        for paragraph in text.splitlines() or [""]:
            for line in textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False) or [""]:
                self._line(" " * indent + line, style)

    def _commands(self, rows: list[tuple[str, str]], indent: int = 2) -> None:
        """Commands one per line, each whole, with what it does beside it."""
        width = max(len(command) for command, _ in rows) + 3
        fits = indent + width + max(len(what) for _, what in rows) <= self.console.width
        for command, what in rows:
            line = Text(" " * indent) + Text(command, style="bold")
            if what and fits:  # else the commands alone, rather than lines that overflow
                line += Text(" " * (width - len(command)) + what, style="dim")
            self._line(line)

    # --- while grading -----------------------------------------------------------------

    def start(self, order: list[str]) -> None:
        """Show progress while grading; results are printed in `order` (course order),
        each held back until those before it are done (with -j they finish out of order)."""
        self._order = list(order)
        self._id_width = max([len(i) for i in order] + [20]) + 2
        if not self.console.is_terminal:
            return  # a pipe or a file gets the results alone
        self.progress = Progress(
            TextColumn("[bold]grading[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("", total=len(order))
        self.progress.start()

    def check_done(self, exercise_id: str, check: CheckResult) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"{exercise_id}.{check.name}")

    def exercise_done(self, result: ExerciseResult) -> None:
        self._held[result.id] = result
        while self._order and self._order[0] in self._held:
            self._exercise_line(self._held.pop(self._order.pop(0)))
        if result.id not in self._order and result.id in self._held:  # not announced in start()
            self._exercise_line(self._held.pop(result.id))
        if self.progress is not None:
            self.progress.advance(self.task)

    def _not_created(self, result: ExerciseResult) -> str:
        """The file `result`'s exercise needs when it has not been created (nothing passed)."""
        if result.id in self.missing and not any(c.outcome == "passed" for c in result.checks):
            return self.missing[result.id]
        return ""

    def _not_started(self, result: ExerciseResult) -> bool:
        return result.status == "not_started" or bool(self._not_created(result))

    def _exercise_line(self, result: ExerciseResult) -> None:
        absent = self._not_created(result)
        mark, style = STATUS_STYLE.get("not_started" if absent else result.status, ("?", ""))
        line = Text(f"{mark} {result.id:<{self._id_width}}", style=style)
        line += Text(f"{result.score:g}/{result.max_score:g}".rjust(7) + "  ")
        if absent:
            line += Text("not created: ", style=style) + Text(absent)
        elif result.status == "not_started" and any(c.not_implemented for c in result.checks):
            line += Text("not started (still the stub)", style=style)
        else:
            line += Text(result.status.replace("_", " "), style=style)
        if result.skipped_points:
            line += Text(f"  ({result.skipped_points:g} points skipped)", style="dim")
        self._line(line)

    def stop(self) -> None:
        for exercise_id in list(self._order):  # a run cut short: what finished is still shown
            if exercise_id in self._held:
                self._exercise_line(self._held.pop(exercise_id))
        self._order = []
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # --- after grading -----------------------------------------------------------------

    def summary(self, run: RunResult, guide: Guide | None = None) -> None:
        guide = guide or Guide()
        c = self.console
        expanded_one = False
        collapsed = 0
        for e in run.exercises:
            # --all shows a missing file's import error too; a stub has nothing more to say
            if needs_work(e) and e.status != "not_started" and (guide.expand_all or not self._not_created(e)):
                expanded_one, n = self._exercise_details(e, guide, expanded_one)
                collapsed += n
        if collapsed:
            c.print()
            self._wrapped(f"{collapsed} more failing check(s) shown in one line; add --all to see each in full.", 0, "dim")
        measured = [(e.id, x) for e in run.exercises for x in e.checks if x.figures and x.outcome in ("passed", "failed")]
        if measured:
            c.print()
            self._line(Text("Performance (measured in this run):", style="bold"))
            for exercise_id, x in measured:
                self._wrapped(f"{exercise_id}.{x.name}: {describe_figures(x.figures)}", 2,
                              "green" if x.outcome == "passed" else "red")
        c.print()
        self.score_line(run, bold=True)
        if run.skipped_points:
            reasons = dict.fromkeys(c.message for e in run.exercises for c in e.checks
                                    if c.outcome == "skipped" and c.message)
            why = f": {'; '.join(reasons)}" if reasons else ""
            self._wrapped(f"{run.skipped_points:g} points were skipped and left out of the maximum{why}.", 0, "dim")
        if run.hidden_not_run:
            self._wrapped(f"{run.hidden_not_run} hidden check(s) were not run: they run only in your instructor's "
                          "grading (the full course, with --hidden), and this score does not include them.", 0, "dim")
        below = guide.fail_under is not None and run.percent < guide.fail_under
        self._next_steps(run, guide, below)
        if below:
            self.fail_under_line(guide.fail_under)

    def score_line(self, run: RunResult, bold: bool = False) -> None:
        line = Text(f"Score: {run.score:g}/{run.max_score:g} ({run.percent:.1f}%)", style="bold" if bold else "")
        if bold:
            line += Text(f"  in {run.duration_s:.1f} s")
        self._line(line)

    def fail_under_line(self, fail_under: float | None) -> None:
        self._line(f"Below --fail-under {fail_under:g}%.", "red")

    def _next_steps(self, run: RunResult, guide: Guide, below: bool) -> None:
        todo = next((e for e in run.exercises if needs_work(e)), None)
        if todo is not None and self._not_started(todo):
            self._wrapped(f"Next: {todo.id} ({todo.title}), not started yet.", 0)
            self._open_and_grade(todo.id, guide, hint=True)
        elif todo is not None:
            self._line(Text("Keep going on ") + Text(todo.id, style="bold") + Text(":"))
            self._commands([(f"grade {todo.id}", "grades just it"), (f"grade hint {todo.id}", "the next hint")])
        elif not any(c.outcome != "skipped" for e in run.exercises for c in e.checks):
            self._line("No check was graded.", "yellow")
        elif below:
            pass  # every graded check passed, yet the score is below the bar: say only that
        elif guide.whole_course and not run.hidden_not_run:
            self._line("Everything passes.", "green")
        elif guide.whole_course:
            self._line("Every public check passes.", "green")
        else:
            graded = sum(c.outcome == "passed" for e in run.exercises for c in e.checks)
            public = " public" if run.hidden_not_run else ""
            self._line(f"All {graded} selected{public} check(s) pass.", "green")
            if guide.next_up is None:
                self._line("Every exercise of the course passed when last graded.", "green")
            else:
                next_id, title = guide.next_up
                self._wrapped(f"Next: {next_id} ({title}).", 0)
                self._open_and_grade(next_id, guide, hint=False)

    def _open_and_grade(self, exercise_id: str, guide: Guide, hint: bool) -> None:
        path = guide.files.get(exercise_id)
        what = "create it (copy the stub)" if exercise_id in self.missing else "the file to edit"
        rows = [(f"open {path}", what)] if path else []
        rows.append((f"grade {exercise_id}", "grades it"))
        if hint:
            rows.append((f"grade hint {exercise_id}", "a hint when stuck"))
        self._commands(rows)

    def _exercise_details(self, e: ExerciseResult, guide: Guide, expanded_one: bool) -> tuple[bool, int]:
        """Print what failed in `e`; returns (whether a check has been shown in full by now,
        how many were shown in one line)."""
        c = self.console
        c.print()
        self._wrapped(f"── {e.id} — {e.title}", 0, "bold")
        if e.error:
            self._code(e.error, INDENT - 2, "red")
        misconceptions = guide.misconceptions.get(e.id, {})
        groups = self._group(failing_checks(e), misconceptions)
        graded = [x for x in e.checks if x.outcome != "skipped"]
        collapsed = 0
        for group in groups:
            whole = len(group.checks) == len(graded) > 1  # e.g. an import error: it is all there is
            if guide.expand_all or whole or not expanded_one:
                self._failure_in_full(e.id, group, whole)
                expanded_one = True
            else:
                self._failure_in_one_line(group)
                collapsed += len(group.checks)
        self._mistakes(e, misconceptions)
        return expanded_one, collapsed

    @staticmethod
    def _group(checks: list[CheckResult], misconceptions: dict[str, str]) -> list[_Failure]:
        groups: dict[tuple[str, str, str], _Failure] = {}
        for check in checks:
            named = _named_mistake(check, misconceptions)
            message = _without(check.message, misconceptions[named]) if named else check.message
            key = (check.outcome, message, check.traceback)
            if key in groups:
                groups[key].checks.append(check)
            else:
                groups[key] = _Failure([check], message)
        return list(groups.values())

    def _heading(self, group: _Failure, whole: bool) -> Text:
        first = group.first
        mark, style = ("!", "red") if first.outcome == "error" else ("✗", "red")
        outcome = "" if first.outcome == "failed" else f"{first.outcome}, "  # the mark says failed
        if whole and first.outcome == "error":
            names, outcome = f"none of its {len(group.checks)} checks could run", ""
        elif whole:
            names = f"all {len(group.checks)} checks"
        else:
            names = ", ".join(x.name for x in group.checks)
        return Text(f"{mark} {names}", style=style) + Text(f" ({outcome}{group.points:g} pt)", style="dim")

    def _failure_in_full(self, exercise_id: str, group: _Failure, whole: bool) -> None:
        first = group.first
        self._line(self._heading(group, whole))
        self._message(group.message)
        if first.traceback:
            self._line(" " * INDENT + "your code:", "dim")
            self._code(first.traceback, INDENT, "dim")
        if first.output:
            text = first.output if len(first.output) <= OUTPUT_SHOWN else first.output[:OUTPUT_SHOWN] + " [...]"
            self._line(" " * INDENT + "your output:", "dim")
            self._code(text, INDENT, "dim", prefix="| ")
        target = exercise_id if len(group.checks) > 1 else f"{exercise_id}.{first.name}"
        self._line(" " * INDENT + f"rerun: grade {target}", "dim")

    def _message(self, message: str) -> None:
        """A check's message: prose wraps at the indent; a line that starts with spaces is
        code (a source line, a caret under it) and is kept as it is."""
        for line in message.splitlines() or [""]:
            if line.startswith(" "):
                self._line(" " * INDENT + line)
            else:
                self._wrapped(line, INDENT)

    def _code(self, text: str, indent: int, style: str, prefix: str = "") -> None:
        for line in text.splitlines():
            self._line(" " * indent + prefix + line, style)

    def _failure_in_one_line(self, group: _Failure) -> None:
        line = self._heading(group, False)
        summary = next((x.strip() for x in group.message.splitlines() if x.strip()), "")
        room = self.console.width - line.cell_len - 2
        if summary and room >= 20:
            if len(summary) > room:
                summary = summary[: room - 1].rstrip() + "…"
            line += Text(": " + summary)
        self._line(line)

    def _mistakes(self, e: ExerciseResult, misconceptions: dict[str, str]) -> None:
        """Each known mistake the output matched, once, with the checks it explains."""
        explained: dict[str, list[str]] = {}
        for check in failing_checks(e):
            named = _named_mistake(check, misconceptions)
            if named:
                explained.setdefault(named, []).append(check.name)
        for mistake, checks in explained.items():
            self._wrapped(f"Known mistake, which explains {', '.join(checks)}:", 2, "yellow")
            self._wrapped(misconceptions[mistake], INDENT)

    # --- other commands ----------------------------------------------------------------

    def exercise_table(self, rows: list[tuple[str, str, str, str]]) -> None:
        """`grade list`: one line per exercise. Ids, status and score are never cut; the title,
        last, is cut to the width."""
        id_width = max([len(r[0]) for r in rows] + [len("exercise")])
        status_width = max([len(r[2]) + 2 for r in rows] + [len("status")])
        score_width = max([len(r[3]) for r in rows] + [len("score")])
        self._line(Text(f"{'exercise':<{id_width}}  {'status':<{status_width}}  {'score':>{score_width}}  title", style="bold"))
        for exercise_id, title, status, score in rows:
            mark, style = STATUS_STYLE.get(status, ("·", "dim"))
            line = Text(f"{exercise_id:<{id_width}}  ")
            line += Text(f"{mark} {status.replace('_', ' ')}".ljust(status_width), style=style)
            line += Text(f"  {score:>{score_width}}  ")
            room = self.console.width - line.cell_len
            if room >= 10:
                line += Text(title if len(title) <= room else title[: room - 1].rstrip() + "…", style="dim")
            line.rstrip()
            self._line(line)


def student_file(solutions_dir: Path, exercise: Any) -> str:
    """The student's file for `exercise`, as they would type it: relative to the working
    directory when it is inside it."""
    path = solutions_dir / exercise.track / f"{exercise.name}.py"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def guide_for(catalog: Any, selection: list[tuple[Any, Any]], solutions_dir: Path, state: Any, expand_all: bool,
           fail_under: float | None) -> Any:
    """What the summary needs beyond the results: files, known mistakes, and what is next."""
    selected = {e.id for e, _ in selection}
    # The progress file already holds this run's results, and the earlier runs' for the rest.
    next_up = next(((e.id, e.title) for e in catalog.exercises
                    if (state.status(e.id) or {}).get("status") != "passed"), None)
    return Guide(
        files={e.id: student_file(solutions_dir, e) for e in catalog.exercises},
        misconceptions={e.id: {m.name: m.misconception for m in e.mutants} for e, _ in selection},
        whole_course=selected == {e.id for e in catalog.exercises} and all(c is None for _, c in selection),
        next_up=next_up,
        expand_all=expand_all,
        fail_under=fail_under,
    )


def hint_text(exercise: Any, index: int, again: bool, ask_again: str) -> str:
    """Hint `index` of `exercise`, saying which one it is, whether it is the last, and how to
    ask for the next (`ask_again`: a command, or a key to press)."""
    n = len(exercise.hints)
    last = index + 1 == n
    which = " again (the last one; there are no more)" if again else " (the last one)" if last else ""
    text = f"Hint {index + 1} of {n} for {exercise.id}{which}:\n\n{exercise.hints[index]}"
    if not last:
        text += f"\n\nAsk again for the next one: {ask_again}"
    elif not again:
        text += f"\n\nThat was the last hint for {exercise.id}."
    return text


def status_rows(exercises: list[Any], state: Any) -> list[tuple[str, str, str, str]]:
    """`grade list`'s rows: id, title, last status and score, from the progress state."""
    rows = []
    for e in exercises:
        s = state.status(e.id) or {}
        score = f"{s['score']:g}/{s['max_score']:g}" if "score" in s else ""
        rows.append((e.id, e.title, s.get("status", "not graded"), score))
    return rows
