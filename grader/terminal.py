"""What a person sees in the terminal: progress while grading, then verdicts and next steps."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from grader.results import CheckResult, ExerciseResult, RunResult

STATUS_STYLE = {
    "passed": ("✓", "green"),
    "partial": ("◐", "yellow"),
    "failed": ("✗", "red"),
    "error": ("!", "red"),
    "not_started": ("·", "dim"),
}
MAX_FAILURES_SHOWN = 4
OUTPUT_SHOWN = 1500


class TerminalReport:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self.progress: Progress | None = None
        self.task: Any = None

    # --- while grading -----------------------------------------------------------------

    def start(self, n_exercises: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]grading[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task("", total=n_exercises)
        self.progress.start()

    def check_done(self, exercise_id: str, check: CheckResult) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"{exercise_id}.{check.name}")

    def exercise_done(self, result: ExerciseResult) -> None:
        mark, style = STATUS_STYLE.get(result.status, ("?", ""))
        score = f"{result.score:g}/{result.max_score:g}"
        status = result.status.replace("_", " ")
        line = f"[{style}]{mark} {result.id:<36}[/] {score:>8}  [{style}]{status}[/]"
        if result.skipped_points:
            line += f"  [dim]({result.skipped_points:g} points skipped)[/]"
        self.console.print(line)
        if self.progress is not None:
            self.progress.advance(self.task)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    # --- after grading -----------------------------------------------------------------

    def summary(self, run: RunResult) -> None:
        c = self.console
        for e in run.exercises:
            if e.status in ("partial", "failed", "error"):
                self._exercise_details(e)
        c.print()
        c.print(f"[bold]Score: {run.score:g}/{run.max_score:g} ({run.percent:.1f}%)[/]  in {run.duration_s:.1f} s")
        if run.skipped_points:
            c.print(f"[dim]{run.skipped_points:g} points were skipped (GPU checks without a GPU) and left out of the maximum.[/]")
        todo = next((e for e in run.exercises if e.status != "passed"), None)
        if todo is None:
            c.print("[green]Everything passes.[/]")
        elif todo.status == "not_started":
            c.print(f"Next: [bold]{todo.id}[/] ({todo.title}). Stuck? [bold]grade hint {todo.id}[/]")
        else:
            c.print(f"Keep going on [bold]{todo.id}[/]: [bold]grade {todo.id}[/] grades just it; "
                    f"[bold]grade hint {todo.id}[/] gives the next hint.")

    def _exercise_details(self, e: ExerciseResult) -> None:
        c = self.console
        c.print()
        c.rule(f"[bold]{e.id}[/] — {escape(e.title)}", align="left")
        if e.error:
            c.print(f"[red]{escape(e.error)}[/]")
        failing = [x for x in e.checks if x.outcome not in ("passed", "skipped")]
        for check in failing[:MAX_FAILURES_SHOWN]:
            self._check_details(e.id, check)
        if len(failing) > MAX_FAILURES_SHOWN:
            c.print(f"[dim]... and {len(failing) - MAX_FAILURES_SHOWN} more failing checks: grade {e.id} --report json:- shows all[/]")

    def _check_details(self, exercise_id: str, check: CheckResult) -> None:
        c = self.console
        c.print(f"[red]✗ {check.name}[/] [dim]({check.outcome}, {check.max_points:g} pt)[/]")
        for line in check.message.splitlines() or [""]:
            c.print(f"    {escape(line)}")
        if check.traceback:
            c.print("    [dim]your code:[/]")
            for line in check.traceback.splitlines():
                c.print(f"    [dim]{escape(line)}[/]")
        if check.output:
            text = check.output if len(check.output) <= OUTPUT_SHOWN else check.output[:OUTPUT_SHOWN] + " [...]"
            c.print("    [dim]your output:[/]")
            for line in text.splitlines():
                c.print(f"    [dim]| {escape(line)}[/]")
        c.print(f"    [dim]rerun: grade {exercise_id}.{check.name}[/]")

    # --- other commands ----------------------------------------------------------------

    def exercise_table(self, rows: list[tuple[str, str, str, str]]) -> None:
        table = Table(show_header=True, header_style="bold", box=None)
        for col in ("exercise", "title", "status", "score"):
            table.add_column(col)
        for exercise_id, title, status, score in rows:
            mark, style = STATUS_STYLE.get(status, ("·", "dim"))
            table.add_row(exercise_id, escape(title), f"[{style}]{mark} {status.replace('_', ' ')}[/]", score)
        self.console.print(table)
